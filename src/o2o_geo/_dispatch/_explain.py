"""Answers to "why did this user get no push?": what a dry run of one ping found, candidate by candidate.

The reasons are the keys of :attr:`Dispatcher.stats` where the engine counts
them, so a support ticket and the engine's counters speak the same words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ._decision import PushDecision

__all__ = ["CANDIDATE_REASONS", "PING_GATES", "CandidateVerdict", "PingExplanation"]

#: Why nothing about a ping was considered or pushed, checked in this order.
PING_GATES: dict[str, str] = {
    "ignored_inaccurate": "the fix is less accurate than policy.max_accuracy_m",
    "no_fence": "no store's fence (or nearby radius) holds the ping",
    "stale_pings": "an older ping than the last one that changed the user's state",
    "no_trigger": "inside fences, but nothing new: already entered, dwell not due (or the trigger is off)",
    "no_offer": "the triggered stores have no offer valid now",
    "opted_out": "the user's consent is opt_in=False (Dispatcher.set_user)",
    "not_opted_in": "policy.require_opt_in, and the user's opt_in=True was never set",
    "min_gap": "less than policy.min_gap_s since the user's last push",
    "dismiss_cooldown": "less than policy.dismiss_cooldown_s since the user dismissed a push",
    "quiet_hours": "the user's local time is in policy.quiet_hours",
    "user_cap": "the user's day or week cap is reached",
}

#: What happened to one candidate (an offer at a triggered store), best score first.
CANDIDATE_REASONS: dict[str, str] = {
    "pushed": "pushed",
    "holdout": "decided, but the user is in the holdout group (recorded, not delivered)",
    "low_score": "score below policy.min_score",
    "audience": "the offer's audience (new, returning, lapsed, members) does not include the user here now",
    "store_closed": "the store is closed (or closes within policy.closing_margin_min) at the store's local time",
    "same_offer": "the same offer was already pushed by this ping at a better-scoring store",
    "capped": "a limit is reached (``limit`` names which)",
    "user_cap": "the pushes before it reached the user's day or week cap",
    "max_per_ping": "policy.max_per_ping pushes were already made by this ping",
    **{gate: f"the ping's gate: {text}" for gate, text in PING_GATES.items() if gate in (
        "opted_out", "not_opted_in", "min_gap", "dismiss_cooldown", "quiet_hours", "user_cap")},
}  # fmt: skip


@dataclass(frozen=True)
class CandidateVerdict:
    """One offer at one triggered store, and what stopped it (or ``"pushed"``).

    Attributes
    ----------
    store_id, offer_id, merchant_id
    trigger : {"enter", "dwell", "nearby"}
    distance_m : float
    score : float
        The scorer's probability of redemption.
    reason : str
        One of :data:`CANDIDATE_REASONS`.
    limit : str or None
        With ``reason == "capped"``: ``user_day``, ``user_week``,
        ``merchant_day``, ``offer_cap``, ``offer_budget``, ``merchant_budget``
        or ``store_capacity``.

    Examples
    --------
    >>> import o2o_geo as og
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
    >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()), offers,
    ...                        policy=og.PushPolicy(holdout_fraction=0.0, max_per_offer=1,
    ...                                             max_per_merchant_per_day=None))
    >>> _ = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
    >>> _ = engine.on_location("u1", 31.2400, 121.4500, 1767261600)            # leaves
    >>> (c,) = engine.explain_ping("u1", 31.2325, 121.4801, 1767265200).candidates   # back, two hours later
    >>> c.offer_id, c.trigger, c.reason, c.limit
    ('latte', 'enter', 'capped', 'offer_cap')
    """

    store_id: Any
    offer_id: Any
    merchant_id: Any
    trigger: str
    distance_m: float
    score: float
    reason: str
    limit: str | None = None


@dataclass(frozen=True)
class PingExplanation:
    """What :meth:`Dispatcher.explain_ping` found: the ping's gate, each candidate's reason, the decisions.

    Attributes
    ----------
    user_id, ts
        The ping's.
    gate : str or None
        The reason (one of :data:`PING_GATES`) that stopped the ping as a
        whole, or None when its candidates were tried one by one.
    triggers : dict
        Store id -> trigger the ping fires (``enter``, ``dwell``, ``nearby``).
    visits : list
        Stores whose dwell this ping completes (each an inferred visit).
    candidates : list of CandidateVerdict
        Best score first (for a ping-level gate, every candidate with that gate as its reason).
    decisions : list of PushDecision
        What :meth:`Dispatcher.on_location` would decide for this ping now (nothing was stored).

    Examples
    --------
    >>> import o2o_geo as og
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
    >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()), offers,
    ...                        policy=og.PushPolicy(holdout_fraction=0.0))      # quiet 22:00-08:00
    >>> night = 1767258000 + 11 * 3600                     # 04:00 in Shanghai
    >>> why = engine.explain_ping("u1", 31.2325, 121.4801, night)
    >>> why.gate, why.triggers, why.pushed
    ('quiet_hours', {'lucky-09': 'enter'}, False)
    >>> why
    PingExplanation(user 'u1': quiet_hours; 1 candidates: latte@lucky-09: quiet_hours)
    """

    user_id: Any
    ts: float
    gate: str | None
    triggers: dict[Any, str] = field(default_factory=dict)
    visits: list[Any] = field(default_factory=list)
    candidates: list[CandidateVerdict] = field(default_factory=list)
    decisions: list[PushDecision] = field(default_factory=list)

    @property
    def pushed(self) -> bool:
        """Whether the ping would push (a holdout decision is not a push)."""
        return any(not d.holdout for d in self.decisions)

    @property
    def reason(self) -> str:
        """One line: the gate, the best candidate's reason, or what was pushed."""
        if self.gate is not None:
            return self.gate
        if self.pushed:
            return "pushed"
        return self.candidates[0].reason if self.candidates else "no_offer"

    def to_records(self) -> list[dict[str, Any]]:
        """The candidates as dicts (a DataFrame's rows); a gated ping without candidates gives one row.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]))
        >>> engine.explain_ping("u1", 31.2400, 121.4500, 1767258000).to_records()[0]["reason"]
        'no_fence'
        """
        if not self.candidates:
            empty = dict.fromkeys(("store_id", "offer_id", "merchant_id", "trigger", "distance_m", "score", "limit"))
            return [{"user_id": self.user_id, "ts": self.ts, **empty, "reason": self.reason}]
        return [{"user_id": self.user_id, "ts": self.ts, **asdict(c)} for c in self.candidates]

    def __repr__(self) -> str:
        best = ", ".join(f"{c.offer_id}@{c.store_id}: {c.reason}" for c in self.candidates[:3])
        more = f" (+{len(self.candidates) - 3} more)" if len(self.candidates) > 3 else ""
        return f"PingExplanation(user {self.user_id!r}: {self.reason}; {len(self.candidates)} candidates{more}: {best})"
