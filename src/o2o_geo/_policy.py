"""PushPolicy: when the dispatcher may push, and how often.

Times are epoch seconds (UTC); local times (quiet hours, days for the caps,
opening hours) come from IANA time zones (``_time``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np

from ._validate import check_flag
from .errors import InvalidParameterError

__all__ = ["Budget", "PushPolicy"]

TRIGGERS = ("enter", "dwell", "nearby", "exit", "lapsed")


@dataclass(frozen=True)
class Budget:
    """A spending limit of an offer or a merchant.

    Parameters
    ----------
    max_pushes : int, optional
        Pushes (delivered to treated users) at most.
    max_cost : float, optional
        Money at most, in the merchant's currency.  A push reserves its offer's
        cost (see :attr:`PushPolicy.offer_cost`) when it is made, so the budget
        holds even if every pushed coupon is redeemed.

    Examples
    --------
    >>> import o2o_geo as og
    >>> og.Budget(max_pushes=1000, max_cost=5000.0)
    Budget(max_pushes=1000, max_cost=5000.0)
    """

    max_pushes: int | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.max_pushes is not None and (not isinstance(self.max_pushes, int) or self.max_pushes < 0):
            raise InvalidParameterError(f"Budget.max_pushes must be an int >= 0; got {self.max_pushes!r}")
        if self.max_cost is not None and not (isinstance(self.max_cost, (int, float)) and self.max_cost >= 0):
            raise InvalidParameterError(f"Budget.max_cost must be a number >= 0; got {self.max_cost!r}")


@dataclass(frozen=True, repr=False)
class PushPolicy:
    """Triggers, caps, budgets, quiet and opening hours, holdout and attribution of a :class:`Dispatcher`.

    Every count is per user unless its name says otherwise; every check and
    its increment happen in one state transaction, so concurrent calls never
    exceed a cap or a budget.

    Parameters
    ----------
    triggers : tuple of {"enter", "dwell", "nearby", "exit", "lapsed"}, default ("enter", "dwell")
        What may cause a push: entering a store's geofence, staying inside it
        for ``dwell_s``, or being within ``nearby_radius_m`` of a store (no
        fence); and for retention, ``exit``: leaving a fence for good after a
        visit (a dwell), once per stay ("thanks for visiting: here is your
        return coupon"), and ``lapsed``: entering a fence of a merchant the
        user visited or redeemed at, but not in ``lapsed_after_days`` (win-back;
        it replaces that ``enter``).  Every trigger goes through the same gates,
        caps, budgets and holdout; one that falls in quiet hours is dropped, not deferred.
    fence_radius_m : float, default 100
        Circle geofence of a store without one of its own, metres.
    fence_column : str, default "geofence"
        Store column with a store's own fence: a radius in metres or a shapely
        polygon (lon, lat degrees; must not cross the antimeridian).
    dwell_s : float, default 300
        Seconds inside a fence before ``dwell`` fires (once per stay).  A dwell
        also records an inferred ``visit`` (so store visits are measured without a coupon scan).
    exit_buffer_m : float, default 30
        Hysteresis: a user leaves a fence only beyond this many metres outside it ...
    exit_after_s : float, default 120
        ... or after this many seconds outside the fence but within the buffer.
    max_accuracy_m : float, default 100
        Pings with a larger ``accuracy_m`` are ignored (no trigger, no state change).
    nearby_radius_m : float, default 300
        Radius of the ``nearby`` trigger, metres.
    max_per_ping : int, default 1
        Decisions per ping at most, best score first.
    min_score : float, default 0
        Offers scoring below this probability are not pushed.
    max_per_day, max_per_week : int or None, default 3 and 10
        Pushes per user per local calendar day / ISO week.
    max_per_offer : int or None, default 1
        Pushes of the same offer to the same user, ever.
    max_per_merchant_per_day : int or None, default 1
        Pushes of the same merchant's offers per user per local day.
    min_gap_s : float, default 1800
        Seconds between two pushes to a user.
    dismiss_cooldown_s : float, default 86400
        No push for this long after the user dismissed one.
    quiet_hours : (int, int) or None, default (22, 8)
        Local hours ``[start, end)`` without pushes (may wrap midnight).
    closing_margin_min : float, default 30
        Never push for a store that is closed or closes within this many minutes.
    hours_column : str, default "opening_hours"
        Store column of opening hours in the OpenStreetMap ``opening_hours``
        syntax (``"Mo-Fr 08:00-20:00; Sa 10:00-16:00; Su off; PH off"``, the
        store's country's public holidays from its position), including the
        short ``"08:00-22:00"`` and ``"07:00-11:00,17:00-23:30"``; overnight
        ranges wrap (``"18:00-02:00"``); missing: always open.
    tz_column : str, default "tz"
        Store column of IANA time zones; missing: looked up from the position.
    offer_budgets, merchant_budgets : mapping of id to Budget
        Spending limits.
    offer_cost : mapping of offer id to float
        Money a push of the offer reserves from money budgets (default: the
        offer's ``off_amount``, else 0).
    store_daily_capacity : int or mapping of store id to int, optional
        Pushes per store per local day at most (its redemption capacity).
    holdout_fraction : float, default 0.1
        Share of users (or of users per offer, with ``holdout_per_offer``) who
        get decisions marked ``holdout=True`` that must not be delivered.
    holdout_salt : str, default "o2o"
        Salt of the holdout hash; change it to draw a new holdout group.
    holdout_per_offer : bool, default False
    attribution_window_s : float, default 7 days
        A redeem or visit is attributed to the latest push of the same offer
        (or, without an offer, of the same merchant) to the same user at most
        this long before it.
    lapsed_after_days : float, default 30
        A user who visited or redeemed at a merchant, but not for this many
        days, is lapsed there (the ``lapsed`` trigger and audience).
    require_opt_in : bool, default False
        Push only users whose ``opt_in=True`` was set
        (:meth:`~o2o_geo.Dispatcher.set_user`); by default every user is
        pushed unless set ``opt_in=False``.

    Examples
    --------
    >>> import o2o_geo as og
    >>> p = og.PushPolicy(triggers=("enter", "nearby"), max_per_day=2, quiet_hours=None)
    >>> p.max_per_day, p.is_holdout("u1", "latte") in (True, False)
    (2, True)
    """

    triggers: tuple[str, ...] = ("enter", "dwell")
    fence_radius_m: float = 100.0
    fence_column: str = "geofence"
    dwell_s: float = 300.0
    exit_buffer_m: float = 30.0
    exit_after_s: float = 120.0
    max_accuracy_m: float = 100.0
    nearby_radius_m: float = 300.0
    max_per_ping: int = 1
    min_score: float = 0.0
    max_per_day: int | None = 3
    max_per_week: int | None = 10
    max_per_offer: int | None = 1
    max_per_merchant_per_day: int | None = 1
    min_gap_s: float = 1800.0
    dismiss_cooldown_s: float = 86_400.0
    quiet_hours: tuple[int, int] | None = (22, 8)
    closing_margin_min: float = 30.0
    hours_column: str = "opening_hours"
    tz_column: str = "tz"
    offer_budgets: Mapping[Any, Budget] = field(default_factory=dict)
    merchant_budgets: Mapping[Any, Budget] = field(default_factory=dict)
    offer_cost: Mapping[Any, float] = field(default_factory=dict)
    store_daily_capacity: int | Mapping[Any, int] | None = None
    holdout_fraction: float = 0.1
    holdout_salt: str = "o2o"
    holdout_per_offer: bool = False
    attribution_window_s: float = 7 * 86_400.0
    lapsed_after_days: float = 30.0
    require_opt_in: bool = False

    def __repr__(self) -> str:
        """The settings that differ from the defaults (``PushPolicy()`` for none)."""
        default = _default_policy()
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return f"PushPolicy({', '.join(changed)})"

    def __post_init__(self) -> None:
        trig = self.triggers
        known = isinstance(trig, (tuple, list)) and all(isinstance(t, str) and t in TRIGGERS for t in trig)
        if not known or not trig:
            raise InvalidParameterError(f"triggers must be a non-empty subset of {TRIGGERS}; got {trig!r:.80}")
        for name in ("fence_column", "hours_column", "tz_column", "holdout_salt"):
            if not isinstance(getattr(self, name), str):
                raise InvalidParameterError(f"PushPolicy.{name} must be a str; got {getattr(self, name)!r:.80}")
        check_flag(self.holdout_per_offer, "PushPolicy.holdout_per_offer")
        check_flag(self.require_opt_in, "PushPolicy.require_opt_in")
        for name in (
            "fence_radius_m",
            "dwell_s",
            "exit_buffer_m",
            "exit_after_s",
            "max_accuracy_m",
            "nearby_radius_m",
            "min_gap_s",
            "dismiss_cooldown_s",
            "closing_margin_min",
            "attribution_window_s",
            "lapsed_after_days",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 and math.isfinite(v)):
                raise InvalidParameterError(f"PushPolicy.{name} must be a finite number >= 0; got {v!r}")
        if self.fence_radius_m <= 0:
            raise InvalidParameterError(f"PushPolicy.fence_radius_m must be > 0; got {self.fence_radius_m!r}")
        for name in ("max_per_day", "max_per_week", "max_per_offer", "max_per_merchant_per_day"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidParameterError(f"PushPolicy.{name} must be an int >= 0 or None; got {v!r}")
        if not isinstance(self.max_per_ping, int) or self.max_per_ping < 1:
            raise InvalidParameterError(f"PushPolicy.max_per_ping must be an int >= 1; got {self.max_per_ping!r}")
        if not (_is_number(self.min_score) and 0.0 <= self.min_score <= 1.0):
            raise InvalidParameterError(f"PushPolicy.min_score must be a probability; got {self.min_score!r}")
        if not (_is_number(self.holdout_fraction) and 0.0 <= self.holdout_fraction < 1.0):
            raise InvalidParameterError(f"PushPolicy.holdout_fraction must be in [0, 1); got {self.holdout_fraction!r}")
        if self.quiet_hours is not None:
            if not isinstance(self.quiet_hours, (tuple, list)):
                raise InvalidParameterError(
                    f"PushPolicy.quiet_hours must be (start, end) hours 0..24 or None; got {self.quiet_hours!r}"
                )
            q = tuple(self.quiet_hours)
            if len(q) != 2 or not all(isinstance(h, int) and 0 <= h <= 24 for h in q):
                raise InvalidParameterError(f"PushPolicy.quiet_hours must be (start, end) hours 0..24; got {q!r}")
        for name in ("offer_budgets", "merchant_budgets", "offer_cost"):
            if not isinstance(getattr(self, name), Mapping):
                raise InvalidParameterError(f"PushPolicy.{name} must be a mapping (offer or merchant id ->); "
                                            f"got {getattr(self, name)!r:.80}")  # fmt: skip
        for name in ("offer_budgets", "merchant_budgets"):
            for k, b in getattr(self, name).items():
                if not isinstance(b, Budget):
                    raise InvalidParameterError(f"PushPolicy.{name}[{k!r}] must be a Budget; got {b!r}")
        for k, c in self.offer_cost.items():
            if isinstance(c, bool) or not (isinstance(c, (int, float)) and c >= 0 and math.isfinite(c)):
                raise InvalidParameterError(f"PushPolicy.offer_cost[{k!r}] must be a number >= 0; got {c!r}")
        cap = self.store_daily_capacity
        caps = cap.values() if isinstance(cap, Mapping) else ([] if cap is None else [cap])
        for c in caps:
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                raise InvalidParameterError(f"PushPolicy.store_daily_capacity values must be ints >= 0; got {c!r}")

    def is_holdout(self, user_id: Any, offer_id: Any = None) -> bool:
        """Whether the user (for this offer, with ``holdout_per_offer``) is held out.

        A keyed hash of the user id and the salt: the same answer in every
        process and after restarts.

        Examples
        --------
        >>> import o2o_geo as og
        >>> users = [f"u{i}" for i in range(1000)]
        >>> policy = og.PushPolicy(holdout_fraction=0.2)
        >>> held = [u for u in users if policy.is_holdout(u)]
        >>> len(held), held[:3]
        (209, ['u2', 'u4', 'u5'])
        >>> [u for u in users if og.PushPolicy(holdout_fraction=0.2, holdout_salt="spring").is_holdout(u)][:3]
        ['u2', 'u7', 'u13']
        >>> per_offer = og.PushPolicy(holdout_fraction=0.5, holdout_per_offer=True)
        >>> [per_offer.is_holdout("u1", offer) for offer in ("latte", "cake", "tea")]
        [False, True, False]
        """
        if self.holdout_fraction <= 0.0:
            return False
        key = f"{self.holdout_salt}\x1f{type(user_id).__name__}:{user_id}"
        if self.holdout_per_offer:
            key += f"\x1f{type(offer_id).__name__}:{offer_id}"
        h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
        return h / 2.0**64 < self.holdout_fraction

    @property
    def lapsed_after_s(self) -> float:
        """``lapsed_after_days`` in seconds.

        Examples
        --------
        >>> import o2o_geo as og
        >>> og.PushPolicy(lapsed_after_days=0.5).lapsed_after_s
        43200.0
        """
        return self.lapsed_after_days * 86_400.0

    def is_quiet(self, local: datetime) -> bool:
        """Whether a local time falls in the quiet hours.

        Examples
        --------
        >>> from datetime import datetime
        >>> import o2o_geo as og
        >>> night = og.PushPolicy(quiet_hours=(22, 8))  # wraps midnight
        >>> [night.is_quiet(datetime(2026, 1, 1, h, 30)) for h in (7, 8, 21, 22, 23)]
        [True, False, False, True, True]
        >>> og.PushPolicy(quiet_hours=(12, 14)).is_quiet(datetime(2026, 1, 1, 13, 59))
        True
        >>> og.PushPolicy(quiet_hours=None).is_quiet(datetime(2026, 1, 1, 3, 0))
        False
        """
        if self.quiet_hours is None:
            return False
        start, end = self.quiet_hours
        h = local.hour + local.minute / 60.0
        if start <= end:
            return start <= h < end
        return h >= start or h < end

    def capacity_of(self, store_id: Any) -> int | None:
        """The daily push capacity of a store (``None``: unlimited).

        Examples
        --------
        >>> import o2o_geo as og
        >>> og.PushPolicy(store_daily_capacity=50).capacity_of("lucky-01")
        50
        >>> policy = og.PushPolicy(store_daily_capacity={"lucky-09": 20})
        >>> policy.capacity_of("lucky-09"), policy.capacity_of("lucky-01")
        (20, None)
        """
        cap = self.store_daily_capacity
        if isinstance(cap, Mapping):
            return cap.get(store_id)
        return cap


def _is_number(v: Any) -> bool:
    """A real number (not a bool, not an array)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _default_policy() -> PushPolicy:
    global _DEFAULT_POLICY
    if _DEFAULT_POLICY is None:
        _DEFAULT_POLICY = PushPolicy()
    return _DEFAULT_POLICY


_DEFAULT_POLICY: PushPolicy | None = None
