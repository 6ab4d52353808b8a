"""o2o_geo: nearest stores, offer ranking and push dispatch for online-to-offline commerce.

The public surface is this module; everything else lives in private modules.

Examples
--------
>>> import o2o_geo as og
>>> index = og.StoreIndex.from_records([
...     {"store_id": "a", "lat": 31.2304, "lon": 121.4737},
...     {"store_id": "b", "lat": 31.2243, "lon": 121.4768}])
>>> index.nearest(31.2290, 121.4750, k=1).store_id.tolist()
['a']
"""

from . import errors, simulate
from ._dispatch import (
    CANDIDATE_REASONS,
    PING_GATES,
    CandidateVerdict,
    Dispatcher,
    PingExplanation,
    PushDecision,
    UserProfile,
)
from ._events import Event
from ._fences import FenceHit, FenceHits, Geofences
from ._geodesy import WGS84_A_M, WGS84_B_M, WGS84_F, geodesic_distance_m, latlon_to_ecef_m
from ._history import UserHistory
from ._index import Matches, Neighbors, Pairs, StoreIndex, StoreRadii
from ._io import FORMAT_VERSION
from ._offers import Offer, OfferSet
from ._policy import Budget, PushPolicy
from ._sample import sample_stores
from ._scoring import OfferScorer, ScoredCandidates, ScoredOffer
from ._state import DispatchState, MemoryState, RedisState, SQLiteState
from ._stores import StoreSet

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "CANDIDATE_REASONS",
    "CandidateVerdict",
    "DispatchState",
    "Dispatcher",
    "Event",
    "FORMAT_VERSION",
    "FenceHit",
    "FenceHits",
    "Geofences",
    "Matches",
    "MemoryState",
    "Neighbors",
    "Offer",
    "OfferScorer",
    "OfferSet",
    "PING_GATES",
    "Pairs",
    "PingExplanation",
    "PushDecision",
    "PushPolicy",
    "RedisState",
    "SQLiteState",
    "ScoredCandidates",
    "ScoredOffer",
    "StoreIndex",
    "StoreRadii",
    "StoreSet",
    "UserHistory",
    "UserProfile",
    "WGS84_A_M",
    "WGS84_B_M",
    "WGS84_F",
    "__version__",
    "errors",
    "geodesic_distance_m",
    "latlon_to_ecef_m",
    "sample_stores",
    "simulate",
]
