"""Events and the incremental per-user history the offer scorer reads.

Every feature is kept as a running, recency-weighted sum: a value ``S`` with
the time ``t0`` it refers to, read at time ``t`` as ``S * 2**(-(t - t0) / h)``
for a half-life ``h``.  Adding an event updates one such sum in O(1), in any
time order (an event older than ``t0`` is added already decayed), so adding an
event never rescans the log and the result does not depend on arrival order.

Visits and redemptions are also remembered per store (how often and how
recently the user was there, at which local hours, where they went next) and,
for all users together, per store and category (popularity, the hours of
each category, the category that follows each category).  What comes next
depends on order: an event older than the user's latest visit or redemption
updates the counts but not the "previous place" or the transitions.

The history is bounded, so a service can feed it for months: a user keeps at
most ``max_places_per_user`` places (when more are visited, the ones with the
least recency-weighted visits go, with the moves to them), and a user with no
event for ``max_idle_days`` (on the history's clock, its newest event) is
dropped a few per event, never in one long sweep.  What remains per user is
bounded by the catalogue (categories, merchants, 48 hour bins).  (Which
places a full user forgets depends on when the events arrived; below the
bound, arrival order changes nothing.)

Events that name only ``offer_id`` or ``store_id`` carry no merchant and no
category; an :class:`~o2o_geo.OfferScorer` given the history fills them in
from its offers and stores (for the events already added too), and reads the
local hour in each store's time zone.  Without a scorer such events count
everywhere except in the category and merchant affinities, and their hours
are read in UTC.
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, get_args

import numpy as np

from ._state._expiry import ExpiryWheel
from ._types import FloatArray
from ._validate import check_id, check_number, did_you_mean
from .errors import InvalidParameterError, InvalidRecordError

__all__ = ["Event", "EventKind", "UserHistory", "as_events", "checked_event", "to_epoch_s"]

#: What happened: the engine pushed an offer, the user opened or clicked it,
#: redeemed it in store, visited the store, or dismissed the push.
EventKind = Literal["push", "open", "click", "redeem", "visit", "dismiss", "failed"]
_KINDS = frozenset(get_args(EventKind))
SECONDS_PER_DAY = 86_400.0


#: Epoch seconds of 3000-01-01 and 0001-01-01 (UTC): times outside are refused (a millisecond
#: timestamp of today reads as a year beyond 50,000).
_MAX_EPOCH_S = 32_503_680_000.0
_MIN_EPOCH_S = -62_135_596_800.0


def to_epoch_s(ts: Any, name: str = "ts") -> float:
    """Epoch seconds (UTC) from epoch seconds, an aware datetime, an ISO 8601 string or a ``numpy.datetime64``.

    Accepted: numbers of epoch seconds (years 1 to 3000); timezone-aware
    ``datetime`` (pandas ``Timestamp`` included); ISO 8601 strings with a UTC
    offset or ``Z`` (``"2026-01-01T09:00:00+08:00"``); ``numpy.datetime64``
    and naive pandas ``Timestamp`` (datetime64 underneath), which carry no
    time zone and are taken as UTC, as numpy and pandas count them.  Naive
    ``datetime.datetime`` values and ISO strings without an offset are
    refused rather than guessed: a naive local time read as UTC moves every
    event by hours and silently breaks quiet hours and recency.

    Raises
    ------
    InvalidParameterError
        A naive datetime or string, NaT, a non-finite number, a time outside
        years 1-3000 (epoch milliseconds or microseconds get a hint), or
        something else.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> import numpy as np
    >>> from o2o_geo._history import to_epoch_s
    >>> to_epoch_s(datetime(2026, 1, 1, tzinfo=timezone.utc)), to_epoch_s(1767225600)
    (1767225600.0, 1767225600.0)
    >>> to_epoch_s("2026-01-01T08:00:00+08:00"), to_epoch_s(np.datetime64("2026-01-01T00:00:00"))
    (1767225600.0, 1767225600.0)
    >>> try:
    ...     to_epoch_s(1767225600000)
    ... except ValueError as exc:
    ...     print(str(exc).split("; ")[1])
    epoch milliseconds? divide by 1000
    """
    if isinstance(ts, datetime):
        if (ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None) and hasattr(ts, "to_datetime64"):
            return to_epoch_s(ts.to_datetime64(), name)  # a naive pandas Timestamp: datetime64, taken as UTC
        if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
            raise InvalidParameterError(
                f"{name} = {ts!r} has no timezone; pass an aware datetime (e.g. tzinfo=timezone.utc) or epoch seconds"
            )
        return ts.timestamp()
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts.strip())
        except ValueError:
            raise InvalidParameterError(
                f"{name} = {ts!r} is not an ISO 8601 time (e.g. '2026-01-01T09:00:00+08:00')"
            ) from None
        if parsed.tzinfo is None:
            raise InvalidParameterError(f"{name} = {ts!r} has no UTC offset; add one (e.g. '+08:00' or 'Z')")
        return parsed.timestamp()
    if isinstance(ts, np.datetime64):
        if np.isnat(ts):
            raise InvalidParameterError(f"{name} is NaT (not a time)")
        out = float((ts - np.datetime64(0, "s")) / np.timedelta64(1, "s"))  # taken as UTC
        return _in_range(out, ts, name)
    if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, float)) and not hasattr(ts, "__float__"):
        raise InvalidParameterError(f"{name} must be epoch seconds or an aware datetime; got {ts!r}")
    try:
        out = float(ts)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidParameterError(f"{name} must be epoch seconds or an aware datetime; got {ts!r} ({exc})") from None
    if not math.isfinite(out):
        raise InvalidParameterError(f"{name} = {ts!r} is not a finite time")
    return _in_range(out, ts, name)


def to_epoch_s_column(values: Any, name: str = "ts") -> FloatArray:
    """Epoch seconds from numbers, aware datetimes, ISO 8601 strings or a datetime64 column (naive: UTC).

    A datetime64 column (numpy, or pandas with or without a time zone) is read
    whole; a naive one is taken as UTC, as :func:`to_epoch_s` takes a
    ``numpy.datetime64``.  Other columns are read row by row; a scalar or a
    table is :class:`InvalidParameterError`.

    Examples
    --------
    >>> to_epoch_s_column(np.array(["2026-01-01T00:00:01"], dtype="datetime64[ms]")).tolist()
    [1767225601.0]
    """
    dtype = getattr(values, "dtype", None)
    if dtype is not None and str(dtype).startswith("datetime64"):
        ticks = np.asarray(values.astype("int64"), dtype=np.int64)
        nat = ticks == np.iinfo(np.int64).min
        if nat.any():
            raise InvalidParameterError(f"{name} of row {int(np.flatnonzero(nat)[0])} is NaT (not a time)")
        return ticks / _ticks_per_s(dtype)
    if getattr(values, "ndim", 1) != 1 or isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidParameterError(f"{name} must be a column of times (a list or an array); got {values!r:.80}")
    if dtype is not None and getattr(dtype, "kind", "O") in ("i", "u", "f"):  # numbers: checked whole
        try:
            out = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):  # a nullable column with a missing value: the rows below name it
            out = np.array([np.nan])
        if ((out >= _MIN_EPOCH_S) & (out <= _MAX_EPOCH_S)).all():
            return out
    arr = values.tolist() if hasattr(values, "tolist") else list(values)
    out = np.empty(len(arr))
    for i, v in enumerate(arr):
        out[i] = to_epoch_s(v, f"{name} of row {i}")
    return out


def _ticks_per_s(dtype: Any) -> float:
    unit = getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]


def _in_range(out: float, ts: Any, name: str) -> float:
    """``out`` if it is a time in years 1-3000; else the error, with a hint for milliseconds and microseconds."""
    if _MIN_EPOCH_S <= out <= _MAX_EPOCH_S:
        return out
    for unit, factor in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if _MIN_EPOCH_S <= out / factor <= _MAX_EPOCH_S:
            hint = f"epoch {unit}? divide by {factor:,.0f}".replace(",", "")
            break
    else:
        hint = "epoch seconds must fall in years 1 to 3000"
    raise InvalidParameterError(f"{name} = {ts!r} is beyond the year 3000 or before the year 1; {hint}")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a user did (or the engine did to a user), at a time.

    Parameters
    ----------
    kind : {"push", "open", "click", "redeem", "visit", "dismiss", "failed"}
        What happened (``failed``: a push could not be delivered).
    user_id : str or int
        Who.
    ts : float or datetime
        When: epoch seconds, or a timezone-aware datetime (stored as epoch seconds).
    offer_id, store_id, merchant_id, category, push_id : optional
        What it was about.  ``merchant_id`` and ``category`` feed the user's
        affinities; the scorer fills them in from its offers and stores.
    amount : float, optional
        Money spent (redeem), in the merchant's currency.
    discount_depth : float, optional
        Share of the price the offer took off (0.2 for 20 % off), for the
        user's discount sensitivity.
    distance_m : float, optional
        Distance from the user to the store when pushed or redeemed, metres.
    event_id : str or int, optional
        The caller's unique id of the event; :meth:`Dispatcher.record` stores
        an event id once, so a redelivered event is not counted twice.

    Examples
    --------
    >>> import o2o_geo as og
    >>> e = og.Event("redeem", "u1", 1767225600, offer_id="o1", category="coffee", amount=32.0)
    >>> e.kind, e.ts, e.category
    ('redeem', 1767225600.0, 'coffee')
    """

    kind: EventKind
    user_id: Any
    ts: float
    offer_id: Any = None
    store_id: Any = None
    merchant_id: Any = None
    category: Any = None
    push_id: Any = None
    amount: float | None = None
    discount_depth: float | None = None
    distance_m: float | None = None
    event_id: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in _KINDS:
            raise InvalidRecordError(f"event kind {self.kind!r} is not one of {sorted(_KINDS)}")
        if self.user_id is None or isinstance(self.user_id, bool) or not isinstance(self.user_id, (str, int)):
            raise InvalidRecordError(f"event user_id must be a str or an int; got {self.user_id!r}")
        object.__setattr__(self, "ts", to_epoch_s(self.ts, "event ts"))
        for name in ("offer_id", "store_id", "merchant_id", "push_id", "event_id"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, check_id(v, f"event {name}"))
        if self.category is not None and not isinstance(self.category, Hashable):
            raise InvalidRecordError(f"event category must be a str or another hashable; got {self.category!r:.80}")
        for name in ("amount", "distance_m"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InvalidRecordError(f"event {name} must be a finite number >= 0; got {v!r}")
        d = self.discount_depth
        if d is not None and not (isinstance(d, (int, float)) and 0.0 <= d < 1.0):
            raise InvalidRecordError(f"event discount_depth must be in [0, 1); got {d!r}")


_EVENT_FIELDS = tuple(f.name for f in fields(Event))


def checked_event(**values: Any) -> Event:
    """An :class:`Event` from values already checked (the engine's own stored records), without checking again.

    Package-internal: the dispatcher's feedback turns each committed push and
    inferred visit into an event; their fields passed :class:`Event`'s checks
    (or the state's) when they were made, so the constructor's checks (a
    few per cent of a push decision's cost) are not repeated.  Unnamed
    fields are None.

    >>> checked_event(kind="visit", user_id="u1", ts=1767225600.0, store_id="s1") == Event(
    ...     "visit", "u1", 1767225600.0, store_id="s1")
    True
    """
    e = object.__new__(Event)
    for name in _EVENT_FIELDS:
        object.__setattr__(e, name, values.get(name))
    return e


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


#: Hour bins of the time-of-day profiles: 24 hours of a weekday, then 24 of a weekend day.
N_HOUR_BINS = 48


def hour_bin(ts: float, utc_offset_s: float) -> int:
    """Profile bin of a time: local hour of day, plus 24 on Saturdays and Sundays.

    Examples
    --------
    >>> from o2o_geo._history import hour_bin
    >>> hour_bin(1767258000, 0)  # Thursday 2026-01-01 09:00 UTC
    9
    >>> hour_bin(1767258000, 2 * 86400)  # the same clock time two days later: Saturday
    33
    """
    local = ts + utc_offset_s
    weekday = (int(local // SECONDS_PER_DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return int(local % SECONDS_PER_DAY // 3600) + (24 if weekday >= 5 else 0)


@dataclass(slots=True)
class _Place:
    """One user at one store: recency-weighted visits, the count, the last time, local hours and what came next."""

    recency: _Decayed = field(default_factory=_Decayed)
    n: int = 0
    last_ts: float = -math.inf
    hours: dict[int, int] = field(default_factory=dict)
    next: dict[Any, int] = field(default_factory=dict)


@dataclass(slots=True)
class _UserState:
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


class UserHistory:
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
            if kind not in _KINDS or isinstance(w, bool) or not (isinstance(w, (int, float)) and w >= 0):
                raise InvalidParameterError(f"kind_weights[{kind!r}] = {w!r}: kinds are {sorted(_KINDS)}, weights >= 0")
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
        self._users: dict[Any, _UserState] = {}
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
                st = self._users[event.user_id] = _UserState()
            self._fold_basic(st, event)
            if resolved is None and _unresolved(event):
                self._pending.append(event)
            else:
                self._fold_resolved(st, event, resolved)
            if self.max_idle_days is not None:
                self._drop_idle(event.user_id, st)

    def _drop_idle(self, user_id: Any, st: _UserState) -> None:
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

    def _fold_basic(self, st: _UserState, event: Event) -> None:
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

    def _fold_resolved(self, st: _UserState, event: Event, resolved: tuple[Any, Any, float] | None) -> None:
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

    def _evict_places(self, st: _UserState, cap: int, t: float, keep: tuple[Any, Any]) -> None:
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

    def _user(self, user_id: Any) -> _UserState | None:
        """The user's state, for readers that hold :attr:`_lock` (the scorer's feature extractor)."""
        return self._users.get(user_id)

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

    def tier(self, user_id: Any) -> str | None:
        """The user's member tier (see :meth:`set_tier`), or None.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> _ = h.set_tier(7, "silver")
        >>> h.tier(7), h.tier(8)
        ('silver', None)
        """
        return self._tiers.get(check_id(user_id, "user_id"))

    # ------------------------------------------------------------ features
    def n_events(self, user_id: Any, kind: str) -> int:
        """How many events of this kind the user has (not decayed).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("push", "u1", 0), og.Event("push", "u1", 60),
        ...                                 og.Event("dismiss", "u1", 90)])
        >>> h.n_events("u1", "push"), h.n_events("u1", "dismiss"), h.n_events("u1", "redeem"), h.n_events("u2", "push")
        (2, 1, 0, 0)
        """
        st = self._users.get(check_id(user_id, "user_id"))
        return 0 if st is None else st.counts.get(_hashable(kind, "kind"), 0)

    def category_affinity(self, user_id: Any, category: Any, now: Any) -> float:
        """Recency-weighted engagement of the user with a category at ``now`` (0 when none).

        Examples
        --------
        Each kind counts with its weight (redeem 1, visit 0.5, open 0.1 by default):

        >>> from datetime import datetime, timezone
        >>> import o2o_geo as og
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", t, category="coffee"),
        ...                                 og.Event("visit", "u1", t, category="coffee"),
        ...                                 og.Event("open", "u1", t, category="tea")])
        >>> for category in ("coffee", "tea", "cinema"):
        ...     print(f"{category:<7} {h.category_affinity('u1', category, now=t):.2f}")
        coffee  1.50
        tea     0.10
        cinema  0.00
        """
        st = self._users.get(check_id(user_id, "user_id"))
        d = None if st is None else st.category.get(_hashable(category, "category"))
        return 0.0 if d is None else d.at(to_epoch_s(now, "now"), self._h)

    def merchant_affinity(self, user_id: Any, merchant_id: Any, now: Any) -> float:
        """Recency-weighted engagement of the user with a merchant at ``now`` (0 when none).

        Examples
        --------
        With the default half-life of 30 days:

        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky")])
        >>> [f"{h.merchant_affinity('u1', 'm-lucky', now=days * 86400):.2f}" for days in (0, 30, 60)]
        ['1.00', '0.50', '0.25']
        """
        st = self._users.get(check_id(user_id, "user_id"))
        d = None if st is None else st.merchant.get(_hashable(merchant_id, "merchant_id"))
        return 0.0 if d is None else d.at(to_epoch_s(now, "now"), self._h)

    def category_sums(self, user_id: Any, now: float) -> list[tuple[Any, float]]:
        """Every (category, affinity at ``now``) of the user (``now`` in epoch seconds).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, category="coffee"),
        ...                                 og.Event("visit", "u1", 7 * 86400, category="tea")], half_life_days=7)
        >>> for category, affinity in h.category_sums("u1", 7 * 86400):
        ...     print(f"{category} {affinity:.2f}")
        coffee 0.50
        tea 0.50
        >>> h.category_sums("nobody", 0)
        []
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None:
            return []
        with self._lock:  # another thread may be adding an event to this user
            items = list(st.category.items())
        return [(c, d.at(now, self._h)) for c, d in items]

    def merchant_sums(self, user_id: Any, now: float) -> list[tuple[Any, float]]:
        """Every (merchant, affinity at ``now``) of the user (``now`` in epoch seconds).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky"),
        ...                                 og.Event("click", "u1", 0, merchant_id="m-tea")])
        >>> for merchant, affinity in h.merchant_sums("u1", 30 * 86400):
        ...     print(f"{merchant} {affinity:.2f}")
        m-lucky 0.50
        m-tea 0.10
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None:
            return []
        with self._lock:
            items = list(st.merchant.items())
        return [(m, d.at(now, self._h)) for m, d in items]

    def activity(self, user_id: Any, now: Any) -> float:
        """Recency-weighted count of the user's redemptions and visits at ``now``.

        Examples
        --------
        Pushes and opens are not activity; a redemption and a visit are:

        >>> import o2o_geo as og
        >>> h = og.UserHistory(half_life_days=7)
        >>> for kind in ("push", "open", "redeem", "visit"):
        ...     h.add(og.Event(kind, "u1", 0))
        >>> print(f"{h.activity('u1', now=0):.2f} {h.activity('u1', now=7 * 86400):.2f} {h.activity('u2', now=0):.2f}")
        2.00 1.00 0.00
        """
        st = self._users.get(check_id(user_id, "user_id"))
        return 0.0 if st is None else st.engaged.at(to_epoch_s(now, "now"), self._h)

    def usual_distance_m(self, user_id: Any, default_m: float = 1000.0) -> float:
        """Recency-weighted geometric mean distance of the user's past redemptions (``default_m`` when none).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, distance_m=200.0),
        ...                                 og.Event("redeem", "u1", 0, distance_m=800.0)])
        >>> print(f"{h.usual_distance_m('u1'):.0f} {h.usual_distance_m('u2'):.0f} {h.usual_distance_m('u2', 500):.0f}")
        400 1000 500
        """
        default_m = check_number(default_m, "default_m", low=0.0)
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None or st.dist_w.t0 == -math.inf:
            return float(default_m)
        t = st.dist_w.t0 if st.dist_w.t0 >= st.dist_log.t0 else st.dist_log.t0
        w = st.dist_w.at(t, self._h)
        return math.exp(st.dist_log.at(t, self._h) / w) if w > 0 else float(default_m)

    def discount_sensitivity(self, user_id: Any, prior_n: float = 2.0) -> float:
        """How much deeper the user's redeemed discounts are than the pushed ones, shrunk to 0.

        Positive: the user redeems the deep discounts; 0 with no evidence.

        Examples
        --------
        Both users are pushed a 10 % and a 30 % discount; one redeems the deep one, the other the shallow one:

        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> for user, redeemed in (("hunter", 0.3), ("regular", 0.1)):
        ...     h.add(og.Event("push", user, 0, discount_depth=0.1))
        ...     h.add(og.Event("push", user, 0, discount_depth=0.3))
        ...     h.add(og.Event("redeem", user, 3600, discount_depth=redeemed))
        >>> for user in ("hunter", "regular", "new"):
        ...     print(f"{user:<7} {h.discount_sensitivity(user):+.3f}")
        hunter  +0.033
        regular -0.033
        new     +0.000
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None or st.redeem_n.t0 == -math.inf or st.push_n.t0 == -math.inf:
            return 0.0
        t = max(st.redeem_n.t0, st.push_n.t0)
        rn, pn = st.redeem_n.at(t, self._h), st.push_n.at(t, self._h)
        if rn <= 0 or pn <= 0:
            return 0.0
        gap = st.redeem_depth.at(t, self._h) / rn - st.push_depth.at(t, self._h) / pn
        return gap * rn / (rn + prior_n)

    def merchant_redemption_rate(self, merchant_id: Any) -> float:
        """Redemptions per push of a merchant, shrunk towards the global rate (see ``prior_pushes``).

        Examples
        --------
        Fifty pushes each; 20 redeemed at one merchant, 1 at the other:

        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> for i in range(100):
        ...     h.add(og.Event("push", f"u{i}", i, merchant_id="m-good" if i < 50 else "m-bad"))
        >>> for i in (*range(20), 60):
        ...     h.add(og.Event("redeem", f"u{i}", 1000 + i, merchant_id="m-good" if i < 50 else "m-bad"))
        >>> for m in ("m-good", "m-bad", "m-new"):  # raw rates 0.40, 0.02 and none
        ...     print(f"{m:<6} {h.merchant_redemption_rate(m):.3f}")
        m-good 0.278
        m-bad  0.088
        m-new  0.157
        """
        global_rate = self.global_redemption_rate()
        code = self._merchant_code.get(merchant_id)
        p, r = (0, 0) if code is None else self._merchant_counts[code].tolist()
        denom = p + self.prior_pushes
        return (r + self.prior_pushes * global_rate) / denom if denom > 0 else global_rate

    def global_redemption_rate(self) -> float:
        """Redemptions per push over all merchants, shrunk towards ``prior_rate``.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory(prior_pushes=50, prior_rate=0.05)
        >>> print(f"{h.global_redemption_rate():.3f}")
        0.050
        >>> for i in range(100):
        ...     h.add(og.Event("push", f"u{i}", i))
        >>> for i in range(20):
        ...     h.add(og.Event("redeem", f"u{i}", 1000 + i))
        >>> print(f"{h.global_redemption_rate():.3f}")  # (20 + 50 * 0.05) / (100 + 50)
        0.150
        """
        denom = self._n_pushes + self.prior_pushes
        r = (self._n_redeems + self.prior_pushes * self.prior_rate) / denom if denom > 0 else self.prior_rate
        return min(max(r, 1e-6), 1 - 1e-6)

    def merchant_popularity(self, merchant_id: Any) -> int:
        """Redemptions of a merchant, all users, not decayed.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky"),
        ...                                 og.Event("redeem", "u2", 400 * 86400, merchant_id="m-lucky"),
        ...                                 og.Event("visit", "u3", 0, merchant_id="m-lucky")])
        >>> h.merchant_popularity("m-lucky"), h.merchant_popularity("m-tea")
        (2, 0)
        """
        code = self._merchant_code.get(merchant_id)
        return 0 if code is None else int(self._merchant_counts[code, 1])


_EVENT_FIELDS = (
    "kind",
    "user_id",
    "ts",
    "offer_id",
    "store_id",
    "merchant_id",
    "category",
    "push_id",
    "amount",
    "discount_depth",
    "distance_m",
    "event_id",
)


def as_events(events: Any, what: str = "events") -> list[Event]:
    """Events from :class:`Event` objects, dict records or a DataFrame with the Event fields as columns.

    Missing cells (None, NaN) are left out; numpy scalars become Python
    numbers.  Rows are named by their 0-based position (and the DataFrame's
    index label when it differs) in every error.

    Raises
    ------
    InvalidParameterError
        ``events`` is not a collection of events (None, a string, a number).
    InvalidRecordError
        A row is not an event: an unknown column (with the nearest known
        name), a missing ``kind``/``user_id``/``ts``, or a bad value.

    Examples
    --------
    >>> from o2o_geo._history import as_events
    >>> as_events([{"kind": "visit", "user_id": 7, "ts": 0.0, "store_id": "s1", "offer_id": None}])[0].store_id
    's1'
    >>> as_events([{"kind": "visit", "user": 7, "ts": 0.0}])
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidRecordError: events[0]: unknown field 'user' (did you mean 'user_id'?); an event has ...
    """
    labels: list[Any] | None = None
    if hasattr(events, "to_dict") and hasattr(events, "columns"):
        labels = list(events.index)
        rows: Iterable[Any] = events.to_dict("records")
    elif events is None or isinstance(events, (str, bytes, Mapping, Event)) or not isinstance(events, Iterable):
        raise InvalidParameterError(
            f"{what} must be Event objects, dict records or a DataFrame of events; got {type(events).__name__}"
        )
    else:
        rows = events
    out: list[Event] = []
    for i, row in enumerate(rows):
        where = f"{what}[{i}]" + (f" (index {labels[i]!r})" if labels is not None and labels[i] != i else "")
        if isinstance(row, Event):
            out.append(row)
            continue
        if not isinstance(row, Mapping):
            raise InvalidRecordError(f"{where}: an event is an Event or a dict of its fields; got {type(row).__name__}")
        rec: dict[str, Any] = {}
        for k, v in row.items():
            if k not in _EVENT_FIELDS:
                hint = did_you_mean(k, _EVENT_FIELDS)
                raise InvalidRecordError(f"{where}: unknown field {k!r}{hint}; an event has {', '.join(_EVENT_FIELDS)}")
            if _is_missing(v):
                continue
            rec[k] = v.item() if isinstance(v, np.generic) else v
        missing = [f for f in ("kind", "user_id", "ts") if f not in rec]
        if missing:
            raise InvalidRecordError(f"{where}: no {', '.join(missing)} (every event needs kind, user_id and ts)")
        try:
            out.append(Event(**rec))
        except (InvalidRecordError, InvalidParameterError) as exc:
            raise InvalidRecordError(f"{where}: {exc}") from None
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


def _hashable(v: Any, name: str) -> Any:
    """``v`` if it can be a key (an id, a category, a kind), else InvalidParameterError."""
    if isinstance(v, Hashable) and not isinstance(v, np.ndarray):
        return v
    raise InvalidParameterError(f"{name} must be an id (a str or an int); got {v!r:.80}")


def _is_missing(v: Any) -> bool:
    """None, NaN, or pandas' NA/NaT (known by type name: pandas is not imported for this)."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return True
    return type(v).__name__ in ("NAType", "NaTType")
