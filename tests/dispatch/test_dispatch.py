"""Dispatcher: triggers, policy, attribution, report and uplift, on every state backend (conformance suite)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from _worlds import OPEN, geographiclib_m, offset

import o2o_geo as og
from o2o_geo import simulate
from o2o_geo.errors import (
    InvalidCoordinateError,
    InvalidGeometryError,
    InvalidParameterError,
    InvalidRecordError,
    UnknownOfferError,
    UnknownPushError,
    UnknownStoreError,
)

CENTRE = (31.2304, 121.4737)
T0 = 1767258000.0  # 2026-01-01 17:00 Asia/Shanghai (09:00 UTC)


def make_stores(**extra_cols):
    a = CENTRE
    b = offset(*a, 500.0)
    c = offset(*a, 2000.0, 0.0)
    recs = [
        {"store_id": "A", "lat": a[0], "lon": a[1], "merchant_id": "mA", "category": "coffee"},
        {"store_id": "B", "lat": b[0], "lon": b[1], "merchant_id": "mB", "category": "tea"},
        {"store_id": "C", "lat": c[0], "lon": c[1], "merchant_id": "mA", "category": "coffee"},
    ]
    for col, values in extra_cols.items():
        for rec, v in zip(recs, values, strict=True):
            rec[col] = v
    return og.StoreIndex.from_records(recs)


def make_offers(**kw):
    return og.OfferSet(
        [
            og.Offer("latte", "mA", category="coffee", discount_rate=0.8, **kw),
            og.Offer("tea", "mB", category="tea", discount_rate=0.9),
        ]
    )


@pytest.fixture
def engine_factory(state_factory):
    def make(policy=None, index=None, offers=None, state=None, **kw):
        return og.Dispatcher(
            index if index is not None else make_stores(),
            offers if offers is not None else make_offers(),
            policy=policy if policy is not None else og.PushPolicy(**OPEN),
            state=state if state is not None else state_factory(),
            **kw,
        )

    return make


def pos(index, sid):
    p = int(index.stores.position_of(sid)[0])
    return float(index.stores.lat[p]), float(index.stores.lon[p])


# ------------------------------------------------------------------ triggers
def test_enter_pushes_once_per_stay_and_names_the_store(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    assert eng.on_location("u", *offset(lat, lon, 150.0, 180.0), T0) == []  # outside the 100 m fence
    d = eng.on_location("u", *offset(lat, lon, 40.0, 180.0), T0 + 60, event_id="e1")
    assert [(x.offer_id, x.store_id, x.trigger, x.holdout) for x in d] == [("latte", "A", "enter", False)]
    assert d[0].distance_m == pytest.approx(40.0, abs=1e-6)
    assert abs(math.fsum(d[0].explanation.values()) - math.log(d[0].score / (1 - d[0].score))) < 1e-9
    assert eng.on_location("u", *offset(lat, lon, 30.0, 180.0), T0 + 120) == []  # still inside: no new enter
    assert len(eng.state.pushes()) == 1


def test_fence_membership_matches_geographiclib_at_the_edge(engine_factory, rng):
    eng = engine_factory(og.PushPolicy(**OPEN, exit_buffer_m=0.0, exit_after_s=0.0, fence_radius_m=100.0))
    lat, lon = pos(eng.index, "A")
    t = T0
    for i in range(60):
        d_m = 100.0 + rng.choice([-1, 1]) * 10 ** rng.uniform(-7, 0)
        plat, plon = offset(lat, lon, d_m, rng.uniform(0, 360))
        truth = geographiclib_m(lat, lon, plat, plon) <= 100.0
        t += 10
        # leave far away first so every probe is a fresh entry decision
        eng.on_location(f"u{i}", *offset(lat, lon, 5000.0), t)
        got = eng.on_location(f"u{i}", plat, plon, t + 1)
        assert (len(got) == 1) == truth, (d_m, truth)


def test_hysteresis_jitter_at_the_edge_does_not_flap(engine_factory):
    eng = engine_factory(og.PushPolicy(**OPEN, exit_buffer_m=30.0, exit_after_s=120.0))
    lat, lon = pos(eng.index, "A")
    t = T0
    assert len(eng.on_location("u", *offset(lat, lon, 95.0), t)) == 1
    for i in range(10):  # jitter 95 m <-> 110 m (inside the buffer), 20 s apart
        t += 20
        assert eng.on_location("u", *offset(lat, lon, 110.0 if i % 2 == 0 else 95.0), t) == []
    # leave beyond the buffer: exit; come back: a new entry pushes again
    t += 20
    assert eng.on_location("u", *offset(lat, lon, 140.0), t) == []
    t += 20
    assert [x.trigger for x in eng.on_location("u", *offset(lat, lon, 50.0), t)] == ["enter"]


def test_exit_after_seconds_outside_within_the_buffer(engine_factory):
    eng = engine_factory(og.PushPolicy(**OPEN, exit_buffer_m=30.0, exit_after_s=120.0))
    lat, lon = pos(eng.index, "A")
    eng.on_location("u", lat, lon, T0)
    eng.on_location("u", *offset(lat, lon, 115.0), T0 + 10)  # outside, in the buffer: clock starts
    eng.on_location("u", *offset(lat, lon, 115.0), T0 + 100)  # 90 s: still "inside"
    assert eng.on_location("u", lat, lon, T0 + 110) == []  # back in: no new enter
    eng.on_location("u", *offset(lat, lon, 115.0), T0 + 200)
    eng.on_location("u", *offset(lat, lon, 115.0), T0 + 330)  # 130 s outside: exit
    assert [x.trigger for x in eng.on_location("u", lat, lon, T0 + 340)] == ["enter"]


def test_dwell_fires_once_and_records_an_inferred_visit(engine_factory):
    pol = og.PushPolicy(**{**OPEN, "max_per_offer": None}, triggers=("dwell",), dwell_s=300.0)
    eng = engine_factory(pol)
    lat, lon = pos(eng.index, "A")
    assert eng.on_location("u", lat, lon, T0) == []  # enter: not a push trigger here
    assert eng.on_location("u", lat, lon, T0 + 200) == []
    d = eng.on_location("u", lat, lon, T0 + 301)
    assert [(x.trigger, x.store_id) for x in d] == [("dwell", "A")]
    assert eng.on_location("u", lat, lon, T0 + 900) == []  # once per stay
    visits = [e for e in eng.state.events() if e["kind"] == "visit"]
    assert len(visits) == 1 and visits[0]["inferred"] and visits[0]["store_id"] == "A"
    assert eng.scorer.history.n_events("u", "visit") == 1


def test_inaccurate_pings_are_ignored_not_guessed(engine_factory):
    eng = engine_factory(og.PushPolicy(**OPEN, max_accuracy_m=50.0))
    lat, lon = pos(eng.index, "A")
    assert eng.on_location("u", lat, lon, T0, accuracy_m=80.0) == []
    assert eng.state.read_user("u") is None  # no state change at all
    assert len(eng.on_location("u", lat, lon, T0 + 1, accuracy_m=20.0)) == 1
    assert eng.stats["ignored_inaccurate"] == 1


def test_nearby_trigger_without_a_fence(engine_factory):
    eng = engine_factory(og.PushPolicy(**OPEN, triggers=("nearby",), nearby_radius_m=300.0))
    lat, lon = pos(eng.index, "B")
    assert eng.on_location("u", *offset(lat, lon, 320.0, 0.0), T0) == []
    d = eng.on_location("u", *offset(lat, lon, 250.0, 0.0), T0 + 10)
    assert [(x.offer_id, x.trigger) for x in d] == [("tea", "nearby")]


def test_one_decision_per_ping_best_score_first(engine_factory):
    # two overlapping fences: the user is inside both; max_per_ping=1 gives the better one only
    idx = make_stores(geofence=[400.0, 400.0, 100.0])
    mid = offset(*pos(idx, "A"), 250.0)
    one = engine_factory(og.PushPolicy(**OPEN), index=idx)
    d1 = one.on_location("u", *mid, T0)
    two = engine_factory(og.PushPolicy(**OPEN, max_per_ping=2), index=idx, state=og.MemoryState())
    d2 = two.on_location("u", *mid, T0)
    assert len(d1) == 1 and len(d2) == 2
    assert d2[0].score >= d2[1].score and d1[0].offer_id == d2[0].offer_id
    ranked = og.OfferScorer(idx, make_offers()).rank("u", *mid, now=T0, k=2)  # the history before any push
    assert [(x.offer_id, x.store_id) for x in d2] == [(r.offer_id, r.store_id) for r in ranked]
    for x, r in zip(d2, ranked, strict=True):  # the dispatcher scores exactly like the scorer's rank()
        assert x.score == pytest.approx(r.score, rel=1e-12) and x.distance_m == pytest.approx(r.distance_m, abs=1e-6)
        assert x.explanation == pytest.approx(r.explain(), rel=1e-12, abs=1e-12)


def test_polygon_fences_and_bad_fences(engine_factory):
    from shapely.geometry import box

    lat, lon = CENTRE
    poly = box(lon - 0.001, lat - 0.0005, lon + 0.001, lat + 0.0005)
    idx = make_stores(geofence=[poly, None, None])
    eng = engine_factory(index=idx)
    assert eng.on_location("u", lat + 0.0007, lon, T0) == []  # north of the box (~78 m from the store)
    assert [x.store_id for x in eng.on_location("u", lat, lon + 0.0009, T0 + 10)] == ["A"]  # ~86 m east, inside
    for bad in (-5.0, "round", box(0, 0, 1, 1).difference(box(0, 0, 1, 1))):
        with pytest.raises(InvalidGeometryError, match="store 'A': geofence"):
            og.Dispatcher(make_stores(geofence=[bad, None, None]), make_offers()).on_location("u", lat, lon, T0)


def test_polygon_fence_across_the_antimeridian_pushes_on_both_sides(engine_factory):
    from shapely.geometry import box

    fence = box(179.999, -17.0, 180.0, -16.999).union(box(-180.0, -17.0, -179.999, -16.999))  # split at 180
    recs = [{"store_id": "A", "lat": -16.9995, "lon": 179.9995, "merchant_id": "mA", "geofence": fence},
            {"store_id": "B", "lat": -16.9995, "lon": -179.9995, "merchant_id": "mB", "geofence": 10.0}]  # fmt: skip
    eng = engine_factory(index=og.StoreIndex.from_records(recs))
    assert [d.store_id for d in eng.on_location("u", -16.9995, -179.9998, T0)] == ["A"]  # east of 180, in A's fence
    assert [d.store_id for d in eng.on_location("w", -16.9995, 179.9998, T0)] == ["A"]  # west of 180
    assert eng.on_location("v", -16.99, 179.9995, T0) == []  # 1 km north


# ------------------------------------------------------------------ policy
def test_daily_weekly_offer_and_merchant_caps(engine_factory):
    pol = og.PushPolicy(**{**OPEN, "max_per_day": 2, "max_per_week": 3}, exit_buffer_m=0.0)
    eng = engine_factory(pol)
    lat, lon = pos(eng.index, "A")
    far = offset(lat, lon, 5000.0)
    got = []
    for day in range(4):
        for j in range(4):
            t = T0 + day * 86400 + j * 600
            eng.on_location("u", *far, t)
            got.append((day, len(eng.on_location("u", lat, lon, t + 60))))
    per_day = [sum(n for d, n in got if d == day) for day in range(4)]
    assert per_day == [2, 1, 0, 0]  # 2 a day, 3 a week (2026-01-01 is a Thursday: days 0-3 share the ISO week)
    per_offer = engine_factory(og.PushPolicy(**{**OPEN, "max_per_offer": 1}, exit_buffer_m=0.0))
    n = 0
    for j in range(5):
        per_offer.on_location("v", *far, T0 + j * 600)
        n += len(per_offer.on_location("v", lat, lon, T0 + j * 600 + 60))
    assert n == 1
    merch = engine_factory(og.PushPolicy(**{**OPEN, "max_per_merchant_per_day": 1}, exit_buffer_m=0.0))
    c_lat, c_lon = pos(merch.index, "C")
    assert len(merch.on_location("w", lat, lon, T0)) == 1
    assert merch.on_location("w", c_lat, c_lon, T0 + 600) == []  # same merchant mA, same day


def test_min_gap_and_dismiss_cooldown(engine_factory):
    eng = engine_factory(og.PushPolicy(**{**OPEN, "min_gap_s": 1800.0}, dismiss_cooldown_s=86400.0))
    a, b = pos(eng.index, "A"), pos(eng.index, "B")
    assert len(eng.on_location("u", *a, T0)) == 1
    assert eng.on_location("u", *b, T0 + 600) == []  # 10 min later: gap
    assert eng.stats["min_gap"] >= 1
    c = pos(eng.index, "C")
    assert len(eng.on_location("u", *c, T0 + 2000)) == 1
    eng.record(og.Event("dismiss", "u", T0 + 2100, offer_id="latte"))
    eng.on_location("u", *offset(*b, 5000.0), T0 + 5000)
    assert eng.on_location("u", *b, T0 + 5100) == []  # dismissed: cooldown
    eng.on_location("u", *offset(*b, 5000.0), T0 + 90000)
    assert len(eng.on_location("u", *b, T0 + 90100)) == 1  # a day later


def test_quiet_hours_use_the_users_local_time(engine_factory):
    pol = og.PushPolicy(**{**OPEN, "quiet_hours": (22, 8)})
    eng = engine_factory(pol)
    lat, lon = pos(eng.index, "A")
    t_night = datetime(2026, 1, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai, 15:30 in London
    assert eng.on_location("u", lat, lon, t_night) == []
    assert eng.stats["quiet_hours"] == 1
    # the same instant for a user whose phone says London time is not quiet
    assert len(eng.on_location("v", lat, lon, t_night, tz="Europe/London")) == 1
    with pytest.raises(InvalidParameterError, match="unknown time zone"):
        eng.on_location("w", lat, lon, t_night, tz="Mars/Olympus")


def test_opening_hours_in_store_local_time(engine_factory):
    idx = make_stores(opening_hours=["08:00-22:00", "18:00-02:00", None])
    eng = engine_factory(og.PushPolicy(**OPEN, closing_margin_min=30.0), index=idx)
    a, b = pos(idx, "A"), pos(idx, "B")

    def at(h, m):  # Shanghai local time on 2026-01-01 (UTC+8)
        return datetime(2026, 1, 1, h, m, tzinfo=UTC).timestamp() - 8 * 3600

    assert eng.on_location("u1", *a, at(7, 30)) == []  # before opening
    assert len(eng.on_location("u2", *a, at(21, 0))) == 1
    assert eng.on_location("u3", *a, at(21, 45)) == []  # closes within 30 min
    assert len(eng.on_location("u4", *b, at(23, 30))) == 1  # overnight store, open past midnight
    assert eng.on_location("u5", *b, at(12, 0)) == []
    assert eng.stats["store_closed"] == 3
    with pytest.raises(InvalidRecordError, match="opening hours"):
        og.Dispatcher(make_stores(opening_hours=["8-22", None, None]), make_offers()).on_location("u", *a, T0)


def test_opening_hours_in_openstreetmap_syntax_with_holidays_and_breaks(engine_factory):
    # A: weekdays with a lunch break, Saturday mornings, closed Sundays and on China's public holidays
    # B: the short form, one range; C: 24/7 but closed on public holidays
    idx = make_stores(opening_hours=["Mo-Fr 08:00-12:00,13:00-20:00; Sa 09:00-12:00; Su off; PH off",
                                     "10:00-18:00", "24/7; PH off"])  # fmt: skip
    eng = engine_factory(og.PushPolicy(**OPEN, closing_margin_min=30.0), index=idx)
    a, b, c = pos(idx, "A"), pos(idx, "B"), pos(idx, "C")

    def at(day, h, m):  # Shanghai local time on 2026-01-<day> (UTC+8); the 1st is New Year's Day, a Thursday
        return datetime(2026, 1, day, h, m, tzinfo=UTC).timestamp() - 8 * 3600

    cases = [  # (user, store, time, pushed?): the expected answers, read off the rules by hand
        ("u1", a, at(2, 10, 0), True),  # Friday morning
        ("u2", a, at(2, 11, 45), False),  # closes for lunch within 30 min
        ("u3", a, at(2, 12, 30), False),  # lunch break
        ("u4", a, at(2, 13, 5), True),  # open again
        ("u5", a, at(3, 10, 0), True),  # Saturday morning
        ("u6", a, at(3, 14, 0), False),  # Saturday afternoon
        ("u7", a, at(4, 10, 0), False),  # Sunday
        ("u8", a, at(1, 10, 0), False),  # New Year's Day: a public holiday in China
        ("u9", b, at(1, 10, 0), True),  # the short form knows no holidays
        ("u10", c, at(1, 10, 0), False),  # ... but "PH off" does
        ("u11", c, at(2, 3, 0), True),  # 24/7 on a working day
    ]
    for user, (lat, lon), ts, pushed in cases:
        assert bool(eng.on_location(user, lat, lon, ts)) is pushed, (user, ts)
    assert eng.stats["store_closed"] == sum(not p for *_, p in cases)
    bad = make_stores(opening_hours=[None, "Mo-Fx 08:00-20:00", None])
    with pytest.raises(InvalidRecordError, match="store 'B': cannot read opening hours 'Mo-Fx"):
        og.Dispatcher(bad, make_offers()).on_location("u", *a, T0)


def test_offer_validity_window(engine_factory):
    eng = engine_factory(offers=make_offers(valid_from=T0 + 3600, valid_until=T0 + 7200))
    lat, lon = pos(eng.index, "A")
    far = offset(lat, lon, 5000.0)
    assert eng.on_location("u", lat, lon, T0) == []
    eng.on_location("u", *far, T0 + 3000)
    assert len(eng.on_location("u", lat, lon, T0 + 4000)) == 1
    eng.on_location("u", *far, T0 + 7000)
    assert eng.on_location("u", lat, lon, T0 + 7300) == []


def test_budgets_and_store_capacity_are_never_overspent(engine_factory):
    pol = og.PushPolicy(
        **OPEN,
        offer_budgets={"latte": og.Budget(max_pushes=5, max_cost=30.0)},
        offer_cost={"latte": 8.0},
        store_daily_capacity={"B": 2},
    )
    eng = engine_factory(pol)
    a, b = pos(eng.index, "A"), pos(eng.index, "B")
    n_a = sum(len(eng.on_location(f"u{i}", *a, T0 + i)) for i in range(10))
    n_b = sum(len(eng.on_location(f"v{i}", *b, T0 + i)) for i in range(10))
    assert n_a == 3  # 3 x 8.0 = 24 <= 30 < 32: the money budget binds before the count
    assert n_b == 2
    pushes = eng.state.pushes()
    assert sum(8.0 for p in pushes if p["offer_id"] == "latte") <= 30.0
    merch = engine_factory(og.PushPolicy(**OPEN, merchant_budgets={"mA": og.Budget(max_pushes=4)}))
    assert sum(len(merch.on_location(f"w{i}", *a, T0 + i)) for i in range(10)) == 4


def test_holdout_is_deterministic_sized_and_free_of_budget(engine_factory):
    pol = og.PushPolicy(**{**OPEN, "holdout_fraction": 0.2}, offer_budgets={"latte": og.Budget(max_pushes=3)})
    users = [f"user-{i}" for i in range(20000)]
    share = np.mean([pol.is_holdout(u) for u in users])
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000)
    again = og.PushPolicy(holdout_fraction=0.2)
    assert [again.is_holdout(u) for u in users[:500]] == [pol.is_holdout(u) for u in users[:500]]
    assert og.PushPolicy(holdout_fraction=0.2, holdout_salt="other").is_holdout("user-1") in (True, False)
    eng = engine_factory(pol)
    lat, lon = pos(eng.index, "A")
    held = [u for u in users[:200] if pol.is_holdout(u)][:5]
    treated = [u for u in users[:200] if not pol.is_holdout(u)][:5]
    for i, u in enumerate(held + treated):
        eng.on_location(u, lat, lon, T0 + i)
    pushes = eng.state.pushes()
    assert sum(p["holdout"] for p in pushes) == 5  # every held-out user got a (virtual) decision
    assert sum(not p["holdout"] for p in pushes) == 3  # treated: the budget of 3


def test_idempotent_pings_and_events(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    d1 = eng.on_location("u", lat, lon, T0, event_id="ping-1")
    d2 = eng.on_location("u", lat, lon, T0, event_id="ping-1")
    assert d1 == d2 and len(eng.state.pushes()) == 1
    e = og.Event("redeem", "u", T0 + 100, offer_id="latte", amount=20.0, event_id="r-1")
    assert eng.record(e) == d1[0].push_id
    assert eng.record(e) == d1[0].push_id
    assert len([x for x in eng.state.events() if x["kind"] == "redeem"]) == 1
    assert eng.scorer.history.n_events("u", "redeem") == 1


# ------------------------------------------------------------------ attribution, report, uplift
def test_attribution_rules(engine_factory):
    eng = engine_factory(og.PushPolicy(**OPEN, attribution_window_s=86400.0))
    a, b = pos(eng.index, "A"), pos(eng.index, "B")
    p_latte = eng.on_location("u", *a, T0)[0].push_id
    p_tea = eng.on_location("u", *b, T0 + 10)[0].push_id
    assert eng.record(og.Event("open", "u", T0 + 20, push_id=p_latte)) == p_latte
    assert eng.record(og.Event("redeem", "u", T0 + 30, offer_id="tea", amount=12.0)) == p_tea  # by offer
    assert eng.record(og.Event("visit", "u", T0 + 40, store_id="C")) == p_latte  # by the store's merchant
    assert eng.record(og.Event("redeem", "u", T0 + 2 * 86400, offer_id="latte")) is None  # outside the window
    assert eng.record(og.Event("redeem", "u", T0 - 5, offer_id="latte")) is None  # before any push
    assert eng.record(og.Event("redeem", "v", T0 + 30, offer_id="latte")) is None  # another user
    rows = {r["offer"]: r for r in eng.report(by="offer", as_frame=False)}
    assert rows["latte"]["opened"] == 1 and rows["latte"]["visited"] == 1 and rows["latte"]["redeemed"] == 0
    assert rows["tea"]["redeemed"] == 1 and rows["tea"]["revenue"] == 12.0


def test_record_bad_input_changes_nothing(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    push = eng.on_location("u", lat, lon, T0)[0].push_id
    before = (eng.state.pushes(), eng.state.events())
    cases = [
        (UnknownOfferError, og.Event("redeem", "u", T0 + 1, offer_id="nope"), "offer_id 'nope' is not one of"),
        (UnknownStoreError, og.Event("visit", "u", T0 + 1, store_id="nope"), "store_id 'nope' is not in the index"),
        (UnknownPushError, og.Event("open", "u", T0 + 1, push_id="p999"), "p999"),
        (UnknownPushError, og.Event("open", "someone-else", T0 + 1, push_id=push), push),
        (InvalidRecordError, og.Event("open", "u", T0 - 100, push_id=push), "is before its push"),
        (
            InvalidRecordError,
            og.Event("redeem", "u", T0 + 1, push_id=push, offer_id="tea"),
            "names offer 'tea' but push",
        ),
        (InvalidRecordError, og.Event("push", "u", T0 + 1, offer_id="latte"), "pushes come from on_location"),
    ]
    for err, e, message in cases:
        with pytest.raises(err, match=message):
            eng.record(e)
    with pytest.raises(InvalidRecordError, match="record takes an Event; got dict"):
        eng.record({"kind": "open"})
    assert (eng.state.pushes(), eng.state.events()) == before


def test_ping_bad_input(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    with pytest.raises(InvalidCoordinateError, match="lat = nan is not a finite number"):
        eng.on_location("u", float("nan"), lon, T0)
    with pytest.raises(InvalidCoordinateError, match=r"lat = 91\.0 is outside \[-90, 90\]"):
        eng.on_location("u", 91.0, lon, T0)
    with pytest.raises(InvalidParameterError, match="no timezone"):
        eng.on_location("u", lat, lon, datetime(2026, 1, 1, 9, 0))
    with pytest.raises(InvalidParameterError, match="accuracy_m"):
        eng.on_location("u", lat, lon, T0, accuracy_m=-1.0)
    with pytest.raises(InvalidRecordError, match="user_id"):
        eng.on_location(None, lat, lon, T0)
    with pytest.raises(InvalidCoordinateError, match=r"lat\[1\] = nan is not a finite number"):
        eng.on_locations(user_id=["a", "b"], lat=[lat, float("nan")], lon=[lon, lon], ts=[T0, T0 + 1])
    with pytest.raises(InvalidParameterError, match="missing"):
        eng.on_locations(user_id=["a"], lat=[lat], lon=[lon])
    assert eng.state.pushes() == [] and eng.state.read_user("a") is None  # the good row was not processed


def test_numpy_user_ids_are_the_same_users(engine_factory):
    """Ids read from arrays (numpy integers and strings) are the plain ids: same user, same caps, same records."""
    lat, lon = pos(engine_factory().index, "A")
    plain, numpy_ids = engine_factory(), engine_factory()
    for eng, uid in ((plain, 7), (numpy_ids, np.int64(7))):
        eng.on_location(uid, lat, lon, T0)
        eng.on_location(uid, *offset(lat, lon, 5000.0), T0 + 600)
        eng.on_location(uid, lat, lon, T0 + 1200)
    assert plain.state.pushes() == numpy_ids.state.pushes() != []
    assert all(type(p["user_id"]) is int for p in numpy_ids.state.pushes())
    assert numpy_ids.state.read_user(7) is not None
    numpy_ids.forget_user(np.int64(7))
    assert numpy_ids.state.read_user(7) is None and numpy_ids.state.pushes() == []
    with pytest.raises(InvalidRecordError, match="user_id"):
        plain.on_location(np.bool_(True), lat, lon, T0)


def test_stale_pings_are_ignored(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    eng.on_location("u", *offset(lat, lon, 60.0), T0 + 100)
    eng.on_location("u", *offset(lat, lon, 5000.0), T0 + 200)
    assert eng.on_location("u", lat, lon, T0 + 150) == []  # older than the last fence change
    assert eng.stats["stale_pings"] == 1


def test_an_empty_report_has_the_report_columns(engine_factory):
    pd = pytest.importorskip("pandas")
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    eng.on_location("u", lat, lon, T0)
    full = eng.report(by="merchant")
    assert len(full) == 1
    for by, group in (("offer", "offer"), ("all", "group")):
        empty = eng.report(until=T0 - 1, by=by)  # no push before T0
        assert isinstance(empty, pd.DataFrame) and len(empty) == 0
        assert empty.columns.tolist() == [group, *full.columns[1:]]


def test_report_funnel_matches_a_hand_count(engine_factory, rng):
    eng = engine_factory()
    a = pos(eng.index, "A")
    pushes = []
    for i in range(40):
        d = eng.on_location(f"u{i}", *a, T0 + i)
        pushes += d
    opened = [p for p in pushes if rng.uniform() < 0.5]
    redeemed = [p for p in opened if rng.uniform() < 0.5]
    for p in opened:
        eng.record(og.Event("open", p.user_id, p.ts + 60, push_id=p.push_id))
    for p in redeemed:
        eng.record(og.Event("redeem", p.user_id, p.ts + 600, push_id=p.push_id, amount=10.0))
    (row,) = eng.report(by="all", as_frame=False)
    assert row["pushed"] == 40 and row["opened"] == len(opened) and row["redeemed"] == len(redeemed)
    assert row["revenue"] == 10.0 * len(redeemed) and row["redeem_rate"] == len(redeemed) / 40
    assert eng.report(since=T0 + 20, by="all", as_frame=False)[0]["pushed"] == 20
    import pandas as pd

    frame = eng.report(by="store")
    assert isinstance(frame, pd.DataFrame) and frame["pushed"].sum() == 40
    with pytest.raises(InvalidParameterError, match="by must be .*got .weather."):
        eng.report(by="weather")


def test_uplift_recovers_the_simulated_truth(engine_factory):
    # a simulated population: a pushed user converts (visits or redeems) with p1, a held-out one with p0
    p1, p0 = 0.30, 0.18
    rng = np.random.default_rng(7)
    pol = og.PushPolicy(**{**OPEN, "holdout_fraction": 0.5})
    eng = engine_factory(pol, state=og.MemoryState())
    a = pos(eng.index, "A")
    for i in range(4000):
        (d,) = eng.on_location(i, *a, T0 + i)
        if rng.uniform() < (p0 if d.holdout else p1):
            eng.record(og.Event("visit", i, d.ts + 3600, store_id="A"))
    (row,) = eng.report(by="all", as_frame=False, metric="redeem_or_visit")
    assert row["uplift_low"] < p1 - p0 < row["uplift_high"]
    assert row["uplift_high"] - row["uplift_low"] < 0.07
    assert abs(row["conversion_treated"] - p1) < 0.04 and abs(row["conversion_holdout"] - p0) < 0.04


def test_feedback_a_coffee_redeemer_ranks_coffee_higher(engine_factory):
    eng = engine_factory()
    a = pos(eng.index, "A")
    mid = offset(*a, 250.0)
    before = {s.offer_id: s.score for s in eng.scorer.rank("u", *mid, now=T0, k=2)}
    for day in range(10):
        eng.record(og.Event("redeem", "u", T0 + day * 3600, offer_id="latte", amount=20.0))
    after = {s.offer_id: s.score for s in eng.scorer.rank("u", *mid, now=T0 + 40000, k=2)}
    # coffee gains far more than tea (which only gains from the user being more active)
    assert after["latte"] - before["latte"] > 3 * (after["tea"] - before["tea"]) > 0
    # and the dispatcher now picks coffee when both fences are entered at once
    idx = make_stores(geofence=[400.0, 400.0, 100.0])
    eng2 = engine_factory(index=idx, state=og.MemoryState())
    for day in range(10):
        eng2.record(og.Event("redeem", "u", T0 + day * 3600, offer_id="latte"))
        eng2.record(og.Event("redeem", "w", T0 + day * 3600, offer_id="tea"))
    assert eng2.on_location("u", *mid, T0 + 40000)[0].offer_id == "latte"
    assert eng2.on_location("w", *mid, T0 + 40000)[0].offer_id == "tea"


def test_state_survives_a_restart_with_history(tmp_path):
    path = tmp_path / "s.db"
    idx, offers = make_stores(), make_offers()
    pol = og.PushPolicy(**{**OPEN, "max_per_offer": 1}, exit_buffer_m=0.0)
    a = pos(idx, "A")
    eng = og.Dispatcher(idx, offers, policy=pol, state=og.SQLiteState(path))
    (d,) = eng.on_location("u", *a, T0)
    eng.record(og.Event("redeem", "u", T0 + 60, push_id=d.push_id))
    eng.state.close()
    eng2 = og.Dispatcher(idx, offers, policy=pol, state=og.SQLiteState(path))
    assert eng2.scorer.history.n_events("u", "redeem") == 1 and eng2.scorer.history.n_events("u", "push") == 1
    eng2.on_location("u", *offset(*a, 5000.0), T0 + 100)
    assert eng2.on_location("u", *a, T0 + 200) == []  # max_per_offer survived the restart
    assert eng2.state.read_user("u") is not None


def test_forget_user_erases_everything_but_budget_totals(engine_factory):
    pol = og.PushPolicy(**{**OPEN, "max_per_day": 1}, offer_budgets={"latte": og.Budget(max_pushes=2)})
    eng = engine_factory(pol)
    a = pos(eng.index, "A")
    (d,) = eng.on_location("u", *a, T0)
    eng.record(og.Event("redeem", "u", T0 + 5, push_id=d.push_id, event_id="r1"))
    eng.on_location("v", *a, T0 + 1)
    eng.forget_user("u")
    assert all(p["user_id"] != "u" for p in eng.state.pushes())
    assert all(e["user_id"] != "u" for e in eng.state.events())
    assert eng.state.read_user("u") is None and "u" not in eng.scorer.history
    assert eng.on_location("u", *a, T0 + 10) == []  # the budget of 2 was spent by u and v: totals kept
    assert eng.record(og.Event("redeem", "u", T0 + 20, offer_id="latte", event_id="r1")) is None  # id forgotten too


# ------------------------------------------------------------------ batch = one by one
def test_batch_replay_equals_per_ping_calls(state_factory):
    world = simulate.World.generate(seed=3, n_users=300, n_stores=200, n_offers=30, n_merchants=10)
    log = world.pings(n_days=1, pings_per_user_per_day=12, seed=4)
    pol = og.PushPolicy(quiet_hours=(22, 8), holdout_fraction=0.2, triggers=("enter", "dwell", "nearby"))
    batch = og.Dispatcher(world.index, world.offers, policy=pol, state=state_factory())
    got = batch.on_locations(**log.columns())
    one = og.Dispatcher(world.index, world.offers, policy=pol, state=og.MemoryState())
    want = []
    for i in range(len(log)):
        want += one.on_location(
            int(log.user[i]),
            float(log.lat[i]),
            float(log.lon[i]),
            float(log.ts[i]),
            accuracy_m=float(log.accuracy_m[i]),
        )
    assert len(want) > 50
    assert [(d.push_id, d.user_id, d.offer_id, d.store_id, d.trigger, d.holdout) for d in got] == [
        (d.push_id, d.user_id, d.offer_id, d.store_id, d.trigger, d.holdout) for d in want
    ]
    np.testing.assert_allclose([d.score for d in got], [d.score for d in want], rtol=1e-9)
    import pandas as pd

    pd.testing.assert_frame_equal(batch.report(by="offer"), one.report(by="offer"))


def test_on_locations_takes_a_dataframe_with_aware_times(engine_factory):
    import pandas as pd

    eng = engine_factory()
    a = pos(eng.index, "A")
    df = pd.DataFrame(
        {
            "user_id": ["u", "v"],
            "lat": [a[0], a[0]],
            "lon": [a[1], a[1]],
            "ts": pd.to_datetime([T0, T0 + 1], unit="s", utc=True),
            "event_id": ["x1", "x2"],
        }
    )
    d = eng.on_locations(df)
    assert [x.user_id for x in d] == ["u", "v"] and d[0].ts == pytest.approx(T0)
    naive = df.assign(ts=df["ts"].dt.tz_localize(None), user_id=["w", "x"], event_id=["x3", "x4"])
    assert [x.ts for x in eng.on_locations(naive)] == pytest.approx([T0, T0 + 1])  # datetime64 is UTC
    with pytest.raises(InvalidParameterError, match="NaT"):
        eng.on_locations(naive.assign(ts=pd.to_datetime([None, T0], unit="s"), event_id=["x5", "x6"]))


def test_on_locations_treats_missing_event_ids_and_time_zones_as_none(engine_factory):
    import pandas as pd

    eng = engine_factory(og.PushPolicy(**{**OPEN, "quiet_hours": (22, 8)}))
    a = pos(eng.index, "A")
    df = pd.DataFrame(
        {
            "user_id": ["u", "v"],
            "lat": [a[0], a[0]],
            "lon": [a[1], a[1]],
            "ts": [T0, T0 + 1],
            "event_id": ["x1", None],
            "tz": [None, "Europe/London"],
        }
    )
    first = eng.on_locations(df)
    assert [x.user_id for x in first] == ["u", "v"]  # 17:00 in Shanghai, 09:00 in London: neither is quiet
    assert eng.on_locations(df.iloc[:1]) == first[:1]  # event id x1 again: the same decision, no new push
    assert len(eng.state.pushes()) == 2
    with pytest.raises(InvalidParameterError, match="IANA"):
        eng.on_locations(df.assign(tz=[1.5, None]))


# ------------------------------------------------------------------ feedback a tick at a time
def test_the_engines_own_events_reach_the_history_a_tick_later(engine_factory):
    eng = engine_factory(feedback_interval_s=60.0)
    a = pos(eng.index, "A")
    t0 = 60.0 * (T0 // 60.0)  # the start of a tick
    (d,) = eng.on_location("u", *a, t0 + 1)
    eng.on_location("w", *offset(*a, 5000.0), t0 + 30)  # same tick: nothing fed yet
    assert eng.scorer.history.n_events("u", "push") == 0
    eng.on_location("w", *offset(*a, 5000.0), t0 + 61)  # the next tick's first ping feeds the last tick's
    assert eng.scorer.history.n_events("u", "push") == 1
    now = engine_factory(feedback_interval_s=0.0)
    now.on_location("u", *a, t0 + 1)
    assert now.scorer.history.n_events("u", "push") == 1  # at once
    eng.record(og.Event("redeem", "u", t0 + 90, push_id=d.push_id))
    assert eng.scorer.history.n_events("u", "redeem") == 1  # recorded outcomes: at once
    for bad in (-1.0, math.inf, True, "60"):
        with pytest.raises(InvalidParameterError, match="feedback_interval_s"):
            engine_factory(feedback_interval_s=bad)


def test_batch_equals_per_ping_with_feedback_at_every_ping():
    world = simulate.World.generate(seed=5, n_users=150, n_stores=120, n_offers=20, n_merchants=8)
    log = world.pings(n_days=1, pings_per_user_per_day=10, seed=6)
    pol = og.PushPolicy(quiet_hours=None, holdout_fraction=0.2)
    batch = og.Dispatcher(world.index, world.offers, policy=pol, feedback_interval_s=0.0)
    got = batch.on_locations(**log.columns())
    one = og.Dispatcher(world.index, world.offers, policy=pol, feedback_interval_s=0.0)
    want = [d for i in range(len(log)) for d in one.on_location(int(log.user[i]), float(log.lat[i]),
            float(log.lon[i]), float(log.ts[i]), accuracy_m=float(log.accuracy_m[i]))]  # fmt: skip
    assert len(want) > 30
    assert [(d.push_id, d.offer_id, d.store_id, d.score) for d in got] == [
        (d.push_id, d.offer_id, d.store_id, d.score) for d in want
    ]


def test_a_misspelt_ping_column_is_an_error_not_ignored(engine_factory):
    eng = engine_factory()
    lat, lon = pos(eng.index, "A")
    cols = {"user_id": ["u"], "lat": [lat], "lon": [lon], "ts": [T0]}
    with pytest.raises(InvalidParameterError, match="'accuracy'.*did you mean 'accuracy_m'"):
        eng.on_locations(**cols, accuracy=[5000.0])  # a typo would have pushed on a 5 km fix
    with pytest.raises(InvalidParameterError, match="unknown column 'speed'"):
        eng.on_locations(**cols, speed=[1.0])  # a keyword column is a typo or a mistake
    import pandas as pd

    with pytest.raises(InvalidParameterError, match="did you mean 'event_id'"):
        eng.on_locations(pd.DataFrame({**cols, "eventid": ["e1"]}))
    assert eng.state.pushes() == []  # nothing was processed
    frame = pd.DataFrame({**cols, "device": ["ios"], "accuracy_m": [5000.0]})  # an unrelated extra column is fine
    assert eng.on_locations(frame) == [] and eng.stats["ignored_inaccurate"] == 1
    with pytest.raises(InvalidParameterError, match=r"\['ts'\] both in the table and as keywords"):
        eng.on_locations(cols, ts=[T0 + 60])
    with pytest.raises(InvalidParameterError, match="did you mean 'event_id'"):
        eng.on_locations(cols, eventid=["e1"])
    (d,) = eng.on_locations({**cols, "user_id": ["v"]}, event_id=["e9"])  # a table and keyword columns: merged
    assert eng.on_locations({**cols, "user_id": ["v"]}, event_id=["e9"]) == [d]  # the id was kept: a duplicate
    assert eng.stats["duplicate_pings"] == 1


def test_odd_values_at_the_entry_points_are_typed_errors(tmp_path):
    """The untyped escapes a new user found: each is now an o2o_geo error (and still the built-in it names)."""
    index = og.StoreIndex(og.sample_stores())
    offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
    eng = og.Dispatcher(index, offers, policy=og.PushPolicy(holdout_fraction=0.0))
    scorer = og.OfferScorer(index, offers)
    at = (31.2325, 121.4801, T0)
    calls = [
        (lambda: og.PushPolicy(holdout_fraction=None), r"holdout_fraction must be in \[0, 1\); got None"),
        (lambda: og.PushPolicy(quiet_hours=True), r"quiet_hours must be \(start, end\) hours"),
        (lambda: og.PushPolicy(holdout_fraction=np.array(["a"])), r"holdout_fraction must be in \[0, 1\); got array"),
        (lambda: og.PushPolicy(min_score="x"), r"min_score must be a probability; got 'x'"),
        (lambda: og.StoreSet.from_columns(store_id=None, lat=[0.0], lon=[0.0]), r"store_id must be a sequence of ids"),
        (lambda: og.StoreIndex.load(None), r"path must be a file path .*got None"),
        (lambda: og.StoreIndex.load(""), r"path must be a file path .*got ''"),
        (lambda: og.StoreIndex.load(tmp_path / "missing.o2oidx"), r"no o2o_geo index file at .*missing\.o2oidx"),
        (lambda: eng.on_location("u", *at, event_id=b"1"), r"event_id must be a str or an int; got b'1'"),
        (lambda: eng.on_location("u", *at, event_id=[1]), r"event_id must be a str or an int; got \[1\]"),
        (lambda: eng.on_location("u", *at, tz=[]), r"a time zone must be an IANA name"),
        (lambda: eng.on_location("u", 31.2325, 121.4801, 1e308), r"ts = 1e\+308 is beyond the year 3000"),
        (
            lambda: eng.on_location("u", 31.2325, 121.4801, np.array([])),
            r"ts must be epoch seconds or an aware datetime; got array",
        ),
        (lambda: og.Event([], "u", 0), r"event kind \[\] is not one of"),
        (lambda: og.Event("visit", "u", 0, event_id=b"e"), r"event event_id must be a str or an int; got b'e'"),
        (lambda: scorer.rank([], 31.23, 121.48, now=0), r"user_id must be a str or an int; got \[\]"),
        (
            lambda: scorer.rank_many([None], [31.23], [121.48], now=0, as_frame=False),
            r"user_ids\[0\] must be a str or an int; got None",
        ),
        (lambda: eng.report(by=np.array([])), r"by must be 'offer', 'merchant', 'store' or 'all'; got array"),
        (lambda: index.nearest(31.2, 121.4, k=2**70), r"k must be at most 2,147,483,647"),
    ]
    before = (eng.state.pushes(), eng.state.events(), eng.state.read_user("u"))
    for i, (call, message) in enumerate(calls):
        with pytest.raises(og.errors.O2OGeoError, match=message):
            call()
        assert (eng.state.pushes(), eng.state.events(), eng.state.read_user("u")) == before, i
    with pytest.raises(FileNotFoundError, match="no o2o_geo index file"):  # still a FileNotFoundError too
        og.StoreIndex.load(tmp_path / "missing.o2oidx")
