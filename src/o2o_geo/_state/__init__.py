"""Where a Dispatcher keeps what it knows: fence state, counters, pushes, events.

Every change the dispatcher makes for one ping or one event happens inside
one :meth:`DispatchState.transaction`: all of it is stored, or (on any
error) none of it.  Backends differ only in where the data lives; one
conformance test suite runs against each.  The key grammar (counters, event
ids) lives in :mod:`._keys` (``keys``); the dispatcher asks it for keys.
Retention is the same on every backend (:mod:`._expiry`): counters live by
their windows, event ids ``idempotency_ttl_s``, fence state ``user_ttl_s``,
the ledger ``retention_days``.

Records are plain dicts.  A push: ``push_id, user_id, offer_id, store_id,
merchant_id, ts, holdout, score, distance_m, trigger``.  An event:
``event_id, user_id, kind, ts, offer_id, store_id, merchant_id, push_id,
amount, distance_m, inferred``.  Ids keep their type (str or int) in every backend.
"""

from . import _keys as keys
from ._base import EVENT_FIELDS, PUSH_FIELDS, DispatchState, Transaction
from ._expiry import ExpiryWheel
from ._memory import MemoryState
from ._redis import RedisState
from ._sqlite import SQLiteState

__all__ = [
    "EVENT_FIELDS",
    "PUSH_FIELDS",
    "DispatchState",
    "ExpiryWheel",
    "MemoryState",
    "RedisState",
    "SQLiteState",
    "Transaction",
    "keys",
]
