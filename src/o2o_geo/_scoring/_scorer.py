"""OfferScorer: rank offers for a user by a calibrated probability of redemption.

The score of offer ``o`` at store ``s`` for user ``u`` is
``sigmoid(sum_i w_i * f_i)`` over the features of :data:`FEATURES` (documented
in ``_features``); each term ``w_i * f_i`` is what :meth:`ScoredOffer.explain`
reports, so the explanation adds up to the logit exactly.

``fit`` learns the weights in one of two ways:

- ``target="redeem"``: from logged pushes and their outcomes, by
  L2-regularised logistic regression;
- ``target="visit"``: from visits alone, each visit a choice among the stores
  near the user's previous place (a conditional logit over sampled
  alternatives, as Huff models are calibrated).

Both replay the log in time order into a fresh history, so every example is
featurised with the history as it stood before it (``_model`` holds the
solvers: damped Newton for the pushes, L-BFGS for the choices).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._events import Event
from .._history import UserHistory, bind_resolver
from .._index import StoreIndex
from .._offers import OfferSet
from .._time import to_epoch_s, to_epoch_s_column
from .._types import FloatArray, IntArray
from .._validate import (
    as_latlon,
    check_choice,
    check_count,
    check_flag,
    check_id,
    check_k,
    check_metres,
    import_optional,
)
from ..errors import InvalidParameterError, InvalidRecordError, ShapeMismatchError, UnknownOfferError
from ._arrays import argbest, expand, rank_within, row_sums
from ._catalog import Catalog
from ._features import CROSS_USER_FEATURES, DEFAULT_WEIGHTS, FEATURES, Decay, FeatureExtractor
from ._fit import FitMethods
from ._results import ScoredCandidates, ScoredOffer

__all__ = ["OfferScorer"]


class OfferScorer(FitMethods):
    """Rank offers for users by distance, their history and the offer itself.

    Parameters
    ----------
    index : StoreIndex
        The stores; needs a ``merchant_id`` column (and may have ``category``
        and ``tz`` columns: a store's category stands in for an offer without
        one, its zone gives the local hour).
    offers : OfferSet
        The offers.
    history : UserHistory, optional
        Past events; a new empty one when omitted (every user is then a cold
        start).  Events in it that name only an ``offer_id`` or a ``store_id``
        get their merchant, category and local hour from these offers and stores.
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
    tz_column : str, default "tz"
        Store column of IANA time zones; where absent, the zone at the store's
        position (offline lookup).

    Attributes
    ----------
    weights_ : ndarray of shape (n_features,)
        Current weights (from ``weights`` until :meth:`fit`).
    n_fit_examples_ : int
        Pushes (``target="redeem"``) or visits (``target="visit"``) the last
        :meth:`fit` learnt from.
    fit_history_ : UserHistory
        The history :meth:`fit` replayed the events into.
    FEATURES : tuple of str
        The feature names, in the order of ``weights_`` (a class attribute).
    CROSS_USER_FEATURES : tuple of str
        The features learnt from all users together (merchant rates, store
        popularity, the crowd's moves and hours); with their weights at 0 a
        user's scores depend on that user's events alone (a class attribute).

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
    CROSS_USER_FEATURES = CROSS_USER_FEATURES

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
        tz_column: str = "tz",
    ) -> None:
        if not isinstance(index, StoreIndex) or not isinstance(offers, OfferSet):
            raise InvalidParameterError("OfferScorer takes a StoreIndex and an OfferSet")
        if history is not None and not isinstance(history, UserHistory):
            raise InvalidParameterError(f"history must be a UserHistory or None; got {type(history).__name__}")
        check_choice(decay, "decay", ("power", "exponential", "logistic"))
        for name, v in (("distance_scale_m", distance_scale_m), ("search_radius_m", search_radius_m)):
            check_metres(v, name, positive=True)
        for name, cap in (("max_per_merchant", max_per_merchant), ("max_per_category", max_per_category)):
            check_count(cap, name, low=1, allow_none=True)
        w = dict(DEFAULT_WEIGHTS)
        if weights is not None and not isinstance(weights, Mapping):
            raise InvalidParameterError(f"weights must be a mapping of feature name to weight; got {weights!r}")
        for k_, v in (weights or {}).items():
            if k_ not in w:
                raise InvalidParameterError(f"unknown feature {k_!r} in weights; features are {list(FEATURES)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidParameterError(f"weights[{k_!r}] must be a finite number; got {v!r}")
            w[k_] = float(v)
        if "merchant_id" not in index.stores.columns:
            raise InvalidParameterError("the index's stores need a 'merchant_id' column to match offers to stores")
        if attraction_column is not None and attraction_column not in index.stores.columns:
            raise InvalidParameterError(f"attraction_column {attraction_column!r} is not a store column")
        if not isinstance(tz_column, str):
            raise InvalidParameterError(f"tz_column must be a column name; got {tz_column!r}")
        self.index = index
        self.offers = offers
        self.history = history if history is not None else UserHistory()
        self.decay = decay
        self.distance_scale_m = distance_scale_m
        self.search_radius_m = search_radius_m
        self.attraction_column = attraction_column
        self.weights = weights
        self.max_per_merchant = max_per_merchant
        self.max_per_category = max_per_category
        self.tz_column = tz_column
        self.weights_ = np.array([w[f] for f in FEATURES], dtype=np.float64)
        self._extractor = FeatureExtractor(decay, float(distance_scale_m))
        self._cat: Catalog | None = None
        self._catalog()
        bind_resolver(self.history, self._resolve)

    # ------------------------------------------------------------ structure
    def _catalog(self) -> Catalog:
        """The offers matched to the index's current stores (rebuilt when stores are added or removed)."""
        cat = self._cat
        version = self.index.version
        if cat is None or cat.version != version:
            cat = self._cat = Catalog(self.index.stores, self.offers, version, self.attraction_column, self.tz_column)
        return cat

    def _resolve(self, event: Event) -> tuple[Any, Any, float]:
        """An event's merchant, category and local UTC offset from these offers and stores (the history's resolver)."""
        return self._catalog().resolve(event)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling (e.g. on a Dask worker): the history gets this scorer's resolver back."""
        self.__dict__.update(state)
        bind_resolver(self.history, self._resolve)

    # ------------------------------------------------------------ features
    def _features(
        self,
        users: list[Any],
        uq: IntArray,
        offer: IntArray,
        pos: IntArray,
        dist: FloatArray,
        t: float | FloatArray,
        cat: Catalog | None = None,
    ) -> FloatArray:
        """Feature matrix of (user row, offer row, store position, distance) pairs at time ``t`` (the one extractor)."""
        return self._extractor.transform(cat or self._catalog(), self.history, users, uq, offer, pos, dist, t)

    # ------------------------------------------------------------ ranking
    def _candidates(
        self, cat: Catalog, lat: FloatArray, lon: FloatArray, t: float
    ) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        """(query, offer, store position, distance), one row per (query, valid offer), best store each.

        The best store of an offer for a user is the one of its stores within
        ``search_radius_m`` with the highest Huff attraction ``A / d`` (the
        nearest without an attraction column); an offer whose best store is
        beyond its ``max_distance_m`` is left out.
        """
        pairs = self.index.pairs_within(lat, lon, float(self.search_radius_m))
        if pairs.version != cat.version:  # stores changed between the two calls: start again
            return self._candidates(self._catalog(), lat, lon, t)
        q, pos, dist = pairs.query, pairs.position, pairs.distance_m
        if cat.one_to_one:  # one offer per store, store order: nothing to group
            offer = pos
        else:
            q, grp, pos, dist = expand(q, pos, dist, cat.store_offsets, cat.store_groups)
            # the best store per (query, group): highest attraction, then lowest position
            attract = cat.log_attr[pos] - np.log(np.maximum(dist, 10.0))
            n_groups = max(cat.n_groups, 1)
            best = argbest(q * n_groups + grp, attract, pos, int(q.max(initial=-1) + 1) * n_groups)
            q, grp, pos, dist = q[best], grp[best], pos[best], dist[best]
            q, offer, pos, dist = expand(q, pos, dist, cat.group_offsets, cat.group_offers, key=grp)
        o = self.offers
        valid = (o.valid_from_s[offer] <= t) & (t <= o.valid_until_s[offer]) & (dist <= o.max_distance_m[offer])
        if valid.all():
            return q, offer, pos, dist
        return q[valid], offer[valid], pos[valid], dist[valid]

    def score_candidates(self, user_id: Any, position: Any, distance_m: Any, now: Any) -> ScoredCandidates:
        """Score every valid offer redeemable at given stores, for given users at given times (the dispatcher's call).

        Where :meth:`rank` finds the stores around a point, this scores the
        stores a caller already found (a geofence's, say): one row per
        (input row, valid offer of that store), with the same features and
        weights as :meth:`rank`.

        Parameters
        ----------
        user_id : str or int, or sequence of shape (n,)
            One user for every row, or one per row.
        position : array_like of int, shape (n,)
            Rows of ``index.stores``.
        distance_m : array_like of float, shape (n,)
            Distance from the user to each store, metres.
        now : float or datetime, or array_like of float, shape (n,)
            Epoch seconds (or an aware datetime): one time, or one per row.

        Returns
        -------
        ScoredCandidates
            Rows in input order, each store's offers in offer order.

        Raises
        ------
        ShapeMismatchError
            Arrays of different lengths.
        InvalidParameterError
            A position outside ``index.stores``.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> scorer = og.OfferScorer(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]))
        >>> store = int(index.stores.position_of("lucky-09")[0])
        >>> sc = scorer.score_candidates("u1", [store], [40.0], now=1767225600)
        >>> [scorer.offers.offer_id[o] for o in sc.offer.tolist()], sc.row.tolist()
        (['latte'], [0])
        >>> bool(abs(sum(sc.explanation(0).values()) - sc.logit[0]) < 1e-12)
        True
        """
        try:
            raw = np.asarray(position).reshape(-1)
            if raw.dtype.kind in "bc":
                raise ValueError("booleans and complex numbers are not rows")
            if raw.dtype.kind not in "iu" and raw.size:
                as_f = raw.astype(np.float64)
                if not (np.isfinite(as_f) & (as_f == np.round(as_f)) & (np.abs(as_f) < 2.0**62)).all():
                    raise ValueError("not whole numbers")
            pos = raw.astype(np.int64)
            dist = np.asarray(distance_m, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidParameterError(f"position must be store rows (ints), distance_m metres: {exc}") from None
        n = pos.shape[0]
        if dist.shape[0] != n:
            raise ShapeMismatchError(f"position has {n} rows but distance_m has {dist.shape[0]}")
        cat = self._catalog()
        if n and (int(pos.min()) < 0 or int(pos.max()) >= cat.n_stores):
            raise InvalidParameterError(f"position must be rows of index.stores (0..{cat.n_stores - 1})")
        if n and not (dist >= 0.0).all():
            i = int(np.flatnonzero(~(dist >= 0.0))[0])
            raise InvalidParameterError(f"distance_m[{i}] = {dist[i]!r} must be metres >= 0")
        one_user = isinstance(user_id, (str, int, np.integer, np.str_)) and not isinstance(user_id, bool)
        if not one_user:
            if user_id is None or isinstance(user_id, (bool, bytes, float, Mapping)) or not hasattr(user_id, "__len__"):
                raise InvalidRecordError(f"user_id must be a str or an int, or one per row; got {user_id!r}")
            if len(user_id) != n:
                raise ShapeMismatchError(f"user_id has {len(user_id)} rows but position has {n}")
        one_time = np.ndim(now) == 0
        t0 = to_epoch_s(now, "now") if one_time else 0.0
        t_in = None if one_time else to_epoch_s_column(now, "now")
        if t_in is not None and t_in.shape[0] != n:
            raise ShapeMismatchError(f"now has {t_in.shape[0]} rows but position has {n}")
        lists = cat.store_offer_lists
        parts = [lists[p] for p in pos.tolist()]
        counts = np.fromiter((len(x) for x in parts), dtype=np.int64, count=n)
        w = self.weights_
        if not n or not counts.sum():
            e = np.empty(0, dtype=np.int64)
            return ScoredCandidates(e, e, e, np.empty(0), np.empty(0), np.empty(0), np.empty((0, len(FEATURES))), w)
        offer = np.concatenate(parts)
        row = np.repeat(np.arange(n), counts)
        pos, dist = pos[row], dist[row]
        o = self.offers
        t_row = t0 if t_in is None else t_in[row]
        valid = (o.valid_from_s[offer] <= t_row) & (t_row <= o.valid_until_s[offer]) & (dist <= o.max_distance_m[offer])
        if not valid.all():
            offer, row, pos, dist = offer[valid], row[valid], pos[valid], dist[valid]
        if one_user and t_in is None:  # one user at one time: the dispatcher's per-ping call
            users: list[Any] = [user_id]
            uq = np.zeros(row.shape[0], dtype=np.int64)
            t_users: float | FloatArray = t0
        else:  # one user row per distinct (user, time)
            seen: dict[tuple[Any, float], int] = {}
            users, times = [], []
            row_user = np.empty(n, dtype=np.int64)
            for i in range(n):
                u = user_id if one_user else user_id[i]
                if not one_user and (u is None or isinstance(u, bool) or not isinstance(u, (str, int, np.integer))):
                    raise InvalidRecordError(f"user_id[{i}] must be a str or an int; got {u!r}")
                key = (u, t0 if t_in is None else float(t_in[i]))
                j = seen.get(key)
                if j is None:
                    j = seen[key] = len(users)
                    users.append(key[0])
                    times.append(key[1])
                row_user[i] = j
            uq = row_user[row]
            t_users = np.array(times)
        X = self._features(users, uq, offer, pos, dist, t_users, cat)
        logit = row_sums(X * w)
        return ScoredCandidates(row, offer, pos, dist, logit, 0.5 * (1.0 + np.tanh(0.5 * logit)), X, w)

    def _score_pairs(self, X: FloatArray) -> tuple[FloatArray, FloatArray]:
        logit = X @ self.weights_
        return logit, 0.5 * (1.0 + np.tanh(0.5 * logit))

    def _top_k(self, cat: Catalog, q: IntArray, offer: IntArray, logit: FloatArray, k: int) -> IntArray:
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
            rank = rank_within(rq, np.zeros(rq.shape[0], dtype=np.int64), np.ones(rq.shape[0], dtype=bool))
            return row[rq[rank < k], ro[rank < k]]
        order = np.argsort(offer, kind="stable")
        order = order[np.argsort(-logit[order], kind="stable")]
        order = order[np.argsort(q[order], kind="stable")]
        keep = np.ones(order.shape[0], dtype=bool)
        for cap, codes in ((self.max_per_merchant, cat.offer_mer), (self.max_per_category, cat.offer_cat)):
            if cap is None:
                continue
            keep &= rank_within(q[order], codes[offer[order]], keep) < cap
        order = order[keep]
        rank = rank_within(q[order], np.zeros(order.shape[0], dtype=np.int64), np.ones(order.shape[0], dtype=bool))
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
        latte    lucky-09     score 0.085 at 652 m
        milk-tea teagarden-07 score 0.052 at 838 m
        """
        res = self._rank_arrays([check_id(user_id, "user_id")], np.atleast_1d(lat), np.atleast_1d(lon), now, k)
        out = []
        for j in range(res["offer"].shape[0]):
            o = int(res["offer"][j])
            terms = tuple(zip(FEATURES, (res["X"][j] * self.weights_).tolist(), strict=True))
            out.append(
                ScoredOffer(
                    offer_id=self.offers.offer_id[o],
                    store_id=res["store_id"][j],
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
        u1 latte lucky-09 0.085
        u2 milk-tea teagarden-01 0.093
        """
        users = [check_id(u, f"user_ids[{i}]") for i, u in enumerate(np.asarray(user_ids, dtype=object).ravel())]
        res = self._rank_arrays(users, lats, lons, now, k)
        cols = {
            "query": res["query"],
            "user_id": np.asarray(users, dtype=object)[res["query"]] if len(users) else np.empty(0, dtype=object),
            "rank": res["rank"],
            "offer_id": self.offers.offer_id[res["offer"]],
            "store_id": res["store_id"],
            "score": res["score"],
            "distance_m": res["distance_m"],
        }
        if not check_flag(as_frame, "as_frame"):
            return cols
        pd = import_optional("pandas", needed_by="OfferScorer.rank_many(as_frame=True)", extra="geo")
        return pd.DataFrame(cols)

    def _rank_arrays(self, users: list[Any], lats: Any, lons: Any, now: Any, k: int) -> dict[str, Any]:
        k = check_k(k)
        lat_a, lon_a, _ = as_latlon(lats, lons)
        if len(users) != lat_a.shape[0]:
            raise InvalidParameterError(f"{len(users)} user ids but {lat_a.shape[0]} positions")
        t = _now(now)
        cat = self._catalog()
        parts = []
        n_cand = 0
        for start in range(0, lat_a.shape[0], _USER_CHUNK):
            sl = slice(start, start + _USER_CHUNK)
            chunk_users = users[sl]
            q, offer, pos, dist = self._candidates(cat, lat_a[sl], lon_a[sl], t)
            n_cand += q.shape[0]
            X = self._features(chunk_users, q, offer, pos, dist, t, cat)
            logit, score = self._score_pairs(X)
            top = self._top_k(cat, q, offer, logit, k)
            parts.append((q[top] + start, offer[top], pos[top], dist[top], score[top], X[top]))
        if parts:
            qt, ot, pt, dt, st, xt = (np.concatenate(c) for c in zip(*parts, strict=True))
        else:
            qt = ot = pt = np.empty(0, dtype=np.int64)
            dt = st = np.empty(0)
            xt = np.empty((0, len(FEATURES)))
        rank = rank_within(qt, np.zeros(qt.shape[0], dtype=np.int64), np.ones(qt.shape[0], dtype=bool))
        return {
            "query": qt,
            "rank": rank,
            "offer": ot,
            "store": pt,
            "distance_m": dt,
            "score": st,
            "X": xt,
            "store_id": cat.store_ids[pt],
            "n_candidates": n_cand,
        }

    # ------------------------------------------------------------ learning

    def record(self, event: Event) -> None:
        """Add an outcome to the history (merchant, category and local hour filled in from the offers and stores).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
        >>> scorer = og.OfferScorer(index, offers)
        >>> now = 1767225600
        >>> print(f"{scorer.rank('u1', 31.2304, 121.4737, now=now, k=1)[0].score:.3f}")
        0.085
        >>> scorer.record(og.Event("redeem", "u1", now - 3600, offer_id="latte", distance_m=300.0))
        >>> scorer.history.n_events("u1", "redeem"), scorer.history.category_affinity("u1", "coffee", now) > 0
        (1, True)
        >>> print(f"{scorer.rank('u1', 31.2304, 121.4737, now=now, k=1)[0].score:.3f}")
        0.222
        """
        if not isinstance(event, Event):
            raise InvalidRecordError(f"record takes an Event; got {type(event).__name__}")
        if event.offer_id is not None and event.kind in ("push", "redeem") and event.offer_id not in self.offers:
            raise UnknownOfferError(
                f"event at ts {event.ts} names offer_id {event.offer_id!r}, which is not in the offers"
            )
        bind_resolver(self.history, self._resolve)
        self.history.add(event)


#: Users ranked together in one block of rank_many (bounds the memory of the candidate pairs).
_USER_CHUNK = 2048


def _now(now: Any) -> float:
    if now is None:
        import time

        return time.time()
    return to_epoch_s(now, "now")
