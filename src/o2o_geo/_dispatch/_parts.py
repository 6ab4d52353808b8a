"""What the dispatcher's method groups share: its parts, declared once (the engine builds them).

:class:`~o2o_geo.Dispatcher` is its construction (``_engine``) plus one
group of methods per stage of the loop: the pings (``_pings``: drainage),
what users did and who they are (``_outcomes``: conversion, consumption,
consent), the dry run (``_explain``) and the measurement (``_report``).
Each group derives from :class:`EngineParts`, which names the attributes
the engine's ``__init__`` sets, so a group reads them typed and no group
reaches into another's module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._events import Event
    from .._fences import Geofences
    from .._index import StoreIndex
    from .._offers import OfferSet
    from .._policy import PushPolicy
    from .._scoring import OfferScorer
    from .._state import DispatchState, Transaction
    from ._batch import BatchReplay
    from ._choose import PushChooser
    from ._decision import PushDecision
    from ._feedback import Feedback
    from ._fence_state import FenceMachine
    from ._stores import StoreFactsCache

__all__ = ["EngineParts"]


class EngineParts:
    """The attributes a :class:`~o2o_geo.Dispatcher` has, and the methods one group calls on another."""

    #: The stores.
    index: StoreIndex
    #: The offers.
    offers: OfferSet
    #: The rules: triggers, caps, budgets, holdout.
    policy: PushPolicy
    #: Where fence states, counters, pushes and events live (one transaction per ping or event).
    state: DispatchState
    #: Ranks the offers; its history is fed from the engine's own log.
    scorer: OfferScorer
    #: Called with each delivered push (None: the integrator reads the decisions).
    deliver: Callable[[PushDecision], Any] | None
    #: Seconds of event time between the ticks that feed the scorer's history.
    feedback_interval_s: float
    #: What the engine did and why it did not push (the reasons of ``explain_ping``).
    stats: Counter[str]
    #: The stores' geofences, from the policy.
    fences: Geofences
    _stores: StoreFactsCache
    _feedback: Feedback
    _chooser: PushChooser
    _machine: FenceMachine
    _batch: BatchReplay

    if TYPE_CHECKING:  # defined by the groups (_outcomes), called across them

        def record(self, event: Event) -> Any: ...

        def _record_tx(
            self, tx: Transaction, e: Event, stats: Counter[str], *, inferred: bool
        ) -> tuple[dict[str, Any] | None, Any]: ...
