"""The protocol of a state backend: :class:`Transaction` (one unit of work) and :class:`DispatchState`."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._expiry import Lifetimes
from ._keys import DAY_S, SEQ

__all__ = ["EVENT_FIELDS", "PUSH_FIELDS", "DispatchState", "Transaction", "latest_matching"]

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
    def get_profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's profile (treat as read-only; write a new dict with :meth:`put_profile`).

        What the integrator set (consent, tier, attributes) and the user's
        history with each merchant (last visit, last redemption, new-customer
        offers given): it decides audiences and win-back triggers, so unlike the
        fence state it never expires; :meth:`DispatchState.forget_user` erases it.
        """

    @abstractmethod
    def put_profile(self, user_id: Any, data: dict[str, Any]) -> None:
        """Replace the user's profile."""

    @abstractmethod
    def counter(self, key: str) -> float:
        """A counter's value (0 when never incremented)."""

    @abstractmethod
    def add_counter(self, key: str, delta: float, ttl_s: float | None = None) -> None:
        """Add to a counter that can matter for ``ttl_s`` more seconds (``None``: by its key's window).

        A counter's lifetime restarts with every write; without ``ttl_s`` it
        is the window of its key (:func:`keys.ttl_of`: three days for a day
        counter, forever for a budget).
        """

    def advance_clock(self, ts_s: float) -> None:  # noqa: B027 - a backend on wall-clock time ignores it
        """The event time (epoch seconds) of this unit of work: the state's clock is the latest one seen.

        Lifetimes (:class:`~o2o_geo._state._expiry.Lifetimes`, counter
        windows) count on that clock in the in-process and SQLite backends,
        so a replay of last month's pings expires last month's keys as its
        days pass; a backend with native expiry (Redis) counts them in wall
        time from each write instead.  Time never runs backwards: an older
        ``ts_s`` leaves the clock where it is.
        """

    def prefetch(  # noqa: B027
        self, *, users: Any = (), counters: Any = (), idems: Any = (), pushes: Any = (), profiles: Any = ()
    ) -> None:
        """Hint: these users, counters, event ids, push ids and profiles will be read; optional.

        A networked backend reads them all in one round trip; the others
        ignore the hint and never iterate its arguments (so a lazy iterable
        costs them nothing).
        """

    def next_seq(self) -> int:
        """The next number of a sequence shared by every process on the state (1, 2, ...)."""
        self.add_counter(SEQ, 1.0)
        return int(self.counter(SEQ))

    @abstractmethod
    def idem(self, key: str) -> Any:
        """The outcome stored under an idempotency key, or ``None``.

        Keys are strings: the dispatcher makes them with ``keys.ping_key`` and
        ``keys.event_key`` from a ping's or an event's id (of any type).
        """

    @abstractmethod
    def put_idem(self, key: str, user_id: Any, payload: Any) -> None:
        """Store the outcome (JSON-able) under an idempotency key; erased with ``user_id``."""

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
        """Store an event record (an ``event_id`` other than ``None`` is stored once: check :meth:`idem` first)."""


class DispatchState(ABC):
    """Base class of the dispatcher's state backends.

    A backend implements :meth:`transaction` (yielding a :class:`Transaction`:
    user state, counters, event ids, pushes, events; all-or-nothing),
    :meth:`read_user`, :meth:`pushes`, :meth:`events` and :meth:`forget_user`,
    and passes the dispatcher's conformance tests (``tests/dispatch/test_dispatch.py``
    runs every test on each backend).

    Examples
    --------
    >>> import o2o_geo as og
    >>> isinstance(og.MemoryState(), og.DispatchState)
    True
    """

    #: Whether :meth:`read_user` costs little next to a transaction (in-process, a local file): the
    #: dispatcher then answers a ping that changes nothing from it, without a transaction.  A networked
    #: backend sets it False: a transaction's first read (one round trip) answers such a ping as cheaply.
    cheap_reads: bool = True

    #: What the backend keeps and for how long (every backend takes the same three arguments).
    lifetimes: Lifetimes = Lifetimes(7 * DAY_S, 30 * DAY_S, None)

    def retained_since(self) -> float:
        """The time from which the ledger holds every push and event (``-inf`` until retention dropped any).

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState(retention_days=1)
        >>> with state.transaction() as tx:
        ...     tx.advance_clock(10 * 86400)
        >>> state.retained_since()      # nothing was dropped yet
        -inf
        """
        return -math.inf

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

    @contextmanager
    def group(self) -> Iterator[None]:
        """Run several transactions as a group that commits together (a batch replay's chunk of pings).

        Each transaction in the group stays all-or-nothing on its own: one
        that fails is undone alone, and the ones before it are kept.  What
        a group changes becomes durable (and visible to other processes)
        when the group ends, also when it ends with an error.  Backends
        without a cheaper group commit run the transactions as they come
        (the default).

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> state = og.SQLiteState(os.path.join(tempfile.mkdtemp(), "s.db"))
        >>> with state.group():
        ...     for _ in range(3):
        ...         with state.transaction() as tx:
        ...             tx.add_counter("pings", 1)
        >>> with state.transaction() as tx:
        ...     tx.counter("pings")
        3.0
        """
        yield

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

    def read_profile(self, user_id: Any) -> dict[str, Any] | None:
        """The user's profile as last committed (see :meth:`Transaction.get_profile`).

        Examples
        --------
        >>> import o2o_geo as og
        >>> state = og.MemoryState()
        >>> with state.transaction() as tx:
        ...     tx.put_profile("u1", {"opt_in": False})
        >>> state.read_profile("u1"), state.read_profile("nobody")
        ({'opt_in': False}, None)
        """
        with self.transaction() as tx:
            return tx.get_profile(user_id)

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
        """Erase the user's state, profile, pushes, events and event ids (budget and store counters keep their totals).

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


def latest_matching(
    pushes: Iterable[dict[str, Any]], lo_ts: float, hi_ts: float, offer_id: Any, merchant_id: Any
) -> dict[str, Any] | None:
    """The latest push with ``lo_ts <= ts <= hi_ts`` of this offer (or, without one, merchant).

    :meth:`Transaction.latest_push` over records a backend already holds; the last one wins a tie.
    """
    best = None
    for p in pushes:
        if not lo_ts <= p["ts"] <= hi_ts:
            continue
        if (offer_id is not None and p["offer_id"] != offer_id) or (
            offer_id is None and p["merchant_id"] != merchant_id
        ):
            continue
        if best is None or p["ts"] >= best["ts"]:
            best = p
    return best
