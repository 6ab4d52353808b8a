"""PushPolicy: when the dispatcher may push, and how often.

Times are epoch seconds (UTC); local times (quiet hours, days for the caps,
opening hours) come from IANA time zones (``_time``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np

from ._validate import KnownIds, as_items, check_count, check_flag, check_metres, check_quantity, did_you_mean
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
        check_count(self.max_pushes, "Budget.max_pushes", allow_none=True)
        check_quantity(self.max_cost, "Budget.max_cost", allow_none=True)


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
            "dwell_s",
            "exit_after_s",
            "min_gap_s",
            "dismiss_cooldown_s",
            "attribution_window_s",
        ):
            check_quantity(getattr(self, name), f"PushPolicy.{name}", unit="seconds")
        for name in ("exit_buffer_m", "max_accuracy_m", "nearby_radius_m"):
            check_metres(getattr(self, name), f"PushPolicy.{name}")
        check_metres(self.fence_radius_m, "PushPolicy.fence_radius_m", positive=True)
        check_quantity(self.closing_margin_min, "PushPolicy.closing_margin_min", unit="minutes")
        check_quantity(self.lapsed_after_days, "PushPolicy.lapsed_after_days", unit="days")
        for name in ("max_per_day", "max_per_week", "max_per_offer", "max_per_merchant_per_day"):
            check_count(getattr(self, name), f"PushPolicy.{name}", allow_none=True)
        check_count(self.max_per_ping, "PushPolicy.max_per_ping", low=1)
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
            check_quantity(c, f"PushPolicy.offer_cost[{k!r}]")
        cap = self.store_daily_capacity
        if isinstance(cap, Mapping):
            for k, c in cap.items():
                check_count(c, f"PushPolicy.store_daily_capacity[{k!r}]")
        else:
            check_count(cap, "PushPolicy.store_daily_capacity", allow_none=True)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        offer_ids: Iterable[Any] | None = None,
        merchant_ids: Iterable[Any] | None = None,
        store_ids: Iterable[Any] | None = None,
    ) -> PushPolicy:
        """A policy from a mapping of its arguments, as a JSON or YAML file holds it.

        Lists become tuples (``triggers``, ``quiet_hours``) and budgets may be
        objects (``{"max_pushes": 100}``).  A JSON object's keys are always
        text: give the known ids and the keys of ``offer_budgets``,
        ``offer_cost`` (offers), ``merchant_budgets`` (merchants) and
        ``store_daily_capacity`` (stores) must be among them, ``"17"`` read as
        the id ``17`` when that is how it is known.  :meth:`to_dict` is the inverse.

        Parameters
        ----------
        data : mapping of str to value
            :class:`PushPolicy` arguments; missing ones keep their defaults.
        offer_ids, merchant_ids, store_ids : iterable, optional
            The known ids, to check and type the keys of the id-keyed settings.

        Raises
        ------
        InvalidParameterError
            ``data`` is not a mapping; an unknown argument (with the nearest
            known name); an unknown id; a budget that is not a
            :class:`Budget` or an object of its fields; or any value the
            constructor refuses.

        Examples
        --------
        >>> import json
        >>> import o2o_geo as og
        >>> text = '{"triggers": ["enter"], "quiet_hours": [23, 7], "offer_budgets": {"17": {"max_pushes": 500}}}'
        >>> p = og.PushPolicy.from_dict(json.loads(text), offer_ids=[17, 18])
        >>> p
        PushPolicy(triggers=('enter',), quiet_hours=(23, 7), offer_budgets={17: Budget(max_pushes=500, max_cost=None)})
        >>> og.PushPolicy.from_dict(json.loads(json.dumps(p.to_dict())), offer_ids=[17, 18]) == p
        True
        >>> og.PushPolicy.from_dict({"dwell": 60})
        Traceback (most recent call last):
        ...
        o2o_geo.errors.InvalidParameterError: unknown PushPolicy argument 'dwell' (did you mean 'dwell_s'?); ...
        """
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"PushPolicy.from_dict takes a mapping of arguments; got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise InvalidParameterError(
                    f"unknown PushPolicy argument {key!r}{did_you_mean(key, names)}; known: {', '.join(names)}"
                )
        kw = dict(data)
        for name in ("triggers", "quiet_hours"):
            if isinstance(kw.get(name), list):
                kw[name] = tuple(kw[name])
        given = {"offer": offer_ids, "merchant": merchant_ids, "store": store_ids}
        known = {w: KnownIds(as_items(v, f"{w}_ids")) for w, v in given.items() if v is not None}
        for name, what in _ID_KEYED.items():
            value = kw.get(name)
            if not isinstance(value, Mapping):
                continue  # the constructor names a wrong type
            ids = known.get(what)
            mapped = {}
            for key, item in value.items():
                if ids is not None:
                    if key not in ids:
                        hint = did_you_mean(key, list(ids))
                        raise InvalidParameterError(
                            f"PushPolicy.{name} names {what} {key!r}{hint}, which is not among the {what}s"
                        )
                    key = ids(key)
                if name.endswith("_budgets"):
                    item = _budget(item, f"PushPolicy.{name}[{key!r}]")
                mapped[key] = item
            kw[name] = mapped
        try:
            return cls(**kw)
        except TypeError as exc:  # a list where a number belongs, compared in a check
            raise InvalidParameterError(f"PushPolicy: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain values that JSON can hold (tuples as lists, budgets as objects).

        Mapping keys stay as they are (``json.dumps`` writes int keys as text;
        :meth:`from_dict` with the known ids reads them back).

        Examples
        --------
        >>> import o2o_geo as og
        >>> d = og.PushPolicy(merchant_budgets={"m1": og.Budget(max_cost=50.0)}).to_dict()
        >>> d["triggers"], d["quiet_hours"], d["merchant_budgets"]
        (['enter', 'dwell'], [22, 8], {'m1': {'max_pushes': None, 'max_cost': 50.0}})
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = {k: asdict(b) if isinstance(b, Budget) else b for k, b in v.items()}
            out[f.name] = v
        return out

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


#: The settings keyed by an id, and what the id names.
_ID_KEYED = {
    "offer_budgets": "offer",
    "merchant_budgets": "merchant",
    "offer_cost": "offer",
    "store_daily_capacity": "store",
}


def _budget(item: Any, name: str) -> Budget:
    """A :class:`Budget` from one, or from a mapping of its fields."""
    if isinstance(item, Budget):
        return item
    if not isinstance(item, Mapping) or set(item) - {"max_pushes", "max_cost"}:
        raise InvalidParameterError(
            f"{name} must be a Budget or an object with max_pushes and/or max_cost; got {item!r:.80}"
        )
    return Budget(**item)


def _is_number(v: Any) -> bool:
    """A real number (not a bool, not an array)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _default_policy() -> PushPolicy:
    global _DEFAULT_POLICY
    if _DEFAULT_POLICY is None:
        _DEFAULT_POLICY = PushPolicy()
    return _DEFAULT_POLICY


_DEFAULT_POLICY: PushPolicy | None = None
