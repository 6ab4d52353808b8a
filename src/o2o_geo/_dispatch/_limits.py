"""The policy's limits on pushes: the user's day and week caps, per-offer and per-merchant caps, budgets, capacity.

Each limit is a counter in the state (its key from the state's key grammar,
:mod:`o2o_geo._state.keys`), a bound and what one push adds to it.  A push
is allowed when no configured limit would pass its bound; then every one of
them is charged, in the same transaction.  Holdout decisions count against
the user's caps (both groups see the same policy) but not against budgets
or store capacity (nothing is sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from .._offers import Offer
from .._policy import PushPolicy
from .._state import Transaction, keys
from .._time import tz_at, zone

__all__ = ["Limit", "LocalDay", "candidate_limits", "charge", "first_exceeded", "user_capped", "user_limits"]


class Limit(NamedTuple):
    """One configured limit of a push: a counter, its bound and what one push adds."""

    key: str
    bound: float
    increment: float
    #: How long the counter can matter after this push (``None``: its key's window, see ``keys.ttl_of``).
    ttl_s: float | None = None
    #: Which limit it is: ``user_day``, ``user_week``, ``merchant_day``, ``offer_cap``, ``offer_budget``,
    #: ``merchant_budget`` or ``store_capacity`` (what :meth:`Dispatcher.explain_ping` names).
    kind: str = ""


class LocalDay:
    """A ping's local time and the user's day and week cap keys, computed on first use.

    Iterating it yields the counters a push decision reads first, as a
    prefetch hint: a backend that ignores hints never looks up the time zone.
    """

    def __init__(self, user_id: Any, lat: float, lon: float, t: float, tz: str | None) -> None:
        self._where = (lat, lon, t, tz)
        self.t = t
        self.user_key = keys.id_text(user_id)

    @cached_property
    def local(self) -> datetime:
        lat, lon, t, tz = self._where
        return datetime.fromtimestamp(t, zone(tz or tz_at(lat, lon)))

    @cached_property
    def day(self) -> str:
        return self.local.date().isoformat()

    @cached_property
    def day_key(self) -> str:
        return keys.user_day(self.user_key, self.day)

    @cached_property
    def week_key(self) -> str:
        iso = self.local.isocalendar()
        return keys.user_week(self.user_key, iso.year, iso.week)

    def __iter__(self) -> Iterator[str]:
        return iter((self.day_key, self.week_key, keys.SEQ))


def user_capped(tx: Transaction, pol: PushPolicy, when: LocalDay) -> bool:
    """Whether the user's day or week cap is reached."""
    return (pol.max_per_day is not None and tx.counter(when.day_key) >= pol.max_per_day) or (
        pol.max_per_week is not None and tx.counter(when.week_key) >= pol.max_per_week
    )


def user_limits(pol: PushPolicy, when: LocalDay) -> tuple[Limit, ...]:
    """The user's day and week caps: the limits every push of the ping is charged to (the same for each offer)."""
    out = []
    if pol.max_per_day is not None:
        out.append(Limit(when.day_key, pol.max_per_day, 1.0, keys.DAY_COUNTER_TTL_S, "user_day"))
    if pol.max_per_week is not None:
        out.append(Limit(when.week_key, pol.max_per_week, 1.0, keys.WEEK_COUNTER_TTL_S, "user_week"))
    return tuple(out)


def candidate_limits(
    pol: PushPolicy,
    when: LocalDay,
    caps: tuple[Limit, ...],
    offer: Offer,
    store_id: Any,
    store_local: datetime,
    *,
    holdout: bool,
) -> list[Limit]:
    """Every configured limit a push of ``offer`` at this store would be charged to, in the order they are checked.

    ``caps`` is :func:`user_limits` of the ping; ``store_local`` the store's local time (its day is the
    capacity's).  The keys' windows are passed along, so that the state does not parse them back.
    """
    out = list(caps)
    oid, mid, uk = offer.offer_id, offer.merchant_id, when.user_key
    if pol.max_per_merchant_per_day is not None:
        key = keys.user_merchant_day(uk, mid, when.day)
        out.append(Limit(key, pol.max_per_merchant_per_day, 1.0, keys.DAY_COUNTER_TTL_S, "merchant_day"))
    if pol.max_per_offer is not None:  # it matters while the offer runs (forever when it has no end)
        ends = offer.valid_until
        ttl = None if ends is None else max(ends - when.t, 0.0) + keys.OFFER_END_MARGIN_S
        out.append(Limit(keys.user_offer(uk, oid), pol.max_per_offer, 1.0, ttl, "offer_cap"))
    if holdout:
        return out
    ob, mb = pol.offer_budgets.get(oid), pol.merchant_budgets.get(mid)
    if ob is not None or mb is not None:
        cost = float(pol.offer_cost.get(oid, offer.off_amount or 0.0))
        for budget, key_of, kind in (
            (ob, lambda w: keys.offer_budget(oid, w), "offer_budget"),
            (mb, lambda w: keys.merchant_budget(mid, w), "merchant_budget"),
        ):
            if budget is None:
                continue
            if budget.max_pushes is not None:
                out.append(Limit(key_of("n"), budget.max_pushes, 1.0, None, kind))
            if budget.max_cost is not None:
                out.append(Limit(key_of("c"), budget.max_cost, cost, None, kind))
    cap = None if pol.store_daily_capacity is None else pol.capacity_of(store_id)
    if cap is not None:
        key = keys.store_day(store_id, store_local.date().isoformat())
        out.append(Limit(key, cap, 1.0, keys.DAY_COUNTER_TTL_S, "store_capacity"))
    return out


def first_exceeded(tx: Transaction, limits: list[Limit]) -> Limit | None:
    """The first of the limits one more push would pass, or None."""
    for lim in limits:
        if tx.counter(lim.key) + lim.increment > lim.bound + 1e-9:
            return lim
    return None


def charge(tx: Transaction, limits: list[Limit]) -> None:
    """Count one push against every limit."""
    for lim in limits:
        tx.add_counter(lim.key, lim.increment, lim.ttl_s)
