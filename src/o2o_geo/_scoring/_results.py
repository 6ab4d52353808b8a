"""What the scorer returns: one ranked offer (:class:`ScoredOffer`), or every candidate scored at once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .._types import FloatArray, IntArray
from ._features import FEATURES

__all__ = ["ScoredCandidates", "ScoredOffer", "terms_of"]


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
        -2.381 = logit -2.381
        """
        return dict(sorted(self._terms, key=lambda kv: -abs(kv[1])))


@dataclass(frozen=True)
class ScoredCandidates:
    """Offers scored at given stores for given users (:meth:`OfferScorer.score_candidates`).

    One row per (input row, valid offer redeemable at that row's store).

    Attributes
    ----------
    row : ndarray of int64, shape (n,)
        The input row each candidate came from.
    offer : ndarray of int64, shape (n,)
        Row of the OfferSet.
    position : ndarray of int64, shape (n,)
        Row of ``index.stores``.
    distance_m : ndarray of float64, shape (n,)
    logit, score : ndarray of float64, shape (n,)
        Log-odds and probability of redemption.
    features : ndarray of float64, shape (n, n_features)
        The feature values (:data:`FEATURES` order).
    weights : ndarray of float64, shape (n_features,)
        The weights the scores were computed with.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> scorer = og.OfferScorer(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]))
    >>> tea, lucky = (int(p) for p in index.stores.position_of(["teagarden-07", "lucky-09"]))
    >>> sc = scorer.score_candidates(["u1", "u2"], [tea, lucky], [50.0, 50.0], now=1767225600)
    >>> sc.row.tolist(), bool(0.0 < sc.score[0] < 1.0)       # only the second store redeems the latte
    ([1], True)
    """

    row: IntArray
    offer: IntArray
    position: IntArray
    distance_m: FloatArray
    logit: FloatArray
    score: FloatArray
    features: FloatArray = field(repr=False)
    weights: FloatArray = field(repr=False)

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def explanation(self, j: int) -> dict[str, float]:
        """Each feature's term (weight times value) of candidate ``j``'s logit, in :data:`FEATURES` order.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> scorer = og.OfferScorer(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]))
        >>> sc = scorer.score_candidates("u1", index.stores.position_of("lucky-09"), [50.0], now=1767225600)
        >>> print(f"{sc.explanation(0)['intercept']:+.1f}")
        -3.0
        """
        return terms_of(self.features[j], self.weights)


def terms_of(features: FloatArray, weights: FloatArray) -> dict[str, float]:
    """One candidate's terms of its logit by feature name: weight times value, in :data:`FEATURES` order."""
    return dict(zip(FEATURES, (features * weights).tolist(), strict=True))
