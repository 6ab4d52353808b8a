"""MemoryState: the dispatcher's state in the process (the default)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._base import DispatchState, Transaction, latest_matching
from ._keys import user_prefix

__all__ = ["MemoryState"]


class MemoryState(DispatchState):
    """In-process state (the default): fast, thread-safe, gone when the process ends.

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

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[Any, dict[str, Any]] = {}
        self._counters: dict[str, float] = {}
        self._idem: dict[Any, tuple[Any, Any]] = {}
        self._pushes: list[dict[str, Any]] = []
        self._push_by_id: dict[Any, dict[str, Any]] = {}
        self._user_pushes: dict[Any, list[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []

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

    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in the order stored."""
        with self._lock:
            return [dict(p) for p in self._pushes]

    def events(self) -> list[dict[str, Any]]:
        """Every event record, in the order stored."""
        with self._lock:
            return [dict(e) for e in self._events]

    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, pushes, events and event ids."""
        with self._lock:
            self._users.pop(user_id, None)
            prefix = user_prefix(user_id)
            for k in [k for k in self._counters if k.startswith(prefix)]:
                del self._counters[k]
            for k in [k for k, (u, _) in self._idem.items() if u == user_id]:
                del self._idem[k]
            gone = {id(p) for p in self._user_pushes.pop(user_id, [])}
            self._pushes = [p for p in self._pushes if id(p) not in gone]
            self._push_by_id = {k: p for k, p in self._push_by_id.items() if id(p) not in gone}
            self._events = [e for e in self._events if e["user_id"] != user_id]


class _MemoryTx(Transaction):
    def __init__(self, state: MemoryState) -> None:
        self.s = state
        self.users: dict[Any, dict[str, Any]] = {}
        self.counters: dict[str, float] = {}
        self.idems: dict[Any, tuple[Any, Any]] = {}
        self.new_pushes: list[dict[str, Any]] = []
        self.new_push_by_id: dict[Any, dict[str, Any]] = {}
        self.new_events: list[dict[str, Any]] = []

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.users:
            return self.users[user_id]
        return self.s._users.get(user_id)

    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.users[user_id] = data

    def counter(self, key: str) -> float:
        if key in self.counters:
            return self.counters[key]
        return self.s._counters.get(key, 0.0)

    def add_counter(self, key: str, delta: float) -> None:
        self.counters[key] = self.counter(key) + float(delta)

    def idem(self, event_id: Any) -> Any:
        hit = self.idems.get(event_id) or self.s._idem.get(event_id)
        return None if hit is None else hit[1]

    def put_idem(self, event_id: Any, user_id: Any, payload: Any) -> None:
        self.idems[event_id] = (user_id, payload)

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
        s._counters.update(self.counters)
        s._idem.update(self.idems)
        for p in self.new_pushes:
            s._pushes.append(p)
            s._push_by_id[p["push_id"]] = p
            s._user_pushes.setdefault(p["user_id"], []).append(p)
        s._events.extend(self.new_events)
