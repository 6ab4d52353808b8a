"""A user's profile: consent, tier and attributes from the integrator, and the user's history with each merchant.

The state stores a profile as JSON (see :meth:`Transaction.get_profile`)::

    {"opt_in": bool, "tier": str, "attrs": {name: value},
     "seen": [[merchant_id, last_visit_or_redeem_ts], ...], "welcomed": [merchant_id, ...]}

every key optional.  ``seen`` is what the retention rules read: whether the
user is new at a merchant, returning, or lapsed.  ``welcomed`` lists the
merchants whose new-customer offer the user was given, so that a second one
is never given, even by two racing pings (both read and write the profile
in their transactions, so one of them sees the other's write).  ``seen``
keeps the :data:`MAX_MERCHANTS` merchants the user saw last.

The functions here are pure: they take and return profile dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._validate import check_flag
from ..errors import InvalidParameterError

__all__ = [
    "MAX_MERCHANTS",
    "UNSET",
    "UserProfile",
    "audience_reason",
    "consent_gate",
    "is_lapsed",
    "last_seen",
    "profile_change",
    "with_change",
    "with_seen",
    "with_welcome",
]

#: Merchants per profile whose last visit is kept (the least recent one is dropped beyond it).
MAX_MERCHANTS = 256
_MAX_TEXT = 256


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave as it is" for :meth:`~o2o_geo.Dispatcher.set_user` arguments.
UNSET: Any = _Unset()


@dataclass(frozen=True)
class UserProfile:
    """What the dispatcher knows of a user beyond the fence state (:meth:`~o2o_geo.Dispatcher.user`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()), og.OfferSet([og.Offer("latte", "m-lucky")]))
    >>> engine.set_user("u1", opt_in=True, tier="gold", city="Shanghai")
    UserProfile(user_id='u1', opt_in=True, tier='gold', attributes={'city': 'Shanghai'}, last_seen_ts={})
    >>> engine.user("nobody").opt_in is None                      # never set
    True
    """

    user_id: Any
    opt_in: bool | None = None
    """The push consent the integrator set (``None``: never set)."""
    tier: str | None = None
    """The member tier (``None``: not a member)."""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the integrator set."""
    last_seen_ts: Mapping[Any, float] = field(default_factory=dict)
    """Per merchant, the user's last visit or redemption (epoch seconds)."""

    @classmethod
    def of(cls, user_id: Any, data: Mapping[str, Any] | None) -> UserProfile:
        """The public view of a stored profile dict (see the module docstring).

        Examples
        --------
        >>> UserProfile.of("u1", {"opt_in": True, "seen": [["m1", 100.0]]})
        UserProfile(user_id='u1', opt_in=True, tier=None, attributes={}, last_seen_ts={'m1': 100.0})
        """
        d = data or {}
        return cls(
            user_id,
            d.get("opt_in"),
            d.get("tier"),
            dict(d.get("attrs", {})),
            {m: float(ts) for m, ts in d.get("seen", ())},
        )


def profile_change(opt_in: Any, tier: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The validated change :meth:`~o2o_geo.Dispatcher.set_user` makes (checked before the state is touched).

    Examples
    --------
    >>> profile_change(True, UNSET, {"city": "Shanghai", "age": None})
    {'opt_in': True, 'attrs': {'city': 'Shanghai', 'age': None}}
    >>> profile_change(UNSET, 3, {})
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: tier must be a non-empty str of at most 256 characters or None; got 3
    """
    out: dict[str, Any] = {}
    if opt_in is not UNSET:
        out["opt_in"] = check_flag(opt_in, "opt_in")
    if tier is not UNSET:
        if tier is not None and not (isinstance(tier, str) and 0 < len(tier) <= _MAX_TEXT):
            raise InvalidParameterError(
                f"tier must be a non-empty str of at most {_MAX_TEXT} characters or None; got {tier!r:.80}"
            )
        out["tier"] = None if tier is None else str(tier)
    attrs = {}
    for name, v in attributes.items():
        attrs[name] = _attribute(name, v)
    if attrs:
        out["attrs"] = attrs
    return out


def _attribute(name: str, v: Any) -> Any:
    """A JSON scalar (``None`` removes the attribute), else InvalidParameterError."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InvalidParameterError(f"attribute {name!r} must be finite; got {v!r}")
        return float(v)
    if isinstance(v, str):
        if len(v) > _MAX_TEXT:
            raise InvalidParameterError(f"attribute {name!r} is longer than {_MAX_TEXT} characters")
        return v
    raise InvalidParameterError(
        f"attribute {name!r} must be a str, int, float, bool or None (to remove it); got {type(v).__name__}"
    )


def with_change(old: Mapping[str, Any] | None, change: Mapping[str, Any]) -> dict[str, Any]:
    """The profile after a :func:`profile_change` (``None`` values remove what they name).

    Examples
    --------
    >>> p = with_change(None, {"opt_in": False, "tier": "gold", "attrs": {"city": "Shanghai"}})
    >>> with_change(p, {"tier": None, "attrs": {"city": None, "age": 31}})
    {'opt_in': False, 'attrs': {'age': 31}}
    """
    new = dict(old or {})
    if "opt_in" in change:
        new["opt_in"] = change["opt_in"]
    if "tier" in change:
        if change["tier"] is None:
            new.pop("tier", None)
        else:
            new["tier"] = change["tier"]
    if "attrs" in change:
        attrs = dict(new.get("attrs", {}))
        for k, v in change["attrs"].items():
            if v is None:
                attrs.pop(k, None)
            else:
                attrs[k] = v
        if attrs:
            new["attrs"] = attrs
        else:
            new.pop("attrs", None)
    return new


def consent_gate(profile: Mapping[str, Any] | None, require_opt_in: bool) -> str | None:
    """Why the user may not be pushed (``"opted_out"``, ``"not_opted_in"``), or None.

    Examples
    --------
    >>> consent_gate(None, False), consent_gate(None, True), consent_gate({"opt_in": False}, False)
    (None, 'not_opted_in', 'opted_out')
    """
    opt_in = None if profile is None else profile.get("opt_in")
    if opt_in is False:
        return "opted_out"
    if require_opt_in and opt_in is not True:
        return "not_opted_in"
    return None


def last_seen(profile: Mapping[str, Any] | None, merchant_id: Any) -> float | None:
    """The user's last visit or redemption at the merchant (epoch seconds), or None."""
    if profile:
        for m, ts in profile.get("seen", ()):
            if m == merchant_id:
                return float(ts)
    return None


def is_lapsed(profile: Mapping[str, Any] | None, merchant_id: Any, t: float, lapsed_after_s: float) -> bool:
    """Whether the user visited or redeemed at the merchant, but not in the ``lapsed_after_s`` before ``t``.

    Examples
    --------
    >>> p = {"seen": [["m1", 0.0]]}
    >>> is_lapsed(p, "m1", 100.0, 100.0), is_lapsed(p, "m1", 99.0, 100.0), is_lapsed(p, "m2", 1e9, 100.0)
    (True, False, False)
    """
    seen = last_seen(profile, merchant_id)
    return seen is not None and t - seen >= lapsed_after_s


def with_seen(profile: Mapping[str, Any] | None, merchant_id: Any, ts: float) -> dict[str, Any] | None:
    """The profile with a visit or redemption at the merchant at ``ts``; None when it changes nothing.

    The merchant moves to the end (the most recent); beyond :data:`MAX_MERCHANTS` the first goes.

    Examples
    --------
    >>> p = with_seen(None, "m1", 100.0)
    >>> p = with_seen(p, "m2", 200.0)
    >>> with_seen(p, "m1", 300.0)["seen"], with_seen(p, "m1", 50.0)
    ([['m2', 200.0], ['m1', 300.0]], None)
    """
    seen = list(profile.get("seen", ())) if profile else []
    for i, (m, old) in enumerate(seen):
        if m == merchant_id:
            if old >= ts:
                return None
            del seen[i]
            break
    seen.append([merchant_id, float(ts)])
    if len(seen) > MAX_MERCHANTS:
        seen = seen[-MAX_MERCHANTS:]
    return {**(profile or {}), "seen": seen}


def with_welcome(profile: Mapping[str, Any] | None, merchant_id: Any) -> dict[str, Any]:
    """The profile after the user was given the merchant's new-customer offer (the last :data:`MAX_MERCHANTS` kept)."""
    welcomed = [*(profile or {}).get("welcomed", ()), merchant_id][-MAX_MERCHANTS:]
    return {**(profile or {}), "welcomed": welcomed}


def audience_reason(
    audience: str, profile: Mapping[str, Any] | None, merchant_id: Any, t: float, lapsed_after_s: float
) -> str | None:
    """Why an offer aimed at ``audience`` is not for this user now (``"audience"``), or None when it is.

    ``"new"``: never visited or redeemed at the merchant and not given one of
    its new-customer offers yet; ``"returning"``: visited or redeemed before;
    ``"lapsed"``: visited or redeemed before, but not in ``lapsed_after_s``;
    ``"members"``: a tier is set.

    Examples
    --------
    >>> p = {"seen": [["m1", 0.0]], "tier": "gold"}
    >>> [audience_reason(a, p, "m1", 86400.0 * 40, 86400.0 * 30) for a in ("new", "returning", "lapsed", "members")]
    ['audience', None, None, None]
    >>> audience_reason("new", p, "m2", 0.0, 1.0), audience_reason("lapsed", p, "m1", 10.0, 86400.0)
    (None, 'audience')
    """
    if audience == "all":
        return None
    if audience == "members":
        return None if profile and profile.get("tier") is not None else "audience"
    if audience == "lapsed":
        return None if is_lapsed(profile, merchant_id, t, lapsed_after_s) else "audience"
    seen = last_seen(profile, merchant_id)
    if audience == "new":
        welcomed = profile.get("welcomed", ()) if profile else ()
        return None if seen is None and merchant_id not in welcomed else "audience"
    return None if seen is not None else "audience"  # returning
