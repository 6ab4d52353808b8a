"""PushDecision: one push the dispatcher decided on, with the terms of its score."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._scoring import ScoredCandidates, terms_of

__all__ = ["PushDecision", "ScoreTerms", "decision_from_dict", "push_record"]


class ScoreTerms(Mapping[str, float]):
    """Candidate ``j``'s terms of its logit (:meth:`ScoredCandidates.explanation`), computed when first read.

    Keeps a copy of the candidate's feature row only, not the batch it was scored in.
    """

    __slots__ = ("_row", "_weights", "_terms")

    def __init__(self, scored: ScoredCandidates, j: int) -> None:
        self._row, self._weights = scored.features[j].copy(), scored.weights
        self._terms: dict[str, float] | None = None

    def _all(self) -> dict[str, float]:
        if self._terms is None:
            self._terms = terms_of(self._row, self._weights)
        return self._terms

    def __getitem__(self, name: str) -> float:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True)
class PushDecision:
    """One push the dispatcher decided on.

    Attributes
    ----------
    push_id : str
        Unique id; quote it in later events (``record(Event(..., push_id=...))``).
    user_id, offer_id, store_id, merchant_id
        Who gets which offer, redeemable at which store.
    score : float
        The scorer's probability of redemption.
    distance_m : float
        WGS84 distance from the ping to the store, metres.
    trigger : {"enter", "dwell", "nearby", "exit", "lapsed"}
    holdout : bool
        ``True``: the user is in the holdout group; do **not** deliver.
    ts : float
        Epoch seconds of the ping.
    explanation : mapping of str to float
        Each feature's term of the score's logit (see :meth:`ScoredOffer.explain`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> engine = og.Dispatcher(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
    ...                        policy=og.PushPolicy(holdout_fraction=0.0))
    >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
    >>> d.push_id, d.store_id, d.trigger, round(d.distance_m), d.holdout
    ('p1', 'lucky-09', 'enter', 2, False)
    >>> import math; abs(sum(d.explain().values()) - math.log(d.score / (1 - d.score))) < 1e-9
    True
    """

    push_id: str
    user_id: Any
    offer_id: Any
    store_id: Any
    merchant_id: Any
    score: float
    distance_m: float
    trigger: str
    holdout: bool
    ts: float
    explanation: Mapping[str, float] = field(repr=False, compare=True)

    def explain(self) -> dict[str, float]:
        """Each feature's contribution to the logit, largest magnitude first.

        Returns
        -------
        dict of str to float
            Terms that add up to ``log(score / (1 - score))``.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> terms = d.explain()
        >>> "intercept" in terms, all(abs(a) >= abs(b) for a, b in zip(list(terms.values()), list(terms.values())[1:]))
        (True, True)
        """
        return dict(sorted(self.explanation.items(), key=lambda kv: -abs(kv[1])))

    def to_dict(self) -> dict[str, Any]:
        """The decision as a JSON-able dict.

        Returns
        -------
        dict
            Every field, ``explanation`` as a dict of floats; write it to a log or a queue.

        Examples
        --------
        >>> import json
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> record = json.loads(json.dumps(d.to_dict()))
        >>> record["push_id"], record["store_id"], record["trigger"], record["holdout"]
        ('p1', 'lucky-09', 'enter', False)
        """
        return {**push_record(self), "explanation": dict(self.explanation)}


def decision_from_dict(d: Mapping[str, Any]) -> PushDecision:
    """A decision back from :meth:`PushDecision.to_dict` (what a ping's idempotency record stores)."""
    return PushDecision(**d)


def push_record(d: PushDecision) -> dict[str, Any]:
    """The push as the state stores it: every field but the explanation."""
    return {
        "push_id": d.push_id,
        "user_id": d.user_id,
        "offer_id": d.offer_id,
        "store_id": d.store_id,
        "merchant_id": d.merchant_id,
        "score": d.score,
        "distance_m": d.distance_m,
        "trigger": d.trigger,
        "holdout": d.holdout,
        "ts": d.ts,
    }
