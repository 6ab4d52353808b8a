"""The incremental per-user history the offer scorer reads: how it is kept (its readers: ``_history_reads``).

Every feature is kept as a running, recency-weighted sum: a value ``S`` with
the time ``t0`` it refers to, read at time ``t`` as ``S * 2**(-(t - t0) / h)``
for a half-life ``h``.  Adding an event updates one such sum in O(1), in any
time order (an event older than ``t0`` is added already decayed), so adding an
event never rescans the log and the result does not depend on arrival order.

Visits and redemptions are also remembered per store (how often and how
recently the user was there, at which local hours, where they went next) and,
for all users, per store and category (popularity, hours, what follows).  What comes next
depends on order: an event older than the user's latest visit or redemption
updates the counts but not the "previous place" or the transitions.

The history is bounded, so a service can feed it for months: a user keeps at
most ``max_places_per_user`` places (when more are visited, the ones with the
least recency-weighted visits go, with the moves to them), and a user with no
event for ``max_idle_days`` (on the history's clock, its newest event) is
dropped a few per event, never in one long sweep.  What remains per user is
bounded by the catalogue (categories, merchants, 48 hour bins).  Only which
places a full user forgets depends on arrival order.

Events that name only ``offer_id`` or ``store_id`` carry no merchant and no
category; an :class:`~o2o_geo.OfferScorer` given the history fills them in
from its offers and stores (for the events already added too), and reads the
local hour in each store's time zone.  Without a scorer such events count
everywhere but in the category and merchant affinities, with hours in UTC.
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ._events import EVENT_KINDS, Event, as_events
from ._history_reads import HistoryReads
from ._state import ExpiryWheel
from ._time import N_HOUR_BINS, SECONDS_PER_DAY, hour_bin
from ._validate import check_id, check_number
from .errors import InvalidParameterError, InvalidRecordError

__all__ = ["DEFAULT_KIND_WEIGHTS", "HistoryTables", "UserHistory", "bind_resolver", "empty_like", "reading"]


@dataclass(slots=True)
class _Decayed:
    """A recency-weighted sum: ``value`` as of time ``t0``."""

    value: float = 0.0
    t0: float = -math.inf

    def add(self, w: float, t: float, half_life_s: float) -> None:
        if self.t0 == -math.inf:
            self.value, self.t0 = w, t
        elif t >= self.t0:
            self.value = self.value * 2.0 ** (-(t - self.t0) / half_life_s) + w
            self.t0 = t
        else:
            self.value += w * 2.0 ** (-(self.t0 - t) / half_life_s)

    def at(self, t: float, half_life_s: float) -> float:
        if self.t0 == -math.inf:
            return 0.0
        return self.value * 2.0 ** (-max(t - self.t0, 0.0) / half_life_s)


@dataclass(slots=True)
class _Place:
    """One user at one store: recency-weighted visits, the count, the last time, local hours and what came next."""

    recency: _Decayed = field(default_factory=_Decayed)
    n: int = 0
    last_ts: float = -math.inf
    hours: dict[int, int] = field(default_factory=dict)
    next: dict[Any, int] = field(default_factory=dict)


@dataclass(slots=True)
class UserTables:
    """One user's folded history: decayed affinities, counts, distances, places (package-internal)."""

    category: dict[Any, _Decayed] = field(default_factory=dict)
    merchant: dict[Any, _Decayed] = field(default_factory=dict)
    engaged: _Decayed = field(default_factory=_Decayed)  # redeems + visits, decayed
    pushes: _Decayed = field(default_factory=_Decayed)
    counts: dict[str, int] = field(default_factory=dict)
    # redeem distances: decayed weight, sum of log-distance, sum of squared log-distance
    dist_w: _Decayed = field(default_factory=_Decayed)
    dist_log: _Decayed = field(default_factory=_Decayed)
    # discount depth of what was redeemed vs what was pushed
    redeem_depth: _Decayed = field(default_factory=_Decayed)
    redeem_n: _Decayed = field(default_factory=_Decayed)
    push_depth: _Decayed = field(default_factory=_Decayed)
    push_n: _Decayed = field(default_factory=_Decayed)
    last_ts: float = -math.inf
    # per store, and the latest visit or redemption: (ts, store_id, category, hour bin)
    places: dict[Any, _Place] = field(default_factory=dict)
    prev: tuple[float, Any, Any, int] | None = None
    cat_hours: dict[tuple[Any, int], int] = field(default_factory=dict)
    cat_next: dict[tuple[Any, Any], int] = field(default_factory=dict)
    # the hour bin each visit came after: (bin of the previous visit, store) -> times
    next_at_hour: dict[tuple[int, Any], int] = field(default_factory=dict)
    version: int = 0  # the history's version when affinities, places or moves last changed (readers cache on it)


#: Weight of each kind in the category and merchant affinities.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {"redeem": 1.0, "visit": 0.5, "click": 0.2, "open": 0.1}


class UserHistory(HistoryReads):
    """Incremental per-user and per-merchant features from a stream of events.

    Parameters
    ----------
    half_life_days : float, default 30
        Recency weighting: an event counts half as much this many days later.
    kind_weights : mapping, optional
        Weight of each event kind in the affinities (default: redeem 1, visit
        0.5, click 0.2, open 0.1; pushes and dismissals add none).
    prior_pushes : float, default 50
        Shrinkage of merchant redemption rates towards the global rate: a
        merchant's rate is ``(redeems + prior_pushes * global_rate) /
        (pushes + prior_pushes)``, so 1 redemption out of 1 push does not beat
        900 out of 1,000.
    prior_rate : float, default 0.05
        Redemptions per push assumed before any data; the global rate is
        shrunk towards it the same way.
    max_places_per_user : int or None, default 128
        Places (stores) remembered per user.  When a visit takes a user past
        it (by an eighth, so eviction is amortised), the places with the
        least recency-weighted visits are forgotten, with the moves to them;
        the store just visited and the previous place always stay.  ``None``:
        no bound.  In the real check-ins of the benchmarks a user visits 79
        venues in ten months (median; 13 % visit more than 128).
    max_idle_days : float or None, default 365
        A user with no event for this long (measured on the history's clock,
        the newest event time it has seen) is dropped, as by
        :meth:`forget_user`, a few users per added event.  ``None``: kept.

    Examples
    --------
    >>> import o2o_geo as og
    >>> h = og.UserHistory(half_life_days=7)
    >>> day = 86400
    >>> h.add(og.Event("redeem", "u1", 0, merchant_id="m1", category="coffee"))
    >>> h.add(og.Event("redeem", "u1", 7 * day, merchant_id="m1", category="coffee"))
    >>> round(h.category_affinity("u1", "coffee", now=7 * day), 3)
    1.5
    >>> round(h.category_affinity("u1", "coffee", now=14 * day), 3)
    0.75
    >>> h.category_affinity("nobody", "coffee", now=0)
    0.0
    """

    #: Idle users dropped per added event (at most).
    DROP_BATCH = 4

    def __init__(
        self,
        half_life_days: float = 30.0,
        kind_weights: Mapping[str, float] | None = None,
        prior_pushes: float = 50.0,
        prior_rate: float = 0.05,
        max_places_per_user: int | None = 128,
        max_idle_days: float | None = 365.0,
    ) -> None:
        half_life_days = check_number(half_life_days, "half_life_days", low=0.0, low_open=True, high=1e9)
        check_number(prior_pushes, "prior_pushes", low=0.0, high=1e12)
        check_number(prior_rate, "prior_rate", low=0.0, low_open=True, high=1.0)
        if prior_rate >= 1.0:
            raise InvalidParameterError(f"prior_rate must be in (0, 1); got {prior_rate!r}")
        if kind_weights is not None and not isinstance(kind_weights, Mapping):
            raise InvalidParameterError(f"kind_weights must map event kinds to weights; got {kind_weights!r:.80}")
        weights = dict(DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights)
        for kind, w in weights.items():
            if kind not in EVENT_KINDS or isinstance(w, bool) or not (isinstance(w, (int, float)) and w >= 0):
                raise InvalidParameterError(
                    f"kind_weights[{kind!r}] = {w!r}: kinds are {sorted(EVENT_KINDS)}, weights >= 0"
                )
        self.half_life_days = float(half_life_days)
        self.kind_weights = weights
        self.prior_pushes = float(prior_pushes)
        self.prior_rate = float(prior_rate)
        self.max_places_per_user = check_number(
            max_places_per_user, "max_places_per_user", low=1, high=10**9, integer=True, allow_none=True
        )
        self.max_idle_days = check_number(
            max_idle_days, "max_idle_days", low=0.0, low_open=True, high=1e9, allow_none=True
        )
        self._h = self.half_life_days * SECONDS_PER_DAY
        self._clock = -math.inf  # the newest event time seen
        self._idle = ExpiryWheel(SECONDS_PER_DAY)  # users by the day they go idle
        self._users: dict[Any, UserTables] = {}
        self._tiers: dict[Any, str] = {}  # user -> member tier (set by the integrator, not learnt)
        # per merchant (codes in first-seen order): pushes and redemptions, columns 0 and 1
        self._merchant_code: dict[Any, int] = {}
        self._merchant_ids: list[Any] = []
        self._merchant_counts = np.zeros((64, 2), dtype=np.int64)
        self._n_pushes = 0
        self._n_redeems = 0
        # all users: visits per store (codes in first-seen order, so readers can map them once),
        # moves between stores, category counts by hour bin and the category that follows each
        self._store_code: dict[Any, int] = {}
        self._store_ids: list[Any] = []
        self._store_visits = np.zeros(1024, dtype=np.int64)  # by store code; grown by doubling
        self._store_next: dict[Any, dict[Any, int]] = {}
        # per category (codes in first-seen order): visits by hour bin; moves from category to category
        self._cat_code: dict[Any, int] = {}
        self._cat_ids: list[Any] = []
        self._cat_hours = np.zeros((16, N_HOUR_BINS), dtype=np.int64)
        self._cat_next: dict[int, dict[int, int]] = {}
        self._cat_version = 0  # bumped when _cat_hours changes (readers cache the shares on it)
        self._rates_version = 0
        self._resolver: Resolver | None = None
        self._pending: list[Event] = []  # events waiting for a resolver (merchant or category unknown)
        self._version = 0  # bumped by every change; lets readers cache derived values
        self._lock = threading.Lock()

    @classmethod
    def from_events(cls, events: Iterable[Event] | Any, **kwargs: Any) -> UserHistory:
        """Build from events: an iterable of :class:`Event`, or a DataFrame with their fields as columns.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("visit", 1, 0, merchant_id="m", category="tea")])
        >>> h.n_events(1, "visit")
        1
        """
        h = cls(**kwargs)
        for e in as_events(events):
            h.add(e)
        return h

    def __len__(self) -> int:
        return len(self._users)

    def __getstate__(self) -> bytes:
        """Pickle support (e.g. to ship a scorer to Dask workers): everything but the lock, as one snapshot.

        Examples
        --------
        >>> import copy, o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("visit", 1, 0, merchant_id="m", category="tea")])
        >>> h2 = copy.deepcopy(h)
        >>> h2.add(og.Event("visit", 1, 60, merchant_id="m", category="tea"))
        >>> h.n_events(1, "visit"), h2.n_events(1, "visit")
        (1, 2)
        """
        with self._lock:  # pickled under the lock: no event is half added (and bytes copy fast)
            # the resolver (a scorer's) is not part of the history: the scorer binds it again on unpickling
            state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_resolver")}
            return pickle.dumps(state, pickle.HIGHEST_PROTOCOL)

    def __setstate__(self, state: bytes) -> None:
        self.__dict__.update(pickle.loads(state))
        self._resolver = None
        self._lock = threading.Lock()
        self.__dict__.setdefault("_tiers", {})  # pickled before tiers existed
        if "_idle" not in self.__dict__:  # pickled before the history was bounded: unbounded, as it was
            self.max_places_per_user, self.max_idle_days = None, None
            self._clock = max((st.last_ts for st in self._users.values()), default=-math.inf)
            self._idle = ExpiryWheel(SECONDS_PER_DAY)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def add(self, event: Event) -> None:
        """Fold one event into the features, in O(1); events may arrive in any order.

        Examples
        --------
        >>> import o2o_geo as og
        >>> events = [og.Event("visit", "u1", 0, merchant_id="m1", category="tea"),
        ...           og.Event("redeem", "u1", 86400, merchant_id="m1", category="tea")]
        >>> in_order, reversed_order = og.UserHistory(), og.UserHistory()
        >>> for e in events:
        ...     in_order.add(e)
        >>> for e in reversed(events):
        ...     reversed_order.add(e)
        >>> for h in (in_order, reversed_order):
        ...     print(f"{h.category_affinity('u1', 'tea', now=86400):.4f}", h.n_events("u1", "redeem"))
        1.4886 1
        1.4886 1
        """
        if not isinstance(event, Event):
            raise InvalidRecordError(f"UserHistory.add takes an Event; got {type(event).__name__}")
        resolver = self._resolver
        # resolved before taking the lock: the resolver may read the index, which takes its own lock
        resolved = resolver(event) if resolver is not None else None
        with self._lock:
            self._version += 1
            st = self._users.get(event.user_id)
            if st is None:
                st = self._users[event.user_id] = UserTables()
            self._fold_basic(st, event)
            if resolved is None and _unresolved(event):
                self._pending.append(event)
            else:
                self._fold_resolved(st, event, resolved)
            if self.max_idle_days is not None:
                self._drop_idle(event.user_id, st)

    def _drop_idle(self, user_id: Any, st: UserTables) -> None:
        """File the user's idle time; drop up to :attr:`DROP_BATCH` users idle for ``max_idle_days``."""
        idle_s = self.max_idle_days * SECONDS_PER_DAY
        self._idle.file(user_id, st.last_ts + idle_s)
        if st.last_ts > self._clock:
            self._clock = st.last_ts
        for u in self._idle.due(self._clock, self.DROP_BATCH):
            other = self._users.get(u)
            if other is None:
                continue
            if other.last_ts + idle_s <= self._clock:
                del self._users[u]
            else:  # not idle after all (a newer event came since it was filed): file it again
                self._idle.file(u, other.last_ts + idle_s)

    def _fold_basic(self, st: UserTables, event: Event) -> None:
        """The parts of an event that need neither its merchant, nor its category, nor local time."""
        h, t = self._h, event.ts
        st.counts[event.kind] = st.counts.get(event.kind, 0) + 1
        st.last_ts = max(st.last_ts, t)
        if event.kind in ("redeem", "visit"):
            st.engaged.add(1.0, t, h)
        if event.kind in ("push", "redeem"):
            self._rates_version += 1  # redemption rates change only with pushes and redemptions
        if event.kind == "push":
            st.pushes.add(1.0, t, h)
            self._n_pushes += 1
            if event.discount_depth is not None:
                st.push_depth.add(event.discount_depth, t, h)
                st.push_n.add(1.0, t, h)
        if event.kind == "redeem":
            self._n_redeems += 1
            if event.distance_m is not None:
                st.dist_w.add(1.0, t, h)
                st.dist_log.add(math.log(max(event.distance_m, 1.0)), t, h)
            if event.discount_depth is not None:
                st.redeem_depth.add(event.discount_depth, t, h)
                st.redeem_n.add(1.0, t, h)

    def _fold_resolved(self, st: UserTables, event: Event, resolved: tuple[Any, Any, float] | None) -> None:
        """Affinities, merchant counts, places, hours and moves: what needs the merchant, category or local hour.

        ``resolved`` is the resolver's (merchant, category, UTC offset) of the event, or None
        (then the event's own merchant and category, and UTC).
        """
        h, t = self._h, event.ts
        merchant, category, offset_s = event.merchant_id, event.category, 0.0
        if resolved is not None:
            r_merchant, r_category, offset_s = resolved
            merchant = r_merchant if merchant is None else merchant
            category = r_category if category is None else category
        w = self.kind_weights.get(event.kind, 0.0)
        if w > 0 or event.kind in ("redeem", "visit"):
            st.version = self._version  # what the scorer reads per user changes only here
        if w > 0:
            if category is not None:
                st.category.setdefault(category, _Decayed()).add(w, t, h)
            if merchant is not None:
                st.merchant.setdefault(merchant, _Decayed()).add(w, t, h)
        if merchant is not None and event.kind in ("push", "redeem"):
            code = _code_of(self._merchant_code, self._merchant_ids, merchant)
            self._merchant_counts = _with_row(self._merchant_counts, code)
            self._merchant_counts[code, 0 if event.kind == "push" else 1] += 1
        if event.kind not in ("redeem", "visit"):
            return
        b = hour_bin(t, offset_s)
        store = event.store_id
        prev = st.prev
        in_order = prev is None or t >= prev[0]
        if store is not None:
            place = st.places.get(store)
            if place is None:
                place = st.places[store] = _Place()
                cap = self.max_places_per_user
                if cap is not None and len(st.places) > cap + cap // 8:
                    self._evict_places(st, cap, st.last_ts, keep=(store, None if prev is None else prev[1]))
            place.recency.add(1.0, t, h)
            place.n += 1
            place.last_ts = max(place.last_ts, t)
            place.hours[b] = place.hours.get(b, 0) + 1
            code = _code_of(self._store_code, self._store_ids, store)
            self._store_visits = _with_row(self._store_visits, code)
            self._store_visits[code] += 1
        if category is not None:
            key = (category, b)
            st.cat_hours[key] = st.cat_hours.get(key, 0) + 1
            c_code = self._category_code(category)
            self._cat_hours[c_code, b] += 1
            self._cat_version += 1
        if in_order and prev is not None:
            _, p_store, p_category, p_bin = prev
            if store is not None and p_store is not None:
                nxt = st.places[p_store].next
                nxt[store] = nxt.get(store, 0) + 1
                crowd = self._store_next.setdefault(p_store, {})
                crowd[store] = crowd.get(store, 0) + 1
                key2 = (p_bin, store)
                st.next_at_hour[key2] = st.next_at_hour.get(key2, 0) + 1
            if category is not None and p_category is not None:
                key3 = (p_category, category)
                st.cat_next[key3] = st.cat_next.get(key3, 0) + 1
                crowd_c = self._cat_next.setdefault(self._category_code(p_category), {})
                c_code = self._category_code(category)
                crowd_c[c_code] = crowd_c.get(c_code, 0) + 1
        if in_order:
            st.prev = (t, store, category, b)

    def _evict_places(self, st: UserTables, cap: int, t: float, keep: tuple[Any, Any]) -> None:
        """Forget the user's places with the least recency-weighted visits at ``t``, down to ``cap``.

        Ties go to the place visited longest ago.  The moves to a forgotten
        place go with it; the crowd's counts (popularity, moves) keep it.
        """
        h = self._h
        candidates = [(p.recency.at(t, h), p.last_ts, sid) for sid, p in st.places.items() if sid not in keep]
        candidates.sort(key=lambda c: (c[0], c[1]))  # store ids need not be comparable with each other
        gone = {c[2] for c in candidates[: len(st.places) - cap]}
        for sid in gone:
            del st.places[sid]
        for p in st.places.values():
            for sid in gone.intersection(p.next):
                del p.next[sid]
        if gone:
            st.next_at_hour = {k: n for k, n in st.next_at_hour.items() if k[1] not in gone}

    def _category_code(self, category: Any) -> int:
        code = _code_of(self._cat_code, self._cat_ids, category)
        self._cat_hours = _with_row(self._cat_hours, code)
        return code

    def _bind(self, resolver: Resolver) -> None:
        """Fill in merchants, categories and local hours with ``resolver`` from now on, and for the waiting events."""
        with self._lock:
            self._resolver = resolver
            pending, self._pending = sorted(self._pending, key=lambda e: e.ts), []
        if not pending:
            return
        resolved = [resolver(e) for e in pending]  # outside the lock, as in add
        with self._lock:
            self._version += 1
            self._rates_version += 1
            for e, r in zip(pending, resolved, strict=True):
                st = self._users.get(e.user_id)
                if st is not None:  # None: the user was forgotten meanwhile
                    self._fold_resolved(st, e, r)

    def forget_user(self, user_id: Any) -> bool:
        """Erase a user's features; returns whether there were any.

        Merchant-level counts keep the user's past pushes and redemptions as
        anonymous aggregates.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("push", "u1", 0, merchant_id="m1"),
        ...                                 og.Event("redeem", "u1", 60, merchant_id="m1")])
        >>> h.forget_user("u1"), h.forget_user("u1")
        (True, False)
        >>> "u1" in h, h.n_events("u1", "redeem"), h.merchant_popularity("m1")
        (False, 0, 1)
        """
        user_id = check_id(user_id, "user_id")
        with self._lock:
            self._version += 1
            if self._pending:
                self._pending = [e for e in self._pending if e.user_id != user_id]
            self._idle.forget(user_id)
            had_tier = self._tiers.pop(user_id, None) is not None
            return (self._users.pop(user_id, None) is not None) or had_tier

    def set_tier(self, user_id: Any, tier: str | None) -> bool:
        """Set (``None``: clear) the user's member tier, the scorer's ``member`` feature; whether it changed.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> h.set_tier("u1", "gold"), h.set_tier("u1", "gold"), h.tier("u1"), h.tier("u2")
        (True, False, 'gold', None)
        >>> h.set_tier("u1", None), h.tier("u1")
        (True, None)
        """
        user_id = check_id(user_id, "user_id")
        if tier is not None and not isinstance(tier, str):
            raise InvalidParameterError(f"tier must be a str or None; got {tier!r:.80}")
        with self._lock:
            if self._tiers.get(user_id) == tier:
                return False
            self._version += 1
            if tier is None:
                del self._tiers[user_id]
            else:
                self._tiers[user_id] = tier
            return True


class HistoryTables(NamedTuple):
    """A history's tables as the scorer reads them in bulk (package-internal: see :func:`reading`).

    Codes are first-seen order, so a reader maps its own ids to them once
    and extends the map as codes are added; the versions say when derived
    values must be recomputed.
    """

    users: Mapping[Any, UserTables]
    tiers: Mapping[Any, str]
    half_life_s: float
    store_ids: Sequence[Any]
    store_visits: np.ndarray  # by store code, one per store_ids entry
    store_next: Mapping[Any, Mapping[Any, int]]
    cat_ids: Sequence[Any]
    cat_hours: np.ndarray  # (category code, hour bin) -> visits
    cat_next: Mapping[int, Mapping[int, int]]
    cat_version: int
    merchant_ids: Sequence[Any]
    merchant_counts: np.ndarray  # (merchant code, [pushes, redemptions])
    rates_version: int


@contextmanager
def reading(history: UserHistory) -> Iterator[HistoryTables]:
    """Hold the history's lock and give its tables: the feature extractor and the fit's replay read them so.

    The history's own methods (``usual_distance_m`` and the others) may be
    called inside; nothing may be added to the history before the block ends.
    """
    h = history
    with h._lock:
        yield HistoryTables(
            users=h._users,
            tiers=h._tiers,
            half_life_s=h._h,
            store_ids=h._store_ids,
            store_visits=h._store_visits[: len(h._store_ids)],
            store_next=h._store_next,
            cat_ids=h._cat_ids,
            cat_hours=h._cat_hours,
            cat_next=h._cat_next,
            cat_version=h._cat_version,
            merchant_ids=h._merchant_ids,
            merchant_counts=h._merchant_counts,
            rates_version=h._rates_version,
        )


def bind_resolver(history: UserHistory, resolver: Resolver) -> None:
    """Fill in the history's merchants, categories and local hours with ``resolver`` (the scorer's), from now on.

    The events waiting for one are resolved and folded in.  Idempotent: a
    history already bound to an equal resolver is left as it is.
    """
    if history._resolver is None or history._resolver != resolver:
        history._bind(resolver)


def empty_like(history: UserHistory) -> UserHistory:
    """An empty history with ``history``'s settings and member tiers (the tiers are the user's, not events)."""
    h = history
    out = UserHistory(
        h.half_life_days, h.kind_weights, h.prior_pushes, h.prior_rate, h.max_places_per_user, h.max_idle_days
    )
    with h._lock:
        out._tiers = dict(h._tiers)
    return out


def _code_of(index: dict[Any, int], ids: list[Any], key: Any) -> int:
    """The code of ``key`` in first-seen order, a new one (appended to ``ids``) when unseen."""
    code = index.get(key)
    if code is None:
        code = index[key] = len(ids)
        ids.append(key)
    return code


def _with_row(counts: np.ndarray, code: int) -> np.ndarray:
    """``counts``, doubled with zero rows when it has no row ``code`` yet (amortised O(1) growth)."""
    return counts if code < counts.shape[0] else np.concatenate([counts, np.zeros_like(counts)])


#: Fills in an event's merchant, category and its store's UTC offset in seconds (the scorer's catalog).
Resolver = Callable[[Event], tuple[Any, Any, float]]


def _unresolved(event: Event) -> bool:
    """Whether the event names an offer or a store but lacks the merchant or category only they can tell."""
    return (event.offer_id is not None or event.store_id is not None) and (
        event.merchant_id is None or event.category is None
    )
