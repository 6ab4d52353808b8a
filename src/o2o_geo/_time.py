"""Time: epoch seconds from what callers pass, time zones, local hour bins and opening hours.

Every time inside the library is epoch seconds (UTC, float).  Local times
(quiet hours, the days of the caps, opening hours, the scorer's hour bins)
come from IANA zones: the caller's, a store's ``tz`` column, or an offline
lookup of the position (timezonefinder, no network).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from ._types import FloatArray
from .errors import InvalidParameterError, InvalidRecordError

__all__ = [
    "N_HOUR_BINS",
    "SECONDS_PER_DAY",
    "hour_bin",
    "open_for",
    "parse_hours",
    "store_zones",
    "to_epoch_s",
    "to_epoch_s_column",
    "tz_at",
    "zone",
]


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
    >>> from o2o_geo._time import to_epoch_s
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


#: Hour bins of the time-of-day profiles: 24 hours of a weekday, then 24 of a weekend day.
N_HOUR_BINS = 48


def hour_bin(ts: float, utc_offset_s: float) -> int:
    """Profile bin of a time: local hour of day, plus 24 on Saturdays and Sundays.

    Examples
    --------
    >>> from o2o_geo._time import hour_bin
    >>> hour_bin(1767258000, 0)  # Thursday 2026-01-01 09:00 UTC
    9
    >>> hour_bin(1767258000, 2 * 86400)  # the same clock time two days later: Saturday
    33
    """
    local = ts + utc_offset_s
    weekday = (int(local // SECONDS_PER_DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return int(local % SECONDS_PER_DAY // 3600) + (24 if weekday >= 5 else 0)


#: How far ahead the opening-hours parser looks for the next change (days): a closing-margin check needs minutes.
_HOURS_HORIZON_DAYS = 8


def parse_hours(text: Any, store_id: Any = None, lat: float | None = None, lon: float | None = None) -> Any:
    """A store's opening hours, in the OpenStreetMap ``opening_hours`` syntax; ``None`` when always open.

    Read by the maintained ``opening-hours-py`` parser, so the format store
    data comes in works: weekdays, several ranges, overnight ranges, ``off``
    and, given the store's position, its country's public holidays
    (``PH off``).  The short form ``"08:00-22:00"`` (or
    ``"07:00-11:00,17:00-23:30"``) is that syntax too.  Missing or empty
    text: always open.  With a position a parse takes about 0.2 ms (the
    country and zone lookup), once per store: the dispatcher keeps the
    parsed hours across index versions.

    Raises
    ------
    InvalidRecordError
        Text the parser refuses (or not text), naming the store.

    Examples
    --------
    >>> from datetime import datetime
    >>> h = parse_hours("Mo-Fr 08:00-20:00; Sa 10:00-16:00; Su off")
    >>> h.is_open(datetime(2026, 1, 3, 12, 0)), h.is_open(datetime(2026, 1, 4, 12, 0))   # Saturday, Sunday
    (True, False)
    >>> parse_hours(None) is None
    True
    >>> parse_hours("8-22", "s1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidRecordError: store 's1': cannot read opening hours '8-22' (OpenStreetMap ...
    """
    if text is None or (isinstance(text, float) and math.isnan(text)) or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise InvalidRecordError(f"store {store_id!r}: opening hours must be text like '08:00-22:00'; got {text!r}")
    from opening_hours import OpeningHours  # a compiled parser: imported when a store has hours

    coords = None if lat is None or lon is None else (float(lat), float(lon))
    try:
        return OpeningHours(text, coords=coords, max_interval_days=_HOURS_HORIZON_DAYS)
    except Exception as exc:  # noqa: BLE001 - the parser raises its own ParserError (and others for odd input)
        raise InvalidRecordError(
            f"store {store_id!r}: cannot read opening hours {text!r} (OpenStreetMap opening_hours syntax, "
            "e.g. 'Mo-Fr 08:00-20:00; Sa 10:00-16:00; Su off')"
        ) from exc


def open_for(hours: Any, local: datetime, margin_min: float) -> bool:
    """Whether a store is open at ``local`` and stays open at least ``margin_min`` more minutes.

    ``hours`` is :func:`parse_hours`' (``None``: always open); ``local`` the
    store's local time (aware, in its zone).  An ``unknown`` state (OSM's
    ``unknown`` rule) counts as closed: the engine never pushes for a store
    it is not sure is open.

    Examples
    --------
    >>> from datetime import datetime
    >>> h = parse_hours("08:00-22:00")
    >>> open_for(h, datetime(2026, 1, 1, 21, 0), 30), open_for(h, datetime(2026, 1, 1, 21, 45), 30)
    (True, False)
    >>> open_for(parse_hours("18:00-02:00"), datetime(2026, 1, 1, 1, 0), 30)
    True
    """
    if hours is None:
        return True
    if not hours.is_open(local):
        return False
    change = hours.next_change(local)
    return change is None or (change - local).total_seconds() >= margin_min * 60.0


def zone(name: str) -> ZoneInfo:
    """A cached :class:`zoneinfo.ZoneInfo`; unknown names (and non-strings) raise InvalidParameterError."""
    if not isinstance(name, str):
        raise InvalidParameterError(f"a time zone must be an IANA name like 'Asia/Shanghai'; got {name!r}")
    return _zone(name)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidParameterError(f"unknown time zone {name!r}") from exc


_TF: Any = None


@lru_cache(maxsize=65_536)
def tz_at(lat: float, lon: float) -> str:
    """IANA time zone at a position, offline (timezonefinder); "UTC" at sea without a zone.

    Remembered per position (the last 65,536), so indexes rebuilt after an
    ``add`` look up only their new stores.

    Examples
    --------
    >>> tz_at(31.2304, 121.4737), tz_at(51.5072, -0.1276)
    ('Asia/Shanghai', 'Europe/London')
    """
    global _TF
    if _TF is None:
        from timezonefinder import TimezoneFinder

        _TF = TimezoneFinder(in_memory=True)
    name = _TF.timezone_at(lng=lon, lat=lat)
    return name or "UTC"


def store_zones(stores: Any, tz_column: str = "tz") -> list[str]:
    """Each store's IANA zone: its ``tz_column`` value, else looked up offline at its position.

    Raises
    ------
    InvalidParameterError
        A zone name that is not an IANA name.

    Examples
    --------
    >>> import o2o_geo as og
    >>> stores = og.StoreSet.from_records([{"store_id": "a", "lat": 31.23, "lon": 121.47},
    ...                                    {"store_id": "b", "lat": 0.0, "lon": 0.0, "tz": "Africa/Lagos"}])
    >>> store_zones(stores)
    ['Asia/Shanghai', 'Africa/Lagos']
    """
    given = stores[tz_column].tolist() if tz_column in stores.columns else [None] * len(stores)
    names = [
        str(t) if isinstance(t, str) and t else tz_at(float(a), float(b))
        for t, a, b in zip(given, stores.lat.tolist(), stores.lon.tolist(), strict=True)
    ]
    for name in set(names):
        zone(name)
    return names
