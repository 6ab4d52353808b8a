"""K nearest stores by WGS84 geodesic, exact, with the chord certificate (see the package docstring).

:func:`knn` is the batch path (chunks on a thread pool, blocks of candidates,
a ball search for rows whose certificate fails); :func:`nearest_scalar` is a
pure-Python path for one point that returns ``None`` whenever the batch path
must settle it.  Both return slots; the facade turns them into positions.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._geodesy import (
    CHORD_SERIES_MAX_M,
    CHORD_SLACK_M,
    BlockDistances,
    GeoPoints,
    RoughEntries,
    andoyer_lambert_m,
    block_distance_m,
    chord_error_bound_m,
    chord_reach_m,
    chord_reach_scalar_m,
    chord_to_geodesic_scalar_m,
    ecef_scalar_m,
    geodesic_inverse_m,
    measure_m,
    norm3,
    pair_distance_m,
    parametric_unit,
)
from .._types import FloatArray, IntArray
from ._radius import CACHE_PAIRS, ball_groups, ball_pairs, order_pairs
from ._slots import Segment

#: Batch queries are cut into chunks of at most this many points (cache-sized) run on a thread pool.
_CHUNK = 16_384
#: Batches of at least this many points use the thread pool, in chunks of at least _MIN_CHUNK points.
_MIN_THREADED = 4_096
_MIN_CHUNK = 1_024
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def n_threads(workers: int) -> int:
    return (os.cpu_count() or 1) if workers == -1 else workers


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide thread pool per size (numpy and cKDTree release the GIL)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="o2o_geo")
        return pool


class _Search:
    """One batch search: the stores' points, the trees, the slots to skip, k and the distance cap."""

    __slots__ = ("p", "segs", "skip", "k", "max_d", "total")

    def __init__(self, p: GeoPoints, segs: list[Segment], skip: np.ndarray | None, k: int, max_d: float | None) -> None:
        self.p, self.segs, self.skip, self.k, self.max_d = p, segs, skip, k, max_d
        self.total = sum(s.n for s in segs)


def knn(
    p: GeoPoints,
    lat: FloatArray,
    lon: FloatArray,
    k: int,
    max_d: float | None,
    segs: list[Segment],
    skip: np.ndarray | None,
    threads: int,
) -> tuple[FloatArray, IntArray]:
    """K nearest slots of each point (``inf`` / ``-1`` past the last); large batches run on a thread pool.

    Each chunk asks the trees for a few candidates by chord and ranks them.
    A row whose certificate fails (a store it did not see could still be
    nearer) fetches every store within the chord reach of its k-th distance
    (:func:`chord_reach_m`) in one ball query, in groups of at most
    :data:`~._radius.PAIR_BUDGET` candidates, so memory stays bounded whatever
    the geometry.
    """
    search = _Search(p, segs, skip, k, max_d)
    n = lat.shape[0]
    if n < _MIN_THREADED or threads <= 1:
        return _knn_chunk(search, lat, lon)
    # visit the points in a spatial order (half-degree cells) so that neighbouring
    # queries share tree nodes and store rows in cache, then put results back
    chunk = max(_MIN_CHUNK, min(_CHUNK, -(-n // (4 * threads))))
    order = _spatial_order(lat, lon)
    lat_s, lon_s = lat[order], lon[order]
    bounds = list(range(0, n, chunk)) + [n]
    parts = _pool(threads).map(
        lambda ab: _knn_chunk(search, lat_s[ab[0] : ab[1]], lon_s[ab[0] : ab[1]]),
        zip(bounds[:-1], bounds[1:], strict=False),
    )
    ds, ss = zip(*parts, strict=False)
    out_d = np.empty((n, k))
    out_s = np.empty((n, k), dtype=np.int64)
    out_d[order] = np.concatenate(ds)
    out_s[order] = np.concatenate(ss)
    return out_d, out_s


def _knn_chunk(sr: _Search, lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, IntArray]:
    n, k, max_d, total = lat.shape[0], sr.k, sr.max_d, sr.total
    out_d = np.full((n, k), np.inf)
    out_s = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or total == 0:
        return out_d, out_s
    q = GeoPoints(lat, lon)
    ub = math.inf if max_d is None else max_d + 1.0  # chords never exceed geodesics
    n_skip = 0 if sr.skip is None else int(sr.skip[np.concatenate([s.slots for s in sr.segs])].sum())
    frac_ok = max(0.05, 1.0 - n_skip / total)
    kk = min(int(math.ceil((k + 1) / frac_ok)) + (0 if n_skip == 0 else 2), total)
    pending = np.arange(n)
    while pending.size:
        retry = []
        step = max(1, CACHE_PAIRS // kk)  # rows x candidates per block stays bounded
        for a in range(0, pending.size, step):
            rows = pending[a : a + step]
            c, s, c_next = _candidates(q.xyz[rows], kk, ub, sr.segs, sr.skip)
            pre = block_distance_m(c, s, rows, q, sr.p)
            if pre.rough is not None and kk < total:
                # far rows whose certificate fails even on the candidates' upper bounds go
                # straight to the ball search, before any GeographicLib call is spent on them
                lr, _, kth = _rough_kth(pre, k, max_d)
                reach = chord_reach_m(kth, q.r[rows[lr]])
                fail = np.isfinite(kth) & (c_next[lr] <= reach)
                if fail.any():
                    fr = lr[fail]
                    out_d[rows[fr]], out_s[rows[fr]] = _ball_knn(sr, rows[fr], reach[fail], kth[fail], q)
                    keep = np.ones(rows.size, dtype=bool)
                    keep[fr] = False
                    rows, c, s, c_next = rows[keep], c[keep], s[keep], c_next[keep]
                    pre = _keep_block_rows(pre, keep)
            dist, slots, err = _rank_rows(sr, s, rows, q, pre)
            kcol = min(k, dist.shape[1])
            thr = dist[:, k - 1] + err if kcol == k else np.full(rows.size, np.inf)
            if max_d is not None:
                thr = np.minimum(thr, max_d)
            # certificate: a store not returned is at least c_next away by chord, and a store
            # within geodesic thr is within chord_reach(thr); so c_next > reach rules them all out
            reach = chord_reach_m(thr, q.r[rows])
            done = (c_next == np.inf) | (c_next > reach) | (kk >= total)
            r = rows[done]
            out_d[r, :kcol] = dist[done, :kcol]
            out_s[r, :kcol] = slots[done, :kcol]
            ball = ~done & np.isfinite(thr)
            if ball.any():
                br = rows[ball]
                out_d[br], out_s[br] = _ball_knn(sr, br, reach[ball], thr[ball], q)
            retry.append(rows[~done & ~ball])
        pending = np.concatenate(retry)
        kk = min(kk * 2, total)
    return out_d, out_s


def _candidates(
    q_xyz: FloatArray, kk: int, ub: float, segs: list[Segment], skip: np.ndarray | None
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Kk nearest by chord from each segment: chords, slots (-1: none/skipped), next-chord bound."""
    n = q_xyz.shape[0]
    chords, slots = [], []
    c_next = np.full(n, np.inf)
    for seg in segs:
        kq = min(kk, seg.n)
        d, i = seg.tree.query(q_xyz, k=kq, distance_upper_bound=ub, workers=1)
        d = d.reshape(n, kq)
        i = i.reshape(n, kq)
        if seg.identity and (ub == math.inf or np.isfinite(d[:, -1]).all()):
            s = i  # every candidate found, tree points are slots
        else:
            found = i < seg.n
            s = np.where(found, seg.slots[np.minimum(i, seg.n - 1)], -1)
        if skip is not None:
            s[(s >= 0) & skip[np.maximum(s, 0)]] = -1
        if kq == kk:  # the segment may hold more: its last chord bounds the rest
            np.minimum(c_next, d[:, -1], out=c_next)
        chords.append(d)
        slots.append(s)
    if not chords:
        return np.full((n, 0), np.inf), np.full((n, 0), -1, dtype=np.int64), c_next
    if len(chords) == 1 and skip is None:
        return chords[0], slots[0], c_next  # already in chord order
    c = np.concatenate(chords, axis=1) if len(chords) > 1 else chords[0]
    s = np.concatenate(slots, axis=1) if len(slots) > 1 else slots[0]
    # chord order, skipped entries last: most rows then need no sort by distance
    c = np.where(s >= 0, c, np.inf)
    order = np.argsort(c, axis=1)
    c = np.take_along_axis(c, order, 1)
    s = np.take_along_axis(s, order, 1)
    if c.shape[1] > kk:  # keep kk; the first one dropped bounds everything not kept
        np.minimum(c_next, c[:, kk], out=c_next)
        c, s = c[:, :kk], s[:, :kk]
    return c, s, c_next


def _keep_block_rows(pre: BlockDistances, keep: np.ndarray) -> BlockDistances:
    """The block distances of the rows in the boolean mask ``keep`` (rough entries renumbered)."""
    rough = pre.rough
    if rough is not None:
        sel = keep[rough.row]
        new_row = np.cumsum(keep) - 1
        rough = RoughEntries(new_row[rough.row[sel]], rough.col[sel], rough.err_m[sel]) if sel.any() else None
    return BlockDistances(pre.dist_m[keep], pre.err_m[keep], rough)


def _rough_kth(pre: BlockDistances, k: int, max_d: float | None) -> tuple[IntArray, IntArray, FloatArray]:
    """Upper bounds of the k-th distance of the block rows that have rough entries.

    Returns those rows, the row (among them) of each rough entry, and each
    row's k-th smallest upper bound, capped at ``max_d``.
    """
    assert pre.rough is not None
    dist, err, (rr, fc, e) = pre.dist_m, pre.err_m, pre.rough
    lr, loc = np.unique(rr, return_inverse=True)
    upper = dist[lr] + err[lr][:, None]
    upper[loc, fc] = dist[rr, fc] + e
    kth = np.partition(upper, k - 1, axis=1)[:, k - 1] if dist.shape[1] >= k else np.full(lr.size, np.inf)
    if max_d is not None:
        np.minimum(kth, max_d, out=kth)
    return lr, loc, kth


def _ball_knn(
    sr: _Search, rows: IntArray, reach: FloatArray, thr: FloatArray, q: GeoPoints
) -> tuple[FloatArray, IntArray]:
    """K nearest slots of each row among every store within its chord ``reach`` (which holds them all).

    ``thr`` is an upper bound of each row's k-th distance (or ``max_distance_m``):
    candidates whose lower bound exceeds it cannot be among the k nearest.
    """
    out = (np.full((rows.size, sr.k), np.inf), np.full((rows.size, sr.k), -1, dtype=np.int64))
    xyz = q.xyz[rows]
    for a, b in ball_groups(sr.segs, xyz, reach):
        qs, ss = [], []
        for seg in sr.segs:
            ql, i = ball_pairs(seg, xyz[a:b], reach[a:b], 1)
            qs.append(ql + a)
            ss.append(seg.slots[i])
        _rank_ball(sr, rows, np.concatenate(qs), np.concatenate(ss), thr, q, out)
    return out


def _rank_ball(
    sr: _Search,
    rows: IntArray,
    ql: IntArray,
    s: IntArray,
    thr: FloatArray,
    q: GeoPoints,
    out: tuple[FloatArray, IntArray],
) -> None:
    """The k nearest of each row among (row ``ql``, slot ``s``) candidate pairs, written into ``out``."""
    p, max_d = sr.p, sr.max_d
    if sr.skip is not None and s.size:
        keep = ~sr.skip[s]
        ql, s = ql[keep], s[keep]
    if not s.size:
        return
    qi = rows[ql]
    dist, err, rough = pair_distance_m(q, qi, p, s, norm3(p.xyz[s] - q.xyz[qi]))
    maybe = dist - err <= thr[ql]  # the others have k stores certainly nearer
    ql, qi, s, dist, err, rough = ql[maybe], qi[maybe], s[maybe], dist[maybe], err[maybe], rough[maybe]
    measure_m(q, qi, p, s, dist, err, rough)
    if max_d is not None:
        measure_m(q, qi, p, s, dist, err, np.abs(dist - max_d) <= err)
        keep = dist <= max_d
        ql, qi, s, dist, err = ql[keep], qi[keep], s[keep], dist[keep], err[keep]
    ql, s, dist = order_pairs(p, ql, s, dist, err, qi, q)
    cnt = np.bincount(ql, minlength=rows.size)
    rank = np.arange(ql.size) - (np.cumsum(cnt) - cnt)[ql]
    top = rank < sr.k
    out[0][ql[top], rank[top]] = dist[top]
    out[1][ql[top], rank[top]] = s[top]


def _rank_rows(
    sr: _Search, s: IntArray, rows: IntArray, q: GeoPoints, pre: BlockDistances
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Sort each row's candidates (block ``pre``, slots ``s``) by exact geodesic distance, ties by slot.

    Returns distances (``inf`` and slot ``-1`` past the last store kept),
    slots, and each row's error bound (0 for rows settled by GeographicLib).
    Far candidates (rough estimates) that cannot be among the k nearest
    are dropped; the others are measured with GeographicLib.
    """
    p, max_d = sr.p, sr.max_d
    dist, err = pre.dist_m, pre.err_m
    if pre.rough is not None:
        _settle_rough(sr, pre, s, rows, q)
    if max_d is not None:
        over = dist - err[:, None] > max_d
        if over.any():
            dist[over] = np.inf
            s = np.where(over, -1, s)
    # rows already in order, every neighbour pair apart by more than the error bounds
    ok = _separated(dist, err)
    if max_d is not None:
        ok &= ~np.any(np.abs(dist - max_d) <= err[:, None], axis=1)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        sub_d, sub_s, sub_e = dist[bad], s[bad], err[bad]
        order = np.lexsort((sub_s, sub_d), axis=-1)
        sub_d = np.take_along_axis(sub_d, order, 1)
        sub_s = np.take_along_axis(sub_s, order, 1)
        still = ~_separated(sub_d, sub_e)
        if max_d is not None:
            still |= np.any(np.abs(sub_d - max_d) <= sub_e[:, None], axis=1)
        if still.any():
            # near-ties (or a borderline max_distance_m): settle them with GeographicLib
            fix = np.flatnonzero(still)
            fs = sub_s[fix]
            vr, vc = np.nonzero(fs >= 0)
            qi = rows[bad[fix][vr]]
            exact = np.full(fs.shape, np.inf)
            exact[vr, vc] = geodesic_inverse_m(q.lat[qi], q.lon[qi], p.lat[fs[vr, vc]], p.lon[fs[vr, vc]])
            if max_d is not None:
                exact[exact > max_d] = np.inf
            fs = np.where(np.isinf(exact), -1, fs)
            o2 = np.lexsort((np.where(fs < 0, np.iinfo(np.int64).max, fs), exact), axis=-1)
            sub_d[fix] = np.take_along_axis(exact, o2, 1)
            sub_s[fix] = np.take_along_axis(fs, o2, 1)
            sub_e[fix] = 0.0
        dist[bad], s[bad], err[bad] = sub_d, sub_s, sub_e
    if not (s >= 0).all() or np.isinf(dist[:, -1:]).any():
        s = np.where(np.isinf(dist), -1, s)
    return dist, s, err


def _settle_rough(sr: _Search, pre: BlockDistances, s: IntArray, rows: IntArray, q: GeoPoints) -> None:
    """Measure the far entries that can be among the k nearest with GeographicLib, drop the rest (in place)."""
    assert pre.rough is not None
    dist, err, (rr, fc, e) = pre.dist_m, pre.err_m, pre.rough
    lr, loc, kth = _rough_kth(pre, sr.k, sr.max_d)
    maybe = dist[rr, fc] - e <= kth[loc]
    mr, mc = rr[maybe], fc[maybe]
    if mr.size:
        qi = rows[mr]
        dist[mr, mc] = geodesic_inverse_m(q.lat[qi], q.lon[qi], sr.p.lat[s[mr, mc]], sr.p.lon[s[mr, mc]])
    # a far entry whose lower bound exceeds k upper bounds in its row cannot be among the k nearest
    dist[rr[~maybe], fc[~maybe]] = np.inf
    s[rr[~maybe], fc[~maybe]] = -1
    err[lr] = chord_error_bound_m(CHORD_SERIES_MAX_M)  # the row's closed-form entries are shorter


def _spatial_order(lat: FloatArray, lon: FloatArray) -> IntArray:
    """A permutation visiting points cell by cell (0.5 degree cells, row-major)."""
    cell = (np.floor((lat + 90.0) * 2.0) * 721.0 + np.floor((lon + 180.0) * 2.0)).astype(np.int32)
    return np.argsort(cell, kind="stable")


def _separated(dist: FloatArray, err: FloatArray) -> np.ndarray:
    """Rows whose finite distances increase by more than twice the row's error bound at each step.

    Infinite (missing) entries must all come after the finite ones.
    """
    if dist.shape[1] < 2:
        return np.ones(dist.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):  # inf - inf between two missing entries
        lo = dist[:, 1:] - dist[:, :-1]
        step_ok = (lo > 2.0 * err[:, None]) | np.isinf(dist[:, 1:])
    return np.asarray(step_ok.all(axis=1))


# ------------------------------------------------------------ one point, plain floats
def nearest_scalar(
    p: GeoPoints, lat: float, lon: float, k: int, max_d: float | None, seg: Segment
) -> tuple[FloatArray, IntArray] | None:
    """K nearest slots of one point searched in one tree, in plain floats; ``None`` when :func:`knn` must settle it.

    The same rule as :func:`knn` for one row with k + 1 candidates: give up
    on any near-tie or a borderline ``max_distance_m``; far candidates go to
    :func:`_nearest_scalar_far`.
    """
    x, y, z, gn = ecef_scalar_m(lat, lon)
    kk = k + 1
    kq = min(kk, seg.n)
    ub = math.inf if max_d is None else max_d + 1.0
    chords_a, idx_a = seg.tree.query((x, y, z), k=kq, distance_upper_bound=ub)
    chords = np.atleast_1d(chords_a).tolist()
    idx = np.atleast_1d(idx_a).tolist()
    if chords[-1] == math.inf:
        found = np.asarray([i for c, i in zip(chords, idx, strict=False) if c != math.inf], dtype=np.int64)
    else:
        found = np.atleast_1d(idx_a)
    if not seg.identity:  # tree points to slots
        found = seg.slots[found]
        idx = found.tolist()
    if chords[len(found) - 1] > CHORD_SERIES_MAX_M:
        return _nearest_scalar_far(p, lat, lon, (x, y, z), gn, k, max_d, chords, found, seg)
    zs = p.z.take(found).tolist()
    gns = p.gn.take(found).tolist()
    prev_hi = -math.inf
    dist: list[float] = []
    errs: list[float] = []
    for c, zi, gi in zip(chords, zs, gns, strict=False):
        s = chord_to_geodesic_scalar_m(c, zi - z, 0.5 * (gn + gi))
        e = 2e-8 + 1e-31 * c**5  # chord_error_bound_m, inlined
        if s - e <= prev_hi or (max_d is not None and abs(s - max_d) <= e):
            return None
        if max_d is not None and s > max_d:
            return None  # chord order may differ from geodesic order here: let the batch path decide
        prev_hi = s + e
        dist.append(s)
        errs.append(e)
    c_next = chords[-1] if kq == kk else math.inf
    thr = dist[k - 1] + errs[k - 1] if len(dist) >= k else math.inf
    if max_d is not None:
        thr = min(thr, max_d)
    if not (c_next == math.inf or c_next - CHORD_SLACK_M > thr):
        return None
    m = min(k, len(dist))
    pad = k - m
    return np.array(dist[:m] + [math.inf] * pad), np.array(idx[:m] + [-1] * pad, dtype=np.int64)


def _nearest_scalar_far(
    p: GeoPoints,
    lat: float,
    lon: float,
    xyz: tuple[float, float, float],
    gn: float,
    k: int,
    max_d: float | None,
    chords: list[float],
    found: IntArray,
    seg: Segment,
) -> tuple[FloatArray, IntArray] | None:
    """:func:`nearest_scalar` when a candidate is farther than :data:`CHORD_SERIES_MAX_M` by chord.

    The far candidates get Andoyer-Lambert bounds first.  When the chord
    reach of the k-th upper bound rules out the stores the tree did not
    return, the candidates that can be among the k nearest are measured
    with GeographicLib and sorted; otherwise the single-row ball search of
    the batch path gives the answer.  ``None`` on a near-tie or a
    borderline ``max_distance_m`` (the batch path settles those).
    """
    x, y, z = xyz
    m = found.shape[0]
    c_arr = np.asarray(chords[:m])
    dist = np.empty(m)
    errs = np.empty(m)
    short = c_arr <= CHORD_SERIES_MAX_M
    for j in np.flatnonzero(short).tolist():
        i = int(found[j])
        dist[j] = chord_to_geodesic_scalar_m(chords[j], float(p.z[i]) - z, 0.5 * (gn + float(p.gn[i])))
        errs[j] = chord_error_bound_m(chords[j])
    far = ~short
    fi = found[far]
    u = parametric_unit(np.array([lat]), np.array([lon]))
    dist[far], errs[far] = andoyer_lambert_m(np.repeat(u, fi.shape[0], axis=0), p.u[fi])
    upper = dist + errs
    thr = float(np.partition(upper, k - 1)[k - 1]) if m >= k else math.inf
    if max_d is not None:
        thr = min(thr, max_d)
    kk = k + 1
    c_next = chords[-1] if len(chords) == kk and chords[-1] != math.inf else math.inf
    reach = chord_reach_scalar_m(thr, math.sqrt(x * x + y * y + z * z))
    if c_next != math.inf and c_next <= reach:  # a store the tree did not return may be nearer
        if thr == math.inf:
            return None
        q = GeoPoints(np.array([lat]), np.array([lon]))
        d2, s2 = _ball_knn(
            _Search(p, [seg], None, k, max_d), np.zeros(1, dtype=np.int64), np.array([reach]), np.array([thr]), q
        )
        return d2[0], s2[0]
    keep = dist - errs <= thr  # the others have k candidates certainly nearer
    measure = keep & far
    fm = found[measure]
    dist[measure] = geodesic_inverse_m(np.full(fm.shape[0], lat), np.full(fm.shape[0], lon), p.lat[fm], p.lon[fm])
    errs[measure] = 0.0
    dist, errs, found = dist[keep], errs[keep], found[keep]
    order = np.lexsort((found, dist))
    dist, errs, found = dist[order], errs[order], found[order]
    if (np.diff(dist) <= errs[1:] + errs[:-1]).any():
        return None  # a near-tie: the batch path settles it
    if max_d is not None:
        if (np.abs(dist - max_d) <= errs).any():
            return None
        within = dist <= max_d
        dist, found = dist[within], found[within]
    mk = min(k, dist.shape[0])
    out_d = np.full(k, np.inf)
    out_p = np.full(k, -1, dtype=np.int64)
    out_d[:mk] = dist[:mk]
    out_p[:mk] = found[:mk]
    return out_d, out_p
