"""Answers to "why did this user get no push?": what a dry run of one ping found, candidate by candidate.

The reasons are the keys of :attr:`Dispatcher.stats` where the engine counts
them, so a support ticket and the engine's counters speak the same words.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .._state import Transaction
from ._choose import Scored
from ._decision import PushDecision
from ._fence_state import resolve_lapsed
from ._inputs import checked_ping, same_stores
from ._limits import LocalDay
from ._parts import EngineParts

__all__ = ["CANDIDATE_REASONS", "PING_GATES", "CandidateVerdict", "ExplainMethods", "PingExplanation"]

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


class ExplainMethods(EngineParts):
    """:meth:`explain_ping`: the dry run of one ping."""

    def explain_ping(
        self, user_id: Any, lat: float, lon: float, ts: Any, accuracy_m: float | None = None, tz: str | None = None
    ) -> PingExplanation:
        """Why this ping would (or would not) push: a dry run that changes nothing.

        The ping goes through every rule :meth:`on_location` applies (the
        geometry, the user's fence state, the gates, the scores, the limits)
        inside a transaction that is then rolled back, on every backend: no
        state, no counter, no sequence number, no statistic and no history
        changes.  Marketing uses it for what-ifs, integrators for support
        tickets.  Scores are read from the scorer's history as it stands (the
        current tick's pushes and visits, not yet folded in, are left out).

        Parameters
        ----------
        user_id, lat, lon, ts, accuracy_m, tz
            As :meth:`on_location`.

        Returns
        -------
        PingExplanation
            ``gate``: what stopped the ping as a whole (``no_fence``,
            ``no_trigger``, ``min_gap``, ``quiet_hours``, ...; None when its
            candidates were tried); ``candidates``: each offer at each triggered
            store, best first, with its ``reason`` (``pushed``, ``holdout``,
            ``low_score``, ``store_closed``, ``capped`` with the ``limit``, ...);
            ``decisions``: what ``on_location`` would decide.  The reasons are
            listed in ``o2o_geo.PING_GATES`` and ``o2o_geo.CANDIDATE_REASONS``;
            where the engine counts them, they are the keys of :attr:`stats`.

        Raises
        ------
        InvalidCoordinateError, InvalidParameterError, InvalidRecordError
            As :meth:`on_location`.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0, max_per_day=1))
        >>> engine.explain_ping("u1", 31.2400, 121.4500, 1767258000).gate
        'no_fence'
        >>> why = engine.explain_ping("u1", 31.2325, 121.4801, 1767258000)
        >>> why.reason, [(c.offer_id, c.store_id, c.reason) for c in why.candidates]
        ('pushed', [('latte', 'lucky-09', 'pushed')])
        >>> engine.state.pushes(), engine.stats                       # a dry run: nothing changed
        ([], Counter())
        >>> _ = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.explain_ping("u1", 31.2325, 121.4801, 1767258100).gate       # still inside
        'no_trigger'
        """
        user_id, la, lo, t, acc = checked_ping(user_id, lat, lon, ts, accuracy_m, tz)
        if acc > self.policy.max_accuracy_m:
            return PingExplanation(user_id, t, "ignored_inaccurate")
        hits = self.fences.hits_at(la, lo)
        facts = self._stores.get()
        while not same_stores(facts, hits):
            facts, hits = self._stores.get(), self.fences.hits_at(la, lo)
        when = LocalDay(user_id, la, lo, t, tz)

        def work(tx: Transaction) -> None:
            old = tx.get_user(user_id) or {}
            if not hits and not old.get("in"):
                raise _DryRun(PingExplanation(user_id, t, "no_fence"))
            if t < old.get("last_ts", -math.inf):
                raise _DryRun(PingExplanation(user_id, t, "stale_pings"))
            fs = self._machine.step(old.get("in", ()), hits, t)
            wanted = self._machine.wanted(fs, facts, la, lo)
            profile = tx.get_profile(user_id) if wanted else None
            wanted = resolve_lapsed(wanted, profile, facts.merchant, t, self.policy)
            triggers = {facts.ids[p]: trig for p, (trig, _) in wanted.items()}
            visits = [facts.ids[p] for p in fs.visits]
            if not wanted:
                raise _DryRun(PingExplanation(user_id, t, "no_trigger" if hits else "no_fence", triggers, visits))
            trace: list[tuple[Scored, int, str, str | None]] = []
            u = {**old, "in": fs.stays, "last_ts": t}
            decisions = self._chooser.choose(
                tx, Counter(), facts, u, user_id, t, when, wanted, None, trace=trace, profile=profile
            )
            o_ids, o_mer = self.offers.offer_id, self.offers.merchant_id
            candidates = [
                CandidateVerdict(
                    store_id=facts.ids[sc.pos[j]],
                    offer_id=o_ids[sc.offer[j]],
                    merchant_id=o_mer[sc.offer[j]],
                    trigger=wanted[sc.pos[j]][0],
                    distance_m=sc.dist[j],
                    score=sc.score[j],
                    reason=reason,
                    limit=limit,
                )
                for sc, j, reason, limit in trace
            ]
            gates = {c.reason for c in candidates} & {"min_gap", "dismiss_cooldown", "quiet_hours"}
            gate = gates.pop() if gates else ("no_offer" if not candidates else None)
            if gate is None and candidates and all(c.reason == "user_cap" for c in candidates):
                gate = "user_cap"
            raise _DryRun(PingExplanation(user_id, t, gate, triggers, visits, candidates, decisions))

        try:
            self.state.run(work)
        except _DryRun as dry:
            return dry.explanation
        raise AssertionError("unreachable: the dry run always rolls back")  # pragma: no cover


class _DryRun(Exception):  # noqa: N818 - not an error: how explain_ping leaves its transaction undone
    """Raised out of a dry run's transaction (every backend rolls back) with what it found."""

    def __init__(self, explanation: PingExplanation) -> None:
        super().__init__()
        self.explanation = explanation
