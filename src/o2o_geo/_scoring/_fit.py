"""``OfferScorer.fit``: the weights learnt from a log, by replaying it into a fresh history.

The replays (``_replay``) turn the log into examples featurised as the scorer
would have seen them then; the solvers (``_model``) fit the weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from .._events import Event, as_events
from .._history import UserHistory, bind_resolver, empty_like
from .._index import StoreIndex
from .._offers import OfferSet
from .._validate import check_choice, check_count, check_metres, check_quantity
from ..errors import InvalidParameterError, UnknownOfferError
from ._features import FEATURES, FeatureExtractor
from ._model import fit_choice, fit_logistic
from ._replay import replay_pushes, replay_visits

if TYPE_CHECKING:
    from ._catalog import Catalog

__all__ = ["FitMethods", "Target"]

Target = Literal["redeem", "visit"]
#: Weights ``fit(target="visit")`` cannot learn from visits alone (the same for every store of a
#: choice, or about offers the visitors were never shown); they keep their values.
_NOT_FROM_VISITS = ("intercept", "merchant_rate", "discount", "discount_x_sensitivity", "activity", "member")


class FitMethods:
    """:meth:`fit`, over the parts an :class:`~o2o_geo.OfferScorer` has (declared here, set by its ``__init__``)."""

    index: StoreIndex
    offers: OfferSet
    history: UserHistory
    search_radius_m: float
    weights_: np.ndarray
    n_fit_examples_: int | None
    fit_history_: UserHistory | None
    _extractor: FeatureExtractor

    if TYPE_CHECKING:  # the scorer's, called from fit

        def _catalog(self) -> Catalog: ...

        def _resolve(self, event: Event) -> tuple[Any, Any, float]: ...

    def fit(
        self,
        events: Iterable[Event] | Any,
        *,
        target: Target = "redeem",
        window_days: float = 7.0,
        l2: float = 1.0,
        choice_radius_m: float | None = None,
        n_negatives: int = 80,
        random_state: int = 0,
        record: bool = False,
    ) -> Self:
        """Learn the weights from a log of events.

        The events are replayed in time order into a fresh history, so each
        example is featurised as the scorer would have seen it then.
        :attr:`history` is not changed unless ``record=True``; the replayed
        history is :attr:`fit_history_`.

        ``target="redeem"`` (push logs): every ``push`` (with ``offer_id``,
        ``store_id`` and ``distance_m``) is an example, positive when it was
        redeemed within ``window_days``.  Pushes are featurised in batches of
        events from distinct users: a push's user history is exact, its
        cross-user features (merchant rates, popularity) may miss up to 1,023
        other users' events just before it, and it never sees a later event.  A ``redeem`` carrying a ``push_id``
        counts for that push; one without counts for the latest earlier push
        of the same offer to the same user; a redemption never counts twice.

        ``target="visit"`` (check-ins, no push log needed): every ``visit`` to
        a known store after an earlier visit by the same user is a choice
        among the stores within ``choice_radius_m`` of that earlier place, made
        at its time.  The alternatives are the user's ``n_negatives`` most
        familiar stores in range, the ``n_negatives // 2`` nearest, and a uniform sample of
        ``n_negatives // 2`` draws among all stores, weighted by McFadden's
        correction so the sample does not bias the fit.  A store stands for
        its first offer.  Weights visits cannot tell (intercept, merchant
        rate, discount, sensitivity, activity, member) keep their values.
        The ``member`` feature reads the tiers :attr:`history` holds now
        (:meth:`UserHistory.set_tier`; a dispatcher sets them from its users'
        profiles) for every example, earlier ones too.

        Parameters
        ----------
        events : iterable of Event, list of dict, or DataFrame
            The log; records and DataFrames have the :class:`Event` fields as
            keys or columns (``kind, user_id, ts, offer_id, store_id, distance_m, push_id, ...``).
        target : {"redeem", "visit"}, default "redeem"
        window_days : float, default 7
            Attribution window of a redemption (``target="redeem"``).
        l2 : float, default 1.0
            L2 penalty on the weights (not the intercept).
        choice_radius_m : float, optional
            Radius of a visit's choice set (default ``search_radius_m``).
        n_negatives : int, default 80
            Sampled alternatives per visit (besides up to this many of the user's familiar stores).
        random_state : int, default 0
            Seed of the sampled alternatives.
        record : bool, default False
            Also add the events to :attr:`history` afterwards.

        Returns
        -------
        OfferScorer
            ``self``.

        Raises
        ------
        InvalidParameterError
            No events, nothing to learn from, or a bad parameter.
        InvalidRecordError
            A row that is not an event (named by its position), or a push
            without a known offer, store and distance.

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
        ...     log.append({"kind": "push", "user_id": f"u{i}", "ts": ts, "offer_id": "latte",
        ...                 "store_id": "lucky-09", "distance_m": d, "push_id": f"p{i}"})
        ...     if i % 4 == 0:
        ...         log.append({"kind": "redeem", "user_id": f"u{i}", "ts": ts + 1800, "offer_id": "latte",
        ...                     "push_id": f"p{i}"})
        >>> scorer = og.OfferScorer(index, offers)
        >>> print(f"distance weight {scorer.weights_[1]:.2f}")
        distance weight 0.80
        >>> scorer = scorer.fit(log)
        >>> print(f"distance weight {scorer.weights_[1]:.2f}")
        distance weight 1.08
        >>> scorer.n_fit_examples_, len(scorer.fit_history_), len(scorer.history)
        (40, 40, 0)
        """
        check_choice(target, "target", ("redeem", "visit"))
        check_quantity(window_days, "window_days", unit="days")
        check_quantity(l2, "l2")
        radius = self.search_radius_m if choice_radius_m is None else choice_radius_m
        check_metres(radius, "choice_radius_m", positive=True)
        check_count(n_negatives, "n_negatives", low=2)
        evs = sorted(as_events(events), key=lambda e: e.ts)
        if not evs:
            raise InvalidParameterError("fit needs events; got none")
        cat = self._catalog()
        for e in evs:
            if e.offer_id is not None and e.kind in ("push", "redeem") and e.offer_id not in cat.offer_lookup:
                raise UnknownOfferError(f"event at ts {e.ts} names offer_id {e.offer_id!r}, which is not in the offers")
        hist = empty_like(self.history)  # with the member tiers as known now (an attribute of the user, not an event)
        bind_resolver(hist, self._resolve)
        if target == "redeem":
            X, y = replay_pushes(self._extractor, cat, hist, evs, float(window_days) * 86_400.0)
            weights = fit_logistic(X, y, l2=float(l2), w0=self.weights_)
            n_examples = y.shape[0]
        else:
            X, starts, chosen, offset = replay_visits(
                self._extractor, cat, self.index, hist, evs, float(radius), n_negatives, random_state
            )
            free = np.array([f not in _NOT_FROM_VISITS for f in FEATURES])
            fixed_offset = offset + X[:, ~free] @ self.weights_[~free]
            Xf = np.column_stack([np.ones(X.shape[0], dtype=X.dtype), X[:, free]])  # stays float32
            w = fit_choice(
                Xf, starts, chosen, fixed_offset, l2=float(l2), w0=np.concatenate([[0.0], self.weights_[free]])
            )
            weights = self.weights_.copy()
            weights[free] = w[1:]
            n_examples = starts.shape[0]
        self.weights_ = weights
        self.n_fit_examples_ = int(n_examples)
        self.fit_history_ = hist
        if record:
            for e in evs:
                self.history.add(e)
        return self
