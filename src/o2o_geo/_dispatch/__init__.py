"""The dispatch engine: location pings in, push decisions out, the offline outcome measured.

- ``_engine``: :class:`Dispatcher`, built from its parts (``_parts`` declares
  them) and one group of methods per stage of the loop:
  ``_pings`` (``on_location``, ``on_locations``: drainage),
  ``_outcomes`` (``record``, ``set_user``: conversion, consumption, consent),
  ``_explain`` (``explain_ping``'s dry run, and :class:`PingExplanation`),
  ``_report`` (``report``: the funnel and the uplift over the holdout);
- ``_batch``: ``on_locations``' replay, the work grouped per chunk and tick;
- ``_fence_state``: the pure fence-state machine (enter, dwell, exit);
- ``_choose``: which offers a ping pushes (gates, ranking, limits);
- ``_limits``: caps, budgets and store capacity, and the user's local day;
- ``_attribution``: which push an outcome belongs to;
- ``_feedback``: the engine's events into the scorer's history, a tick at a time;
- ``_stores``: each store's merchant, zone and opening hours, per index version;
- ``_decision``: :class:`PushDecision`;
- ``_inputs``: checks of what comes in.

The geofences are the index layer's (:class:`~o2o_geo.Geofences`); the keys
of the state are the state layer's (``o2o_geo._state.keys``).
"""

from ._decision import PushDecision
from ._engine import Dispatcher
from ._explain import CANDIDATE_REASONS, PING_GATES, CandidateVerdict, PingExplanation
from ._outcomes import RECORD_KINDS
from ._profile import UserProfile
from ._report import REPORT_COLUMNS

__all__ = [
    "CANDIDATE_REASONS",
    "PING_GATES",
    "RECORD_KINDS",
    "REPORT_COLUMNS",
    "CandidateVerdict",
    "Dispatcher",
    "PingExplanation",
    "PushDecision",
    "UserProfile",
]
