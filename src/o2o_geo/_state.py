"""Where a Dispatcher keeps what it knows: fence state, counters, pushes, events.

Every change the dispatcher makes for one ping or one event happens inside
one :meth:`DispatchState.transaction`: all of it is stored, or (on any
error) none of it.  Backends differ only in where the data lives; one
conformance test suite runs against each.

Records are plain dicts.  A push: ``push_id, user_id, offer_id, store_id,
merchant_id, ts, holdout, score, distance_m, trigger``.  An event:
``event_id, user_id, kind, ts, offer_id, store_id, merchant_id, push_id,
amount, distance_m, inferred``.  Ids keep their type (str or int) in every backend.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import InvalidParameterError, StateError

__all__ = ["DispatchState", "MemoryState", "SQLiteState"]

T = TypeVar("T")

PUSH_FIELDS = ("push_id", "user_id", "offer_id", "store_id", "merchant_id", "ts", "holdout", "score", "distance_m",
               "trigger")  # fmt: skip
EVENT_FIELDS = ("event_id", "user_id", "kind", "ts", "offer_id", "store_id", "merchant_id", "push_id", "amount",
                "distance_m", "inferred")  # fmt: skip


class Transaction(ABC):
    """The operations of one atomic unit of work (see :meth:`DispatchState.transaction`)."""

    @abstractmethod
    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's dispatcher state (treat as read-only; write a new dict with :meth:`put_user`)."""

    @abstractmethod
    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        """Replace the user's dispatcher state."""

    @abstractmethod
    def counter(self, key: str) -> float:
        """A counter's value (0 when never incremented)."""

    @abstractmethod
    def add_counter(self, key: str, delta: float) -> None:
        """Add to a counter."""

    def prefetch(self, *, users: Any = (), counters: Any = (), idems: Any = (), pushes: Any = ()) -> None:  # noqa: B027
        """Hint: these users, counters, event ids and push ids will be read; optional.

        A networked backend reads them all in one round trip; the others
        ignore the hint and never iterate its arguments (so a lazy iterable
        costs them nothing).
        """

    def next_seq(self) -> int:
        """The next number of a sequence shared by every process on the state (1, 2, ...)."""
        self.add_counter("seq", 1.0)
        return int(self.counter("seq"))

    @abstractmethod
    def idem(self, event_id: Any) -> Any:
        """The stored outcome of an event id, or ``None``."""

    @abstractmethod
    def put_idem(self, event_id: Any, user_id: Any, payload: Any) -> None:
        """Store the outcome (JSON-able) of an event id."""

    @abstractmethod
    def add_push(self, rec: dict[str, Any]) -> None:
        """Store a push record."""

    @abstractmethod
    def push(self, push_id: Any) -> dict[str, Any] | None:
        """A push record by id."""

    @abstractmethod
    def latest_push(
        self, user_id: Any, lo_ts: float, hi_ts: float, offer_id: Any = None, merchant_id: Any = None
    ) -> dict[str, Any] | None:
        """The user's latest push with ``lo_ts <= ts <= hi_ts`` of this offer (or, without one, merchant)."""

    @abstractmethod
    def add_event(self, rec: dict[str, Any]) -> None:
        """Store an event record."""


class DispatchState(ABC):
    """Base class of the dispatcher's state backends.

    A backend implements :meth:`transaction` (yielding a :class:`Transaction`:
    user state, counters, event ids, pushes, events; all-or-nothing),
    :meth:`read_user`, :meth:`pushes`, :meth:`events` and :meth:`forget_user`,
    and passes the dispatcher's conformance tests (``tests/test_dispatch.py``
    runs every test on each backend).

    Examples
    --------
    >>> import o2o_geo as og
    >>> isinstance(og.MemoryState(), og.DispatchState)
    True
    """

    @abstractmethod
    def transaction(self) -> Any:
        """Context manager yielding a :class:`Transaction`; commits on exit, discards everything on an error.

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> try:
        ...     with state.transaction() as tx:
        ...         tx.add_counter("budget", 5)
        ...         raise RuntimeError("the push could not be sent")
        ... except RuntimeError:
        ...     pass
        >>> with state.transaction() as tx:    # nothing of the failed unit was stored
        ...     tx.counter("budget")
        0.0
        """

    def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(tx)`` in one transaction and return its result.

        ``work`` may be called more than once (a backend with optimistic
        concurrency retries it when another client changed what it read), so
        it must act only through ``tx`` and return what it decided.

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> def take_one(tx):                     # check and increment, atomically
        ...     if tx.counter("stock") >= 2:
        ...         return False
        ...     tx.add_counter("stock", 1)
        ...     return True
        >>> [state.run(take_one) for _ in range(3)]
        [True, True, False]
        """
        with self.transaction() as tx:
            return work(tx)

    @abstractmethod
    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state outside a transaction (a snapshot; used to skip work for idle pings).

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0), state=state)
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> state.read_user("u1") is not None, state.read_user("nobody")
        (True, None)
        """

    @abstractmethod
    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in the order stored.

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0), state=state)
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> [(p["push_id"], p["user_id"], p["store_id"]) for p in state.pushes()]
        [('p1', 'u1', 'lucky-09')]
        """

    @abstractmethod
    def events(self) -> list[dict[str, Any]]:
        """Every event record, in the order stored.

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0), state=state)
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.record(og.Event("redeem", "u1", 1767259000, push_id=d.push_id, amount=28.0))  # attributed to
        'p1'
        >>> [(e["kind"], e["push_id"], e["amount"]) for e in state.events()]
        [('redeem', 'p1', 28.0)]
        """

    @abstractmethod
    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, pushes, events and event ids (budget and store counters keep their totals).

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0), state=state)
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> state.forget_user("u1")
        >>> state.read_user("u1"), state.pushes()
        (None, [])
        """

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections (the data stays).

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> path = os.path.join(tempfile.mkdtemp(), "o2o.db")
        >>> state = og.SQLiteState(path)
        >>> with state.transaction() as tx:
        ...     tx.add_counter("pushes", 1)
        >>> state.close()
        >>> with og.SQLiteState(path).transaction() as tx:    # reopened: the data stayed
        ...     tx.counter("pushes")
        1.0
        """


# --------------------------------------------------------------------------- memory
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
            prefix = f"u|{_key(user_id)}|"
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
        best = None
        for p in [*self.s._user_pushes.get(user_id, ()), *(p for p in self.new_pushes if p["user_id"] == user_id)]:
            if not lo_ts <= p["ts"] <= hi_ts:
                continue
            if (offer_id is not None and p["offer_id"] != offer_id) or (
                offer_id is None and p["merchant_id"] != merchant_id
            ):
                continue
            if best is None or p["ts"] >= best["ts"]:
                best = p
        return best

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


# --------------------------------------------------------------------------- sqlite
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (uid TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS idem (event_id TEXT PRIMARY KEY, uid TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pushes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, push_id TEXT UNIQUE NOT NULL, uid TEXT NOT NULL, offer_id TEXT,
    store_id TEXT, merchant_id TEXT, ts REAL NOT NULL, holdout INTEGER NOT NULL, score REAL, distance_m REAL,
    trigger TEXT);
CREATE INDEX IF NOT EXISTS pushes_uid_ts ON pushes (uid, ts);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, uid TEXT NOT NULL, kind TEXT NOT NULL,
    ts REAL NOT NULL, offer_id TEXT, store_id TEXT, merchant_id TEXT, push_id TEXT, amount REAL,
    distance_m REAL, inferred INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_uid ON events (uid);
"""


def _key(v: Any) -> str:
    """An id as JSON text that keeps its type: 7 -> '7', '7' -> '"7"' (a fast path for plain ids)."""
    if type(v) is int:
        return str(v)
    if type(v) is str and '"' not in v and "\\" not in v and v.isprintable():
        return '"' + v + '"'
    return json.dumps(v)


def _unkey(s: str | None) -> Any:
    return None if s is None else json.loads(s)


class SQLiteState(DispatchState):
    """State in a SQLite file: survives restarts, shared safely by processes on one machine.

    WAL journal; every transaction is ``BEGIN IMMEDIATE`` (one writer at a
    time, readers never blocked).  ``synchronous="NORMAL"`` (the default)
    never loses a committed transaction when a process dies; pass ``"FULL"``
    to also survive power loss, at some speed.

    Parameters
    ----------
    path : str or path-like
        The database file (created when missing).
    timeout_s : float, default 30
        How long to wait for another process's write lock before :class:`~o2o_geo.errors.StateError`.
    synchronous : {"NORMAL", "FULL"}, default "NORMAL"

    Examples
    --------
    >>> import os, tempfile, o2o_geo as og
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> state = og.SQLiteState(path)
    >>> with state.transaction() as tx:
    ...     tx.add_counter("pushes", 2)
    >>> state.close()
    >>> with og.SQLiteState(path).transaction() as tx:
    ...     tx.counter("pushes")
    2.0
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 30.0, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidParameterError(f"synchronous must be 'NORMAL' or 'FULL'; got {synchronous!r}")
        self.path = os.fspath(path)
        self.timeout_s = float(timeout_s)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state database {self.path!r}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            # one connection per thread; check_same_thread=False only so that close() may close them all
            c = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; a ``ROLLBACK`` on any error."""
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
        try:
            yield _SQLiteTx(c)
            c.execute("COMMIT")
        except sqlite3.Error as exc:
            c.execute("ROLLBACK")
            raise StateError(f"state database {self.path!r} failed; nothing was changed: {exc}") from exc
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state as last committed."""
        try:
            row = self._conn().execute("SELECT data FROM users WHERE uid = ?", (_key(user_id),)).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
        return None if row is None else json.loads(row[0])

    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in the order stored."""
        rows = self._conn().execute(
            "SELECT push_id, uid, offer_id, store_id, merchant_id, ts, holdout, score, distance_m, trigger "
            "FROM pushes ORDER BY seq"
        )
        return [_push_row(r) for r in rows]

    def events(self) -> list[dict[str, Any]]:
        """Every event record, in the order stored."""
        rows = self._conn().execute(
            "SELECT event_id, uid, kind, ts, offer_id, store_id, merchant_id, push_id, amount, distance_m, inferred "
            "FROM events ORDER BY seq"
        )
        return [_event_row(r) for r in rows]

    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, pushes, events and event ids."""
        k = _key(user_id)
        with self.transaction() as tx:
            c = tx.c  # type: ignore[attr-defined]
            c.execute("DELETE FROM users WHERE uid = ?", (k,))
            c.execute("DELETE FROM counters WHERE key >= ? AND key < ?", (f"u|{k}|", f"u|{k}}}"))
            c.execute("DELETE FROM idem WHERE uid = ?", (k,))
            c.execute("DELETE FROM pushes WHERE uid = ?", (k,))
            c.execute("DELETE FROM events WHERE uid = ?", (k,))

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._all_lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:  # pragma: no cover - closing a broken connection
                    pass
            self._all.clear()
        self._local = threading.local()


def _push_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "push_id": _unkey(r[0]),
        "user_id": _unkey(r[1]),
        "offer_id": _unkey(r[2]),
        "store_id": _unkey(r[3]),
        "merchant_id": _unkey(r[4]),
        "ts": r[5],
        "holdout": bool(r[6]),
        "score": r[7],
        "distance_m": r[8],
        "trigger": r[9],
    }


def _event_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "event_id": _unkey(r[0]),
        "user_id": _unkey(r[1]),
        "kind": r[2],
        "ts": r[3],
        "offer_id": _unkey(r[4]),
        "store_id": _unkey(r[5]),
        "merchant_id": _unkey(r[6]),
        "push_id": _unkey(r[7]),
        "amount": r[8],
        "distance_m": r[9],
        "inferred": bool(r[10]),
    }


class _SQLiteTx(Transaction):
    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        row = self.c.execute("SELECT data FROM users WHERE uid = ?", (_key(user_id),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.c.execute("INSERT OR REPLACE INTO users (uid, data) VALUES (?, ?)", (_key(user_id), json.dumps(data)))

    def counter(self, key: str) -> float:
        row = self.c.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
        return 0.0 if row is None else float(row[0])

    def add_counter(self, key: str, delta: float) -> None:
        self.c.execute(
            "INSERT INTO counters (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
            (key, float(delta), float(delta)),
        )

    def idem(self, event_id: Any) -> Any:
        row = self.c.execute("SELECT payload FROM idem WHERE event_id = ?", (_key(event_id),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_idem(self, event_id: Any, user_id: Any, payload: Any) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO idem (event_id, uid, payload) VALUES (?, ?, ?)",
            (_key(event_id), _key(user_id), json.dumps(payload)),
        )

    def add_push(self, rec: dict[str, Any]) -> None:
        self.c.execute(
            "INSERT INTO pushes (push_id, uid, offer_id, store_id, merchant_id, ts, holdout, score, distance_m,"
            " trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _key(rec["push_id"]),
                _key(rec["user_id"]),
                _key(rec["offer_id"]),
                _key(rec["store_id"]),
                _key(rec["merchant_id"]),
                rec["ts"],
                int(rec["holdout"]),
                rec["score"],
                rec["distance_m"],
                rec["trigger"],
            ),
        )

    def push(self, push_id: Any) -> dict[str, Any] | None:
        row = self.c.execute(
            "SELECT push_id, uid, offer_id, store_id, merchant_id, ts, holdout, score, distance_m, trigger "
            "FROM pushes WHERE push_id = ?",
            (_key(push_id),),
        ).fetchone()
        return None if row is None else _push_row(row)

    def latest_push(
        self, user_id: Any, lo_ts: float, hi_ts: float, offer_id: Any = None, merchant_id: Any = None
    ) -> dict[str, Any] | None:
        col, val = ("offer_id", offer_id) if offer_id is not None else ("merchant_id", merchant_id)
        row = self.c.execute(
            "SELECT push_id, uid, offer_id, store_id, merchant_id, ts, holdout, score, distance_m, trigger "
            f"FROM pushes WHERE uid = ? AND ts >= ? AND ts <= ? AND {col} = ? ORDER BY ts DESC, seq DESC LIMIT 1",
            (_key(user_id), lo_ts, hi_ts, _key(val)),
        ).fetchone()
        return None if row is None else _push_row(row)

    def add_event(self, rec: dict[str, Any]) -> None:
        self.c.execute(
            "INSERT INTO events (event_id, uid, kind, ts, offer_id, store_id, merchant_id, push_id, amount,"
            " distance_m, inferred) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                None if rec["event_id"] is None else _key(rec["event_id"]),
                _key(rec["user_id"]),
                rec["kind"],
                rec["ts"],
                _key(rec["offer_id"]),
                _key(rec["store_id"]),
                _key(rec["merchant_id"]),
                _key(rec["push_id"]),
                rec["amount"],
                rec["distance_m"],
                int(rec["inferred"]),
            ),
        )
