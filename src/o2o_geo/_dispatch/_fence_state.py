"""The fence-state machine: a pure function of what a user was in, what a ping is in, and when.

A user's fence state is a list of stays, one per fence the user is in:
``[store_id, entered_ts, outside_since_ts or None, dwelt]`` (JSON-able, as
the state backends store it).  :func:`fence_step` takes it, the fences a
ping is inside and the ones whose exit buffer holds it, and returns the new
stays and what happened:

* ``enter``: inside a fence the user was not in;
* ``dwell``: still inside, at least ``dwell_s`` after entering (once per
  stay; also an inferred visit);
* a stay ends when the ping is beyond the fence's buffer, or has been in
  the buffer (outside the fence) for at least ``exit_after_s``: jitter at
  the edge never ends a stay, and so never re-enters; a stay that dwelt
  ends as an ``exit`` (listed by store id: the ping may be beyond the
  fences it reports, so the caller places it);
* ``nearby``: within the nearby radius of a store (every such ping; the
  policy's caps and gaps keep it rare).

Order: stays keep their order, new ones follow in the order given; the
triggers are keyed by store position.  The function neither reads nor
writes state, so the dispatcher runs it inside the ping's transaction and,
in a batch, ahead of it to see which pings need scoring.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from .._fences import FenceHit
from .._geodesy import geodesic_inverse_scalar_m
from .._policy import PushPolicy
from ._profile import is_lapsed
from ._stores import StoreFacts

__all__ = ["FenceMachine", "FenceStep", "fence_step", "resolve_lapsed"]


class FenceStep(NamedTuple):
    """What one ping did to a user's fence state."""

    stays: list[list[Any]]
    """The new fence state."""
    triggers: dict[int, tuple[str, float]]
    """Store position -> (``"enter"``, ``"dwell"`` or ``"nearby"``, distance in metres)."""
    visits: list[int]
    """Positions whose stay completed its dwell at this ping (an inferred visit each)."""
    changed: bool
    """Whether ``stays`` differs from the state given."""
    exited: list[Any]
    """Store ids of the stays that dwelt and ended at this ping (an ``exit`` each)."""


def fence_step(
    stays: Sequence[Sequence[Any]],
    inside: Mapping[Any, tuple[int, float]],
    in_buffer: Collection[Any],
    nearby: Sequence[tuple[int, float]],
    t: float,
    *,
    dwell_s: float,
    exit_after_s: float,
) -> FenceStep:
    """Advance a user's fence state by one ping.

    Parameters
    ----------
    stays : sequence of [store_id, entered_ts, outside_since_ts or None, dwelt]
        The user's fence state before the ping.
    inside : mapping of store_id to (position, distance_m)
        The fences the ping is inside.
    in_buffer : collection of store_id
        The fences whose fence or exit buffer holds the ping (includes ``inside``).
    nearby : sequence of (position, distance_m)
        Stores whose nearby radius holds the ping (empty when the trigger is off).
    t : float
        The ping's epoch seconds (not older than the state's last change: the caller drops stale pings).
    dwell_s, exit_after_s : float
        As :class:`~o2o_geo.PushPolicy`.

    Returns
    -------
    FenceStep

    Examples
    --------
    >>> s1 = fence_step([], {"a": (0, 12.0)}, {"a"}, [], 100.0, dwell_s=300, exit_after_s=120)
    >>> s1.stays, s1.triggers
    ([['a', 100.0, None, False]], {0: ('enter', 12.0)})
    >>> s2 = fence_step(s1.stays, {"a": (0, 9.0)}, {"a"}, [], 420.0, dwell_s=300, exit_after_s=120)
    >>> s2.triggers, s2.visits
    ({0: ('dwell', 9.0)}, [0])
    >>> s3 = fence_step(s2.stays, {}, {"a"}, [], 500.0, dwell_s=300, exit_after_s=120)   # in the buffer
    >>> s3.stays, s3.triggers
    ([['a', 100.0, 500.0, True]], {})
    >>> s4 = fence_step(s3.stays, {}, {"a"}, [], 620.0, dwell_s=300, exit_after_s=120)  # 120 s outside: gone
    >>> s4.stays, s4.exited
    ([], ['a'])
    """
    out: list[list[Any]] = []
    triggers: dict[int, tuple[str, float]] = {}
    visits: list[int] = []
    exited: list[Any] = []
    known = set()
    changed = False
    matched = 0  # stays the ping is inside
    for st in stays:
        sid, entered, outside, dwelt = st
        known.add(sid)
        hit = inside.get(sid)
        if hit is not None:
            matched += 1
            p, d = hit
            if not dwelt and t - entered >= dwell_s:
                dwelt = changed = True
                triggers[p] = ("dwell", d)
                visits.append(p)
            elif outside is not None:
                changed = True  # back inside from the buffer
            out.append([sid, entered, None, dwelt])
        elif sid in in_buffer:
            if outside is not None and t - outside >= exit_after_s:
                changed = True
                if dwelt:
                    exited.append(sid)
                continue  # outside the fence for long enough: the stay ends
            if outside is None:
                changed = True
                outside = t
            out.append([sid, entered, outside, dwelt])
        else:
            changed = True  # beyond the buffer, the stay ends
            if dwelt:
                exited.append(sid)
    if matched < len(inside):  # a fence the user is not in yet
        for sid, (p, d) in inside.items():
            if sid not in known:
                out.append([sid, t, None, False])
                triggers[p] = ("enter", d)
                changed = True
    for p, d in nearby:
        if p not in triggers:
            triggers[p] = ("nearby", d)
    return FenceStep(out, triggers, visits, changed, exited)


class FenceMachine:
    """:func:`fence_step` with a policy's times, on a ping's :class:`~o2o_geo.FenceHit` list."""

    def __init__(self, policy: PushPolicy) -> None:
        self.policy = policy
        self.nearby_on = "nearby" in policy.triggers
        self.exit_on = "exit" in policy.triggers
        # an enter is wanted also as a possible win-back (the profile decides; see resolve_lapsed)
        self.kinds = frozenset(policy.triggers) | ({"enter"} if "lapsed" in policy.triggers else set())

    def step(self, stays: Sequence[Sequence[Any]], hits: Sequence[FenceHit], t: float) -> FenceStep:
        """The user's fence state after a ping with these hits."""
        inside: dict[Any, tuple[int, float]] = {}
        in_buffer = set()
        near = []
        for p, sid, d, is_in, in_buf, is_near in hits:
            if in_buf:
                in_buffer.add(sid)
            if is_in:
                inside[sid] = (p, d)
            if is_near and self.nearby_on:
                near.append((p, d))
        pol = self.policy
        return fence_step(stays, inside, in_buffer, near, t, dwell_s=pol.dwell_s, exit_after_s=pol.exit_after_s)

    def wanted(self, fs: FenceStep, facts: StoreFacts, lat: float, lon: float) -> dict[int, tuple[str, float]]:
        """The step's triggers that the policy pushes on, the exits placed at their stores' positions.

        An exit's distance is the ping's geodesic distance to the store; it
        replaces a ``nearby`` of the same store; a store no longer in the
        index (``facts``) has no exit.  Enters stay
        in when only ``lapsed`` is on: whether one is a win-back needs the
        user's profile (:func:`resolve_lapsed`).
        """
        kinds = self.kinds
        out = {p: td for p, td in fs.triggers.items() if td[0] in kinds}
        if fs.exited and self.exit_on:
            for sid in fs.exited:
                p = facts.position.get(sid)
                if p is not None and (p not in out or out[p][0] == "nearby"):  # (once per stay beats every ping)
                    out[p] = ("exit", geodesic_inverse_scalar_m(lat, lon, facts.lat[p], facts.lon[p]))
        return out


def resolve_lapsed(
    wanted: dict[int, tuple[str, float]],
    profile: Mapping[str, Any] | None,
    merchant: Sequence[Any],
    t: float,
    policy: PushPolicy,
) -> dict[int, tuple[str, float]]:
    """``wanted`` with each enter at a merchant where the user is lapsed made ``lapsed`` (when that trigger is on).

    ``merchant`` gives each store position's merchant.  An enter that is not
    a win-back is dropped when ``enter`` itself is not a trigger.

    Examples
    --------
    >>> import o2o_geo as og
    >>> pol = og.PushPolicy(triggers=("lapsed",))
    >>> profile = {"seen": [["m1", 0.0]]}
    >>> resolve_lapsed({0: ("enter", 12.0), 1: ("enter", 30.0)}, profile, ["m1", "m2"], 40 * 86400.0, pol)
    {0: ('lapsed', 12.0)}
    """
    trig = policy.triggers
    if "lapsed" not in trig:
        return wanted
    keep_enter = "enter" in trig
    out: dict[int, tuple[str, float]] = {}
    for p, (kind, d) in wanted.items():
        if kind == "enter":
            if is_lapsed(profile, merchant[p], t, policy.lapsed_after_s):
                out[p] = ("lapsed", d)
            elif keep_enter:
                out[p] = (kind, d)
        else:
            out[p] = (kind, d)
    return out
