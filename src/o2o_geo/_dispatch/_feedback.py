"""The loop's feedback stage: what the engine decides and learns goes into its scorer's history.

Pushes (not holdout ones) and inferred visits reach the history a *tick*
after the ping that made them: the events of the pings in one tick of
``interval_s`` seconds of event time are added before the first ping of
another tick is scored.  So every ping of a tick is scored against the same
history, whether the pings come one call at a time or as a batch (which
scores a tick's pings together), and batch and per-ping decisions stay
identical.  Recorded outcomes (:meth:`Dispatcher.record`, including the
``failed`` event of a delivery hook that raised) go in at once, after the
pending ones.  ``interval_s=0`` feeds every ping's events before
the next ping.  A member tier a decision found in the user's profile, and
the history did not know (set by another process, or before a restart),
reaches the history the same way, a tick later.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .._events import Event, checked_event
from .._offers import OfferSet
from .._scoring import OfferScorer

__all__ = ["Feedback"]


class Feedback:
    """Events waiting for the next tick, and the history they go to."""

    def __init__(self, scorer: OfferScorer, offers: OfferSet, interval_s: float) -> None:
        self.scorer = scorer
        self.offers = offers
        self.interval_s = float(interval_s)
        self._pending: list[Event] = []
        self._tiers: dict[Any, str | None] = {}  # user -> tier, for the history's member feature
        self._tick: float = math.nan
        self._lock = threading.Lock()

    def tick_of(self, t: float) -> float:
        """The tick a time falls in (the time itself when ticks are off)."""
        return t if self.interval_s <= 0.0 else math.floor(t / self.interval_s)

    def before_ping(self, t: float) -> None:
        """Add the pending events when a ping of another tick comes (before it is scored)."""
        if (self._pending or self._tiers) and self.tick_of(t) != self._tick:
            self.flush()

    def after_ping(
        self, t: float, records: Iterable[tuple[Mapping[str, Any], str]], tier: tuple[Any, str | None] | None = None
    ) -> None:
        """Queue a processed ping's records ``(record, kind)`` and ``(user, tier)`` news for the history."""
        events = [self.event_of(r, kind) for r, kind in records]
        if not events and tier is None:
            return
        with self._lock:
            if (self._pending or self._tiers) and self.tick_of(t) != self._tick:
                self._flush_locked()
            self._pending.extend(events)
            if tier is not None:
                self._tiers[tier[0]] = tier[1]
            self._tick = self.tick_of(t)
            if self.interval_s <= 0.0:
                self._flush_locked()

    def now(self, records: Iterable[tuple[Mapping[str, Any], str]]) -> None:
        """Add records at once (recorded outcomes, a restart's replay), after the pending ones."""
        events = [self.event_of(r, kind) for r, kind in records]
        with self._lock:
            self._flush_locked()
            self._add(events)

    def flush(self) -> None:
        """Add every pending event now."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        pending, self._pending = self._pending, []
        self._add(pending)
        tiers, self._tiers = self._tiers, {}
        for user_id, tier in tiers.items():
            self.scorer.history.set_tier(user_id, tier)

    def _add(self, events: list[Event]) -> None:
        for e in events:
            self.scorer.record(e)

    def event_of(self, rec: Mapping[str, Any], kind: str) -> Event:
        """A stored push or event record as a history event (category and depth from its offer)."""
        oid = rec["offer_id"]
        o = self.offers[oid] if oid is not None and oid in self.offers else None
        return checked_event(  # a committed record: its fields were checked when it was made
            kind=kind,
            user_id=rec["user_id"],
            ts=float(rec["ts"]),
            offer_id=oid,
            store_id=rec["store_id"],
            merchant_id=rec["merchant_id"],
            category=None if o is None else o.category,
            amount=rec.get("amount"),
            discount_depth=None if o is None else float(o.discount_depth),
            distance_m=rec.get("distance_m"),
        )
