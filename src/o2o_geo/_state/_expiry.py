"""Retention for the in-process state: lifetimes on the state's clock, pruned a little at a time.

A :class:`Lifetimes` is what a backend keeps and for how long (validated
once, shared by every backend).  An :class:`ExpiryWheel` files keys by the
hour their life ends in; when the state's clock passes an hour, that
hour's keys become due and are handed out a bounded number at a time, so
pruning never pauses a transaction for long, however many keys expire
together.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from dataclasses import dataclass

from .._validate import check_quantity
from ._keys import DAY_S

__all__ = ["Lifetimes", "ExpiryWheel"]


@dataclass(frozen=True)
class Lifetimes:
    """How long a state keeps what can still matter (the same rules on every backend).

    Parameters
    ----------
    idempotency_ttl_s : float
        A ping's or event's id is remembered this long after it was stored;
        a copy redelivered later is processed as new.
    user_ttl_s : float
        A user's fence state (and last push, last dismiss) is kept this long
        after its last change.
    retention_days : float or None
        Pushes and events are kept this many days (by their own time); ``None`` keeps them.

    Examples
    --------
    >>> Lifetimes.of(7 * 86400, 30 * 86400, None).retention_s
    inf
    >>> Lifetimes.of(7 * 86400, 30 * 86400, 0)
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: retention_days must be a finite number of days > 0 or None; got 0
    """

    idempotency_ttl_s: float
    user_ttl_s: float
    retention_days: float | None

    @classmethod
    def of(cls, idempotency_ttl_s: object, user_ttl_s: object, retention_days: object) -> Lifetimes:
        """Validated lifetimes (:class:`~o2o_geo.errors.InvalidParameterError` for a bad one)."""
        idem = check_quantity(idempotency_ttl_s, "idempotency_ttl_s", unit="seconds", positive=True)
        user = check_quantity(user_ttl_s, "user_ttl_s", unit="seconds", positive=True)
        days = check_quantity(retention_days, "retention_days", unit="days", positive=True, allow_none=True)
        return cls(idem, user, days)

    @property
    def retention_s(self) -> float:
        """The ledger's retention in seconds (``inf``: kept)."""
        return math.inf if self.retention_days is None else self.retention_days * DAY_S


class ExpiryWheel:
    """Keys filed by the hour their life ends in; due keys handed out a few at a time.

    A key is due once the clock passes the end of its hour, so it lives up
    to an hour longer than asked, never shorter.  Re-filing a key with a
    later end moves it (a key written every minute moves once an hour).

    Examples
    --------
    >>> w = ExpiryWheel()
    >>> w.file("a", 100.0); w.file("b", 5000.0); w.file("a", 7300.0)   # "a" lives longer now
    >>> w.due(3600.0, 10), w.due(7200.0, 10), w.due(10800.0, 10)
    ([], ['b'], ['a'])
    """

    def __init__(self, bucket_s: float = 3600.0) -> None:
        self.bucket_s = float(bucket_s)
        self._bucket_of: dict[Hashable, int] = {}
        self._buckets: dict[int, set[Hashable]] = {}
        self._heap: list[int] = []  # bucket numbers with keys, smallest first
        self._due: list[tuple[int, set[Hashable]]] = []  # fallen-due buckets, emptied a few keys at a time
        # the most keys each bucket has held: a set keeps its table when keys leave it, so a bucket most of
        # whose keys moved on (re-filed later) is copied into a set of its size (a wheel's memory follows its keys)
        self._peak: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._bucket_of)

    def __eq__(self, other: object) -> bool:  # what it tracks (state snapshots compare it)
        if not isinstance(other, ExpiryWheel):
            return NotImplemented
        return (self.bucket_s, self._bucket_of, sorted(self._heap), sorted(map(repr, self._due))) == (
            other.bucket_s, other._bucket_of, sorted(other._heap), sorted(map(repr, other._due)))  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def file(self, key: Hashable, expires_s: float) -> None:
        """File ``key`` to expire at ``expires_s`` (moving it if it was filed already)."""
        b = math.ceil(expires_s / self.bucket_s)
        old = self._bucket_of.get(key)
        if old == b:
            return
        if old is not None:
            self._leave(old, key)
        self._bucket_of[key] = b
        members = self._buckets.get(b)
        if members is None:
            members = self._buckets[b] = set()
            heapq.heappush(self._heap, b)
        members.add(key)
        if len(members) > self._peak.get(b, 0):
            self._peak[b] = len(members)

    def _leave(self, b: int, key: Hashable) -> None:
        """Take ``key`` out of bucket ``b``; drop the bucket when it empties, compact it when it is mostly empty."""
        members = self._buckets.get(b)
        if members is None:
            return
        members.discard(key)
        if not members:
            del self._buckets[b]  # its heap entry stays until it falls due (due() skips a missing bucket)
            self._peak.pop(b, None)
        elif len(members) * 8 < self._peak.get(b, 0):
            self._buckets[b] = set(members)
            self._peak[b] = len(members)

    def forget(self, key: Hashable) -> None:
        """Stop tracking ``key`` (it was deleted)."""
        b = self._bucket_of.pop(key, None)
        if b is not None:
            self._leave(b, key)

    def due(self, clock_s: float, limit: int) -> list[Hashable]:
        """Up to ``limit`` keys whose life ended by ``clock_s`` (each handed out once; forget them after).

        A bucket that falls due is not copied: its keys are taken from it
        ``limit`` at a time, so one call costs O(limit) however many keys
        expire in the same hour.
        """
        heap = self._heap
        while heap and heap[0] * self.bucket_s <= clock_s:
            b = heapq.heappop(heap)
            members = self._buckets.pop(b, None)
            self._peak.pop(b, None)
            if members:
                self._due.append((b, members))
        out: list[Hashable] = []
        due, bucket_of = self._due, self._bucket_of
        while due and len(out) < limit:
            b, members = due[-1]
            while members and len(out) < limit:
                key = members.pop()
                if bucket_of.get(key) == b:  # not re-filed or forgotten since it fell due
                    del bucket_of[key]
                    out.append(key)
            if not members:
                due.pop()
        return out
