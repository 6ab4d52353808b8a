"""explain_ping: a dry run that changes nothing, and predicts exactly what on_location then decides and counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _worlds import GEOD, snapshot

import o2o_geo as og
from o2o_geo.errors import InvalidCoordinateError, InvalidParameterError

LAT0, LON0 = 31.23, 121.47  # Shanghai
T0 = 1767229200.0  # 2026-01-01 09:00 in Shanghai
COUNTED = {"pushed", "holdout", "store_closed", "capped", "min_gap", "dismiss_cooldown", "quiet_hours",
           "user_cap", "low_score", "stale_pings", "ignored_inaccurate"}  # fmt: skip


def world():
    """12 stores of 3 merchants, in pairs 20 m apart on a 1.2 km circle, some closing early; 6 offers, limits."""
    stores = []
    for i in range(12):
        lon, lat, _ = GEOD.fwd(LON0, LAT0, 60.0 * (i // 2), 1200.0 + 20.0 * (i % 2))
        hours = "08:00-12:00" if i % 4 == 0 else None
        stores.append({"store_id": f"s{i}", "lat": float(lat), "lon": float(lon), "merchant_id": f"m{i % 3}",
                       "opening_hours": hours})  # fmt: skip
    index = og.StoreIndex.from_records(stores)
    offers = og.OfferSet(
        [
            og.Offer("o0", "m0", category="coffee", discount_rate=0.8),
            og.Offer("o0b", "m0", category="coffee", discount_rate=0.95),
            og.Offer("o1", "m1", category="tea", discount_rate=0.7),
            og.Offer("o1c", "m1", category="tea", discount_rate=0.99),  # 1 % off: scores low
            og.Offer("o2", "m2", category="food", discount_rate=0.9),
            og.Offer("o2b", "m2", category="food", discount_rate=0.6),
        ]
    )
    policy = og.PushPolicy(
        triggers=("enter", "dwell"),
        max_per_day=4,
        max_per_week=12,
        max_per_offer=2,
        max_per_merchant_per_day=1,
        max_per_ping=2,
        min_gap_s=900.0,
        dismiss_cooldown_s=3 * 3600.0,
        min_score=0.85,
        holdout_fraction=0.3,
        offer_budgets={"o1": og.Budget(max_pushes=4)},
        store_daily_capacity=2,
    )
    return index, offers, policy, stores


def walk(seed, stores, n=800):
    """Five users wandering between the stores and the centre, now and then at night, inaccurate or late."""
    rng = np.random.default_rng(seed)
    t = {u: T0 for u in range(5)}
    out = []
    for _ in range(n):
        u = int(rng.integers(5))
        t[u] += float(rng.choice([30.0, 200.0, 400.0, 1200.0, 4 * 3600.0], p=[0.25, 0.25, 0.2, 0.22, 0.08]))
        ts = t[u] - (3600.0 if rng.random() < 0.03 else 0.0)  # now and then a late (stale) ping
        where = rng.integers(len(stores) + 2)
        if where < len(stores):
            lat, lon = stores[where]["lat"], stores[where]["lon"]
        else:
            lat, lon = LAT0, LON0
        acc = 500.0 if rng.random() < 0.03 else 10.0
        out.append((f"u{u}", lat, lon, ts, acc, rng.random() < 0.15))
    return out


def expected_counts(why):
    """The engine.stats increments that on_location makes when explain_ping said ``why``."""
    if why.gate is not None:
        return Counter({why.gate: 1}) if why.gate in COUNTED else Counter()
    reasons = [c.reason for c in why.candidates]
    out = Counter(r for r in reasons if r in ("pushed", "holdout", "store_closed", "capped"))
    if "user_cap" in reasons:
        out["user_cap"] += 1  # the engine counts the cap once, when it stops trying
    if reasons and all(r == "low_score" for r in reasons):
        out["low_score"] += 1
    return out


def test_explain_predicts_every_decision_and_count_and_changes_nothing(state_factory):
    index, offers, policy, stores = world()
    engine = og.Dispatcher(index, offers, policy=policy, state=state_factory(), feedback_interval_s=0.0)
    seen = Counter()
    for user, lat, lon, ts, acc, dismiss in walk(3, stores):
        engine.flush_feedback()  # explain reads the history as it stands; on_location would fold this in first
        before, stats_before = snapshot(engine.state), Counter(engine.stats)
        why = engine.explain_ping(user, lat, lon, ts, accuracy_m=acc)
        assert snapshot(engine.state) == before and engine.stats == stats_before  # a dry run
        decided = engine.on_location(user, lat, lon, ts, accuracy_m=acc)
        assert decided == why.decisions
        got = Counter(engine.stats) - stats_before
        assert got == expected_counts(why), (why, got)
        made = [c.offer_id for c in why.candidates if c.reason in ("pushed", "holdout")]
        assert [d.offer_id for d in decided] == made
        seen[why.reason] += 1
        seen.update(c.reason for c in why.candidates)
        seen.update(c.limit for c in why.candidates if c.limit)
        if dismiss and decided:
            engine.record(og.Event("dismiss", user, ts + 10, push_id=decided[0].push_id))
    # the walk reaches the gates and limits it is meant to test (else the checks above prove little)
    wanted = {"pushed", "holdout", "no_fence", "no_trigger", "min_gap", "quiet_hours", "store_closed", "capped",
              "stale_pings", "ignored_inaccurate", "merchant_day", "user_cap", "dismiss_cooldown", "low_score",
              "max_per_ping", "offer_cap", "offer_budget", "store_capacity"}  # fmt: skip
    assert wanted <= set(seen), (sorted(wanted - set(seen)), seen)


def test_each_gate_by_hand():
    index, offers, policy, stores = world()
    engine = og.Dispatcher(index, offers, policy=policy)
    s1 = stores[1]
    night = T0 + 15 * 3600.0  # 00:00 in Shanghai
    assert engine.explain_ping("a", s1["lat"], s1["lon"], night).gate == "quiet_hours"
    assert engine.explain_ping("a", s1["lat"], s1["lon"], T0, accuracy_m=1e4).gate == "ignored_inaccurate"
    assert engine.explain_ping("a", LAT0, LON0, T0).gate == "no_fence"
    s0 = stores[0]  # open 08:00-12:00 only
    why = engine.explain_ping("a", s0["lat"], s0["lon"], T0 + 4 * 3600.0)  # 13:00
    assert why.gate is None and {c.reason for c in why.candidates if c.store_id == "s0"} == {"store_closed"}
    assert why.triggers == {"s0": "enter", "s1": "enter"}  # s1, 20 m away and open, is tried too
    # a low bar no offer clears
    strict = og.Dispatcher(index, offers, policy=og.PushPolicy(min_score=0.999, quiet_hours=None))
    why = strict.explain_ping("a", s1["lat"], s1["lon"], T0)
    assert why.reason == "low_score" and all(c.score < 0.999 for c in why.candidates)


def test_a_store_without_offers_and_a_stay_are_named():
    index, offers, policy, stores = world()
    few = og.OfferSet([og.Offer("o1", "m1", category="tea", discount_rate=0.7)])
    engine = og.Dispatcher(index, few, policy=og.PushPolicy(quiet_hours=None, holdout_fraction=0.0))
    s2 = stores[2]  # merchant m2, and its neighbour s3 of m0: no offer at either
    assert engine.explain_ping("a", s2["lat"], s2["lon"], T0).gate == "no_offer"
    s1 = stores[1]
    (d,) = engine.on_location("a", s1["lat"], s1["lon"], T0)
    assert d.store_id == "s1"
    why = engine.explain_ping("a", s1["lat"], s1["lon"], T0 + 60.0)
    assert why.gate == "no_trigger" and why.candidates == []
    why = engine.explain_ping("a", s1["lat"], s1["lon"], T0 + 400.0)  # the dwell is due: a visit, then the gap
    assert why.triggers == {"s0": "dwell", "s1": "dwell"} and why.visits == ["s0", "s1"] and why.gate == "min_gap"
    assert engine.state.events() == []  # the visit was not recorded
    rows = why.to_records()
    assert {r["reason"] for r in rows} == {"min_gap"} and [r["store_id"] for r in rows] == ["s1"]  # s0: no offer


@pytest.mark.parametrize(
    "args, error, message",
    [((None, LAT0, LON0, T0), Exception, "user_id must be a str or an int; got None"),
     (("u", 91.0, LON0, T0), InvalidCoordinateError, r"lat = 91\.0 is outside \[-90, 90\]"),
     (("u", LAT0, LON0, "soon"), InvalidParameterError, "ts = 'soon' is not an ISO 8601 time"),
     (("u", LAT0, LON0, T0, -1.0), InvalidParameterError, "accuracy_m must be a finite number of metres >= 0")],
)  # fmt: skip
def test_bad_input_is_a_typed_error_and_changes_nothing(args, error, message):
    index, offers, policy, _ = world()
    engine = og.Dispatcher(index, offers, policy=policy)
    before = snapshot(engine.state)
    with pytest.raises(og.errors.O2OGeoError if error is Exception else error, match=message):
        engine.explain_ping(*args)
    assert snapshot(engine.state) == before and not engine.stats
