"""Dispatcher: location pings in, push decisions out, and the offline outcome measured.

The O2O loop, end to end: a ping enters a store's geofence (drainage), the
engine pushes the best eligible offer under the policy; ``record`` takes the
open (conversion), the in-store redemption or visit (consumption), repeat
visits (retention), and feeds them to the scorer's history (feedback);
``report`` measures each stage, and the uplift against a held-out group.

This module is the orchestration; each rule has its own module: the fences
(:class:`~o2o_geo.Geofences`, in the index layer), the fence-state machine
(``_fence_state``), the push choice (``_choose``) and its limits
(``_limits``), attribution (``_attribution``), feedback (``_feedback``), the
report (``_report``), and the batch replay (``_batch``).

Rules worth knowing (all tested):

* Time is event time: every ``ts`` is epoch seconds or an aware datetime
  (naive datetimes are refused).  A ping older than the last ping that
  changed the user's state is ignored as stale; a ping that changes nothing
  (no fence entered, left, dwelt in; no trigger) leaves no trace, so it is
  answered after the geometry and one read of the user's state.  Events may
  arrive in any order (attribution uses their ``ts``).
* Attribution: a redeem, visit, open or click is attributed to the push it
  names (``push_id``), else to the user's latest push of the same offer (or,
  without an offer, of the store's merchant) at most
  ``policy.attribution_window_s`` before it; holdout decisions are attributed
  the same way, which is what makes the uplift measurable.
* Idempotency: a ping or an event with an ``event_id`` is processed once;
  the same id again returns the stored outcome and changes nothing.
* Holdout decisions count against the user's caps (so both groups see the
  same policy) but not against budgets or store capacity (nothing is sent).
* Feedback: pushes and inferred visits reach the scorer's history at the
  next tick of ``feedback_interval_s`` (60 s of event time by default; see
  ``_feedback``), recorded outcomes at once.
* Atomicity: one ping or one event is one state transaction; an error
  leaves the state as it was.  A batch replay on :class:`SQLiteState`
  commits the transactions of a tick's pings together (each still all or
  nothing on its own).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._fences import FenceHit, Geofences
from .._history import Event, to_epoch_s, to_epoch_s_column
from .._index import StoreIndex
from .._offers import OfferSet
from .._policy import PushPolicy, zone
from .._scoring import OfferScorer
from .._state import DispatchState, MemoryState, Transaction, keys
from .._validate import as_latlon, as_point, check_choice, check_flag, check_id, import_optional
from ..errors import (
    InvalidParameterError,
    InvalidRecordError,
    RetentionWarning,
    ShapeMismatchError,
    UnknownOfferError,
    UnknownPushError,
    UnknownStoreError,
)
from ._attribution import record_event
from ._batch import Ahead, BatchReplay
from ._choose import PushChooser, Scored
from ._decision import PushDecision, decision_from_dict, push_record
from ._explain import CandidateVerdict, PingExplanation
from ._feedback import Feedback
from ._fence_state import FenceMachine, resolve_lapsed
from ._inputs import Ping, ping_accuracies, ping_accuracy, ping_columns
from ._limits import LocalDay
from ._profile import UNSET, UserProfile, profile_change, with_change
from ._report import METRICS, REPORT_COLUMNS, funnel_rows
from ._stores import StoreFacts, StoreFactsCache

__all__ = ["RECORD_KINDS", "Dispatcher"]

RECORD_KINDS = ("open", "click", "redeem", "visit", "dismiss", "failed")


class Dispatcher:
    """Decide which offers to push on location pings, and measure what they did offline.

    Parameters
    ----------
    index : StoreIndex
        The stores (with a ``merchant_id`` column; optional ``geofence``,
        ``opening_hours`` and ``tz`` columns, see :class:`PushPolicy`).
    offers : OfferSet
        The offers.
    scorer : OfferScorer, optional
        Ranks the offers; default: an :class:`OfferScorer` over the same index
        and offers whose history the dispatcher feeds from its own event log
        (rebuilt from ``state`` at start-up, so learning survives restarts).
    policy : PushPolicy, optional
        Triggers, caps, budgets, holdout; default ``PushPolicy()``.
    state : DispatchState, optional
        :class:`MemoryState` (default) or :class:`SQLiteState`.
    deliver : callable, optional
        Called with each non-holdout :class:`PushDecision` after it is stored
        (in a batch replay: after its tick of pings is committed); if it
        raises, a ``failed`` event is recorded for the push (the decision
        still counts against caps and budgets).
    feedback_interval_s : float, default 60
        How soon the engine's own pushes and inferred visits reach the
        scorer's history: before the first ping of the next tick of this many
        seconds (event time); 0 for before the next ping.  Ticks let a batch
        replay score a tick's pings together and still decide exactly as
        ping-by-ping calls do.  Recorded outcomes always go in at once.

    Attributes
    ----------
    fences : Geofences
        The stores' geofences, from the policy (``fence_radius_m``,
        ``exit_buffer_m``, ``fence_column``, ``nearby_radius_m``).
    stats : collections.Counter
        What the engine did and why it did not push: ``pushed``, ``holdout``,
        ``min_gap``, ``dismiss_cooldown``, ``quiet_hours``, ``user_cap`` (day or
        week cap), ``capped`` (an offer, merchant, budget or store limit),
        ``store_closed``, ``low_score`` (every candidate below ``min_score``),
        ``ignored_inaccurate``, ``stale_pings``, ``duplicate_pings``,
        ``duplicate_events``, ``delivery_failed``.  The same words as the
        reasons of :meth:`explain_ping`.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
    >>> engine = og.Dispatcher(index, offers, policy=og.PushPolicy(quiet_hours=None, holdout_fraction=0.0))
    >>> store = index.stores.position_of("lucky-09")[0]
    >>> lat, lon = float(index.stores.lat[store]), float(index.stores.lon[store])
    >>> t0 = 1767229200  # 2026-01-01 09:00 in Shanghai
    >>> engine.on_location("u1", lat + 0.01, lon, t0)        # 1.1 km away: nothing
    []
    >>> [(d.offer_id, d.store_id, d.trigger) for d in engine.on_location("u1", lat, lon, t0 + 60)]
    [('latte', 'lucky-09', 'enter')]
    >>> push = engine.state.pushes()[0]["push_id"]
    >>> engine.record(og.Event("redeem", "u1", t0 + 900, push_id=push, amount=28.0))
    'p1'
    >>> row = engine.report(by="offer", as_frame=False)[0]
    >>> row["pushed"], row["redeemed"], row["revenue"]
    (1, 1, 28.0)
    """

    def __init__(
        self,
        index: StoreIndex,
        offers: OfferSet,
        scorer: OfferScorer | None = None,
        policy: PushPolicy | None = None,
        state: DispatchState | None = None,
        *,
        deliver: Callable[[PushDecision], Any] | None = None,
        feedback_interval_s: float = 60.0,
    ) -> None:
        if not isinstance(index, StoreIndex) or not isinstance(offers, OfferSet):
            raise InvalidParameterError("Dispatcher takes a StoreIndex and an OfferSet")
        if policy is not None and not isinstance(policy, PushPolicy):
            raise InvalidParameterError(f"policy must be a PushPolicy; got {type(policy).__name__}")
        if state is not None and not isinstance(state, DispatchState):
            raise InvalidParameterError("state must be a MemoryState, SQLiteState or another DispatchState")
        if scorer is not None and not isinstance(scorer, OfferScorer):
            raise InvalidParameterError(f"scorer must be an OfferScorer or None; got {type(scorer).__name__}")
        if scorer is not None and (scorer.index is not index or scorer.offers is not offers):
            raise InvalidParameterError("the scorer must rank the same index and offers as the dispatcher")
        if deliver is not None and not callable(deliver):
            raise InvalidParameterError("deliver must be callable")
        if isinstance(feedback_interval_s, bool) or not (
            isinstance(feedback_interval_s, (int, float)) and 0.0 <= feedback_interval_s < math.inf
        ):
            raise InvalidParameterError(f"feedback_interval_s must be seconds >= 0; got {feedback_interval_s!r}")
        self.index = index
        self.offers = offers
        self.policy = pol = policy if policy is not None else PushPolicy()
        self.state = state if state is not None else MemoryState()
        _check_lifetimes(pol, self.state)
        self.deliver = deliver
        self.scorer = scorer if scorer is not None else OfferScorer(index, offers)
        self.feedback_interval_s = float(feedback_interval_s)
        self.stats: Counter[str] = Counter()
        self.fences = Geofences(
            index,
            radius_m=pol.fence_radius_m,
            buffer_m=pol.exit_buffer_m,
            column=pol.fence_column,
            nearby_m=pol.nearby_radius_m if "nearby" in pol.triggers else 0.0,
        )
        self._stores = StoreFactsCache(index, pol, offers)
        self._feedback = Feedback(self.scorer, offers, self.feedback_interval_s)
        self._chooser = PushChooser(pol, offers, self.scorer, prefetch_candidates=not self.state.cheap_reads)
        self._machine = FenceMachine(pol)
        self._batch = BatchReplay(
            fences=self.fences,
            stores=self._stores,
            machine=self._machine,
            state=self.state,
            scorer=self.scorer,
            feedback=self._feedback,
            decide=self._ping,
            deliver=self._deliver,
        )
        if scorer is None:  # learning survives restarts: the history is the stored log
            self._feedback.now(
                [(p, "push") for p in self.state.pushes() if not p["holdout"]]
                + [(e, e["kind"]) for e in self.state.events()]
            )

    def __repr__(self) -> str:
        return (
            f"Dispatcher({len(self.index):,} stores, {len(self.offers):,} offers, "
            f"{type(self.state).__name__}, {self.policy!r})"
        )

    def close(self) -> None:
        """Close the state backend's connections (the stored data stays).

        A dispatcher is also a context manager that closes on exit.

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> path = os.path.join(tempfile.mkdtemp(), "o2o.db")
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
        >>> policy = og.PushPolicy(holdout_fraction=0.0)
        >>> with og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path)) as engine:
        ...     pushed = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> again = og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path))
        >>> [p["push_id"] for p in again.state.pushes()]     # the push outlived the closed engine
        ['p1']
        >>> again.close()
        """
        self._feedback.flush()
        self.state.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ pings
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
        user_id, la, lo, t, acc = _checked_ping(user_id, lat, lon, ts, accuracy_m, tz)
        if event_id is not None:
            event_id = check_id(event_id, "event_id")
        if acc > self.policy.max_accuracy_m:
            self.stats["ignored_inaccurate"] += 1
            return []
        decisions, fresh = self._ping(Ping(user_id, la, lo, t, event_id, tz, self.fences.hits_at(la, lo)), None)
        if fresh:
            self._deliver(decisions)
        return decisions

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
        user_id, la, lo, t, acc = _checked_ping(user_id, lat, lon, ts, accuracy_m, tz)
        if acc > self.policy.max_accuracy_m:
            return PingExplanation(user_id, t, "ignored_inaccurate")
        hits = self.fences.hits_at(la, lo)
        facts = self._stores.get()
        while not _same_stores(facts, hits):
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
        while not _same_stores(facts, hits):  # stores were added or removed between the fences and the facts
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

    def flush_feedback(self) -> None:
        """Add the engine's pending pushes and inferred visits to the scorer's history now.

        They go in by themselves before the next tick's first ping is scored
        (see ``feedback_interval_s``), and on :meth:`record`, :meth:`forget_user`
        and :meth:`close`; call this to read the history in between.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.scorer.history.n_events("u1", "push")        # pending until the next tick
        0
        >>> engine.flush_feedback()
        >>> engine.scorer.history.n_events("u1", "push")
        1
        """
        self._feedback.flush()

    # ------------------------------------------------------------ events
    def record(self, event: Event) -> Any:
        """Record what a user did: ``open``, ``click``, ``redeem``, ``visit``, ``dismiss`` (or a ``failed`` delivery).

        The event is attributed (see the module rules), stored, and fed to the
        scorer's history.  A ``dismiss`` starts the user's cooldown.

        Parameters
        ----------
        event : Event
            With ``push_id`` when known; ``offer_id`` and ``store_id`` must be known ids.

        Returns
        -------
        str or None
            The push the event is attributed to.

        Raises
        ------
        InvalidRecordError
            A ``push`` event (pushes come from :meth:`on_location`), or an event
            before the push it names, or naming another offer than its push.
        UnknownOfferError, UnknownStoreError, UnknownPushError
            An id the dispatcher does not know (nothing is stored).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.record(og.Event("open", "u1", 1767258030, push_id=d.push_id))
        'p1'
        >>> engine.record(og.Event("redeem", "u1", 1767259000, offer_id="latte", amount=28.0))  # found by offer
        'p1'
        >>> engine.record(og.Event("visit", "u9", 1767259000, store_id="lucky-09")) is None    # never pushed
        True
        """
        if not isinstance(event, Event):
            raise InvalidRecordError(f"record takes an Event; got {type(event).__name__}")
        if event.kind not in RECORD_KINDS:
            raise InvalidRecordError(
                f"record takes kinds {RECORD_KINDS}; got {event.kind!r} (pushes come from on_location)"
            )
        if event.offer_id is not None and event.offer_id not in self.offers:
            raise UnknownOfferError(
                f"offer_id {event.offer_id!r} is not one of the dispatcher's offers; nothing stored"
            )
        if event.store_id is not None and event.store_id not in self.index:
            raise UnknownStoreError(f"store_id {event.store_id!r} is not in the index; nothing stored")
        stats: Counter[str] = Counter()

        def work(tx: Transaction) -> tuple[dict[str, Any] | None, Any]:
            tx.advance_clock(event.ts)
            return self._record_tx(tx, event, stats, inferred=False)

        try:
            rec, push_id = self.state.run(work)
        except UnknownPushError as exc:
            since = self.state.retained_since()
            if since == -math.inf:
                raise
            raise UnknownPushError(
                f"{exc.args[0]} (or it is older than the pushes the state keeps: every one since {since:.0f})"
            ) from None
        self.stats.update(stats)
        if rec is not None:
            self._feedback.now([(rec, rec["kind"])])
        return push_id

    def _record_tx(
        self, tx: Transaction, e: Event, stats: Counter[str], *, inferred: bool
    ) -> tuple[dict[str, Any] | None, Any]:
        facts = self._stores.get()
        return record_event(
            tx,
            e,
            offers=self.offers,
            store_merchant=lambda sid: facts.merchant[int(self.index.stores.position_of(sid)[0])],
            policy=self.policy,
            stats=stats,
            inferred=inferred,
        )

    def set_user(self, user_id: Any, *, opt_in: Any = UNSET, tier: Any = UNSET, **attributes: Any) -> UserProfile:
        """Store what the integrator knows of a user: push consent, member tier, other attributes.

        Only what is given changes; ``tier=None`` or ``name=None`` removes it.
        The profile lives in the state (every process on it sees it, in the
        transaction of each decision) and never expires; :meth:`forget_user`
        erases it.  ``opt_in=False``: the user is never pushed (the ping's gate
        ``opted_out``, counted in :attr:`stats`), in a replay too; with
        ``policy.require_opt_in`` only users set ``opt_in=True`` are pushed.
        Consent governs pushes: the fence state and the inferred visits
        (which the report measures) are kept as for any user.

        Parameters
        ----------
        user_id : str or int
        opt_in : bool, optional
        tier : str or None, optional
            The member tier (any non-empty name); a set tier makes the user a member
            (``Offer(audience="members")``) and sets the scorer's ``member``
            feature (which ``fit`` learns).  Another process on the same state
            sees the tier in its decisions at once, and its scorer from the
            tick after the user's next triggered ping there (a restarted
            dispatcher likewise; see Feedback in the README).
        **attributes : str, int, float, bool or None
            Anything else, stored with the profile (``None`` removes one).

        Returns
        -------
        UserProfile
            The profile as stored.

        Raises
        ------
        InvalidRecordError
            A bad user id.
        InvalidParameterError
            ``opt_in`` not a bool, a bad tier, an attribute of another type (nothing is stored).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> engine.set_user("u1", opt_in=False).opt_in
        False
        >>> engine.explain_ping("u1", 31.2325, 121.4801, 1767258000).reason
        'opted_out'
        >>> engine.on_location("u1", 31.2325, 121.4801, 1767258000), engine.stats["opted_out"]
        ([], 1)
        >>> engine.set_user("u1", opt_in=True, tier="gold", city="Shanghai")
        UserProfile(user_id='u1', opt_in=True, tier='gold', attributes={'city': 'Shanghai'}, last_seen_ts={})
        """
        user_id = check_id(user_id, "user_id")
        change = profile_change(opt_in, tier, attributes)

        def work(tx: Transaction) -> dict[str, Any]:
            new = with_change(tx.get_profile(user_id), change)
            tx.put_profile(user_id, new)
            return new

        stored = self.state.run(work)
        self.scorer.history.set_tier(user_id, stored.get("tier"))  # the scorer's member feature
        return UserProfile.of(user_id, stored)

    def user(self, user_id: Any) -> UserProfile:
        """The user's profile as the state holds it (defaults for a user never set or seen).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> _ = engine.record(og.Event("visit", "u1", 1767258000, store_id="lucky-09"))
        >>> engine.user("u1").last_seen_ts
        {'m-lucky': 1767258000.0}
        """
        user_id = check_id(user_id, "user_id")
        return UserProfile.of(user_id, self.state.read_profile(user_id))

    def forget_user(self, user_id: Any) -> None:
        """Erase a user everywhere: fence state, profile, caps, pushes, events, event ids and scorer history.

        Budgets and store capacity keep their totals (they are not personal
        data and must stay exact).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.record(og.Event("redeem", "u1", 1767259000, push_id=d.push_id, amount=28.0))
        'p1'
        >>> engine.forget_user("u1")
        >>> engine.state.pushes(), engine.state.events(), engine.scorer.history.n_events("u1", "redeem")
        ([], [], 0)
        """
        user_id = check_id(user_id, "user_id")
        self._feedback.flush()
        self.state.forget_user(user_id)
        self.scorer.history.forget_user(user_id)

    # ------------------------------------------------------------ measurement
    def report(
        self,
        since: Any = None,
        until: Any = None,
        by: str = "offer",
        as_frame: bool = True,
        metric: str = "redeem",
        as_of: Any = None,
    ) -> Any:
        """The funnel of pushes made in ``[since, until)``, grouped, with the uplift over the holdout.

        Parameters
        ----------
        since, until : float or datetime, optional
            Window of the push times.
        by : {"offer", "merchant", "store", "all"}
        as_frame : bool, default True
            A pandas DataFrame, or (False) a list of dicts; the type never
            depends on what is installed.
        metric : {"redeem", "redeem_or_visit"}, default "redeem"
            What converts a user in the uplift: an attributed redemption, or
            (``"redeem_or_visit"``) a redemption or any attributed visit,
            recorded or inferred.  Walk-ins make the second high in both
            groups (most users who enter a store's fence visit it anyway), so
            its uplift is a small difference of two large shares.
        as_of : float or datetime, optional
            The time up to which outcomes are complete, for the retention
            columns' windows (default: the latest push or event stored).

        Returns
        -------
        DataFrame or list of dict
            Per group, the funnel (monotone: ``pushed >= delivered >= opened
            >= redeemed``): ``pushed`` (treated decisions), ``holdout``,
            ``failed``, ``delivered``, ``opened`` (delivered pushes with an
            attributed open, click or redeem), ``redeemed``; beside it, as a
            visit needs no open, ``visited`` (pushes with an attributed visit
            the integrator recorded) and ``visited_inferred`` (with a visit the
            engine inferred from a dwell); ``revenue`` (attributed redeem
            amounts), ``open_rate``, ``redeem_rate``, ``visit_rate`` (any
            visit; per delivered push), ``users_treated``, ``users_holdout``,
            ``conversion_treated``, ``conversion_holdout`` (share of users who
            converted by ``metric``), ``uplift`` and its 95 % interval
            ``uplift_low``, ``uplift_high`` (Newcombe's hybrid score interval
            for a difference of proportions, users as the unit of
            randomisation: it keeps its width when an arm has no conversions,
            where the normal approximation collapses), and ``metric`` and
            ``interval`` (the method) to say so.  Then retention, per window
            ``w`` of 7 and 30 days (the rules: module ``_dispatch/_report.py``
            and the README): ``visitors_{w}d_treated`` and ``_holdout`` (users
            with an anchor visit: the visit an ``exit`` push followed, or the
            first visit attributed to any other push, ``w`` days before
            ``as_of`` or earlier), ``repeat_{w}d_treated`` and ``_holdout`` (the
            share of them who visited the merchant again, more than an hour
            and at most ``w`` days later), and ``retention_{w}d_uplift``,
            ``_low``, ``_high`` (the difference and its 95 % interval, as for
            conversions): the retention uplift.

        Raises
        ------
        ImportError
            ``as_frame=True`` and pandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.5))
        >>> decisions = [d for u in range(40) for d in engine.on_location(f"u{u}", 31.2325, 121.4801, 1767258000)]
        >>> for d in decisions[::2]:                    # half of the users come in and buy
        ...     _ = engine.record(og.Event("redeem", d.user_id, 1767259000, offer_id="latte", amount=28.0))
        >>> row = engine.report(by="all", as_frame=False)[0]
        >>> row["pushed"] + row["holdout"] == len(decisions), 0.0 <= row["conversion_treated"] <= 1.0
        (True, True)
        """
        if not isinstance(by, str) or by not in ("offer", "merchant", "store", "all"):
            raise InvalidParameterError(f"by must be 'offer', 'merchant', 'store' or 'all'; got {by!r}")
        check_choice(metric, "metric", tuple(METRICS))
        lo = -math.inf if since is None else to_epoch_s(since, "since")
        hi = math.inf if until is None else to_epoch_s(until, "until")
        since_kept = self.state.retained_since()
        if lo < since_kept:
            warnings.warn(
                f"the report's window starts at {lo} but the state keeps pushes and events only since "
                f"{since_kept:.0f} (retention_days={self.state.lifetimes.retention_days}): earlier ones are missing",
                RetentionWarning,
                stacklevel=2,
            )
        facts = self._stores.get()
        rows = funnel_rows(
            self.state.pushes(),
            self.state.events(),
            lo,
            hi,
            by,
            metric,
            as_of=None if as_of is None else to_epoch_s(as_of, "as_of"),
            store_merchant=lambda sid: facts.merchant[p] if (p := facts.position.get(sid)) is not None else None,
        )
        if check_flag(as_frame, "as_frame"):
            pd = import_optional("pandas", needed_by="Dispatcher.report(as_frame=True)", extra="geo")
            return pd.DataFrame(rows, columns=[by if by != "all" else "group", *REPORT_COLUMNS])
        return rows


class _DryRun(Exception):  # noqa: N818 - not an error: how explain_ping leaves its transaction undone
    """Raised out of a dry run's transaction (every backend rolls back) with what it found."""

    def __init__(self, explanation: PingExplanation) -> None:
        super().__init__()
        self.explanation = explanation


def _checked_ping(
    user_id: Any, lat: Any, lon: Any, ts: Any, accuracy_m: Any, tz: Any
) -> tuple[Any, float, float, float, float]:
    """One ping's inputs checked (typed errors), as (user_id, lat, lon, epoch seconds, accuracy metres)."""
    user_id = check_id(user_id, "user_id")
    la, lo = as_point(lat, lon, "on_location", "on_locations")
    t = to_epoch_s(ts, "ts")
    acc = ping_accuracy(accuracy_m)
    if tz is not None:
        zone(tz)
    return user_id, la, lo, t, acc


def _check_lifetimes(pol: PushPolicy, state: DispatchState) -> None:
    """Refuse a state that would forget what the policy's windows still need (retention never changes an answer)."""
    life = state.lifetimes
    windows = {
        "min_gap_s": pol.min_gap_s,
        "dismiss_cooldown_s": pol.dismiss_cooldown_s,
        "exit_after_s": pol.exit_after_s,
        "dwell_s": pol.dwell_s,
    }
    name, need = max(windows.items(), key=lambda kv: kv[1])
    if life.user_ttl_s < need:
        raise InvalidParameterError(
            f"the state forgets a user's fence state after user_ttl_s={life.user_ttl_s:g} s, but the policy's "
            f"{name}={need:g} s needs it that long; raise user_ttl_s"
        )
    if life.retention_s < pol.attribution_window_s:
        raise InvalidParameterError(
            f"the state keeps pushes retention_days={life.retention_days:g} days, shorter than the policy's "
            f"attribution_window_s={pol.attribution_window_s:g} s; outcomes could not find their push"
        )


def _same_stores(facts: StoreFacts, hits: Sequence[FenceHit]) -> bool:
    """Whether the hits' positions name the same stores in ``facts`` (true unless the index just changed)."""
    ids, n = facts.ids, len(facts.ids)
    return all(h.position < n and ids[h.position] == h.store_id for h in hits)
