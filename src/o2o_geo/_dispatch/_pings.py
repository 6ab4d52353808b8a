"""The loop's drainage: location pings in, push decisions out (one ping, or a log replayed).

Each ping is one state transaction (see the rules in ``_engine``); a ping
that changes nothing is answered from one read of the user's state.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from .._events import Event
from .._state import Transaction, keys
from .._time import to_epoch_s_column, zone
from .._validate import as_latlon, check_id
from ..errors import InvalidRecordError, ShapeMismatchError
from ._batch import Ahead
from ._choose import Scored
from ._decision import PushDecision, decision_from_dict, push_record
from ._fence_state import resolve_lapsed
from ._inputs import Ping, checked_ping, ping_accuracies, ping_columns, same_stores
from ._limits import LocalDay
from ._parts import EngineParts

__all__ = ["PingMethods"]


class PingMethods(EngineParts):
    """:meth:`on_location` and :meth:`on_locations`, and the decision of one ping behind both."""

    def on_location(
        self,
        user_id: Any,
        lat: float,
        lon: float,
        ts: Any,
        event_id: Any = None,
        accuracy_m: float | None = None,
        tz: str | None = None,
    ) -> list[PushDecision]:
        """Process one location ping; returns the pushes decided (usually none).

        Parameters
        ----------
        user_id : str or int
        lat, lon : float
            Degrees (WGS84).
        ts : float or datetime
            Epoch seconds or an aware datetime.
        event_id : str or int, optional
            The ping's unique id: a redelivered ping returns the same decisions and pushes nothing new.
        accuracy_m : float, optional
            The fix's accuracy radius; pings less accurate than ``policy.max_accuracy_m`` are ignored.
        tz : str, optional
            The user's IANA time zone; default: looked up offline from the position.

        Returns
        -------
        list of PushDecision
            Best score first; at most ``policy.max_per_ping``.

        Raises
        ------
        InvalidCoordinateError, InvalidParameterError, InvalidRecordError
            Bad position, time, accuracy, time zone or user id (nothing is changed).
        StateError
            The state store failed (nothing is changed; no push).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> engine.on_location("u1", 31.2400, 121.4500, 1767258000)          # far from every store
        []
        >>> [(d.store_id, d.trigger) for d in engine.on_location("u1", 31.2325, 121.4801, 1767258060)]
        [('lucky-09', 'enter')]
        >>> engine.on_location("u1", 31.2325, 121.4801, 1767258120)          # still inside: no second push
        []
        """
        user_id, la, lo, t, acc = checked_ping(user_id, lat, lon, ts, accuracy_m, tz)
        if event_id is not None:
            event_id = check_id(event_id, "event_id")
        if acc > self.policy.max_accuracy_m:
            self.stats["ignored_inaccurate"] += 1
            return []
        decisions, fresh = self._ping(Ping(user_id, la, lo, t, event_id, tz, self.fences.hits_at(la, lo)), None)
        if fresh:
            self._deliver(decisions)
        return decisions

    def on_locations(self, pings: Any = None, **columns: Any) -> list[PushDecision]:
        """Replay a ping log: the same decisions as calling :meth:`on_location` row by row, faster.

        Parameters
        ----------
        pings : DataFrame or mapping of arrays, optional
            Columns ``user_id``, ``lat``, ``lon``, ``ts`` (epoch seconds or a
            timezone-aware datetime64 column) and optionally ``event_id``,
            ``accuracy_m``, ``tz``; or pass the columns as keyword arrays.
            Rows are processed in the given order (sort by ``ts`` for a replay).

        Returns
        -------
        list of PushDecision
            Every decision, in ping order.

        Raises
        ------
        InvalidCoordinateError, InvalidParameterError, InvalidRecordError, ShapeMismatchError
            A bad row (named in the message); raised before any row is processed.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> log = {"user_id": ["u1", "u2", "u1"], "lat": [31.2400, 31.2325, 31.2325],
        ...        "lon": [121.4500, 121.4801, 121.4801], "ts": [1767258000, 1767258030, 1767258060]}
        >>> [(d.user_id, d.store_id) for d in engine.on_locations(log)]
        [('u2', 'lucky-09'), ('u1', 'lucky-09')]
        """
        cols = ping_columns(pings, columns)
        users = cols["user_id"]
        n = len(users)
        for name, v in cols.items():
            if len(v) != n:
                raise ShapeMismatchError(f"column {name!r} has {len(v)} rows but user_id has {n}")
        for i, u in enumerate(users):
            if u is None or isinstance(u, bool) or not isinstance(u, (str, int)):
                raise InvalidRecordError(f"user_id of row {i} must be a str or an int; got {u!r}")
        lat_a, lon_a, _ = as_latlon(cols["lat"], cols["lon"])
        ts = to_epoch_s_column(cols["ts"])
        acc = np.zeros(n) if cols.get("accuracy_m") is None else ping_accuracies(cols["accuracy_m"])
        eids = cols.get("event_id")
        tzs = cols.get("tz")
        if tzs is not None:
            for name in {t for t in tzs if t is not None}:
                zone(name)
        ok = (acc <= self.policy.max_accuracy_m).tolist()
        self.stats["ignored_inaccurate"] += n - sum(ok)
        return self._batch.replay(users, lat_a, lon_a, ts, ok, eids, tzs)

    def _ping(
        self, ping: Ping, scored: Scored | None, *, ahead: Ahead | None = None
    ) -> tuple[list[PushDecision], bool]:
        """Decide one ping (its fences found): (decisions, whether they are new: not a redelivered ping's).

        A ping that changes nothing is answered from one read of the user's
        state; any other is one transaction.  ``ahead``: a batch's look-ahead
        found that the ping changes something (so that read is skipped), and
        from which user snapshot; its fence step is used when the transaction
        reads that same snapshot.
        """
        user_id, lat, lon, t, event_id, tz, hits = ping
        self._feedback.before_ping(t)
        facts = self._stores.get()
        while not same_stores(facts, hits):  # stores were added or removed between the fences and the facts
            facts, hits, scored, ahead = self._stores.get(), self.fences.hits_at(lat, lon), None, None
        if event_id is None and ahead is None and (self.state.cheap_reads or not hits):
            snap = self.state.read_user(user_id)
            stays = snap.get("in", ()) if snap else ()
            if not hits and not stays:
                return [], True  # idle
            if snap is not None and t < snap.get("last_ts", -math.inf):
                self.stats["stale_pings"] += 1
                return [], True
            fs = self._machine.step(stays, hits, t)
            if not fs.changed and not self._machine.wanted(fs, facts, lat, lon):
                return [], True  # nothing changes
        when = LocalDay(user_id, lat, lon, t, tz)
        push_may_follow = any(h.inside or h.nearby for h in hits)
        idem_key = None if event_id is None else keys.ping_key(event_id)

        tier_found: list[Any] = []  # the tier of the profile the (last run of the) transaction read

        def work(tx: Transaction) -> tuple[list[PushDecision], list[dict[str, Any]], Counter[str], bool]:
            tier_found.clear()
            stats: Counter[str] = Counter()  # merged only when the transaction commits (it may be retried)
            tx.advance_clock(t)
            counters: Any = ()
            if push_may_follow:  # the caps, and (a networked backend) every limit a push here could charge
                counters = when if self.state.cheap_reads else self._chooser.likely_keys(facts, when, hits, t)
            tx.prefetch(
                users=[user_id],
                idems=() if idem_key is None else [idem_key],
                counters=counters,
                profiles=[user_id] if push_may_follow else (),
            )
            if idem_key is not None:
                hit = tx.idem(idem_key)
                if hit is not None:
                    stats["duplicate_pings"] += 1
                    return [decision_from_dict(d) for d in hit], [], stats, False  # already fed and delivered
            raw = tx.get_user(user_id)
            old = raw or {}
            if t < old.get("last_ts", -math.inf):
                stats["stale_pings"] += 1
                return [], [], stats, False
            fs = (
                ahead.step
                if ahead is not None and ahead.user is raw
                else self._machine.step(old.get("in", ()), hits, t)
            )
            wanted = self._machine.wanted(fs, facts, lat, lon)
            if not fs.changed and not wanted:
                if idem_key is not None:
                    tx.put_idem(idem_key, user_id, [])
                return [], [], stats, True
            u = {**old, "in": fs.stays, "last_ts": t}
            profile = None
            if wanted:  # as the user walked in: before this ping's visits
                profile = tx.get_profile(user_id)
                wanted = resolve_lapsed(wanted, profile, facts.merchant, t, self.policy)
                tier_found.append((profile or {}).get("tier"))
            stored = []
            for p in fs.visits:
                visit = Event("visit", user_id, t, store_id=facts.ids[p], merchant_id=facts.merchant[p])
                rec = self._record_tx(tx, visit, stats, inferred=True)[0]
                if rec is not None:
                    stored.append(rec)
            decisions = (
                self._chooser.choose(tx, stats, facts, u, user_id, t, when, wanted, scored, profile=profile)
                if wanted
                else []
            )
            tx.put_user(user_id, u)
            if idem_key is not None:
                tx.put_idem(idem_key, user_id, [d.to_dict() for d in decisions])
            return decisions, stored, stats, True

        decisions, stored, stats, fresh = self.state.run(work)
        self.stats.update(stats)
        if fresh:
            news = None  # a tier set elsewhere reaches the scorer a tick later, like the ping's events
            if tier_found and tier_found[0] != self.scorer.history.tier(user_id):
                news = (user_id, tier_found[0])
            self._feedback.after_ping(
                t,
                [(r, "visit") for r in stored] + [(push_record(d), "push") for d in decisions if not d.holdout],
                tier=news,
            )
        return decisions, fresh

    def _deliver(self, decisions: list[PushDecision]) -> None:
        if self.deliver is None:
            return
        for d in decisions:
            if d.holdout:
                continue
            try:
                self.deliver(d)
            except Exception:  # noqa: BLE001 - any delivery failure is reported as an event
                self.stats["delivery_failed"] += 1
                self.record(
                    Event("failed", d.user_id, d.ts, offer_id=d.offer_id, store_id=d.store_id, push_id=d.push_id)
                )
