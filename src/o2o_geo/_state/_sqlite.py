"""SQLiteState: the dispatcher's state in a SQLite file (WAL), shared by the processes of one machine."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._validate import check_number, check_path
from ..errors import InvalidParameterError, StateError
from ._base import DispatchState, Transaction
from ._expiry import Lifetimes
from ._keys import DAY_S, ttl_of, user_prefix
from ._keys import id_from_text as _unkey
from ._keys import id_text as _key

__all__ = ["SQLiteState"]

#: How many rows of each table one pruning transaction deletes, at most; pruning runs every PRUNE_EVERY transactions.
#: Small and often: 6.4 rows per transaction per table is five times what the soak's traffic expires, and
#: each pruning transaction stays short (500 every 50th put its pause in the per-ping p99).
PRUNE_BATCH = 64
PRUNE_EVERY = 10

# ``expires``: the state clock (event time, epoch seconds) after which a row can no longer matter; NULL: never.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (uid TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS profiles (uid TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value REAL NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS idem (event_id TEXT PRIMARY KEY, uid TEXT NOT NULL, payload TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
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
# after the columns a file of an earlier release lacks are added
_INDEXES = """
CREATE INDEX IF NOT EXISTS users_expires ON users (expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS idem_expires ON idem (expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS pushes_ts ON pushes (ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""
_PRUNE = {
    table: f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE expires < ? LIMIT {PRUNE_BATCH})"
    for table in ("users", "counters", "idem")
} | {
    table: f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE ts < ? LIMIT {PRUNE_BATCH})"
    for table in ("pushes", "events")
}


class SQLiteState(DispatchState):
    """State in a SQLite file: survives restarts, shared safely by processes on one machine.

    WAL journal; every transaction is ``BEGIN IMMEDIATE`` (one writer at a
    time, readers never blocked).  Threads of one process queue for the
    write on a lock of this object, so a waiting thread starts the moment
    the writer commits rather than when SQLite's busy handler next wakes
    it (it sleeps 1, 2, 5, 10 ... ms between tries, and a thread can lose
    every race for a long time).  Measured with 16 threads writing at once:
    1.1-1.2x the transactions per second, the slowest 43-50 ms instead of
    182 ms, at a higher p99 (13-16 ms instead of 3.3 ms: the threads take
    turns now).  Other processes wait on SQLite's lock as before.

    ``synchronous="NORMAL"`` (the default) never loses a committed
    transaction when a process dies; pass ``"FULL"`` to also survive power
    loss, at some speed.

    Parameters
    ----------
    path : str or path-like
        The database file (created when missing).
    timeout_s : float, default 30
        How long to wait for another process's write lock before :class:`~o2o_geo.errors.StateError`.
    synchronous : {"NORMAL", "FULL"}, default "NORMAL"
    idempotency_ttl_s : float, default 7 days
        How long a ping's or event's id is remembered.
    user_ttl_s : float, default 30 days
        How long a user's fence state is kept after its last change.
    retention_days : float, optional
        Keep pushes and events this many days; by default they are kept.
    checkpoint_pages : int, default 4000
        Move the write-ahead log into the file when it holds this many pages (see the notes).

    Notes
    -----
    Lifetimes count on the state's clock: the latest event time any process
    reported (:meth:`Transaction.advance_clock`, kept in the file).  Every
    :data:`PRUNE_EVERY`-th transaction of a process also deletes up to
    :data:`PRUNE_BATCH` expired rows of each table, through indexes on the
    expiry and on the records' time, so deleting costs each transaction
    little and none of them much.  Deleted rows leave free pages that the
    file reuses; :meth:`vacuum` returns them to the disk.

    The write-ahead log is moved into the file by SQLite's own checkpoint,
    in the commit that grows the log past ``checkpoint_pages`` pages; that
    commit pays for copying every page the log holds.  A dispatcher's
    transaction writes about ten pages, so SQLite's default of 1,000 puts a
    checkpoint in about one commit in a hundred: exactly at the per-ping
    p99, which then jumped between about 2 and 6 ms with small changes in
    the pages per commit (retention's deletions add a quarter).  The
    default here, 4,000 pages (16 MiB of log), puts it in about one commit
    in four hundred, measured on a synthetic per-ping load: p99 0.5-0.7 ms
    instead of about 6 ms and a mean about 10 % lower, at the price of a
    slower checkpoint commit (p99.9 about 20 ms instead of 11, the slowest
    about 34 ms instead of 14-19).  Pass 1,000 for SQLite's shorter
    pauses.  A background thread checkpointing on a connection of its own
    was measured and dropped: under continuous writes its passive
    checkpoints never let the log restart, so the log grew to its backstop
    size (40 MiB) and the slowest commits got slower (31-57 ms, against
    5-14 ms).

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

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = 30.0,
        synchronous: str = "NORMAL",
        idempotency_ttl_s: float = 7 * DAY_S,
        user_ttl_s: float = 30 * DAY_S,
        retention_days: float | None = None,
        checkpoint_pages: int = 4000,
    ) -> None:
        if not isinstance(synchronous, str) or synchronous not in ("NORMAL", "FULL"):
            raise InvalidParameterError(f"synchronous must be 'NORMAL' or 'FULL'; got {synchronous!r}")
        check_number(timeout_s, "timeout_s", low=0.0, high=1e9)
        self.checkpoint_pages = check_number(checkpoint_pages, "checkpoint_pages", low=1, high=10**7, integer=True)
        self.lifetimes = Lifetimes.of(idempotency_ttl_s, user_ttl_s, retention_days)
        self._clock = -math.inf  # the latest clock this process saw (the file's may be later)
        self._n_tx = 0
        self.path = check_path(path)
        self.timeout_s = float(timeout_s)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # threads of this process take turns on a Python lock before BEGIN IMMEDIATE (see the class notes)
        self._write_lock = threading.RLock()
        try:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            for table in ("users", "counters", "idem"):  # a file written before rows expired
                if "expires" not in {r[1] for r in c.execute(f"PRAGMA table_info({table})")}:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN expires REAL")
            for stmt in _INDEXES.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
            self._clock = -math.inf if row is None else float(row[0])
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
            c.execute(f"PRAGMA wal_autocheckpoint={self.checkpoint_pages}")
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; a ``ROLLBACK`` on any error (in a :meth:`group`: a savepoint)."""
        c = self._conn()
        if getattr(self._local, "group", False):
            c.execute("SAVEPOINT ping")
            with self._applied(c, "RELEASE ping", ("ROLLBACK TO ping", "RELEASE ping")) as tx:
                yield tx
            return
        with self._write_lock:
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
            with self._applied(c, "COMMIT", ("ROLLBACK",)) as tx:
                yield tx

    @contextmanager
    def _applied(self, c: sqlite3.Connection, done: str, undo: tuple[str, ...]) -> Iterator[Transaction]:
        """The body of a begun transaction (or savepoint): ``done`` after it, ``undo`` on any error."""
        try:
            tx = _SQLiteTx(c, self)
            yield tx
            tx._finish()
            c.execute(done)
            self._clock = max(self._clock, tx.clock)
        except sqlite3.Error as exc:
            for sql in undo:
                c.execute(sql)
            raise StateError(f"state database {self.path!r} failed; nothing was changed: {exc}") from exc
        except BaseException:
            for sql in undo:
                c.execute(sql)
            raise

    @contextmanager
    def group(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` around the group; each transaction in it is a savepoint.

        A failed transaction rolls back to its savepoint alone; the group
        commits what succeeded, also when it ends with an error.  Groups do
        not nest (an inner one is part of the outer).
        """
        if getattr(self._local, "group", False):
            yield
            return
        c = self._conn()
        with self._write_lock:
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
            self._local.group = True
            try:
                yield
            finally:
                self._local.group = False
                try:
                    c.execute("COMMIT")
                except sqlite3.Error as exc:
                    c.execute("ROLLBACK")
                    raise StateError(f"state database {self.path!r} failed to commit a group: {exc}") from exc

    def retained_since(self) -> float:
        """The time from which the ledger holds every push and event (kept in the file)."""
        try:
            row = self._conn().execute("SELECT value FROM meta WHERE key = 'horizon'").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
        return -math.inf if row is None else float(row[0])

    def sizes(self) -> dict[str, int]:
        """How many users (fence states), profiles, counters, event ids, pushes and events the file holds.

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> og.SQLiteState(os.path.join(tempfile.mkdtemp(), "s.db")).sizes()
        {'users': 0, 'profiles': 0, 'counters': 0, 'idempotency': 0, 'pushes': 0, 'events': 0}
        """
        c = self._conn()
        return {
            name: int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for name, table in (("users", "users"), ("profiles", "profiles"), ("counters", "counters"),
                                ("idempotency", "idem"), ("pushes", "pushes"), ("events", "events"))
        }  # fmt: skip

    def vacuum(self) -> None:
        """Give the file's free pages back to the disk (``VACUUM``; it takes the write lock while it runs).

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> state = og.SQLiteState(os.path.join(tempfile.mkdtemp(), "s.db"))
        >>> state.vacuum()
        """
        c = self._conn()
        try:
            c.execute("VACUUM")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StateError(f"cannot vacuum the state database {self.path!r}: {exc}") from exc

    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state as last committed."""
        try:
            row = self._conn().execute("SELECT data FROM users WHERE uid = ?", (_key(user_id),)).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path!r} is unavailable: {exc}") from exc
        return None if row is None else json.loads(row[0])

    def read_profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's profile as last committed."""
        try:
            row = self._conn().execute("SELECT data FROM profiles WHERE uid = ?", (_key(user_id),)).fetchone()
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
        """Erase the user's state, profile, pushes, events and event ids."""
        k = _key(user_id)
        with self.transaction() as tx:
            c = tx.c  # type: ignore[attr-defined]
            c.execute("DELETE FROM users WHERE uid = ?", (k,))
            c.execute("DELETE FROM profiles WHERE uid = ?", (k,))
            prefix = user_prefix(user_id)  # every per-user counter: [prefix, prefix with its last '|' bumped to '}')
            c.execute("DELETE FROM counters WHERE key >= ? AND key < ?", (prefix, prefix[:-1] + "}"))
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
    """Statements on the transaction's connection; counters read once (the write lock is held: nobody else writes)."""

    def __init__(self, c: sqlite3.Connection, state: SQLiteState) -> None:
        self.c = c
        self.s = state
        self.counters: dict[str, float] = {}
        self.clock = state._clock

    def advance_clock(self, ts_s: float) -> None:
        if ts_s > self.clock:
            self.clock = float(ts_s)

    def _expires(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None or self.clock == -math.inf else self.clock + ttl_s

    def _finish(self) -> None:
        """Before the commit: every PRUNE_EVERY-th transaction, share the clock and delete expired rows."""
        s = self.s
        s._n_tx += 1
        clock = max(s._clock, self.clock)
        if s._n_tx % PRUNE_EVERY or clock == -math.inf:
            return
        c = self.c
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('clock', ?) ON CONFLICT(key) DO UPDATE SET value = max(value, ?)",
            (clock, clock),
        )
        clock = self.clock = float(c.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()[0])
        for table in ("users", "counters", "idem"):
            c.execute(_PRUNE[table], (clock,))
        horizon = clock - s.lifetimes.retention_s
        if horizon == -math.inf:
            return
        dropped = 0
        for table in ("pushes", "events"):
            dropped += c.execute(_PRUNE[table], (horizon,)).rowcount
        if dropped:
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('horizon', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = max(value, ?)",
                (horizon, horizon),
            )

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        row = self.c.execute("SELECT data FROM users WHERE uid = ?", (_key(user_id),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO users (uid, data, expires) VALUES (?, ?, ?)",
            (_key(user_id), json.dumps(data), self._expires(self.s.lifetimes.user_ttl_s)),
        )

    def get_profile(self, user_id: Any) -> dict[str, Any] | None:
        row = self.c.execute("SELECT data FROM profiles WHERE uid = ?", (_key(user_id),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_profile(self, user_id: Any, data: dict[str, Any]) -> None:
        self.c.execute("INSERT OR REPLACE INTO profiles (uid, data) VALUES (?, ?)", (_key(user_id), json.dumps(data)))

    def counter(self, key: str) -> float:
        v = self.counters.get(key)
        if v is None:
            row = self.c.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            v = self.counters[key] = 0.0 if row is None else float(row[0])
        return v

    def add_counter(self, key: str, delta: float, ttl_s: float | None = None) -> None:
        expires = self._expires(ttl_of(key) if ttl_s is None else ttl_s)
        self.c.execute(
            "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value, expires = excluded.expires",
            (key, float(delta), expires),
        )
        if key in self.counters:
            self.counters[key] += float(delta)

    def idem(self, key: str) -> Any:
        row = self.c.execute("SELECT payload FROM idem WHERE event_id = ?", (_key(key),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_idem(self, key: str, user_id: Any, payload: Any) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO idem (event_id, uid, payload, expires) VALUES (?, ?, ?, ?)",
            (_key(key), _key(user_id), json.dumps(payload), self._expires(self.s.lifetimes.idempotency_ttl_s)),
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
