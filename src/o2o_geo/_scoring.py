"""OfferScorer: rank offers for a user by a calibrated probability of redemption.

The score of offer ``o`` at store ``s`` for user ``u`` is
``sigmoid(sum_i w_i * f_i)`` over the features of :data:`FEATURES`; each term
``w_i * f_i`` is what :meth:`ScoredOffer.explain` reports, so the explanation
adds up to the logit exactly.  ``fit`` learns the weights from logged pushes
and their outcomes by L2-regularised logistic regression (Newton's method),
replaying the log in time order so that every push is scored with the
history as it stood before it.

The features of a (user, offer, store) candidate, ``d`` the WGS84 distance in metres:

``intercept``               1
``distance``                the decay model: power ``-log(d / scale)``, exponential
                            ``-d / scale`` or logistic (see ``decay``), ``d`` floored at 10 m
``beyond_usual_distance``   ``-log(1 + d / usual)``, ``usual`` the user's recency-weighted
                            geometric-mean redemption distance (1 km when unknown)
``category_affinity``       ``log(1 + a)``, ``a`` the user's recency-weighted engagement
                            with the offer's category
``merchant_affinity``       the same for the offer's merchant
``merchant_rate``           logit of the merchant's shrunk redemption rate minus the logit of
                            the global rate (0 for a merchant with no history)
``discount``                discount depth (0.2 for 20 % off)
``discount_x_sensitivity``  depth times the user's discount sensitivity
``activity``                ``log(1 + n)``, ``n`` the user's recency-weighted redemptions and visits
``attraction``              log of the store's attraction column (0 without one)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._history import Event, UserHistory, to_epoch_s
from ._index import StoreIndex
from ._offers import OfferSet
from ._types import FloatArray, IntArray
from ._validate import as_latlon, check_k, import_optional
from .errors import InvalidParameterError, InvalidRecordError, UnknownOfferError

__all__ = ["FEATURES", "OfferScorer", "ScoredOffer"]

#: Feature names, in the order of the weight vector.
FEATURES = (
    "intercept",
    "distance",
    "beyond_usual_distance",
    "category_affinity",
    "merchant_affinity",
    "merchant_rate",
    "discount",
    "discount_x_sensitivity",
    "activity",
    "attraction",
)
#: Default weights: a sensible prior before ``fit`` (logit units per feature unit).
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "intercept": -3.0,
    "distance": 0.8,
    "beyond_usual_distance": 0.5,
    "category_affinity": 1.0,
    "merchant_affinity": 0.7,
    "merchant_rate": 0.5,
    "discount": 2.0,
    "discount_x_sensitivity": 3.0,
    "activity": 0.2,
    "attraction": 1.0,
}
Decay = Literal["power", "exponential", "logistic"]
_NOW_DEFAULT = object()


@dataclass(frozen=True)
class ScoredOffer:
    """One ranked offer for one user: where to redeem it, and why it scored so.

    Attributes
    ----------
    offer_id, store_id, merchant_id, category
        The offer and the store chosen for this user.
    score : float
        Probability of redemption.
    distance_m : float
        WGS84 distance from the user to the store, metres.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> scorer = og.OfferScorer(index, og.OfferSet([og.Offer("latte", "m-lucky", category="coffee",
    ...                                                      discount_rate=0.8)]))
    >>> best = scorer.rank("u1", 31.2304, 121.4737, now=1767225600, k=1)[0]
    >>> best.store_id, round(best.distance_m)
    ('lucky-09', 652)
    >>> list(best.explain())[:3]
    ['intercept', 'discount', 'distance']
    """

    offer_id: Any
    store_id: Any
    merchant_id: Any
    category: Any
    score: float
    distance_m: float
    _terms: tuple[tuple[str, float], ...] = field(repr=False)

    @property
    def logit(self) -> float:
        """Log-odds of the score: the sum of :meth:`explain`'s terms."""
        return math.fsum(v for _, v in self._terms)

    def explain(self) -> dict[str, float]:
        """Each feature's contribution (weight times value) to the logit, largest magnitude first.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
        >>> best = og.OfferScorer(index, offers).rank("u1", 31.2304, 121.4737, now=1767225600, k=1)[0]
        >>> for name, term in list(best.explain().items())[:4]:
        ...     print(f"{name:<22} {term:+.3f}")
        intercept              -3.000
        discount               +0.400
        distance               +0.342
        beyond_usual_distance  -0.251
        >>> print(f"{sum(best.explain().values()):.3f} = logit {best.logit:.3f}")
        -2.509 = logit -2.509
        """
        return dict(sorted(self._terms, key=lambda kv: -abs(kv[1])))


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


class OfferScorer:
    """Rank offers for users by distance, their history and the offer itself.

    Parameters
    ----------
    index : StoreIndex
        The stores; needs a ``merchant_id`` column.
    offers : OfferSet
        The offers.
    history : UserHistory, optional
        Past events; a new empty one when omitted (every user is then a cold start).
    decay : {"power", "exponential", "logistic"}, default "power"
        Distance decay: power ``-log(d / scale)`` (Huff's ``d**-beta``, beta is the
        ``distance`` weight), exponential ``-d / scale``, or logistic
        ``-log(1 + exp((d - scale) / (scale / 4)))``.
    distance_scale_m : float, default 1000
        Scale of the decay, metres.
    search_radius_m : float, default 5000
        Offers at stores farther than this are not candidates (an offer's own
        ``max_distance_m`` can only narrow it).
    attraction_column : str, optional
        Store column with a positive attractiveness (e.g. ``rating``); its log is
        the ``attraction`` feature and Huff's ``A`` when choosing the store.
    weights : mapping, optional
        Initial weights by feature name (defaults: :data:`DEFAULT_WEIGHTS`).
    max_per_merchant, max_per_category : int, optional
        Diversity caps within each user's top k.

    Attributes
    ----------
    weights_ : ndarray of shape (n_features,)
        Current weights (defaults until :meth:`fit`).
    FEATURES : tuple of str
        The feature names, in the order of ``weights_`` (a class attribute).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
    ...                       og.Offer("milk-tea", "m-teagarden", category="tea", discount_rate=0.9)])
    >>> scorer = og.OfferScorer(index, offers)
    >>> top = scorer.rank("u1", 31.2304, 121.4737, now=1767225600, k=2)
    >>> [(s.offer_id, s.store_id) for s in top]
    [('latte', 'lucky-09'), ('milk-tea', 'teagarden-07')]
    >>> abs(sum(top[0].explain().values()) - top[0].logit) < 1e-12
    True
    """

    FEATURES = FEATURES

    def __init__(
        self,
        index: StoreIndex,
        offers: OfferSet,
        history: UserHistory | None = None,
        *,
        decay: Decay = "power",
        distance_scale_m: float = 1000.0,
        search_radius_m: float = 5000.0,
        attraction_column: str | None = None,
        weights: Mapping[str, float] | None = None,
        max_per_merchant: int | None = None,
        max_per_category: int | None = None,
    ) -> None:
        if not isinstance(index, StoreIndex) or not isinstance(offers, OfferSet):
            raise InvalidParameterError("OfferScorer takes a StoreIndex and an OfferSet")
        if decay not in ("power", "exponential", "logistic"):
            raise InvalidParameterError(f"decay must be 'power', 'exponential' or 'logistic'; got {decay!r}")
        for name, v in (("distance_scale_m", distance_scale_m), ("search_radius_m", search_radius_m)):
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise InvalidParameterError(f"{name} must be a positive number of metres; got {v!r}")
        for name, cap in (("max_per_merchant", max_per_merchant), ("max_per_category", max_per_category)):
            if cap is not None and (not isinstance(cap, int) or cap < 1):
                raise InvalidParameterError(f"{name} must be a positive int or None; got {cap!r}")
        w = dict(DEFAULT_WEIGHTS)
        for k_, v in (weights or {}).items():
            if k_ not in w:
                raise InvalidParameterError(f"unknown feature {k_!r} in weights; features are {list(FEATURES)}")
            w[k_] = float(v)
        if "merchant_id" not in index.stores.columns:
            raise InvalidParameterError("the index's stores need a 'merchant_id' column to match offers to stores")
        if attraction_column is not None and attraction_column not in index.stores.columns:
            raise InvalidParameterError(f"attraction_column {attraction_column!r} is not a store column")
        self.index = index
        self.offers = offers
        self.history = history if history is not None else UserHistory()
        self.decay = decay
        self.distance_scale_m = float(distance_scale_m)
        self.search_radius_m = float(search_radius_m)
        self.attraction_column = attraction_column
        self.max_per_merchant = max_per_merchant
        self.max_per_category = max_per_category
        self.weights_ = np.array([w[f] for f in FEATURES], dtype=np.float64)
        self._prepare()

    # ------------------------------------------------------------ structure
    def _prepare(self) -> None:
        stores = self.index.stores
        self._stores_version = self.index._version, len(stores)
        offsets, positions = self.offers.redeemable_positions(stores["merchant_id"], stores.store_id)
        # offers redeemable at the same set of stores form a group (usually: one merchant's
        # offers at all its stores); candidates are found per group, then expanded to offers
        group_of: dict[bytes, int] = {}
        offer_group = np.empty(len(self.offers), dtype=np.int64)
        group_positions: list[IntArray] = []
        for o in range(len(self.offers)):
            rows = positions[offsets[o] : offsets[o + 1]]
            key = rows.tobytes()
            g = group_of.get(key)
            if g is None:
                g = group_of[key] = len(group_positions)
                group_positions.append(rows)
            offer_group[o] = g
        n_groups = len(group_positions)
        g_of_pos = np.repeat(np.arange(n_groups), [r.shape[0] for r in group_positions])
        pos_all = np.concatenate(group_positions) if group_positions else np.empty(0, dtype=np.int64)
        order = np.lexsort((g_of_pos, pos_all))
        self._store_groups = g_of_pos[order]  # store position -> groups redeemable there (CSR)
        self._store_offsets = np.zeros(len(stores) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pos_all, minlength=len(stores)), out=self._store_offsets[1:])
        by_group = np.argsort(offer_group, kind="stable")  # group -> its offers (CSR)
        self._group_offers = by_group
        self._group_offsets = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(offer_group, minlength=n_groups), out=self._group_offsets[1:])
        if self.attraction_column is not None:
            a = np.asarray(stores[self.attraction_column], dtype=np.float64)
            if not np.all(a > 0):
                raise InvalidParameterError(f"attraction column {self.attraction_column!r} must be > 0 for every store")
            self._log_attr = np.log(a)
        else:
            self._log_attr = np.zeros(len(stores))
        self._store_ids = stores.store_id
        self._cat_codes, self._cats = _codes(self.offers.category)
        self._mer_codes, self._mers = _codes(self.offers.merchant_id)
        self._cat_col = {c: i for i, c in enumerate(self._cats)}
        self._mer_col = {m: i for i, m in enumerate(self._mers)}
        # store position -> the offers redeemable there (the dispatcher's per-ping lookups)
        so, sg = self._store_offsets, self._store_groups
        go, gof = self._group_offsets, self._group_offers
        self._store_offer_lists = [
            np.concatenate([gof[go[g] : go[g + 1]] for g in sg[so[p] : so[p + 1]]])
            if so[p + 1] > so[p]
            else np.empty(0, dtype=np.int64)
            for p in range(len(stores))
        ]

    def _decay(self, d: FloatArray) -> FloatArray:
        x = np.maximum(d, 10.0) / self.distance_scale_m
        if self.decay == "power":
            return -np.log(x)
        if self.decay == "exponential":
            return -x
        return -np.logaddexp(0.0, (x - 1.0) * 4.0)

    # ------------------------------------------------------------ features
    def _user_features(self, user_ids: list[Any], t: float) -> dict[str, Any]:
        """Per-user features at time ``t`` and (user x category), (user x merchant) affinity matrices."""
        h = self.history
        n = len(user_ids)
        usual = np.empty(n)
        sens = np.empty(n)
        act = np.empty(n)
        cat_aff = np.zeros((n, len(self._cats)))
        mer_aff = np.zeros((n, len(self._mers)))
        cat_col, mer_col = self._cat_col, self._mer_col
        for i, u in enumerate(user_ids):
            usual[i] = h.usual_distance_m(u)
            sens[i] = h.discount_sensitivity(u)
            act[i] = h.activity(u, t)
            for c, v in h.category_sums(u, t):
                j = cat_col.get(c)
                if j is not None:
                    cat_aff[i, j] = v
            for m, v in h.merchant_sums(u, t):
                j = mer_col.get(m)
                if j is not None:
                    mer_aff[i, j] = v
        return {
            "usual": usual,
            "sensitivity": sens,
            "activity": act,
            "cat_aff": cat_aff,
            "mer_aff": mer_aff,
            "mer_rate": self._merchant_rate_feature(),
        }

    def _merchant_rate_feature(self) -> FloatArray:
        """Per merchant code: logit of its shrunk redemption rate minus the global one (cached per history change)."""
        h = self.history
        key = (id(h), h._version)
        if getattr(self, "_mer_rate_key", None) != key:
            rates = np.array([h.merchant_redemption_rate(m) for m in self._mers])
            self._mer_rate = _logit(rates) - _logit(np.array([h.global_redemption_rate()]))[0]
            self._mer_rate_key = key
        return self._mer_rate

    def _features(
        self,
        users: list[Any],
        uq: IntArray,
        offer: IntArray,
        dist: FloatArray,
        store: IntArray,
        t: float,
        ufeat: dict[str, Any],
    ) -> FloatArray:
        """Feature matrix (n_pairs, n_features) for (user row, offer, distance, store) pairs."""
        depth = self.offers.discount_depth[offer]
        return self._feature_matrix(
            dist,
            usual_m=ufeat["usual"][uq],
            cat_aff=ufeat["cat_aff"][uq, self._cat_codes[offer]],
            mer_aff=ufeat["mer_aff"][uq, self._mer_codes[offer]],
            mer_rate=ufeat["mer_rate"][self._mer_codes[offer]],
            depth=depth,
            sensitivity=ufeat["sensitivity"][uq],
            activity=ufeat["activity"][uq],
            log_attr=self._log_attr[store],
        )

    def _feature_matrix(
        self,
        dist: FloatArray,
        *,
        usual_m: FloatArray,
        cat_aff: FloatArray,
        mer_aff: FloatArray,
        mer_rate: FloatArray,
        depth: FloatArray,
        sensitivity: FloatArray,
        activity: FloatArray,
        log_attr: FloatArray,
    ) -> FloatArray:
        """The feature transforms (see the module docstring), one row per pair, from raw per-pair values."""
        X = np.empty((dist.shape[0], len(FEATURES)))
        X[:, 0] = 1.0
        X[:, 1] = self._decay(dist)
        X[:, 2] = -np.log1p(dist / usual_m)
        X[:, 3] = np.log1p(cat_aff)
        X[:, 4] = np.log1p(mer_aff)
        X[:, 5] = mer_rate
        X[:, 6] = depth
        X[:, 7] = depth * sensitivity
        X[:, 8] = np.log1p(activity)
        X[:, 9] = log_attr
        return X

    # ------------------------------------------------------------ ranking
    def _candidates(
        self, lat: FloatArray, lon: FloatArray, t: float
    ) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        """(query, offer, store position, distance), one row per (query, valid offer), best store each.

        The best store of an offer for a user is the one of its stores within
        ``search_radius_m`` with the highest Huff attraction ``A / d`` (the
        nearest without an attraction column); an offer whose best store is
        beyond its ``max_distance_m`` is left out.
        """
        if self._stores_version != (self.index._version, len(self.index.stores)):
            self._prepare()
        with self.index._lock:  # unsorted exact pairs: the ranking below does its own ordering
            q, slot, dist, _ = self.index._within_pairs(lat, lon, self.search_radius_m)
            pos = self.index._slot_to_pos()[slot]
        q, grp, pos, dist = _expand(q, pos, dist, self._store_offsets, self._store_groups)
        # the best store per (query, group): highest attraction, then lowest position
        attract = self._log_attr[pos] - np.log(np.maximum(dist, 10.0))
        key = q * max(len(self._group_offsets) - 1, 1) + grp
        best = _argbest(key, attract, pos, int(q.max(initial=-1) + 1) * max(len(self._group_offsets) - 1, 1))
        q, grp, pos, dist = q[best], grp[best], pos[best], dist[best]
        # expand each group to its offers
        q, offer, pos, dist = _expand(q, pos, dist, self._group_offsets, self._group_offers, key=grp)
        valid = self.offers.valid_at(t)[offer] & (dist <= self.offers.max_distance_m[offer])
        return q[valid], offer[valid], pos[valid], dist[valid]

    def _score_at(
        self, user_id: Any, pos: IntArray, dist: FloatArray, t: float
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]:
        """Every valid offer redeemable at the given stores (positions, distances), scored for one user.

        The single-user path of the dispatcher: the same features as :meth:`rank`,
        with the per-user values looked up only for the candidates.  Returns
        (offer, store position, distance, logit, features), one row per (offer, store).
        """
        if self._stores_version != (self.index._version, len(self.index.stores)):
            self._prepare()
        lists = self._store_offer_lists
        parts = [lists[p] for p in pos.tolist()]
        counts = [len(x) for x in parts]
        if not parts or not sum(counts):
            e = np.empty(0, dtype=np.int64)
            return e, e, np.empty(0), np.empty(0), np.empty((0, len(FEATURES)))
        offer = np.concatenate(parts)
        pos = np.repeat(pos, counts)
        dist = np.repeat(dist, counts)
        o = self.offers
        valid = (o.valid_from_s[offer] <= t) & (t <= o.valid_until_s[offer]) & (dist <= o.max_distance_m[offer])
        if not valid.all():
            offer, pos, dist = offer[valid], pos[valid], dist[valid]
        h = self.history
        cats = dict(h.category_sums(user_id, t))
        mers = dict(h.merchant_sums(user_id, t))
        g = _logit_scalar(h.global_redemption_rate())
        rates = {}
        for m in set(o.merchant_id[offer].tolist()):
            rates[m] = _logit_scalar(h.merchant_redemption_rate(m)) - g
        mer_ids = o.merchant_id[offer].tolist()
        n = offer.shape[0]
        X = self._feature_matrix(
            dist,
            usual_m=np.full(n, h.usual_distance_m(user_id)),
            cat_aff=np.array([cats.get(c, 0.0) for c in o.category[offer].tolist()]),
            mer_aff=np.array([mers.get(m, 0.0) for m in mer_ids]),
            mer_rate=np.array([rates[m] for m in mer_ids]),
            depth=o.discount_depth[offer],
            sensitivity=np.full(n, h.discount_sensitivity(user_id)),
            activity=np.full(n, h.activity(user_id, t)),
            log_attr=self._log_attr[pos],
        )
        return offer, pos, dist, X @ self.weights_, X

    def _score_pairs(self, X: FloatArray) -> tuple[FloatArray, FloatArray]:
        logit = X @ self.weights_
        return logit, 0.5 * (1.0 + np.tanh(0.5 * logit))

    def _top_k(self, q: IntArray, offer: IntArray, logit: FloatArray, k: int) -> IntArray:
        """Rows of each query's top k by score (ties: lower offer row), honouring the diversity caps.

        Returned sorted by query, then score.  Without caps a dense (query x offer)
        table and a partial sort do it; with caps the rows are sorted and capped in order.
        """
        n_q = int(q.max(initial=-1)) + 1
        n_o = len(self.offers)
        if self.max_per_merchant is None and self.max_per_category is None and 0 < n_q * n_o <= 50_000_000:
            table = np.full((n_q, n_o), -np.inf)
            table[q, offer] = logit
            row = np.full((n_q, n_o), -1, dtype=np.int64)
            row[q, offer] = np.arange(q.shape[0])
            kk = min(k, n_o)
            # every entry at least as good as the row's k-th best (ties included), then exact order
            kth = -np.partition(-table, kk - 1, axis=1)[:, kk - 1]
            rq, ro = np.nonzero((table >= kth[:, None]) & (row >= 0))
            vals = table[rq, ro]
            o2 = np.lexsort((ro, -vals, rq))
            rq, ro = rq[o2], ro[o2]
            rank = _rank_within(rq, np.zeros(rq.shape[0], dtype=np.int64), np.ones(rq.shape[0], dtype=bool))
            return row[rq[rank < k], ro[rank < k]]
        order = np.argsort(offer, kind="stable")
        order = order[np.argsort(-logit[order], kind="stable")]
        order = order[np.argsort(q[order], kind="stable")]
        keep = np.ones(order.shape[0], dtype=bool)
        for cap, codes in ((self.max_per_merchant, self._mer_codes), (self.max_per_category, self._cat_codes)):
            if cap is None:
                continue
            keep &= _rank_within(q[order], codes[offer[order]], keep) < cap
        order = order[keep]
        rank = _rank_within(q[order], np.zeros(order.shape[0], dtype=np.int64), np.ones(order.shape[0], dtype=bool))
        return order[rank < k]

    def rank(self, user_id: Any, lat: float, lon: float, now: Any = None, k: int = 10) -> list[ScoredOffer]:
        """The k best offers for one user at one place, best first, each with its store.

        Parameters
        ----------
        user_id : str or int
            The user; an unknown user is a cold start (no error).
        lat, lon : float
            Where the user is, degrees.
        now : float or datetime, optional
            Time of the ranking (epoch seconds or aware datetime); default: the current time.
        k : int, default 10
            How many offers.

        Returns
        -------
        list of ScoredOffer
            Never the same offer twice.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
        ...                       og.Offer("milk-tea", "m-teagarden", category="tea", discount_rate=0.9)])
        >>> scorer = og.OfferScorer(index, offers)
        >>> for s in scorer.rank("u1", 31.2304, 121.4737, now=1767225600, k=2):  # u1 is a cold start
        ...     print(f"{s.offer_id:<8} {s.store_id:<12} score {s.score:.3f} at {s.distance_m:.0f} m")
        latte    lucky-09     score 0.075 at 652 m
        milk-tea teagarden-07 score 0.049 at 838 m
        """
        res = self._rank_arrays([user_id], np.atleast_1d(lat), np.atleast_1d(lon), now, k)
        out = []
        for j in range(res["offer"].shape[0]):
            o = int(res["offer"][j])
            terms = tuple(zip(FEATURES, (res["X"][j] * self.weights_).tolist(), strict=True))
            out.append(
                ScoredOffer(
                    offer_id=self.offers.offer_id[o],
                    store_id=self._store_ids[res["store"][j]],
                    merchant_id=self.offers.merchant_id[o],
                    category=self.offers.category[o],
                    score=float(res["score"][j]),
                    distance_m=float(res["distance_m"][j]),
                    _terms=terms,
                )
            )
        return out

    def rank_many(
        self, user_ids: Any, lats: Any, lons: Any, now: Any = None, k: int = 10, as_frame: bool = True
    ) -> Any:
        """Rank for many users at once (vectorised); one row per (user, offer), best first per user.

        ``as_frame=False`` returns a dict of arrays; the type never depends on what is installed.

        Returns
        -------
        pandas.DataFrame or dict of arrays
            Columns ``query`` (row of the input), ``user_id``, ``rank``, ``offer_id``,
            ``store_id``, ``score``, ``distance_m``.

        Raises
        ------
        ImportError
            ``as_frame=True`` and pandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
        ...                       og.Offer("milk-tea", "m-teagarden", category="tea", discount_rate=0.9)])
        >>> scorer = og.OfferScorer(index, offers)
        >>> res = scorer.rank_many(["u1", "u2"], [31.2304, 31.2243], [121.4737, 121.4768], now=1767225600, k=1)
        >>> for u, o, s, p in zip(res["user_id"], res["offer_id"], res["store_id"], res["score"]):
        ...     print(f"{u} {o} {s} {p:.3f}")
        u1 latte lucky-09 0.075
        u2 latte lucky-07 0.080
        """
        users = list(np.asarray(user_ids, dtype=object).ravel())
        res = self._rank_arrays(users, lats, lons, now, k)
        cols = {
            "query": res["query"],
            "user_id": np.asarray(users, dtype=object)[res["query"]] if len(users) else np.empty(0, dtype=object),
            "rank": res["rank"],
            "offer_id": self.offers.offer_id[res["offer"]],
            "store_id": self._store_ids[res["store"]],
            "score": res["score"],
            "distance_m": res["distance_m"],
        }
        if not as_frame:
            return cols
        pd = import_optional("pandas", needed_by="OfferScorer.rank_many(as_frame=True)", extra="geo")
        return pd.DataFrame(cols)

    def _rank_arrays(self, users: list[Any], lats: Any, lons: Any, now: Any, k: int) -> dict[str, Any]:
        k = check_k(k)
        lat_a, lon_a, _ = as_latlon(lats, lons)
        if len(users) != lat_a.shape[0]:
            raise InvalidParameterError(f"{len(users)} user ids but {lat_a.shape[0]} positions")
        t = _now(now)
        parts = []
        n_cand = 0
        for start in range(0, lat_a.shape[0], _USER_CHUNK):
            sl = slice(start, start + _USER_CHUNK)
            chunk_users = users[sl]
            q, offer, pos, dist = self._candidates(lat_a[sl], lon_a[sl], t)
            n_cand += q.shape[0]
            X = self._features(chunk_users, q, offer, dist, pos, t, self._user_features(chunk_users, t))
            logit, score = self._score_pairs(X)
            top = self._top_k(q, offer, logit, k)
            parts.append((q[top] + start, offer[top], pos[top], dist[top], score[top], X[top]))
        if parts:
            qt, ot, pt, dt, st, xt = (np.concatenate(c) for c in zip(*parts, strict=True))
        else:
            qt = ot = pt = np.empty(0, dtype=np.int64)
            dt = st = np.empty(0)
            xt = np.empty((0, len(FEATURES)))
        rank = _rank_within(qt, np.zeros(qt.shape[0], dtype=np.int64), np.ones(qt.shape[0], dtype=bool))
        return {
            "query": qt,
            "rank": rank,
            "offer": ot,
            "store": pt,
            "distance_m": dt,
            "score": st,
            "X": xt,
            "n_candidates": n_cand,
        }

    # ------------------------------------------------------------ learning
    def fit(self, events: Iterable[Event], *, window_days: float = 7.0, l2: float = 1.0) -> OfferScorer:
        """Learn the weights from logged pushes and their outcomes.

        Every ``push`` event (with ``offer_id``, ``store_id`` and ``distance_m``)
        is an example; it is positive when the same user redeems the same
        offer within ``window_days`` after it, negative otherwise.  Events are
        replayed in time order into a fresh history, so each push's features
        are those the scorer would have seen when it was sent.  Afterwards
        :attr:`history` holds every event.

        Parameters
        ----------
        events : iterable of Event
            Pushes and outcomes (redeem, visit, open, ...).
        window_days : float, default 7
            Attribution window.
        l2 : float, default 1.0
            L2 penalty on the weights (not the intercept).

        Returns
        -------
        OfferScorer
            ``self``.

        Examples
        --------
        Forty users get the same coupon; half of the pushes sent 200 m from
        the store are redeemed, none of those sent 3 km away:

        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
        >>> log = []
        >>> for i in range(40):
        ...     ts = 1767225600 + i * 3600
        ...     d = 200.0 if i % 2 == 0 else 3000.0
        ...     log.append(og.Event("push", f"u{i}", ts, offer_id="latte", store_id="lucky-09", distance_m=d))
        ...     if i % 4 == 0:
        ...         log.append(og.Event("redeem", f"u{i}", ts + 1800, offer_id="latte"))
        >>> scorer = og.OfferScorer(index, offers)
        >>> print(f"distance weight {scorer.weights_[1]:.2f}")
        distance weight 0.80
        >>> scorer = scorer.fit(log)
        >>> print(f"distance weight {scorer.weights_[1]:.2f}")
        distance weight 1.15
        >>> scorer.n_fit_examples_, len(scorer.history)
        (40, 40)
        """
        evs = sorted(events, key=lambda e: e.ts)
        if not evs:
            raise InvalidParameterError("fit needs events; got none")
        window_s = float(window_days) * 86_400.0
        redeem_times: dict[tuple[Any, Any], list[float]] = {}
        for e in evs:
            if e.kind == "redeem" and e.offer_id is not None:
                redeem_times.setdefault((e.user_id, e.offer_id), []).append(e.ts)
        hist = UserHistory(
            self.history.half_life_days, self.history.kind_weights, self.history.prior_pushes, self.history.prior_rate
        )
        saved = self.history
        self.history = hist
        raw: list[tuple[float, ...]] = []  # per push: the raw values behind its features
        labels: list[bool] = []
        offer_row = {oid: i for i, oid in enumerate(self.offers.offer_id.tolist())}
        store_row = {sid: i for i, sid in enumerate(self._store_ids.tolist())}
        try:
            for e in evs:
                e = self._enrich(e, offer_row)
                if e.kind == "push":
                    if e.offer_id not in offer_row or e.store_id not in store_row or e.distance_m is None:
                        raise InvalidRecordError(
                            f"push at ts {e.ts} needs a known offer_id and store_id and a distance_m; got "
                            f"offer {e.offer_id!r}, store {e.store_id!r}, distance {e.distance_m!r}"
                        )
                    o = offer_row[e.offer_id]
                    u, t, m = e.user_id, e.ts, e.merchant_id
                    raw.append(
                        (
                            e.distance_m,
                            hist.usual_distance_m(u),
                            hist.category_affinity(u, e.category, t),
                            hist.merchant_affinity(u, m, t),
                            _logit_scalar(hist.merchant_redemption_rate(m))
                            - _logit_scalar(hist.global_redemption_rate()),
                            float(self.offers.discount_depth[o]),
                            hist.discount_sensitivity(u),
                            hist.activity(u, t),
                            float(self._log_attr[store_row[e.store_id]]),
                        )
                    )
                    times = redeem_times.get((e.user_id, e.offer_id), ())
                    labels.append(any(e.ts <= r <= e.ts + window_s for r in times))
                hist.add(e)
        except BaseException:
            self.history = saved
            raise
        if not raw:
            self.history = saved
            raise InvalidParameterError("fit found no push events to learn from")
        cols = np.array(raw, dtype=np.float64).T
        X = self._feature_matrix(
            cols[0],
            usual_m=cols[1],
            cat_aff=cols[2],
            mer_aff=cols[3],
            mer_rate=cols[4],
            depth=cols[5],
            sensitivity=cols[6],
            activity=cols[7],
            log_attr=cols[8],
        )
        y = np.asarray(labels, dtype=np.float64)
        self.weights_ = _logistic_newton(X, y, l2=l2, w0=self.weights_)
        self.n_fit_examples_ = int(y.shape[0])
        return self

    def _enrich(self, e: Event, offer_row: Mapping[Any, int]) -> Event:
        """Fill merchant, category and discount depth of an event from its offer."""
        o = offer_row.get(e.offer_id)
        if o is None:
            if e.offer_id is not None and e.kind in ("push", "redeem"):
                raise UnknownOfferError(f"event at ts {e.ts} names offer_id {e.offer_id!r}, which is not in the offers")
            return e
        if e.merchant_id is not None and e.category is not None and e.discount_depth is not None:
            return e
        return dataclasses.replace(
            e,
            merchant_id=e.merchant_id if e.merchant_id is not None else self.offers.merchant_id[o],
            category=e.category if e.category is not None else self.offers.category[o],
            discount_depth=e.discount_depth if e.discount_depth is not None else float(self.offers.discount_depth[o]),
        )

    def record(self, event: Event) -> None:
        """Add an outcome to the history (merchant, category and discount filled in from the offer).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
        >>> scorer = og.OfferScorer(index, offers)
        >>> now = 1767225600
        >>> print(f"{scorer.rank('u1', 31.2304, 121.4737, now=now, k=1)[0].score:.3f}")
        0.075
        >>> scorer.record(og.Event("redeem", "u1", now - 3600, offer_id="latte", distance_m=300.0))
        >>> scorer.history.n_events("u1", "redeem"), scorer.history.category_affinity("u1", "coffee", now) > 0
        (1, True)
        >>> print(f"{scorer.rank('u1', 31.2304, 121.4737, now=now, k=1)[0].score:.3f}")
        0.200
        """
        self.history.add(self._enrich(event, self.offers._lookup))


#: Users ranked together in one block of rank_many (bounds the memory of the candidate pairs).
_USER_CHUNK = 2048


def _logit_scalar(p: float) -> float:
    q = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


def _codes(values: np.ndarray) -> tuple[IntArray, list[Any]]:
    """Integer codes of an object column and the distinct values, in first-seen order."""
    seen: dict[Any, int] = {}
    codes = np.fromiter((seen.setdefault(v, len(seen)) for v in values.tolist()), dtype=np.int64, count=len(values))
    return codes, list(seen)


def _argbest(key: IntArray, value: FloatArray, tie: IntArray, n_keys: int) -> IntArray:
    """Index of the row with the highest ``value`` (then lowest ``tie``) for each distinct ``key`` in [0, n_keys).

    Dense reductions instead of a sort: ``(key, tie)`` pairs must be unique.
    """
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    best = np.full(n_keys, -np.inf)
    np.maximum.at(best, key, value)
    cand = np.flatnonzero(value == best[key])
    low = np.full(n_keys, np.iinfo(np.int64).max)
    np.minimum.at(low, key[cand], tie[cand])
    return cand[tie[cand] == low[key[cand]]]


def _expand(
    q: IntArray, pos: IntArray, dist: FloatArray, offsets: IntArray, items: IntArray, key: IntArray | None = None
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Repeat each row once per item of its CSR list (keyed by ``key``, or by ``pos``)."""
    k = pos if key is None else key
    counts = offsets[k + 1] - offsets[k]
    rows = np.repeat(np.arange(k.shape[0]), counts)
    within = np.arange(rows.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    return q[rows], items[np.repeat(offsets[k], counts) + within], pos[rows], dist[rows]


def _now(now: Any) -> float:
    if now is None:
        import time

        return time.time()
    return to_epoch_s(now, "now")


def _rank_within(q: IntArray, group: IntArray, mask: np.ndarray) -> IntArray:
    """For rows sorted by query, the 0-based rank of each row among earlier masked rows of the same (query, group)."""
    n = q.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    key_order = np.lexsort((np.arange(n), group, q))
    qs, gs, ms = q[key_order], group[key_order], mask[key_order].astype(np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (qs[1:] != qs[:-1]) | (gs[1:] != gs[:-1])
    csum = np.cumsum(ms) - ms  # masked rows before this one, overall
    start = np.maximum.accumulate(np.where(new, csum, 0))
    out = np.empty(n, dtype=np.int64)
    out[key_order] = csum - start
    return out


def _logistic_newton(X: FloatArray, y: FloatArray, *, l2: float, w0: FloatArray, max_iter: int = 100) -> FloatArray:
    """L2-regularised logistic regression by damped Newton steps (the intercept, column 0, unpenalised).

    Each step is halved until the penalised log-loss decreases, so the
    iteration cannot diverge on separable or badly scaled data.
    """
    pen = np.full(X.shape[1], float(l2))
    pen[0] = 0.0

    def loss(w: FloatArray) -> float:
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(pen * w * w))

    w = np.zeros(X.shape[1]) if w0 is None else np.array(w0, dtype=np.float64)
    cur = loss(w)
    for _ in range(max_iter):
        z = X @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
        g = X.T @ (p - y) + pen * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + np.diag(pen + 1e-6)
        step = np.linalg.solve(hess, g)
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            new = loss(cand)
            if new <= cur:
                break
            t *= 0.5
        else:
            break
        w, improvement, cur = cand, cur - new, new
        if improvement < 1e-10 * max(1.0, abs(cur)):
            break
    return w
