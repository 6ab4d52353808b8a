"""RedisState: the dispatcher's state on a Redis server, shared by every replica of a backend.

Concurrency is optimistic: compare-and-set, committed by one server-side
script.  A unit of work reads without locking, in batches (a prefetch is one
MGET), and every value it uses joins its read set: key -> the bytes seen, or
absent; for the attribution query, the ids a score range of the user's push
set returned.  Its writes are buffered.  The commit is one EVALSHA of a Lua
script given the read set and the writes.  The script first checks that
every key still holds exactly the bytes seen and re-runs every range query,
comparing the ids (re-running rather than a per-user version key: a
forgotten user's new pushes could bring a version back to a number seen
before); if one check fails it writes nothing and the work runs again after a
short random pause, else it applies the writes.  A script runs alone on the
server, so every check-and-increment (caps, budgets, event ids, push ids) is
atomic there and no read-modify-write is ever written blindly from the
client.  A unit that writes nothing needs no commit when all it used came
from one MGET (one atomic snapshot); otherwise the script only checks.  An
error raised by the work is raised only if what it read is still current.

Two guesses save round trips on a first attempt, and the commit checks them
like any read: :meth:`RedisState.read_user`'s value is reused by the next
unit of work on the same thread, and event ids that would be the only keys
of an MGET are assumed new (a redelivered id costs a refused commit and a
retry that reads it).  Event sequence numbers are taken by the commit script
itself (``INCR``), so events never conflict on a shared counter.

Round trips (``round_trips`` counts them, one per command, script call or
pipeline): an idle ping is one GET; a ping inside a fence that changes
nothing is one MGET; a ping that crosses a fence is one MGET (the user, the
ping id, the day and week caps, and, from the dispatcher's prefetch hint,
every offer-level limit a push at its stores could charge), then the
commit: 2, with or without a push.  A dwell's inferred visit adds one
script call (its attribution query).

The state expects one Redis primary (replicas for failover are fine).  Redis
Cluster is out of scope: a cluster runs a script only on keys of one hash
slot, and the scripts touch keys of many users and offers (and find push and
event records by id on the server).  A namespace with a hash tag, like
``"{o2o}"``, would put every key in one slot, but then on one node, which
gains nothing over one primary.

Keys (``ns`` the namespace, ids as JSON text):

==============================  ============================================  ==================
``ns:user:<uid>``               the user's fence state (JSON)                 ``user_ttl_s``
``ns:profile:<uid>``            the user's profile (JSON: consent, tier,      never (``forget_user``)
                                attributes, history with each merchant)
``ns:ctr:<counter>``            a cap, budget or capacity counter             by the counter's window
``ns:idem:<id>``                the stored outcome of a ping or event id      ``idempotency_ttl_s``
``ns:push:<push_id>``           a push record (JSON)                          ``retention_days``
``ns:pushes``                   list of push ids, in commit order             trimmed of expired
``ns:upush:<uid>``              the user's pushes by time (sorted set of      ``retention_days``
                                ``<seq>|<push_id>``: a tie in commit order)
``ns:event:<seq>``              an event record (JSON)                        ``retention_days``
``ns:events``                   list of event seqs, in commit order           trimmed of expired
``ns:uevents:<uid>``            the user's event seqs by time (sorted set)    ``retention_days``
``ns:ukeys:<uid>``              the user's counter and event-id keys (sorted  its longest-lived
                                set, scored by each key's expiry; trimmed of  key (none while one
                                expired keys on every write)                  never expires)
==============================  ============================================  ==================

Per-user day counters live 3 days, week counters 9 days, a per-user
offer cap until its offer ends (and 3 days); open-ended offers' caps,
budgets, the push sequence (``ctr:seq``), the event sequence
(``ctr:event_seq``) and the order of pushes (``ctr:push_seq``) never expire.  An event id is remembered for
``idempotency_ttl_s`` (7 days by default): a copy redelivered later is new.
With ``retention_days``, push and event records expire that long after
they were written; each commit that appends to the ledger lists also drops
up to two expired ids from their heads, and a user's sorted sets drop the
ids older than the retention (by the record's time).  Lifetimes here are
Redis's own expiry, in wall-clock time from each write; the other backends
count them on the event time they are given (the two agree on live traffic).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .._validate import check_count, check_number, import_optional
from ..errors import InvalidParameterError, StateError
from ._base import DispatchState, Transaction, latest_matching
from ._expiry import Lifetimes
from ._keys import DAY_S as _DAY_S
from ._keys import id_text as _key
from ._keys import ttl_of as _ttl_of
from ._keys import user_counter as _user_counter
from ._redis_lua import NEVER, SCRIPTS

__all__ = ["RedisState"]

T = TypeVar("T")


def _text(v: Any) -> str:
    """A reply as text (bytes from a default client, str from one with ``decode_responses=True``)."""
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisState(DispatchState):
    """Dispatcher state on Redis: several processes and machines share caps, budgets and event ids.

    Parameters
    ----------
    url_or_client : str or redis.Redis
        ``"redis://host:6379/0"`` or a client you configured (TLS, auth, sentinel...).
        One primary: Redis Cluster is not supported.
    namespace : str, default "o2o"
        Prefix of every key, so several engines can share a server.
    idempotency_ttl_s : float, default 7 days
        How long a ping's or event's id is remembered.
    user_ttl_s : float, default 30 days
        How long a user's fence state is kept after their last ping.
    retention_days : float, optional
        Keep push and event records this many days; by default they are kept.
    retries : int, default 200
        How often a unit of work is retried when other clients keep changing
        what it read, before :class:`~o2o_geo.errors.StateError`.
    socket_timeout_s : float, default 5
        For a client made from a URL.

    Notes
    -----
    Connection loss or a timeout raises :class:`~o2o_geo.errors.StateError`
    and changes nothing: the dispatcher fails closed (no push is decided
    without the state that caps and budgets need).  ``round_trips`` counts
    the network round trips (one per command, script call or pipeline), for
    benchmarks.  :meth:`read_user` remembers what it read for the next unit
    of work on the same thread, which checks it at commit like any read.

    Examples
    --------
    >>> import o2o_geo as og
    >>> state = og.RedisState("redis://127.0.0.1:1/0", socket_timeout_s=0.2)  # nothing listens on port 1
    >>> try:
    ...     state.read_user("u1")
    ... except og.errors.StateError as exc:
    ...     print("fails closed:", type(exc).__name__)
    fails closed: StateError
    """

    cheap_reads = False  # a read is a round trip: a ping inside a fence goes straight to its transaction

    def __init__(
        self,
        url_or_client: Any = "redis://localhost:6379/0",
        namespace: str = "o2o",
        *,
        idempotency_ttl_s: float = 7 * _DAY_S,
        user_ttl_s: float = 30 * _DAY_S,
        retention_days: float | None = None,
        retries: int = 200,
        socket_timeout_s: float = 5.0,
    ) -> None:
        redis = import_optional("redis", needed_by="RedisState", extra="redis")
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise InvalidParameterError(f"namespace must be a non-empty string without ':'; got {namespace!r}")
        self.lifetimes = Lifetimes.of(idempotency_ttl_s, user_ttl_s, retention_days)
        for name, v in (("idempotency_ttl_s", idempotency_ttl_s), ("user_ttl_s", user_ttl_s)):
            if v < 1:
                raise InvalidParameterError(f"{name} must be at least 1 second; got {v!r}")
        check_count(retries, "retries", low=1)
        self._redis = redis
        self.r: Any
        if isinstance(url_or_client, str):
            check_number(socket_timeout_s, "socket_timeout_s", low=0.0, low_open=True, high=86_400.0)
            try:
                self.r = redis.Redis.from_url(
                    url_or_client, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
                )
            except ValueError as exc:
                raise InvalidParameterError(f"not a Redis URL: {url_or_client!r} ({exc})") from None
        elif isinstance(url_or_client, redis.Redis):
            self.r = url_or_client
        else:
            raise InvalidParameterError(
                f"url_or_client must be a redis:// URL or a redis.Redis client; got {url_or_client!r:.80}"
            )
        self.ns = namespace
        self.idempotency_ttl_s = int(idempotency_ttl_s)
        self.user_ttl_s = int(user_ttl_s)
        self._ledger_ttl = "0" if retention_days is None else str(math.ceil(self.lifetimes.retention_s))
        self.retries = retries
        self.round_trips = 0
        self._loaded = False  # whether this state loaded its scripts (SCRIPT LOAD)
        self._seed = threading.local()  # what read_user read, for the next unit of work on the thread

    # ------------------------------------------------------------ plumbing
    def _k(self, *parts: str) -> str:
        """A namespaced key."""
        return ":".join((self.ns, *parts))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise StateError(f"Redis is unreachable ({exc}); nothing was changed") from exc
        except self._redis.RedisError as exc:
            raise StateError(f"Redis failed ({exc}); nothing was changed") from exc

    def _load_scripts(self) -> None:
        """SCRIPT LOAD of every script, in one pipeline."""
        self.round_trips += 1
        with self.r.pipeline(transaction=False) as pipe:
            for script in SCRIPTS.values():
                pipe.script_load(script.text)
            pipe.execute()
        self._loaded = True

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of a script (the scripts are loaded first by this state, and again if the server lost them)."""
        sha = SCRIPTS[name].sha
        if not self._loaded:
            self._load_scripts()
        try:
            self.round_trips += 1
            return self.r.evalsha(sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:  # a restarted or flushed server
            self._load_scripts()
            self.round_trips += 1
            return self.r.evalsha(sha, len(keys), *keys, *args)

    def _take_seed(self) -> tuple[str, Any] | None:
        seed = getattr(self._seed, "value", None)
        self._seed.value = None
        return seed

    def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(tx)`` and commit it with one script call; again while other clients change what it read.

        An error raised by ``work`` is raised only if what it read is still
        current; otherwise the work runs again.
        """
        seed = self._take_seed()
        with self._errors():
            for attempt in range(self.retries):
                first = attempt == 0  # guesses (read_user's value, new event ids) only on the first attempt
                tx = _RedisTx(self, seed if first else None, guess=first)
                try:
                    result = work(tx)
                except self._redis.RedisError:
                    raise
                except Exception:
                    if tx._commit(check_only=True):
                        raise
                else:
                    if tx._commit():
                        return result
                time.sleep(random.uniform(0.0, 0.0005 * min(attempt + 1, 20)))
        raise StateError(f"gave up after {self.retries} attempts: other clients kept changing the same keys")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction without retry (:meth:`run` is what the dispatcher uses): a conflict raises StateError."""
        self._take_seed()  # a cached read may be stale, and a transaction without retry must not guess
        with self._errors():
            tx = _RedisTx(self, None, guess=False)
            yield tx
            if not tx._commit():
                raise StateError("another client changed what this transaction read; nothing was changed")

    # ------------------------------------------------------------ reads
    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state as last committed (one GET)."""
        key = self._k("user", _key(user_id))
        with self._errors():
            self.round_trips += 1
            raw = self.r.get(key)
        self._seed.value = (key, raw)
        return None if raw is None else json.loads(raw)

    def read_profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's profile as last committed (one GET)."""
        with self._errors():
            self.round_trips += 1
            raw = self.r.get(self._k("profile", _key(user_id)))
        return None if raw is None else json.loads(raw)

    def _records(self, list_key: str, prefix: str) -> list[dict[str, Any]]:
        with self._errors():
            self.round_trips += 1
            ids = self.r.lrange(self._k(list_key), 0, -1)
            if not ids:
                return []
            self.round_trips += 1
            raws = self.r.mget([self._k(prefix, _text(i)) for i in ids])
        return [json.loads(r) for r in raws if r is not None]

    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in commit order."""
        return self._records("pushes", "push")

    def events(self) -> list[dict[str, Any]]:
        """Every event record, in commit order."""
        return self._records("events", "event")

    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, profile, counters, event ids, pushes and events, in one script call."""
        uk = _key(user_id)
        keys = [self._k(kind, uk) for kind in ("user", "ukeys", "upush", "uevents")] + [
            self._k("pushes"),
            self._k("events"),
            self._k("profile", uk),
        ]
        with self._errors():
            self._call("forget", keys, [self._k("push", ""), self._k("event", "")])

    def flush(self) -> None:
        """Delete every key of this namespace (tests and demos; SCAN, not KEYS).

        Raises
        ------
        StateError
            The server is unreachable (nothing is deleted).

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.RedisState("redis://127.0.0.1:1/0", socket_timeout_s=0.2)  # nothing listens on port 1
        >>> try:
        ...     state.flush()
        ... except og.errors.StateError:
        ...     print("unreachable: nothing deleted")
        unreachable: nothing deleted
        """
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.ns) + ":*"
        with self._errors():
            batch = []
            for key in self.r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self.r.delete(*batch)
                    batch = []
            if batch:
                self.r.delete(*batch)

    def close(self) -> None:
        """Close the client's connections."""
        try:
            self.r.close()
        except Exception:  # noqa: BLE001 - closing a broken client
            pass


_GUESS = 0  # the batch of values not read in this unit of work: read_user's, and event ids assumed new


class _RedisTx(Transaction):
    """Reads are fetched in batches and recorded when used (the read set); writes wait for the commit script."""

    def __init__(self, state: RedisState, seed: tuple[str, Any] | None, *, guess: bool) -> None:
        self.s = state
        self.guess = guess
        self.fetched: dict[str, tuple[Any, int]] = {}  # key -> (bytes or None, batch): read, not yet used
        self.seen: dict[str, Any] = {}  # the read set: key -> bytes or None (absent)
        self.ranges: list[tuple[str, str, str, list[Any]]] = []  # (key, max, min, ids) of each range read
        self.batches: set[int] = set()  # the batches the read set came from
        self.n_batches = 0
        if seed is not None:
            self.fetched[seed[0]] = (seed[1], _GUESS)
        # buffered writes, and what this unit wrote as the reads of its later steps see it
        self.users: dict[Any, dict[str, Any]] = {}
        self.profiles: dict[Any, dict[str, Any]] = {}
        self.deltas: dict[str, float] = {}
        self.ttls: dict[str, int] = {}
        self.idems: dict[Any, Any] = {}
        self.new_pushes: dict[Any, dict[str, Any]] = {}
        self.sets: dict[str, tuple[str, int]] = {}
        self.adds: list[tuple[Any, ...]] = []

    # ------------------------------------------------------------ reads
    def _fetch(self, keys: list[str]) -> None:
        """One MGET of ``keys``: a batch (an atomic snapshot of them)."""
        self.s.round_trips += 1
        raws = self.s.r.mget(keys)
        self.n_batches += 1
        for key, raw in zip(keys, raws, strict=True):
            self.fetched[key] = (raw, self.n_batches)

    def _read(self, key: str) -> Any:
        """The bytes of ``key`` (None: absent), recorded in the read set."""
        if key in self.seen:
            return self.seen[key]
        if key not in self.fetched:
            self._fetch([key])
        raw, batch = self.fetched.pop(key)
        self.seen[key] = raw
        self.batches.add(batch)
        return raw

    def prefetch(
        self, *, users: Iterable[Any] = (), counters: Iterable[str] = (), idems: Iterable[Any] = (),
        pushes: Iterable[Any] = (), profiles: Iterable[Any] = (),
    ) -> None:  # fmt: skip
        """One MGET of every key not read yet (none when each is known already).

        On a first attempt, event ids that would be the only keys fetched
        are not: they are assumed new (the usual case), which the commit
        checks like any read.
        """
        k = self.s._k
        ids = [k("idem", e) for e in idems if e not in self.idems]
        keys = [k("user", _key(u)) for u in users if u not in self.users]
        keys += [k("ctr", c) for c in counters]
        keys += [k("push", _key(p)) for p in pushes if p not in self.new_pushes]
        keys += [k("profile", _key(u)) for u in profiles if u not in self.profiles]
        wanted = [key for key in dict.fromkeys(keys + ids) if key not in self.seen]
        missing = [key for key in wanted if key not in self.fetched]
        if self.guess and missing and set(missing) <= set(ids):
            for key in missing:
                self.fetched[key] = (None, _GUESS)
        elif missing:
            self._fetch(wanted)  # the known ones too: fresher, and one snapshot with the rest

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.users:
            return self.users[user_id]
        raw = self._read(self.s._k("user", _key(user_id)))
        return None if raw is None else json.loads(raw)

    def get_profile(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.profiles:
            return self.profiles[user_id]
        raw = self._read(self.s._k("profile", _key(user_id)))
        return None if raw is None else json.loads(raw)

    def counter(self, key: str) -> float:
        raw = self._read(self.s._k("ctr", key))
        return (0.0 if raw is None else float(raw)) + self.deltas.get(key, 0.0)

    def idem(self, key: str) -> Any:
        if key in self.idems:
            return self.idems[key]
        raw = self._read(self.s._k("idem", key))
        return None if raw is None else json.loads(raw)[1]

    def push(self, push_id: Any) -> dict[str, Any] | None:
        if push_id in self.new_pushes:
            return self.new_pushes[push_id]
        raw = self._read(self.s._k("push", _key(push_id)))
        return None if raw is None else json.loads(raw)

    def latest_push(
        self, user_id: Any, lo_ts: float, hi_ts: float, offer_id: Any = None, merchant_id: Any = None
    ) -> dict[str, Any] | None:
        zkey, hi, lo = self.s._k("upush", _key(user_id)), repr(float(hi_ts)), repr(float(lo_ts))
        flat = self.s._call("range", [zkey], [hi, lo, self.s._k("push", "")])
        self.n_batches += 1
        self.batches.add(self.n_batches)
        self.ranges.append((zkey, hi, lo, flat[0::2]))
        recs = [json.loads(raw) for raw in reversed(flat[1::2]) if raw is not None]  # commit order in a tie
        recs += [p for p in self.new_pushes.values() if p["user_id"] == user_id]
        return latest_matching(recs, lo_ts, hi_ts, offer_id, merchant_id)

    # ------------------------------------------------------------ writes
    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.users[user_id] = data
        self.sets[self.s._k("user", _key(user_id))] = (json.dumps(data), self.s.user_ttl_s)

    def put_profile(self, user_id: Any, data: dict[str, Any]) -> None:
        self.profiles[user_id] = data
        self.sets[self.s._k("profile", _key(user_id))] = (json.dumps(data), 0)  # never expires

    def add_counter(self, key: str, delta: float, ttl_s: float | None = None) -> None:
        self.deltas[key] = self.deltas.get(key, 0.0) + float(delta)  # INCRBYFLOAT on the server
        if ttl_s is not None:
            self.ttls[key] = max(1, math.ceil(ttl_s))

    def put_idem(self, key: str, user_id: Any, payload: Any) -> None:
        self.idems[key] = payload
        stored = self.s._k("idem", key)
        self.sets[stored] = (json.dumps([user_id, payload]), self.s.idempotency_ttl_s)
        self.adds.append(("ukey", self.s._k("ukeys", _key(user_id)), stored, self.s.idempotency_ttl_s))

    def add_push(self, rec: dict[str, Any]) -> None:
        self.new_pushes[rec["push_id"]] = rec
        pid, k = _key(rec["push_id"]), self.s._k
        ttl = self.s._ledger_ttl
        self.sets[k("push", pid)] = (json.dumps(rec), int(ttl))
        self.adds.append(("rpush", k("pushes"), pid))
        self.adds.append(
            ("zseq", k("upush", _key(rec["user_id"])), repr(float(rec["ts"])), pid, ttl, k("ctr", "push_seq"))
        )
        if ttl != "0":
            self.adds.append(("trim", k("pushes"), k("push", ""), ttl))

    def add_event(self, rec: dict[str, Any]) -> None:
        k = self.s._k
        # the script takes the seq (INCR): events never conflict on it
        self.adds.append(
            (
                "event",
                k("ctr", "event_seq"),
                k("event", ""),
                json.dumps(rec),
                k("events"),
                k("uevents", _key(rec["user_id"])),
                repr(float(rec["ts"])),
                self.s._ledger_ttl,
            )
        )

    # ------------------------------------------------------------ commit
    def _commit(self, *, check_only: bool = False) -> bool:
        """Check the read set and apply the writes in one script call; False (nothing written) on a conflict.

        With ``check_only`` (or nothing to write), only whether the reads are
        still current: no call when they were one snapshot (one MGET).
        """
        write = not check_only and bool(self.sets or self.deltas or self.adds)
        if not write and (not self.batches or (len(self.batches) == 1 and _GUESS not in self.batches)):
            return True  # read nothing, or one atomic snapshot
        keys: list[str] = []
        index: dict[str, int] = {}

        def at(key: str) -> int:
            i = index.get(key)
            if i is None:
                keys.append(key)
                i = index[key] = len(keys)
            return i

        values: list[Any] = []  # ARGV[3...]: what the reads saw, as the server gave it (any bytes)
        checks: list[list[Any]] = []
        for key, raw in self.seen.items():
            if raw is None:
                checks.append(["n", at(key)])
            else:
                values.append(raw)
                checks.append(["v", at(key), len(values) + 2])
        for zkey, hi, lo, ids in self.ranges:
            checks.append(["z", at(zkey), hi, lo, len(values) + 3, len(ids)])
            values += ids
        writes = self._writes(at) if write else []
        return bool(self.s._call("commit", keys, [json.dumps(checks), json.dumps(writes), *values]))

    def _writes(self, at: Callable[[str], int]) -> list[list[Any]]:
        """The buffered writes as the commit script takes them (``at`` numbers the keys)."""
        writes: list[list[Any]] = []
        k = self.s._k
        now = time.time()

        def ukey(index: str, member: str, ttl_s: int) -> list[Any]:  # expiry (or never) and the trimming time
            return ["ukey", at(index), member, repr(now + ttl_s if ttl_s else NEVER), repr(now)]

        for name, d in self.deltas.items():
            rkey = k("ctr", name)
            ttl = self.ttls.get(name) or _ttl_of(name) or 0
            writes.append(["incr", at(rkey), repr(d), str(ttl)])
            user = _user_counter(name)
            if user is not None:
                writes.append(ukey(k("ukeys", user[0]), rkey, ttl))
        for key, (raw, ttl) in self.sets.items():
            writes.append(["set", at(key), raw, str(ttl)])
        for op, key, *rest in self.adds:
            if op == "event":
                prefix, raw, list_key, set_key, ts, ttl = rest
                writes.append(["event", at(key), prefix, raw, at(list_key), at(set_key), ts, ttl])
            elif op == "ukey":
                writes.append(ukey(key, *rest))
            elif op == "zseq":
                *args, seq_key = rest
                writes.append([op, at(key), *args, at(seq_key)])
            else:
                writes.append([op, at(key), *rest])
        return writes
