"""The one feature extractor: rank, rank_many, fit and the dispatcher all call :meth:`FeatureExtractor.transform`.

The features of a (user, offer, store) candidate at time ``t``, ``d`` the WGS84
distance in metres, "visits" meaning visits and redemptions, "the previous
place" the store of the user's latest visit before ``t``:

``intercept``               1
``distance``                the decay model: power ``-log(d / scale)``, exponential ``-d / scale``
                            or logistic (see ``decay``), ``d`` floored at 10 m
``beyond_usual_distance``   ``-log(1 + d / usual)``, ``usual`` the user's recency-weighted
                            geometric-mean redemption distance (1 km when unknown)
``known_store``             1 when the user has visited this store before, else 0
``store_familiarity``       ``log(1 + v)``, ``v`` the user's recency-weighted visits to this store
``distance_x_new_store``    ``distance`` for a store the user has never visited, else 0 (distance
                            matters more for a place one does not know)
``visited_last_24h``        1 when the user was at this store in the last 24 hours
``store_next``              ``log(1 + n)``, ``n`` how often the user went from the previous place
                            straight to this store
``crowd_next``              the same over all users
``next_at_hour``            ``log(1 + n)``, ``n`` how often the user's next place after a visit at
                            this local hour (+-1 h, same kind of day) was this store
``store_popularity``        ``log(1 + n)``, ``n`` all users' visits to this store
``category_affinity``       ``log(1 + a)``, ``a`` the user's recency-weighted engagement with the
                            category (the offer's, else the store's)
``category_at_hour``        ``log P(category | hour) - log P(category)``: the user's visits by category
                            and local hour bin (weekday or weekend, 48 bins), shrunk towards all
                            users' (5 visits' worth), theirs shrunk towards the overall share (20)
``category_next``           ``log P(category | previous place's category) - log P(category)``,
                            the user's moves shrunk towards all users' the same way
``merchant_affinity``       ``log(1 + a)`` for the offer's merchant
``merchant_rate``           logit of the merchant's shrunk redemption rate minus the logit of the
                            global rate (0 for a merchant with no history)
``discount``                discount depth (0.2 for 20 % off)
``discount_x_sensitivity``  depth times the user's discount sensitivity
``activity``                ``log(1 + n)``, ``n`` the user's recency-weighted visits
``attraction``              log of the store's attraction column (0 without one)
``member``                  1 when the user has a member tier (:meth:`UserHistory.set_tier`), else 0

Local hours are the store's (its ``tz`` column, else its position's zone).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .._history import HistoryTables, UserHistory, reading
from .._time import N_HOUR_BINS, SECONDS_PER_DAY, hour_bin
from .._types import FloatArray, IntArray
from ._catalog import Catalog
from ._views import CodeMap, UserView, decayed, empty_view, user_view

__all__ = ["CROSS_USER_FEATURES", "DEFAULT_WEIGHTS", "FEATURES", "Decay", "FeatureExtractor"]

#: Feature names, in the order of the weight vector.
FEATURES = (
    "intercept",
    "distance",
    "beyond_usual_distance",
    "known_store",
    "store_familiarity",
    "distance_x_new_store",
    "visited_last_24h",
    "store_next",
    "crowd_next",
    "next_at_hour",
    "store_popularity",
    "category_affinity",
    "category_at_hour",
    "category_next",
    "merchant_affinity",
    "merchant_rate",
    "discount",
    "discount_x_sensitivity",
    "activity",
    "attraction",
    "member",
)
#: Default weights: a prior before ``fit`` (logit units per feature unit), set by hand.  The visit
#: features get a third or less of what ``fit(target="visit")`` learns on real check-ins, so an
#: unfitted scorer reads a user's habits without trusting them much.
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "intercept": -3.0,
    "distance": 0.8,
    "beyond_usual_distance": 0.5,
    "known_store": 1.0,
    "store_familiarity": 0.4,
    "distance_x_new_store": 0.3,
    "visited_last_24h": -0.3,
    "store_next": 0.15,
    "crowd_next": 0.05,
    "next_at_hour": 0.1,
    "store_popularity": 0.1,
    "category_affinity": 1.0,
    "category_at_hour": 0.1,
    "category_next": 0.1,
    "merchant_affinity": 0.7,
    "merchant_rate": 0.5,
    "discount": 2.0,
    "discount_x_sensitivity": 3.0,
    "activity": 0.2,
    "attraction": 1.0,
    "member": 0.2,  # members redeem somewhat more; fit learns by how much from the tiers it is given
}
#: Features learnt from all users together: with these weights at 0, a user's scores depend on
#: that user's events alone (what a per-partition replay needs to equal a per-user one).
CROSS_USER_FEATURES = ("merchant_rate", "store_popularity", "crowd_next", "category_at_hour", "category_next")
Decay = Literal["power", "exponential", "logistic"]
_COL = {name: i for i, name in enumerate(FEATURES)}
#: Shrinkage: a user's profile counts like this many visits of the population's,
#: the population's like this many of the overall category shares.
USER_PRIOR_VISITS = 5.0
POPULATION_PRIOR_VISITS = 20.0


def _logit_scalar(p: float) -> float:
    q = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


_SCRATCH = threading.local()  # per thread: a reusable key -> row index, all -1 between calls
_DENSE_MAX = 1 << 22  # largest such index (32 MiB); larger key spaces are binary-searched


def _lookup(key_parts: list[IntArray], value_parts: list[FloatArray], want: IntArray, keyspace: int) -> FloatArray:
    """The values (one row per key, keys unique; given in parts) at each of ``want``; zero rows where absent.

    A dense index over the key space when it is small next to ``want`` (one user's
    stores; the index array is kept per thread and reset after use, so a call
    costs O(len(keys) + len(want))), else a binary search over the sorted keys
    (many users at once).
    """
    if not key_parts:
        return np.zeros(want.shape[0])
    k = np.concatenate(key_parts) if len(key_parts) > 1 else key_parts[0]
    vals = np.concatenate(value_parts) if len(value_parts) > 1 else value_parts[0]
    out = np.zeros((want.shape[0],) + vals.shape[1:])
    if k.shape[0] == 0 or want.shape[0] == 0:
        return out
    if keyspace <= min(8 * want.shape[0] + 65_536, _DENSE_MAX):
        slot = getattr(_SCRATCH, "slot", None)
        if slot is None or slot.shape[0] < keyspace:
            slot = _SCRATCH.slot = np.full(max(keyspace, 65_536), -1, dtype=np.int64)
        slot[k] = np.arange(k.shape[0])
        j = slot[want]
        slot[k] = -1
        hit = j >= 0
        out[hit] = vals[j[hit]]
        return out
    order = np.argsort(k)
    k, vals = k[order], vals[order]
    j = np.minimum(np.searchsorted(k, want), k.shape[0] - 1)
    hit = k[j] == want
    out[hit] = vals[j[hit]]
    return out


#: Users whose history arrays the extractor keeps (least recently used dropped first).
_VIEW_CACHE = 4096


class FeatureExtractor:
    """Features of (user, offer, store) pairs from a catalog and a history, one row per pair.

    Parameters
    ----------
    decay : {"power", "exponential", "logistic"}
    distance_scale_m : float

    Examples
    --------
    >>> import numpy as np, o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee")])
    >>> cat = Catalog(index.stores, offers, index.version)
    >>> h = og.UserHistory()
    >>> fx = FeatureExtractor("power", 1000.0)
    >>> X = fx.transform(cat, h, ["u1"], np.array([0]), np.array([0]), np.array([3]), np.array([500.0]), 0.0)
    >>> X.shape, X[0, FEATURES.index("distance")].round(3), X[0, FEATURES.index("known_store")]
    ((1, 21), np.float64(0.693), np.float64(0.0))
    """

    def __init__(self, decay: Decay, distance_scale_m: float) -> None:
        self.decay = decay
        self.distance_scale_m = float(distance_scale_m)
        self._store_map, self._cat_map, self._mer_map = CodeMap(), CodeMap(), CodeMap()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the parameters only: the caches are keyed on objects of this process."""
        return {"decay": self.decay, "distance_scale_m": self.distance_scale_m}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["decay"], state["distance_scale_m"])  # type: ignore[misc]

    def decay_of(self, d: FloatArray) -> FloatArray:
        """The ``distance`` feature of distances ``d`` (metres)."""
        x = np.maximum(d, 10.0) / self.distance_scale_m
        if self.decay == "power":
            return -np.log(x)
        if self.decay == "exponential":
            return -x
        return -np.logaddexp(0.0, (x - 1.0) * 4.0)

    def _view(self, cat: Catalog, h: UserHistory, user_id: Any, st: Any) -> UserView:
        """The user's history as arrays, rebuilt only when the user's history or the catalog changed."""
        views = self.__dict__.setdefault("_views", OrderedDict())
        key = (id(h), user_id)
        hit = views.get(key)
        if hit is not None and hit[0] == (st.version, id(cat)):
            views.move_to_end(key)
            return hit[1]
        if not (st.category or st.merchant or st.places or st.cat_hours):
            return empty_view()  # a user with pushes only: nothing to cache
        view = user_view(cat, st)
        views[key] = ((st.version, id(cat)), view)
        if len(views) > _VIEW_CACHE:
            views.popitem(last=False)
        return view

    def _store_codes(self, cat: Catalog, h: UserHistory, ht: HistoryTables) -> IntArray:
        """Catalog position -> the history's store code (-1: never visited)."""
        return self._store_map.codes(cat, h, cat.n_stores, ht.store_ids, cat.store_pos)

    def transform(
        self,
        cat: Catalog,
        h: UserHistory,
        users: list[Any],
        uq: IntArray,
        offer: IntArray,
        pos: IntArray,
        dist: FloatArray,
        t: float | FloatArray,
    ) -> FloatArray:
        """Feature matrix of shape (n_pairs, n_features) of pairs (user row ``uq``, ``offer``, store ``pos``, ``dist``).

        ``users[uq[i]]`` is pair ``i``'s user; the history is read as it is, at time ``t``
        (epoch seconds: one time, or one per user row, shape (len(users),)).
        """
        n = dist.shape[0]
        X = np.zeros((n, len(FEATURES)), order="F")  # filled column by column
        X[:, 0] = 1.0
        decay = self.decay_of(dist)
        X[:, _COL["distance"]] = decay
        X[:, _COL["discount"]] = depth = cat.offer_depth[offer]
        X[:, _COL["attraction"]] = cat.log_attr[pos]
        if n == 0:
            return X
        n_users, n_cat, n_pos = len(users), len(cat.cats), cat.n_stores
        n_mer = max(len(cat.mers), 1)
        if isinstance(t, (int, float)):  # one time for every user (rank, the dispatcher)
            t_user = np.full(n_users, float(t))
            one = [hour_bin(float(t), o) for o in cat.utc_offsets_s(float(t)).tolist()]
            zone_bin = np.empty((n_users, len(one)), dtype=np.int64)
            zone_bin[:] = one
        else:
            t_user = np.asarray(t, dtype=np.float64).reshape(n_users)
            bins_at: dict[float, list[int]] = {}  # time -> the hour bin it is in each zone
            for tv in set(t_user.tolist()):
                bins_at[tv] = [hour_bin(tv, o) for o in cat.utc_offsets_s(tv).tolist()]
            zone_bin = np.array([bins_at[tv] for tv in t_user.tolist()], dtype=np.int64).reshape(n_users, -1)
        pair_zone = cat.store_zone[pos]
        pair_bin = zone_bin[uq, pair_zone]
        pair_cat = cat.pair_category(offer, pos)
        usual = np.full(n_users, 1000.0)
        sens = np.zeros(n_users)
        act = np.zeros(n_users)
        # (key, value) parts per user, keys: user row * size + code
        place_k: list[IntArray] = []
        place_v: list[FloatArray] = []
        crowd_k: list[IntArray] = []
        crowd_v: list[FloatArray] = []
        cat_k: list[IntArray] = []
        cat_v: list[FloatArray] = []
        mer_k: list[IntArray] = []
        mer_v: list[FloatArray] = []
        hour_k: list[IntArray] = []  # ((user row * n_zones + zone) * n_cat + category)
        hour_v: list[FloatArray] = []
        hour_tot = np.zeros((n_users, zone_bin.shape[1]))
        next_k: list[IntArray] = []  # user row * n_cat + category, from the user's previous category
        next_v: list[FloatArray] = []
        next_tot = np.zeros(n_users)
        prev_cat = np.full(n_users, -1, dtype=np.int64)
        n_all_zones = len(cat.zone_names)
        zones_used = list(range(n_all_zones)) if n_all_zones <= 4 else np.unique(pair_zone).tolist()
        n_zones = zone_bin.shape[1]
        with reading(h) as ht:
            hl = ht.half_life_s
            pos_code = self._store_codes(cat, h, ht)
            visits = ht.store_visits
            tiers = ht.tiers
            for r in range(n_users):
                st = ht.users.get(users[r])
                if st is None:
                    continue
                tr = float(t_user[r])
                v = self._view(cat, h, users[r], st)
                usual[r] = h.usual_distance_m(users[r])
                sens[r] = h.discount_sensitivity(users[r])
                act[r] = st.engaged.at(tr, hl)
                if v.cat_code.shape[0]:
                    cat_k.append(r * n_cat + v.cat_code)
                    cat_v.append(decayed(v.cat_val, v.cat_t0, tr, hl))
                if v.mer_code.shape[0]:
                    mer_k.append(r * n_mer + v.mer_code)
                    mer_v.append(decayed(v.mer_val, v.mer_t0, tr, hl))
                with_prev = v.prev_ts is not None and v.prev_ts <= tr
                if v.place_pos.shape[0]:
                    b = zone_bin[r][v.place_zone][v.nah_row]  # the hour now at each entry's store
                    same_day = (b // 24) == (v.nah_bin // 24)
                    near = same_day & (((v.nah_bin - b) % 24 <= 1) | ((b - v.nah_bin) % 24 <= 1))
                    around = np.bincount(v.nah_row[near], weights=v.nah_count[near], minlength=v.place_pos.shape[0])
                    since = tr - v.last_ts
                    place_k.append(r * n_pos + v.place_pos)
                    place_v.append(
                        np.column_stack(
                            [
                                decayed(v.rec_val, v.rec_t0, tr, hl),
                                (since >= 0.0) & (since < SECONDS_PER_DAY),
                                v.next_count if with_prev else np.zeros(v.place_pos.shape[0]),
                                around,
                                np.ones(v.place_pos.shape[0]),
                            ]
                        )
                    )
                if with_prev and v.prev_store is not None:
                    moves = ht.store_next.get(v.prev_store)
                    if moves:
                        known = [(cat.store_pos.get(sid), c) for sid, c in moves.items()]
                        pos_c = np.array([p for p, _ in known if p is not None], dtype=np.int64)
                        crowd_k.append(r * n_pos + pos_c)
                        crowd_v.append(np.array([c for p, c in known if p is not None], dtype=np.float64))
                for zi in zones_used if v.hour_bin.shape[0] else ():
                    sel = v.hour_bin == zone_bin[r, zi]
                    if sel.any():
                        hour_tot[r, zi] = v.hour_count[sel].sum()
                        coded = sel & (v.hour_code >= 0)
                        hour_k.append((r * n_zones + zi) * n_cat + v.hour_code[coded])
                        hour_v.append(v.hour_count[coded])
                if with_prev and v.prev_cat >= 0:
                    prev_cat[r] = v.prev_cat
                    next_tot[r] = v.cat_next_total
                    if v.cat_next_code.shape[0]:
                        next_k.append(r * n_cat + v.cat_next_code)
                        next_v.append(v.cat_next_count)
            # all users: the overall category shares, by hour bin, after each category
            # catalog category -> the history's rows of counts (a zero row appended for the unseen)
            c_code = self._category_codes(cat, h, ht)
            n_hc = len(ht.cat_ids)
            by_cat_bin, share = self._category_shares(cat, h, ht, c_code, n_hc)
            bins_used = set(zone_bin.ravel().tolist()) if zone_bin.size <= 64 else np.unique(pair_bin).tolist()
            by_bin = {b: by_cat_bin[:, b] for b in bins_used}
            to_catalog = self._to_catalog(c_code, n_hc)
            after = {}
            for cp in set(prev_cat[prev_cat >= 0].tolist()):
                counts = np.zeros(n_cat)
                moves = ht.cat_next.get(int(c_code[cp]), {}) if c_code[cp] >= 0 else {}
                if moves:
                    to = to_catalog[np.fromiter(moves.keys(), dtype=np.int64, count=len(moves))]
                    n_moves = np.fromiter(moves.values(), dtype=np.float64, count=len(moves))
                    counts[to[to >= 0]] = n_moves[to >= 0]
                after[int(cp)] = counts
            mer_rate = self._merchant_rate(cat, h, ht, cat.offer_mer[offer])
            code = pos_code[pos]
            popularity = np.zeros(n)
            seen = code >= 0
            popularity[seen] = visits[code[seen]]
        X[:, _COL["beyond_usual_distance"]] = -np.log1p(dist / usual[uq])
        X[:, _COL["discount_x_sensitivity"]] = depth * sens[uq]
        X[:, _COL["activity"]] = np.log1p(act[uq])
        if tiers:
            X[:, _COL["member"]] = np.fromiter((u in tiers for u in users), dtype=np.float64, count=n_users)[uq]
        X[:, _COL["store_popularity"]] = np.log1p(popularity)
        X[:, _COL["merchant_rate"]] = mer_rate
        pair_store = uq * n_pos + pos
        if place_k:
            vals = _lookup(place_k, place_v, pair_store, n_users * n_pos)
            is_known = vals[:, 4]
            X[:, _COL["store_familiarity"]] = np.log1p(vals[:, 0])
            X[:, _COL["visited_last_24h"]] = vals[:, 1]
            X[:, _COL["store_next"]] = np.log1p(vals[:, 2])
            X[:, _COL["next_at_hour"]] = np.log1p(vals[:, 3])
            X[:, _COL["known_store"]] = is_known
            X[:, _COL["distance_x_new_store"]] = decay * (1.0 - is_known)
        else:
            X[:, _COL["distance_x_new_store"]] = decay
        if crowd_k:
            X[:, _COL["crowd_next"]] = np.log1p(_lookup(crowd_k, crowd_v, pair_store, n_users * n_pos))
        has_cat = pair_cat >= 0
        safe_cat = np.maximum(pair_cat, 0)
        if cat_k:
            aff = _lookup(cat_k, cat_v, uq * n_cat + safe_cat, n_users * n_cat)
            X[:, _COL["category_affinity"]] = np.where(has_cat, np.log1p(aff), 0.0)
        if mer_k:
            mer_code = cat.offer_mer[offer]
            aff = _lookup(mer_k, mer_v, uq * n_mer + np.maximum(mer_code, 0), n_users * n_mer)
            X[:, _COL["merchant_affinity"]] = np.where(mer_code >= 0, np.log1p(aff), 0.0)
        if n_cat:
            log_share = np.log(share[safe_cat])
            # category_at_hour
            pop_at = np.zeros(n)
            for b, counts in by_bin.items():
                sel = pair_bin == b
                p_bin = (counts + POPULATION_PRIOR_VISITS * share) / (counts.sum() + POPULATION_PRIOR_VISITS)
                pop_at[sel] = p_bin[safe_cat[sel]]
            mine = np.zeros(n)
            if hour_k:
                want = (uq * n_zones + pair_zone) * n_cat + safe_cat
                mine = _lookup(hour_k, hour_v, want, n_users * n_zones * n_cat)
            p_user = (mine + USER_PRIOR_VISITS * pop_at) / (hour_tot[uq, pair_zone] + USER_PRIOR_VISITS)
            X[:, _COL["category_at_hour"]] = np.where(has_cat, np.log(p_user) - log_share, 0.0)
            # category_next
            cp = prev_cat[uq]
            has_prev = has_cat & (cp >= 0)
            if has_prev.any():
                pop_next = np.zeros(n)
                for c0, counts in after.items():
                    sel = cp == c0
                    p_after = (counts + POPULATION_PRIOR_VISITS * share) / (counts.sum() + POPULATION_PRIOR_VISITS)
                    pop_next[sel] = p_after[safe_cat[sel]]
                mine = np.zeros(n)
                if next_k:
                    mine = _lookup(next_k, next_v, uq * n_cat + safe_cat, n_users * n_cat)
                p_user = (mine + USER_PRIOR_VISITS * pop_next) / (next_tot[uq] + USER_PRIOR_VISITS)
                X[:, _COL["category_next"]] = np.where(
                    has_prev, np.log(np.where(has_prev, p_user, 1.0)) - log_share, 0.0
                )
        return X

    def _category_shares(
        self, cat: Catalog, h: UserHistory, ht: HistoryTables, c_code: IntArray, n_hc: int
    ) -> tuple[FloatArray, FloatArray]:
        """All users' visits by (catalog category, hour bin) and the shrunk category shares (cached per change)."""
        key = (id(cat), id(h), ht.cat_version)
        hit = getattr(self, "_shares", None)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        hours = np.vstack([ht.cat_hours[:n_hc], np.zeros((1, N_HOUR_BINS), dtype=np.int64)])
        by_cat_bin = hours[np.where(c_code >= 0, c_code, n_hc)].astype(np.float64)  # (n_cat, 48)
        pop_c = by_cat_bin.sum(axis=1)
        share = (pop_c + 1.0) / (pop_c.sum() + max(len(cat.cats), 1))
        self._shares = (key, by_cat_bin, share)
        return by_cat_bin, share

    def _to_catalog(self, c_code: IntArray, n_hc: int) -> IntArray:
        """History category code -> catalog category code (-1: not in the catalog); cached per code count."""
        hit = getattr(self, "_to_cat", None)
        if hit is not None and hit[0] is c_code and hit[1] == n_hc and hit[2] == int((c_code >= 0).sum()):
            return hit[3]
        out = np.full(n_hc + 1, -1, dtype=np.int64)
        out[c_code[c_code >= 0]] = np.flatnonzero(c_code >= 0)
        self._to_cat = (c_code, n_hc, int((c_code >= 0).sum()), out)
        return out

    def _category_codes(self, cat: Catalog, h: UserHistory, ht: HistoryTables) -> IntArray:
        """Catalog category code -> the history's category code (-1: no visit yet)."""
        return self._cat_map.codes(cat, h, len(cat.cats), ht.cat_ids, cat.cat_index)

    def _merchant_codes(self, cat: Catalog, h: UserHistory, ht: HistoryTables) -> IntArray:
        """Catalog merchant code -> the history's merchant code (-1: no push or redemption yet; one spare -1 last)."""
        return self._mer_map.codes(cat, h, len(cat.mers) + 1, ht.merchant_ids, cat.mer_index)

    def _merchant_rate(self, cat: Catalog, h: UserHistory, ht: HistoryTables, mer: IntArray) -> FloatArray:
        """The ``merchant_rate`` feature of catalog merchant codes ``mer``.

        Computed for every catalog merchant at once and kept until a push or a
        redemption changes the rates.
        """
        key = (id(cat), id(h), ht.rates_version, len(ht.merchant_ids))
        if getattr(self, "_rates_key", None) != key:
            g = h.global_redemption_rate()
            code = self._merchant_codes(cat, h, ht)
            counts = np.zeros((code.shape[0], 2))
            seen = code >= 0
            counts[seen] = ht.merchant_counts[code[seen]]
            prior = h.prior_pushes
            denom = counts[:, 0] + prior
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(denom > 0, (counts[:, 1] + prior * g) / denom, g)
            q = np.clip(rate, 1e-6, 1 - 1e-6)
            self._rates = np.log(q / (1 - q)) - _logit_scalar(g)
            self._rates_key = key
        return self._rates[mer]
