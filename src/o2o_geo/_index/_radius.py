"""Radius and service-area search: every (point, store) pair within a distance, exact and memory-bounded.

A ball search in a kd-tree returns the stores within the chord reach of the
radius (:func:`~.._geodesy.chord_reach_m`: every store within geodesic ``D`` is
within that chord); each pair's geodesic is then estimated with an error bound
and only the pairs whose bound straddles the radius, or whose chord is longer
than :data:`~.._geodesy.CHORD_SERIES_MAX_M`, are measured with GeographicLib.
Queries are searched in groups of at most :data:`PAIR_BUDGET` pairs, so the
tree's Python lists never hold more than that at once.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import shapely

from .._geodesy import (
    CHORD_SERIES_MAX_M,
    GeoPoints,
    chord_error_bound_m,
    chord_reach_m,
    chord_reach_scalar_m,
    chord_to_geodesic_scalar_m,
    ecef_scalar_m,
    geodesic_inverse_m,
    geodesic_inverse_scalar_m,
    measure_m,
    norm3,
    pair_distance_m,
)
from .._types import FloatArray, IntArray, Where
from ..errors import StaleRadiiError
from ._filters import segments_for
from ._results import StoreRadii
from ._slots import Segment, Slots, segment

#: At most this many (query, candidate) pairs are held at once by one chunk's search.
PAIR_BUDGET = 1 << 20
#: Pairs computed on at once where no memory bound forces a size (cache-sized blocks run faster).
CACHE_PAIRS = 1 << 16
#: Ball searches over more stores than this count their pairs first (to group the queries).
_COUNT_ABOVE = 65_536

EMPTY_I = np.empty(0, dtype=np.int64)
EMPTY_F = np.empty(0, dtype=np.float64)


# ------------------------------------------------------------ ball search primitives
def ball_groups(segs: list[Segment], xyz: FloatArray, reach: FloatArray) -> list[tuple[int, int]]:
    """Row ranges whose ball searches return at most :data:`PAIR_BUDGET` pairs (a larger single row alone)."""
    n, total = xyz.shape[0], sum(seg.n for seg in segs)
    brute = all(seg.points_t is not None for seg in segs)
    budget = CACHE_PAIRS if brute else PAIR_BUDGET  # brute force computes every pair: cache-sized
    if n * total <= budget:
        return [(0, n)]
    if brute or total <= _COUNT_ABOVE:  # small enough to bound by the store count: no counting pass
        step = max(1, budget // total)
        return [(a, min(a + step, n)) for a in range(0, n, step)]
    counts = sum(
        (np.asarray(seg.tree.query_ball_point(xyz, r=reach, return_length=True)) for seg in segs),
        np.zeros(n, dtype=np.int64),
    )
    return _row_groups(counts, PAIR_BUDGET)


def _row_groups(counts: IntArray, budget: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose counts add up to at most ``budget`` (a single larger row stands alone)."""
    n = int(counts.shape[0])
    cum = np.cumsum(counts)
    groups = []
    a = 0
    while a < n:
        base = int(cum[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(cum, base + budget, side="right")))
        groups.append((a, min(b, n)))
        a = b
    return groups


def ball_pairs(seg: Segment, xyz: FloatArray, reach: FloatArray, workers: int) -> tuple[IntArray, IntArray]:
    """(query, tree point) pairs with chord <= ``reach`` (one per query); a small segment by brute force."""
    pts = seg.points_t
    if pts is None:
        lists = seg.tree.query_ball_point(xyz, r=reach, workers=workers, return_sorted=False)
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(counts.sum()))
        return np.repeat(np.arange(xyz.shape[0]), counts), flat
    dx = xyz[:, 0:1] - pts[0]
    dy = xyz[:, 1:2] - pts[1]
    dz = xyz[:, 2:3] - pts[2]
    chord = np.sqrt((dx * dx + dy * dy) + dz * dz)  # as cKDTree sums them: chords agree to the bit
    qi, i = np.nonzero(chord <= reach[:, None])
    return qi.astype(np.int64), i.astype(np.int64)


def _ball(seg: Segment, q: GeoPoints, distance_m: float, workers: int) -> tuple[IntArray, IntArray]:
    """(query, tree point) pairs that can be within geodesic ``distance_m`` (by chord reach)."""
    n = q.lat.shape[0]
    workers = workers if n >= 1024 else 1  # threads cost more than they save on a few points
    if n == 1:
        reach = np.array([chord_reach_scalar_m(float(distance_m), float(q.r[0]))])
    else:
        reach = chord_reach_m(np.full(n, float(distance_m)), q.r)
    qs, ii = [], []
    for a, b in ball_groups([seg], q.xyz, reach):
        qi, i = ball_pairs(seg, q.xyz[a:b], reach[a:b], workers)
        qs.append(qi + a)
        ii.append(i)
    if not qs:
        return EMPTY_I, EMPTY_I
    return np.concatenate(qs), np.concatenate(ii)


# ------------------------------------------------------------ exact pairs and their order
def exact_pairs(
    sl: Slots, qi: IntArray, s: IntArray, q: GeoPoints, radius_m: float | FloatArray | None
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Geodesic distances of (query, slot) pairs, kept where within the radius (per slot when an array).

    Far pairs are ranked out by their Andoyer-Lambert bounds or measured
    with GeographicLib; pairs within the error bound of the radius are
    settled by GeographicLib.
    """
    if not qi.size:
        return qi, s, EMPTY_F, EMPTY_F
    p = sl.pts
    dist, err, rough = pair_distance_m(q, qi, p, s, norm3(p.xyz[s] - q.xyz[qi]))
    if radius_m is not None:
        rad = radius_m[s] if isinstance(radius_m, np.ndarray) else float(radius_m)
        keep = ~rough | (dist - err <= rad)  # far pairs proven outside need no GeographicLib
        if not keep.all():
            qi, s, dist, err, rough = qi[keep], s[keep], dist[keep], err[keep], rough[keep]
            rad = rad[keep] if isinstance(rad, np.ndarray) else rad
        measure_m(q, qi, p, s, dist, err, rough)
        measure_m(q, qi, p, s, dist, err, np.abs(dist - rad) <= err)
        keep = dist <= rad
        return qi[keep], s[keep], dist[keep], err[keep]
    measure_m(q, qi, p, s, dist, err, rough)
    return qi, s, dist, err


def order_pairs(
    p: GeoPoints, key: IntArray, s: IntArray, dist: FloatArray, err: FloatArray, qi: IntArray, q: GeoPoints
) -> tuple[IntArray, IntArray, FloatArray]:
    """Pairs sorted by ``key``, then exact distance, then slot; returns key, slot, distance.

    ``qi`` indexes each pair's query point in ``q``.  Neighbours closer than
    their error bounds are settled by GeographicLib first.
    """
    if not key.size:
        return key, s, dist
    order = _pair_order(key, s, dist)
    key, s, dist, err, qi = key[order], s[order], dist[order], err[order], qi[order]
    tie = (key[1:] == key[:-1]) & (dist[1:] - err[1:] <= dist[:-1] + err[:-1])
    fix = np.zeros(key.shape, dtype=bool)
    fix[1:] |= tie
    fix[:-1] |= tie
    if fix.any():
        dist = dist.copy()
        dist[fix] = geodesic_inverse_m(q.lat[qi[fix]], q.lon[qi[fix]], p.lat[s[fix]], p.lon[s[fix]])
        order = _pair_order(key, s, dist)
        key, s, dist = key[order], s[order], dist[order]
    return key, s, dist


def sort_pairs(
    sl: Slots, q_of: IntArray, s: IntArray, dist: FloatArray, err: FloatArray, q: GeoPoints
) -> tuple[FloatArray, IntArray, IntArray]:
    """Sort pairs by query, exact distance, position; returns dist, position, offsets."""
    n = q.lat.shape[0]
    q_of, s, dist = order_pairs(sl.pts, q_of, s, dist, err, q_of, q)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(q_of, minlength=n), out=offsets[1:])
    return dist, sl.slot_to_pos()[s], offsets


def _pair_order(q: IntArray, s: IntArray, dist: FloatArray) -> IntArray:
    """Permutation sorting pairs by query, then distance, then slot (stable sorts: radix for the ints)."""
    order = np.argsort(s, kind="stable")
    order = order[np.argsort(dist[order], kind="stable")]
    return order[np.argsort(q[order], kind="stable")]


# ------------------------------------------------------------ the queries
def within_pairs(
    sl: Slots, q: GeoPoints, radius_m: float, where: Where, workers: int, per_slot: FloatArray | None = None
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Unsorted (query, slot, distance, error bound) of every store within ``radius_m`` (checked inputs).

    With ``per_slot`` (a radius per slot, negative for none), ``radius_m`` is its maximum.
    """
    segs, skip = segments_for(sl, where)
    qs, found = [], []
    for seg in segs:
        qi, i = _ball(seg, q, radius_m, workers)
        qs.append(qi)
        found.append(seg.slots[i])
    qi = np.concatenate(qs) if qs else EMPTY_I
    s = np.concatenate(found) if found else EMPTY_I
    if skip is not None and s.size:
        keep = ~skip[s]
        qi, s = qi[keep], s[keep]
    return exact_pairs(sl, qi, s, q, radius_m if per_slot is None else per_slot)


def check_radii(sl: Slots, radii: StoreRadii) -> None:
    if radii.version != sl.version:
        raise StaleRadiiError(
            f"these radii were prepared for index version {radii.version}; the index is at version "
            f"{sl.version} (stores were added or removed): prepare them again with index.store_radii(...)"
        )


def pairs_scalar(sl: Slots, lat: float, lon: float, radius_m: float | StoreRadii) -> tuple[list[int], list[float]]:
    """Slots and distances within ``radius_m`` of one point, no filter, in plain floats (the same exact pairs)."""
    per_slot = None
    if isinstance(radius_m, StoreRadii):
        check_radii(sl, radius_m)
        per_slot, top = radius_m.by_slot_list(), radius_m.max_m
    else:
        top = radius_m
    x, y, z, gn = ecef_scalar_m(lat, lon)
    reach = chord_reach_scalar_m(top, math.sqrt(x * x + y * y + z * z))
    dead = sl.n_dead > 0
    xyz, zs, gns = sl.scalar_lists()
    p_lat, p_lon, alive = sl.pts.lat, sl.pts.lon, sl.alive
    out_s: list[int] = []
    out_d: list[float] = []
    for seg in sl.segments():
        found = seg.tree.query_ball_point((x, y, z), reach)
        if not found:
            continue
        for s in found if seg.identity else seg.slots[found].tolist():
            if dead and not alive[s]:
                continue
            r = top if per_slot is None else per_slot[s]
            if r < 0.0:
                continue
            sx, sy, sz = xyz[s]
            dx, dy, dz = sx - x, sy - y, sz - z
            c = math.sqrt(dx * dx + dy * dy + dz * dz)
            if c > CHORD_SERIES_MAX_M:
                d = geodesic_inverse_scalar_m(lat, lon, float(p_lat[s]), float(p_lon[s]))
            else:
                d = chord_to_geodesic_scalar_m(c, sz - z, 0.5 * (gn + gns[s]))
                if abs(d - r) <= chord_error_bound_m(c):
                    d = geodesic_inverse_scalar_m(lat, lon, float(p_lat[s]), float(p_lon[s]))
            if d <= r:
                out_s.append(s)
                out_d.append(d)
    return out_s, out_d


def serving_pairs(
    sl: Slots, q: GeoPoints, lon_a: FloatArray, lat_a: FloatArray, workers: int
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Unsorted (query, slot, distance, error bound) of every store whose service area holds the point."""
    poly_tree, poly_slots = sl.cached("poly_tree", lambda: _poly_tree(sl))
    q_p, s_p = EMPTY_I, EMPTY_I
    if poly_slots.size:
        pairs = poly_tree.query(shapely.points(lon_a, lat_a), predicate="intersects")
        q_p, s_p = pairs[0].astype(np.int64), poly_slots[pairs[1]]
    parts = [exact_pairs(sl, q_p, s_p, q, None)]
    radius = np.where(sl.alive, sl.radius, np.nan)
    has_r = ~np.isnan(radius)
    if has_r.any():
        seg = sl.cached("radius_seg", lambda: segment(sl.pts.xyz, np.flatnonzero(has_r).astype(np.int64)))
        q_r, i_r = _ball(seg, q, float(radius[has_r].max()), workers)
        parts.append(exact_pairs(sl, q_r, seg.slots[i_r], q, np.nan_to_num(radius, nan=-1.0)))
    q_of, s, d, e = (np.concatenate(c) for c in zip(*parts, strict=True))
    return q_of, s, d, e


def has_service_areas(sl: Slots) -> bool:
    _, poly_slots = sl.cached("poly_tree", lambda: _poly_tree(sl))
    return bool(poly_slots.size) or bool((sl.alive & ~np.isnan(sl.radius)).any())


def _poly_tree(sl: Slots) -> tuple[Any, IntArray]:
    has_area = np.fromiter((g is not None for g in sl.areas.tolist()), dtype=bool, count=sl.areas.shape[0])
    has = np.flatnonzero(sl.alive & has_area)
    return shapely.STRtree(sl.areas[has]), has.astype(np.int64)
