"""The fence-state machine against a plain per-store reference, on random ping sequences (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo._dispatch._fence_state import fence_step

ZONES = ("in", "buf", "out")
DWELL_S, EXIT_S = 300.0, 120.0


def reference_events(seq, dwell_s=DWELL_S, exit_after_s=EXIT_S):
    """(t, kind) of one store's enter, dwell and exit events, read off its (t, zone) sequence as stays.

    A stay starts at an "in" ping; it ends at an "out" ping, or at a "buf" ping at least
    ``exit_after_s`` after the first "buf" ping of the current run of them (an "in" ping
    ends the run).  Its dwell is the first "in" ping at least ``dwell_s`` after the start;
    a stay that dwelt ends with an exit.
    """
    events, in_stay = [], False
    entered = run_start = None
    dwelt = False
    for t, z in seq:
        if not in_stay:
            if z == "in":
                in_stay, entered, dwelt, run_start = True, t, False, None
                events.append((t, "enter"))
            continue
        if z == "in":
            run_start = None
            if not dwelt and t - entered >= dwell_s:
                dwelt = True
                events.append((t, "dwell"))
        elif z == "buf":
            if run_start is None:
                run_start = t
            elif t - run_start >= exit_after_s:
                in_stay = False
        else:
            in_stay = False
        if not in_stay and dwelt:
            dwelt = False
            events.append((t, "exit"))
    return events


pings = st.lists(
    st.tuples(st.floats(0.0, 400.0), st.lists(st.sampled_from(ZONES), min_size=3, max_size=3)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(pings)
def test_fence_step_matches_the_per_store_reference(seq):
    stores = ["a", "b", "c"]
    stays, t = [], 0.0
    got = {s: [] for s in stores}
    timeline = {s: [] for s in stores}
    for gap, zones in seq:
        t += gap
        inside = {s: (i, 1.0) for i, (s, z) in enumerate(zip(stores, zones, strict=True)) if z == "in"}
        in_buffer = {s for s, z in zip(stores, zones, strict=True) if z != "out"}
        step = fence_step(stays, inside, in_buffer, [], t, dwell_s=DWELL_S, exit_after_s=EXIT_S)
        for p, (kind, _) in step.triggers.items():
            got[stores[p]].append((t, kind))
        for s in step.exited:
            got[s].append((t, "exit"))
        assert sorted(step.visits) == sorted(p for p, (kind, _) in step.triggers.items() if kind == "dwell")
        assert step.changed == (step.stays != [list(x) for x in stays])
        stays = step.stays
        for s, z in zip(stores, zones, strict=True):
            timeline[s].append((t, z))
    for s in stores:
        assert got[s] == reference_events(timeline[s]), s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, EXIT_S - 1.0), min_size=2, max_size=30))
def test_jitter_at_the_edge_never_flaps(gaps):
    """Inside, then in and out of the buffer with gaps shorter than exit_after_s: one enter, one stay."""
    stays, t, enters = [], 0.0, 0
    for k, gap in enumerate(gaps):
        t += gap
        inside = {"a": (0, 99.0)} if k % 2 == 0 else {}
        step = fence_step(stays, inside, {"a"}, [], t, dwell_s=1e9, exit_after_s=EXIT_S)
        enters += sum(kind == "enter" for kind, _ in step.triggers.values())
        stays = step.stays
        assert len(stays) == 1
    assert enters == 1


def test_nearby_never_replaces_enter_or_dwell():
    step = fence_step([], {"a": (0, 5.0)}, {"a"}, [(0, 5.0), (1, 200.0)], 0.0, dwell_s=300, exit_after_s=120)
    assert step.triggers == {0: ("enter", 5.0), 1: ("nearby", 200.0)}


# ------------------------------------------------------------------ the engine: out-of-order pings
CENTRE = (31.2304, 121.4737)


def _at(zone):
    from pyproj import Geod

    lon, lat, _ = Geod(ellps="WGS84").fwd(CENTRE[1], CENTRE[0], 90.0, {"in": 0.0, "buf": 115.0, "out": 500.0}[zone])
    return float(lat), float(lon)


def reference_with_stale(arrivals, dwell_s=DWELL_S, exit_after_s=EXIT_S):
    """The reference in arrival order, a ping older than the last state change dropped (as the engine does)."""
    kept, last_change = [], -math.inf
    for t, z in arrivals:
        if t < last_change:
            continue
        before = reference_state(kept, dwell_s, exit_after_s)
        after = reference_state([*kept, (t, z)], dwell_s, exit_after_s)
        kept.append((t, z))
        if after != before:
            last_change = t
    return reference_events(kept, dwell_s, exit_after_s)


def reference_state(seq, dwell_s, exit_after_s):
    """The state after a sequence: (in a stay, entered, dwelt, start of the buffer run)."""
    in_stay, entered, dwelt, run_start = False, None, False, None
    for t, z in seq:
        if not in_stay:
            if z == "in":
                in_stay, entered, dwelt, run_start = True, t, False, None
            continue
        if z == "in":
            run_start = None
            dwelt = dwelt or t - entered >= dwell_s
        elif z == "buf":
            if run_start is None:
                run_start = t
            elif t - run_start >= exit_after_s:
                in_stay, entered, dwelt, run_start = False, None, False, None
        else:
            in_stay, entered, dwelt, run_start = False, None, False, None
    return in_stay, entered, dwelt, run_start


arrival_logs = st.lists(
    st.tuples(st.integers(0, 200), st.sampled_from(ZONES), st.sampled_from([0, 0, 0, 0, 50, 400])),
    min_size=1,
    max_size=25,
).map(lambda rows: [(sum(g for g, _, _ in rows[: i + 1]) - late, z) for i, (_, z, late) in enumerate(rows)])


@settings(max_examples=150, deadline=None)
@given(arrival_logs)  # mostly in time order, some pings late by 50 or 400 s; enter, dwell and exit pushed
def test_the_engine_drops_stale_pings_and_follows_the_reference(arrivals):
    index = og.StoreIndex.from_records([{"store_id": "A", "lat": CENTRE[0], "lon": CENTRE[1], "merchant_id": "m"}])
    offers = og.OfferSet([og.Offer("o", "m", discount_rate=0.5)])
    policy = og.PushPolicy(quiet_hours=None, holdout_fraction=0.0, min_gap_s=0.0, max_per_offer=None,
                           max_per_merchant_per_day=None, max_per_day=None, max_per_week=None,
                           dwell_s=DWELL_S, exit_after_s=EXIT_S, exit_buffer_m=30.0,
                           triggers=("enter", "dwell", "exit"))  # fmt: skip
    engine = og.Dispatcher(index, offers, policy=policy)
    t0 = 1767258000.0
    got = []
    for t, z in arrivals:
        for d in engine.on_location("u", *_at(z), t0 + t):
            got.append((d.ts - t0, d.trigger))
    assert got == [(float(t), k) for t, k in reference_with_stale(arrivals)]
