"""MemoryState: the dispatcher's state in the process (the default)."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._base import DispatchState, Transaction, latest_matching
from ._expiry import ExpiryWheel, Lifetimes
from ._keys import DAY_S, ttl_of, user_prefix

__all__ = ["MemoryState"]


#: How many expired keys (of each kind) or ledger records one transaction deletes, at most.
PRUNE_BATCH = 256


class MemoryState(DispatchState):
    """In-process state (the default): fast, thread-safe, gone when the process ends.

    Parameters
    ----------
    idempotency_ttl_s : float, default 7 days
        How long a ping's or event's id is remembered.
    user_ttl_s : float, default 30 days
        How long a user's fence state is kept after its last change.
    retention_days : float, optional
        Keep pushes and events this many days; by default they are kept.

    Notes
    -----
    Lifetimes count on the state's clock, the latest event time a
    transaction reported (:meth:`Transaction.advance_clock`).  Expired keys
    are deleted a few at a time (at most :data:`PRUNE_BATCH` of each kind per
    transaction), so no transaction pauses for a mass expiry.

    Examples
    --------
    >>> import o2o_geo as og
    >>> state = og.MemoryState()
    >>> with state.transaction() as tx:
    ...     tx.add_counter("pushes", 1)
    >>> with state.transaction() as tx:
    ...     tx.counter("pushes")
    1.0
    """

    def __init__(
        self,
        *,
        idempotency_ttl_s: float = 7 * DAY_S,
        user_ttl_s: float = 30 * DAY_S,
        retention_days: float | None = None,
    ) -> None:
        self.lifetimes = Lifetimes.of(idempotency_ttl_s, user_ttl_s, retention_days)
        self._lock = threading.RLock()
        self._users: dict[Any, dict[str, Any]] = {}
        self._profiles: dict[Any, dict[str, Any]] = {}
        self._counters: dict[str, float] = {}
        self._idem: dict[Any, tuple[Any, Any]] = {}
        self._pushes: deque[dict[str, Any]] = deque()
        self._push_by_id: dict[Any, dict[str, Any]] = {}
        self._user_pushes: dict[Any, list[dict[str, Any]]] = {}
        self._events: deque[dict[str, Any]] = deque()
        self._clock = -math.inf
        self._horizon = -math.inf  # the ledger holds every record from here on
        self._user_wheel = ExpiryWheel()
        self._counter_wheel = ExpiryWheel()
        self._idem_wheel = ExpiryWheel()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the state's lock; apply the buffered writes only when the block succeeds."""
        with self._lock:
            tx = _MemoryTx(self)
            yield tx
            tx._apply()

    @contextmanager
    def group(self) -> Iterator[None]:
        """Hold the lock for the whole group (each transaction still applies only when it succeeds)."""
        with self._lock:
            yield

    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state (a reference; do not mutate)."""
        return self._users.get(user_id)

    def read_profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's profile (a reference; do not mutate)."""
        return self._profiles.get(user_id)

    def retained_since(self) -> float:
        """The time from which the ledger holds every push and event."""
        return self._horizon

    def sizes(self) -> dict[str, int]:
        """How many users (fence states), profiles, counters, event ids, pushes and events the state holds.

        Examples
        --------
        >>> import o2o_geo as og
        >>> og.MemoryState().sizes()
        {'users': 0, 'profiles': 0, 'counters': 0, 'idempotency': 0, 'pushes': 0, 'events': 0}
        """
        with self._lock:
            return {
                "users": len(self._users),
                "profiles": len(self._profiles),
                "counters": len(self._counters),
                "idempotency": len(self._idem),
                "pushes": len(self._pushes),
                "events": len(self._events),
            }

    def _prune(self) -> None:
        """Delete a few expired keys and ledger records (the lock is held)."""
        clock = self._clock
        stores: tuple[tuple[ExpiryWheel, dict[Any, Any]], ...] = (
            (self._user_wheel, self._users),
            (self._counter_wheel, self._counters),
            (self._idem_wheel, self._idem),
        )
        for wheel, store in stores:
            for k in wheel.due(clock, PRUNE_BATCH):
                store.pop(k, None)
        horizon = clock - self.lifetimes.retention_s
        if horizon == -math.inf:
            return
        pushes, n = self._pushes, 0
        while pushes and pushes[0]["ts"] < horizon and n < PRUNE_BATCH:
            p = pushes.popleft()
            n += 1
            self._push_by_id.pop(p["push_id"], None)
            mine = self._user_pushes.get(p["user_id"])
            if mine is not None:
                mine[:] = [q for q in mine if q is not p]
                if not mine:
                    del self._user_pushes[p["user_id"]]
        events = self._events
        while events and events[0]["ts"] < horizon and n < 2 * PRUNE_BATCH:
            events.popleft()
            n += 1
        if n:  # every record dropped was older than the horizon
            self._horizon = max(self._horizon, horizon)

    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in the order stored."""
        with self._lock:
            return [dict(p) for p in self._pushes]

    def events(self) -> list[dict[str, Any]]:
        """Every event record, in the order stored."""
        with self._lock:
            return [dict(e) for e in self._events]

    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, profile, pushes, events and event ids."""
        with self._lock:
            self._users.pop(user_id, None)
            self._profiles.pop(user_id, None)
            prefix = user_prefix(user_id)
            self._user_wheel.forget(user_id)
            for k in [k for k in self._counters if k.startswith(prefix)]:
                del self._counters[k]
                self._counter_wheel.forget(k)
            for k in [k for k, (u, _) in self._idem.items() if u == user_id]:
                del self._idem[k]
                self._idem_wheel.forget(k)
            gone = {id(p) for p in self._user_pushes.pop(user_id, [])}
            self._pushes = deque(p for p in self._pushes if id(p) not in gone)
            self._push_by_id = {k: p for k, p in self._push_by_id.items() if id(p) not in gone}
            self._events = deque(e for e in self._events if e["user_id"] != user_id)


class _MemoryTx(Transaction):
    def __init__(self, state: MemoryState) -> None:
        self.s = state
        self.users: dict[Any, dict[str, Any]] = {}
        self.profiles: dict[Any, dict[str, Any]] = {}
        self.counters: dict[str, float] = {}
        self.idems: dict[Any, tuple[Any, Any]] = {}
        self.new_pushes: list[dict[str, Any]] = []
        self.new_push_by_id: dict[Any, dict[str, Any]] = {}
        self.new_events: list[dict[str, Any]] = []
        self.ttls: dict[str, float] = {}
        self.clock = state._clock

    def advance_clock(self, ts_s: float) -> None:
        if ts_s > self.clock:
            self.clock = float(ts_s)

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.users:
            return self.users[user_id]
        return self.s._users.get(user_id)

    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.users[user_id] = data

    def get_profile(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.profiles:
            return self.profiles[user_id]
        return self.s._profiles.get(user_id)

    def put_profile(self, user_id: Any, data: dict[str, Any]) -> None:
        self.profiles[user_id] = data

    def counter(self, key: str) -> float:
        if key in self.counters:
            return self.counters[key]
        return self.s._counters.get(key, 0.0)

    def add_counter(self, key: str, delta: float, ttl_s: float | None = None) -> None:
        self.counters[key] = self.counter(key) + float(delta)
        if ttl_s is not None:
            self.ttls[key] = ttl_s

    def idem(self, key: str) -> Any:
        hit = self.idems.get(key) or self.s._idem.get(key)
        return None if hit is None else hit[1]

    def put_idem(self, key: str, user_id: Any, payload: Any) -> None:
        self.idems[key] = (user_id, payload)

    def add_push(self, rec: dict[str, Any]) -> None:
        self.new_pushes.append(rec)
        self.new_push_by_id[rec["push_id"]] = rec

    def push(self, push_id: Any) -> dict[str, Any] | None:
        return self.new_push_by_id.get(push_id) or self.s._push_by_id.get(push_id)

    def latest_push(
        self, user_id: Any, lo_ts: float, hi_ts: float, offer_id: Any = None, merchant_id: Any = None
    ) -> dict[str, Any] | None:
        mine = [*self.s._user_pushes.get(user_id, ()), *(p for p in self.new_pushes if p["user_id"] == user_id)]
        return latest_matching(mine, lo_ts, hi_ts, offer_id, merchant_id)

    def add_event(self, rec: dict[str, Any]) -> None:
        self.new_events.append(rec)

    def _apply(self) -> None:
        s = self.s
        s._users.update(self.users)
        if self.profiles:
            s._profiles.update(self.profiles)
        s._counters.update(self.counters)
        s._idem.update(self.idems)
        clock = s._clock = self.clock
        if clock != -math.inf:  # lifetimes start once the clock runs (keys written before it are kept)
            life = s.lifetimes
            for wheel, written, ttl in (
                (s._user_wheel, self.users, life.user_ttl_s),
                (s._idem_wheel, self.idems, life.idempotency_ttl_s),
            ):
                for k in written:
                    wheel.file(k, clock + ttl)
            ttls = self.ttls
            for k in self.counters:
                life_s = ttls.get(k) if ttls else None
                if life_s is None:
                    life_s = ttl_of(k)
                if life_s is not None:
                    s._counter_wheel.file(k, clock + life_s)
        for p in self.new_pushes:
            s._pushes.append(p)
            s._push_by_id[p["push_id"]] = p
            s._user_pushes.setdefault(p["user_id"], []).append(p)
        s._events.extend(self.new_events)
        if clock != -math.inf:
            s._prune()
