"""RedisState: the dispatcher's state on a Redis server, shared by every replica of a backend.

Concurrency is optimistic: a unit of work WATCHes every key it reads, buffers
its writes, and commits them in one MULTI/EXEC; when another client changed
a watched key, EXEC fails on the server and the work is run again.  So every
check-and-increment (caps, budgets, event ids) is atomic on the server, and
no read-modify-write is ever written blindly from the client.

Keys (``ns`` the namespace, ids as JSON text):

==============================  ============================================  ==================
``ns:user:<uid>``               the user's fence state (JSON)                 ``user_ttl_s``
``ns:ctr:<counter>``            a cap, budget or capacity counter             by the counter's window
``ns:idem:<id>``                the stored outcome of a ping or event id      ``idempotency_ttl_s``
``ns:push:<push_id>``           a push record (JSON)                          none
``ns:pushes``                   list of push ids, in commit order             none
``ns:upush:<uid>``              the user's push ids by time (sorted set)      none
``ns:event:<seq>``              an event record (JSON)                        none
``ns:events``                   list of event seqs, in commit order           none
``ns:uevents:<uid>``            the user's event seqs (set)                   none
``ns:ukeys:<uid>``              the user's counter and event-id keys (set)    none
==============================  ============================================  ==================

Per-user day counters live 3 days, week counters 15 days; per-offer caps,
budgets and the push sequence never expire.  An event id is remembered for
``idempotency_ttl_s`` (7 days by default): a copy redelivered later is new.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, TypeVar

from ._state import DispatchState, Transaction, _key
from .errors import InvalidParameterError, StateError

__all__ = ["RedisState"]

T = TypeVar("T")
_DAY_S = 86_400


class RedisState(DispatchState):
    """Dispatcher state on Redis: several processes and machines share caps, budgets and event ids.

    Parameters
    ----------
    url_or_client : str or redis.Redis
        ``"redis://host:6379/0"`` or a client you configured (TLS, auth, sentinel...).
    namespace : str, default "o2o"
        Prefix of every key, so several engines can share a server.
    idempotency_ttl_s : float, default 7 days
        How long a ping's or event's id is remembered.
    user_ttl_s : float, default 30 days
        How long a user's fence state is kept after their last ping.
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
    the commands sent, for benchmarks.

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

    def __init__(
        self,
        url_or_client: Any = "redis://localhost:6379/0",
        namespace: str = "o2o",
        *,
        idempotency_ttl_s: float = 7 * _DAY_S,
        user_ttl_s: float = 30 * _DAY_S,
        retries: int = 200,
        socket_timeout_s: float = 5.0,
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('RedisState needs the redis package: pip install "o2o_geo[redis]"') from exc
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise InvalidParameterError(f"namespace must be a non-empty string without ':'; got {namespace!r}")
        for name, v in (("idempotency_ttl_s", idempotency_ttl_s), ("user_ttl_s", user_ttl_s)):
            if not (isinstance(v, (int, float)) and v >= 1):
                raise InvalidParameterError(f"{name} must be at least 1 second; got {v!r}")
        if not isinstance(retries, int) or retries < 1:
            raise InvalidParameterError(f"retries must be a positive int; got {retries!r}")
        self._redis = redis
        self.r: Any
        if isinstance(url_or_client, str):
            self.r = redis.Redis.from_url(
                url_or_client, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
        else:
            self.r = url_or_client
        self.ns = namespace
        self.idempotency_ttl_s = int(idempotency_ttl_s)
        self.user_ttl_s = int(user_ttl_s)
        self.retries = retries
        self.round_trips = 0

    # ------------------------------------------------------------ plumbing
    def k(self, *parts: str) -> str:
        """A namespaced key."""
        return ":".join((self.ns, *parts))

    @contextmanager
    def _errors(self) -> Any:
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise StateError(f"Redis is unreachable ({exc}); nothing was changed") from exc
        except self._redis.RedisError as exc:
            raise StateError(f"Redis failed ({exc}); nothing was changed") from exc

    def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(tx)`` with WATCH/MULTI/EXEC, again while other clients change what it read."""
        with self._errors():
            for attempt in range(self.retries):
                with self.r.pipeline(transaction=True) as pipe:
                    tx = _RedisTx(self, pipe)
                    result = work(tx)
                    try:
                        tx._commit()
                    except self._redis.WatchError:
                        time.sleep(random.uniform(0.0, 0.0005 * min(attempt + 1, 20)))
                        continue
                    return result
        raise StateError(f"gave up after {self.retries} attempts: other clients kept changing the same keys")

    @contextmanager
    def transaction(self) -> Any:
        """A transaction without retry (:meth:`run` is what the dispatcher uses): EXEC conflicts raise StateError."""
        with self._errors(), self.r.pipeline(transaction=True) as pipe:
            tx = _RedisTx(self, pipe)
            yield tx
            try:
                tx._commit()
            except self._redis.WatchError as exc:
                raise StateError("another client changed what this transaction read; nothing was changed") from exc

    # ------------------------------------------------------------ reads
    def read_user(self, user_id: Any) -> dict[str, Any] | None:
        """The user's state as last committed (one GET)."""
        with self._errors():
            self.round_trips += 1
            raw = self.r.get(self.k("user", _key(user_id)))
        return None if raw is None else json.loads(raw)

    def pushes(self) -> list[dict[str, Any]]:
        """Every push record, in commit order."""
        with self._errors():
            ids = self.r.lrange(self.k("pushes"), 0, -1)
            raws = self.r.mget([self.k("push", i.decode()) for i in ids]) if ids else []
        return [json.loads(r) for r in raws if r is not None]

    def events(self) -> list[dict[str, Any]]:
        """Every event record, in commit order."""
        with self._errors():
            seqs = self.r.lrange(self.k("events"), 0, -1)
            raws = self.r.mget([self.k("event", s.decode()) for s in seqs]) if seqs else []
        return [json.loads(r) for r in raws if r is not None]

    def forget_user(self, user_id: Any) -> None:
        """Erase the user's state, counters, event ids, pushes and events, in one MULTI/EXEC."""
        uk = _key(user_id)

        def work(tx: Transaction) -> None:
            assert isinstance(tx, _RedisTx)
            p = tx.p
            keys = [self.k("user", uk), self.k("ukeys", uk), self.k("upush", uk), self.k("uevents", uk)]
            p.watch(*keys)
            owned = [m.decode() for m in p.smembers(self.k("ukeys", uk))]
            push_ids = [m.decode() for m in p.zrange(self.k("upush", uk), 0, -1)]
            seqs = [m.decode() for m in p.smembers(self.k("uevents", uk))]

            def erase(q: Any) -> None:
                q.delete(*keys, *owned, *(self.k("push", i) for i in push_ids), *(self.k("event", e) for e in seqs))
                for i in push_ids:
                    q.lrem(self.k("pushes"), 0, i)
                for e in seqs:
                    q.lrem(self.k("events"), 0, e)

            tx.ops.append(erase)

        self.run(work)

    def flush(self) -> None:
        """Delete every key of this namespace (tests and demos; SCAN, not KEYS)."""
        with self._errors():
            batch = []
            for key in self.r.scan_iter(match=f"{self.ns}:*", count=1000):
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


_DECODER = json.JSONDecoder()


def _user_counter(counter: str) -> tuple[str, str] | None:
    """(user key, window kind) of a per-user counter ``u|<uid json>|<kind>|...``; None for other counters."""
    if not counter.startswith("u|"):
        return None
    _, end = _DECODER.raw_decode(counter, 2)
    return counter[2:end], counter[end + 1 :].split("|", 1)[0]


def _ttl_of(counter: str) -> int | None:
    """Expiry of a counter by its window: per-user day counters 3 days, week 15, store-day 3; others never."""
    user = _user_counter(counter)
    if user is not None:
        return {"d": 3 * _DAY_S, "m": 3 * _DAY_S, "w": 15 * _DAY_S}.get(user[1])
    if counter.startswith("sc|"):
        return 3 * _DAY_S
    return None


class _RedisTx(Transaction):
    """Reads WATCH their keys and run at once; writes are queued for one MULTI/EXEC."""

    def __init__(self, state: RedisState, pipe: Any) -> None:
        self.s = state
        self.p = pipe
        self.ops: list[Callable[[Any], Any]] = []
        self.users: dict[Any, dict[str, Any] | None] = {}
        self.ctrs: dict[str, float] = {}
        self.idems: dict[Any, Any] = {}
        self.new_pushes: dict[Any, dict[str, Any]] = {}
        self.watched: set[str] = set()

    def _get(self, key: str) -> Any:
        if key not in self.watched:
            self.p.watch(key)
            self.watched.add(key)
            self.s.round_trips += 1
        self.s.round_trips += 1
        return self.p.get(key)

    def prefetch(self, *, users: Any = (), counters: Any = (), idems: Any = ()) -> None:
        """WATCH and read all of them in two round trips (one WATCH, one MGET)."""
        wanted: list[tuple[str, str, Any]] = []
        for u in users:
            if u not in self.users:
                wanted.append(("user", self.s.k("user", _key(u)), u))
        for c in counters:
            if c not in self.ctrs:
                wanted.append(("ctr", self.s.k("ctr", c), c))
        for e in idems:
            if e not in self.idems:
                wanted.append(("idem", self.s.k("idem", e), e))
        if not wanted:
            return
        fresh = [key for _, key, _ in wanted if key not in self.watched]
        if fresh:
            self.p.watch(*fresh)
            self.watched.update(fresh)
            self.s.round_trips += 1
        self.s.round_trips += 1
        for (kind, _, name), raw in zip(wanted, self.p.mget([key for _, key, _ in wanted]), strict=True):
            if kind == "user":
                self.users[name] = None if raw is None else json.loads(raw)
            elif kind == "ctr":
                self.ctrs[name] = 0.0 if raw is None else float(raw)
            else:
                self.idems[name] = None if raw is None else json.loads(raw)[1]

    def get_user(self, user_id: Any) -> dict[str, Any] | None:
        if user_id in self.users:
            return self.users[user_id]
        raw = self._get(self.s.k("user", _key(user_id)))
        return None if raw is None else json.loads(raw)

    def put_user(self, user_id: Any, data: dict[str, Any]) -> None:
        self.users[user_id] = data
        key, raw, ttl = self.s.k("user", _key(user_id)), json.dumps(data), self.s.user_ttl_s
        self.ops.append(lambda q: q.set(key, raw, ex=ttl))

    def counter(self, key: str) -> float:
        if key in self.ctrs:
            return self.ctrs[key]
        raw = self._get(self.s.k("ctr", key))
        return 0.0 if raw is None else float(raw)

    def add_counter(self, key: str, delta: float) -> None:
        self.ctrs[key] = self.counter(key) + float(delta)
        rkey, ttl, d = self.s.k("ctr", key), _ttl_of(key), float(delta)
        user = _user_counter(key)
        owner = None if user is None else self.s.k("ukeys", user[0])

        def op(q: Any) -> None:
            q.incrbyfloat(rkey, d)
            if ttl is not None:
                q.expire(rkey, ttl)
            if owner is not None:
                q.sadd(owner, rkey)

        self.ops.append(op)

    def idem(self, event_id: Any) -> Any:
        if event_id in self.idems:
            return self.idems[event_id]
        raw = self._get(self.s.k("idem", event_id))
        return None if raw is None else json.loads(raw)[1]

    def put_idem(self, event_id: Any, user_id: Any, payload: Any) -> None:
        self.idems[event_id] = payload
        key, raw, ttl = self.s.k("idem", event_id), json.dumps([user_id, payload]), self.s.idempotency_ttl_s
        owner = self.s.k("ukeys", _key(user_id))
        self.ops.append(lambda q: (q.set(key, raw, ex=ttl), q.sadd(owner, key)))

    def add_push(self, rec: dict[str, Any]) -> None:
        self.new_pushes[rec["push_id"]] = rec
        pid, uk = _key(rec["push_id"]), _key(rec["user_id"])
        raw, ts = json.dumps(rec), float(rec["ts"])
        s = self.s

        def op(q: Any) -> None:
            q.set(s.k("push", pid), raw)
            q.rpush(s.k("pushes"), pid)
            q.zadd(s.k("upush", uk), {pid: ts})

        self.ops.append(op)

    def push(self, push_id: Any) -> dict[str, Any] | None:
        if push_id in self.new_pushes:
            return self.new_pushes[push_id]
        raw = self._get(self.s.k("push", _key(push_id)))
        return None if raw is None else json.loads(raw)

    def latest_push(
        self, user_id: Any, lo_ts: float, hi_ts: float, offer_id: Any = None, merchant_id: Any = None
    ) -> dict[str, Any] | None:
        zkey = self.s.k("upush", _key(user_id))
        if zkey not in self.watched:
            self.p.watch(zkey)
            self.watched.add(zkey)
            self.s.round_trips += 1
        self.s.round_trips += 2
        ids = [m.decode() for m in self.p.zrevrangebyscore(zkey, hi_ts, lo_ts)]
        recs = [json.loads(r) for r in self.p.mget([self.s.k("push", i) for i in ids])] if ids else []
        recs += [p for p in self.new_pushes.values() if p["user_id"] == user_id and lo_ts <= p["ts"] <= hi_ts]
        best = None
        for p in recs:
            if (offer_id is not None and p["offer_id"] != offer_id) or (
                offer_id is None and p["merchant_id"] != merchant_id
            ):
                continue
            if best is None or p["ts"] >= best["ts"]:
                best = p
        return best

    def add_event(self, rec: dict[str, Any]) -> None:
        seq = str(int(self.counter("event_seq")) + 1)  # a watched read: two clients never take the same seq
        self.add_counter("event_seq", 1.0)
        uk, raw, s = _key(rec["user_id"]), json.dumps(rec), self.s

        def op(q: Any) -> None:
            q.set(s.k("event", seq), raw)
            q.rpush(s.k("events"), seq)
            q.sadd(s.k("uevents", uk), seq)

        self.ops.append(op)

    def _commit(self) -> None:
        if not self.ops:
            self.p.reset()
            return
        self.p.multi()
        for op in self.ops:
            op(self.p)
        self.s.round_trips += 1
        self.p.execute()
