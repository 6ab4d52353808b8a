"""The replays that turn an event log into training examples for :meth:`OfferScorer.fit`.

Both replay the log in time order into a fresh history and featurise each
example with the history as it stood before it.  Events wait in batches of
distinct users (at most :data:`REPLAY_BATCH`), so the examples of a batch are
featurised in one call: each example's own user's history is exact; its
cross-user features (merchant rates, popularity, the crowd's moves) may miss
other users' events up to that many events before it, and it never sees a
later event.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .._events import Event
from .._geodesy import geodesic_distance_m
from .._history import UserHistory, reading
from .._index import StoreIndex
from .._types import FloatArray, IntArray
from ..errors import InvalidParameterError, InvalidRecordError
from ._catalog import Catalog
from ._features import FeatureExtractor

__all__ = ["REPLAY_BATCH", "replay_pushes", "replay_visits"]

#: Events replayed together (see the module docstring).
REPLAY_BATCH = 1024


def replay_pushes(
    fx: FeatureExtractor, cat: Catalog, hist: UserHistory, evs: list[Event], window_s: float
) -> tuple[FloatArray, FloatArray]:
    """Features of every push (history as it stood before it) and whether it was redeemed in the window."""
    credited: dict[int, bool] = {}  # push example -> redeemed
    by_push_id: dict[Any, int] = {}
    latest: dict[tuple[Any, Any], list[tuple[float, int]]] = {}
    rows: list[FloatArray] = []
    for batch in _batches(evs):
        pushes: list[tuple[Event, int, int]] = []  # the batch's pushes: (event, offer row, store position)
        for e in batch:
            if e.kind == "push":
                p = cat.store_pos.get(e.store_id)
                o = cat.offer_lookup.get(e.offer_id)
                if o is None or p is None or e.distance_m is None:
                    raise InvalidRecordError(
                        f"push at ts {e.ts} needs a known offer_id and store_id and a distance_m; got "
                        f"offer {e.offer_id!r}, store {e.store_id!r}, distance {e.distance_m!r}"
                    )
                j = len(credited)
                credited[j] = False
                if e.push_id is not None:
                    by_push_id[e.push_id] = j
                latest.setdefault((e.user_id, e.offer_id), []).append((e.ts, j))
                pushes.append((e, o, p))
            elif e.kind == "redeem":
                hit = _redeemed_push(e, by_push_id, latest, credited, window_s)
                if hit is not None:
                    credited[hit] = True
        if pushes:  # featurised in one call, then the batch goes into the history
            uq = np.arange(len(pushes))
            users = [e.user_id for e, _, _ in pushes]
            offer = np.array([o for _, o, _ in pushes], dtype=np.int64)
            store = np.array([p for _, _, p in pushes], dtype=np.int64)
            dist = np.array([e.distance_m for e, _, _ in pushes], dtype=np.float64)
            ts = np.array([e.ts for e, _, _ in pushes])
            rows.append(fx.transform(cat, hist, users, uq, offer, store, dist, ts))
        for e in batch:
            hist.add(e)
    if not rows:
        raise InvalidParameterError("fit found no push events to learn from")
    X = np.vstack(rows)
    y = np.array([credited[j] for j in range(X.shape[0])], dtype=np.float64)
    return X, y


def _batches(evs: list[Event]) -> Iterator[list[Event]]:
    """The events in order, in runs of at most :data:`REPLAY_BATCH` with no user twice.

    A replay reads the history for a whole run before adding the run to it: each user's own
    history is exact, and an example may miss up to ``REPLAY_BATCH - 1`` events of other
    users just before it (never a later one).
    """
    batch: list[Event] = []
    users: set[Any] = set()
    for e in evs:
        if e.user_id in users or len(batch) >= REPLAY_BATCH:
            yield batch
            batch, users = [], set()
        batch.append(e)
        users.add(e.user_id)
    if batch:
        yield batch


def _redeemed_push(
    e: Event,
    by_push_id: Mapping[Any, int],
    sent: Mapping[tuple[Any, Any], list[tuple[float, int]]],
    credited: Mapping[int, bool],
    window_s: float,
) -> int | None:
    """The push a redemption is credited to: its ``push_id``'s, else the latest uncredited one in the window."""
    pushes = sent.get((e.user_id, e.offer_id), [])
    if e.push_id is not None and e.push_id in by_push_id:
        j = by_push_id[e.push_id]
        ts = next((ts for ts, jj in pushes if jj == j), None)
        if ts is None:  # the push was for another user or offer: credit it by its id anyway
            return None if credited[j] else j
        return j if not credited[j] and ts <= e.ts <= ts + window_s else None
    for ts, j in reversed(pushes):
        if ts <= e.ts <= ts + window_s and not credited[j]:
            return j
    return None


def replay_visits(
    fx: FeatureExtractor,
    cat: Catalog,
    index: StoreIndex,
    hist: UserHistory,
    evs: list[Event],
    radius_m: float,
    n_negatives: int,
    seed: int,
) -> tuple[FloatArray, IntArray, IntArray, FloatArray]:
    """Choice sets of every visit: (features, first row of each set, chosen row, sampling offset)."""
    rng = np.random.default_rng(seed)
    n_near = n_negatives // 2
    n_draw = n_negatives - n_near
    n_stores = cat.n_stores
    has_offer = np.array([lst.shape[0] > 0 for lst in cat.store_offer_lists], dtype=bool)
    first_offer = np.array([lst[0] if lst.shape[0] else -1 for lst in cat.store_offer_lists], dtype=np.int64)
    # a store outside the always-included set is in the sample with this probability
    log_inclusion = math.log(-math.expm1(n_draw * math.log1p(-1.0 / n_stores))) if n_stores > 1 else 0.0
    lat, lon = index.stores.lat, index.stores.lon
    blocks: list[FloatArray] = []
    starts: list[int] = []
    chosen: list[int] = []
    offsets: list[FloatArray] = []
    n_rows = 0
    # the batch's visits that make a choice: user, time of the previous visit, its store, the visited
    # store, and the user's most familiar stores (sets the history decides, not the choice)
    pending: list[tuple[Any, float, int, int, list[int]]] = []

    def choice_sets() -> list[tuple[Any, float, IntArray, FloatArray]]:
        """The pending visits' alternatives, with one nearest query and one distance call for the batch."""
        origins = np.array([o for _, _, o, _, _ in pending], dtype=np.int64)
        near = index.nearest(lat[origins], lon[origins], k=min(n_near, n_stores), max_distance_m=radius_m)
        near_pos = np.asarray(near.position).reshape(origins.shape[0], -1)
        always_sets, alt_sets = [], []
        for (_, _, _, target, familiar), row in zip(pending, near_pos.tolist(), strict=True):
            always = {p for p in row if p >= 0} | set(familiar)
            drawn = set(rng.integers(0, n_stores, n_draw).tolist()) - always
            always_sets.append(always)
            alt_sets.append(np.array(sorted(always | drawn | {target}), dtype=np.int64))
        alts_all = np.concatenate(alt_sets)
        o_all = np.repeat(origins, [a.shape[0] for a in alt_sets])
        d_all = np.asarray(geodesic_distance_m(lat[o_all], lon[o_all], lat[alts_all], lon[alts_all]), dtype=np.float64)
        out: list[tuple[Any, float, IntArray, FloatArray]] = []
        start = 0
        for (user, t_prev, _, target, _), alts, always in zip(pending, alt_sets, always_sets, strict=True):
            d = d_all[start : start + alts.shape[0]]
            start += alts.shape[0]
            keep = (d <= radius_m) & has_offer[alts]
            if not keep[np.searchsorted(alts, target)]:
                continue  # the visited store is beyond the radius: not a choice among these
            alts, d = alts[keep], d[keep]
            base = n_rows + sum(x.shape[0] for _, _, x, _ in out)
            starts.append(base)
            chosen.append(base + int(np.searchsorted(alts, target)))
            offsets.append(np.array([0.0 if a in always else -log_inclusion for a in alts.tolist()]))
            out.append((user, t_prev, alts, d))
        return out

    for batch in _batches(evs):
        pending.clear()
        with reading(hist) as ht:
            for e in batch:
                st = ht.users.get(e.user_id) if e.kind == "visit" else None
                prev = st.prev if st is not None else None
                if st is None or prev is None or prev[1] is None:
                    continue
                origin, target = cat.store_pos.get(prev[1]), cat.store_pos.get(e.store_id)
                if origin is not None and target is not None and has_offer[target] and e.ts >= prev[0]:
                    ranked = sorted(st.places.items(), key=lambda kv: -kv[1].recency.at(prev[0], ht.half_life_s))
                    familiar = [cat.store_pos[sid] for sid, _ in ranked[:n_negatives] if sid in cat.store_pos]
                    pending.append((e.user_id, prev[0], origin, target, familiar))
        sets = choice_sets() if pending else []
        if sets:  # featurised in one call, then the batch goes into the history
            users = [u for u, _, _, _ in sets]
            sizes = [alts.shape[0] for _, _, alts, _ in sets]
            uq = np.repeat(np.arange(len(sets)), sizes)
            alts = np.concatenate([x for _, _, x, _ in sets])
            d = np.concatenate([x for _, _, _, x in sets])
            times = np.array([t for _, t, _, _ in sets])
            X = fx.transform(cat, hist, users, uq, first_offer[alts], alts, d, times)
            blocks.append(X.astype(np.float32))  # half the memory; the fit sums in float64
            n_rows += X.shape[0]
        for e in batch:
            hist.add(e)
    if not blocks:
        raise InvalidParameterError(
            "fit(target='visit') found no visit to learn from: it needs visits with a store_id, each after an "
            "earlier visit by the same user to a store within choice_radius_m"
        )
    return (
        np.vstack(blocks),
        np.array(starts, dtype=np.int64),
        np.array(chosen, dtype=np.int64),
        np.concatenate(offsets),
    )
