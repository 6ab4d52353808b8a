"""Events: what a user did (or the engine pushed), checked once, and read from records or a DataFrame."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

from ._time import to_epoch_s
from ._validate import check_id, check_metres, check_quantity, did_you_mean
from .errors import InvalidParameterError, InvalidRecordError

__all__ = ["EVENT_KINDS", "Event", "EventKind", "as_events", "checked_event", "hashable", "is_missing"]


#: What happened: the engine pushed an offer, the user opened or clicked it,
#: redeemed it in store, visited the store, or dismissed the push.
EventKind = Literal["push", "open", "click", "redeem", "visit", "dismiss", "failed"]


#: The kinds of :data:`EventKind`.
EVENT_KINDS = frozenset(get_args(EventKind))


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
        if not isinstance(self.kind, str) or self.kind not in EVENT_KINDS:
            raise InvalidRecordError(f"event kind {self.kind!r} is not one of {sorted(EVENT_KINDS)}")
        if self.user_id is None or isinstance(self.user_id, bool) or not isinstance(self.user_id, (str, int)):
            raise InvalidRecordError(f"event user_id must be a str or an int; got {self.user_id!r}")
        object.__setattr__(self, "ts", to_epoch_s(self.ts, "event ts"))
        for name in ("offer_id", "store_id", "merchant_id", "push_id", "event_id"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, check_id(v, f"event {name}"))
        if self.category is not None and not isinstance(self.category, Hashable):
            raise InvalidRecordError(f"event category must be a str or another hashable; got {self.category!r:.80}")
        check_quantity(self.amount, "event amount", allow_none=True, error=InvalidRecordError)
        check_metres(self.distance_m, "event distance_m", allow_none=True, error=InvalidRecordError)
        d = self.discount_depth
        if d is not None and not (isinstance(d, (int, float)) and 0.0 <= d < 1.0):
            raise InvalidRecordError(f"event discount_depth must be in [0, 1); got {d!r}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, where: str = "event") -> Event:
        """An event from a dict of its fields: a JSON object, a CSV or DataFrame row, a stored log line.

        Missing values (None, NaN, pandas NA/NaT) are left out, numpy scalars
        become Python numbers, and ``ts`` may be anything :class:`Event`
        takes (epoch seconds, an aware datetime, ISO 8601 text with a UTC offset).

        Parameters
        ----------
        record : mapping of field name to value
            The fields of :class:`Event`; ``kind``, ``user_id`` and ``ts`` are required.
        where : str, default "event"
            How errors name the record (``"events.csv line 7"``, ``"events[3]"``).

        Raises
        ------
        InvalidRecordError
            Not a mapping; an unknown field (with the nearest known name); no
            ``kind``, ``user_id`` or ``ts``; or a bad value.  The message
            starts with ``where``.

        Examples
        --------
        >>> import numpy as np
        >>> import o2o_geo as og
        >>> e = og.Event.from_record({"kind": "redeem", "user_id": np.int64(7), "offer_id": "o1",
        ...                           "ts": "2026-01-01T08:00:00+08:00", "amount": float("nan")})
        >>> e.user_id, e.ts, e.amount
        (7, 1767225600.0, None)
        >>> og.Event.from_record({"kind": "visit", "user": 7, "ts": 0.0}, where="events.csv line 2")
        Traceback (most recent call last):
        ...
        o2o_geo.errors.InvalidRecordError: events.csv line 2: unknown field 'user' (did you mean 'user_id'?); ...
        """
        if not isinstance(record, Mapping):
            raise InvalidRecordError(
                f"{where}: an event is an Event or a dict of its fields; got {type(record).__name__}"
            )
        rec: dict[str, Any] = {}
        for k, v in record.items():
            if k not in _EVENT_FIELDS:
                hint = did_you_mean(k, _EVENT_FIELDS)
                raise InvalidRecordError(f"{where}: unknown field {k!r}{hint}; an event has {', '.join(_EVENT_FIELDS)}")
            if is_missing(v):
                continue
            rec[k] = v.item() if isinstance(v, np.generic) else v
        missing = [f for f in ("kind", "user_id", "ts") if f not in rec]
        if missing:
            raise InvalidRecordError(f"{where}: no {', '.join(missing)} (every event needs kind, user_id and ts)")
        try:
            return cls(**rec)
        except (InvalidRecordError, InvalidParameterError) as exc:
            raise InvalidRecordError(f"{where}: {exc}") from None


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
    >>> from o2o_geo._events import as_events
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
        out.append(Event.from_record(row, where=where))
    return out


def hashable(v: Any, name: str) -> Any:
    """``v`` if it can be a key (an id, a category, a kind), else InvalidParameterError."""
    if isinstance(v, Hashable) and not isinstance(v, np.ndarray):
        return v
    raise InvalidParameterError(f"{name} must be an id (a str or an int); got {v!r:.80}")


def is_missing(v: Any) -> bool:
    """None, NaN, or pandas' NA/NaT (known by type name: pandas is not imported for this)."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return True
    return type(v).__name__ in ("NAType", "NaTType")
