"""Dispatcher: location pings in, push decisions out, and the offline outcome measured.

The O2O loop, end to end: a ping enters a store's geofence (drainage), the
engine pushes the best eligible offer under the policy; ``record`` takes the
open (conversion), the in-store redemption or visit (consumption), repeat
visits (retention), and feeds them to the scorer's history (feedback);
``report`` measures each stage, and the uplift against a held-out group.

This module builds the engine; its methods come in one group per stage
(``_pings``, ``_outcomes``, ``_explain``, ``_report``, over the parts
``_parts`` declares) and each rule has its own module: the fences
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
from collections import Counter
from collections.abc import Callable
from typing import Any

from .._fences import Geofences
from .._index import StoreIndex
from .._offers import OfferSet
from .._policy import PushPolicy
from .._scoring import OfferScorer
from .._state import DispatchState, MemoryState
from ..errors import InvalidParameterError
from ._batch import BatchReplay
from ._choose import PushChooser
from ._decision import PushDecision
from ._explain import ExplainMethods
from ._feedback import Feedback
from ._fence_state import FenceMachine
from ._inputs import check_lifetimes
from ._outcomes import OutcomeMethods
from ._pings import PingMethods
from ._report import ReportMethods
from ._stores import StoreFactsCache

__all__ = ["Dispatcher"]


class Dispatcher(PingMethods, OutcomeMethods, ExplainMethods, ReportMethods):
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
        check_lifetimes(pol, self.state)
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
