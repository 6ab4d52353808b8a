"""The state layer's key grammar: how ids, counters and event ids are written as keys, in one place.

Every backend stores the same keys; the dispatcher asks for "the user's day
counter" (:func:`user_day`) and never writes a key itself.  Ids are written
as JSON text so that they keep their type (``7`` and ``"7"`` are different
users).  The grammar:

=================================  ======================================  =====================
``u|<user>|d|<YYYY-MM-DD>``        the user's pushes on a local day        :data:`DAY_S` x 3
``u|<user>|w|<YYYY>-<week>``       the user's pushes in an ISO week        :data:`DAY_S` x 9
``u|<user>|o|<offer>``             the user's pushes of one offer          until the offer ends, + 3 days
``u|<user>|m|<merchant>|<day>``    the user's pushes of a merchant a day   :data:`DAY_S` x 3
``ob|<offer>|n`` / ``|c``          an offer budget: pushes / cost          never
``mb|<merchant>|n`` / ``|c``       a merchant budget: pushes / cost        never
``sc|<store>|<YYYY-MM-DD>``        a store's pushes on its local day       :data:`DAY_S` x 3
``seq``                            the push sequence                       never
``p:<id>`` / ``e:<id>``            a ping's / an event's id (idempotency)  ``idempotency_ttl_s``
=================================  ======================================  =====================

A backend keeps a counter for its lifetime after each write (on its clock,
see ``Transaction.advance_clock``); a day key lives three days so that a
late ping near midnight in any time zone still finds its day, and a week key
nine days (its seven and the same two days' margin).  A per-user
offer counter's lifetime comes from its offer (the dispatcher passes it):
the offer's end plus :data:`OFFER_END_MARGIN_S`, or forever for an offer
without an end.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "DAY_COUNTER_TTL_S",
    "DAY_S",
    "OFFER_END_MARGIN_S",
    "SEQ",
    "WEEK_COUNTER_TTL_S",
    "event_key",
    "id_from_text",
    "id_text",
    "merchant_budget",
    "offer_budget",
    "ping_key",
    "store_day",
    "ttl_of",
    "user_counter",
    "user_day",
    "user_merchant_day",
    "user_offer",
    "user_prefix",
    "user_week",
]

DAY_S = 86_400
#: How long after an offer ends its per-user counters are kept (late pings and events of its last day).
OFFER_END_MARGIN_S = 3 * DAY_S
#: How long a day counter (a user's day, a user's merchant-day, a store's day) lives after each write.
DAY_COUNTER_TTL_S = 3 * DAY_S
#: How long a user's week counter lives after each write.
WEEK_COUNTER_TTL_S = 9 * DAY_S
SEQ = "seq"
_DECODER = json.JSONDecoder()


def id_text(v: Any) -> str:
    """An id as JSON text that keeps its type: 7 -> '7', '7' -> '"7"' (a fast path for plain ids).

    Examples
    --------
    >>> id_text(7), id_text("7"), id_from_text(id_text("7"))
    ('7', '"7"', '7')
    """
    if type(v) is int:
        return str(v)
    if type(v) is str and '"' not in v and "\\" not in v and v.isprintable():
        return '"' + v + '"'
    return json.dumps(v)


def id_from_text(s: str | None) -> Any:
    """The id written by :func:`id_text` (``None`` stays ``None``)."""
    return None if s is None else json.loads(s)


def user_prefix(user_id: Any) -> str:
    """The prefix of every per-user counter (what erasing a user deletes)."""
    return f"u|{id_text(user_id)}|"


def user_day(user_key: str, day: str) -> str:
    """The user's pushes on a local day (``user_key`` from :func:`id_text`, ``day`` ISO ``YYYY-MM-DD``)."""
    return f"u|{user_key}|d|{day}"


def user_week(user_key: str, year: int, week: int) -> str:
    """The user's pushes in an ISO week."""
    return f"u|{user_key}|w|{year}-{week}"


def user_offer(user_key: str, offer_id: Any) -> str:
    """The user's pushes of one offer, ever."""
    return f"u|{user_key}|o|{id_text(offer_id)}"


def user_merchant_day(user_key: str, merchant_id: Any, day: str) -> str:
    """The user's pushes of one merchant on a local day."""
    return f"u|{user_key}|m|{id_text(merchant_id)}|{day}"


def offer_budget(offer_id: Any, what: str) -> str:
    """An offer budget's counter: ``what`` is ``"n"`` (pushes) or ``"c"`` (cost)."""
    return f"ob|{id_text(offer_id)}|{what}"


def merchant_budget(merchant_id: Any, what: str) -> str:
    """A merchant budget's counter: ``what`` is ``"n"`` (pushes) or ``"c"`` (cost)."""
    return f"mb|{id_text(merchant_id)}|{what}"


def store_day(store_id: Any, day: str) -> str:
    """A store's pushes on its local day (its daily capacity)."""
    return f"sc|{id_text(store_id)}|{day}"


def ping_key(event_id: Any) -> str:
    """The idempotency key of a ping's id."""
    return "p:" + id_text(event_id)


def event_key(event_id: Any) -> str:
    """The idempotency key of an event's id."""
    return "e:" + id_text(event_id)


def user_counter(counter: str) -> tuple[str, str] | None:
    """(user key, window kind) of a per-user counter; ``None`` for the others.

    Examples
    --------
    >>> user_counter(user_day(id_text("u|1"), "2026-01-01")), user_counter(SEQ)
    (('"u|1"', 'd'), None)
    """
    if not counter.startswith("u|"):
        return None
    _, end = _DECODER.raw_decode(counter, 2)
    return counter[2:end], counter[end + 1 :].split("|", 1)[0]


def ttl_of(counter: str) -> int | None:
    """How long a counter can matter, in seconds (``None``: always), by its window.

    Examples
    --------
    >>> ttl_of(user_day("7", "2026-01-01")) // DAY_S, ttl_of(user_week("7", 2026, 1)) // DAY_S, ttl_of(SEQ)
    (3, 9, None)
    """
    user = user_counter(counter)
    if user is not None:
        return {"d": DAY_COUNTER_TTL_S, "m": DAY_COUNTER_TTL_S, "w": WEEK_COUNTER_TTL_S}.get(user[1])
    if counter.startswith("sc|"):
        return DAY_COUNTER_TTL_S
    return None
