"""UserHistory: incremental recency-weighted features against a brute-force recomputation over the log."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo.errors import InvalidParameterError, InvalidRecordError

DAY = 86_400.0
KW = {"redeem": 1.0, "visit": 0.5, "click": 0.2, "open": 0.1}


def random_log(rng, n=600):
    kinds = ["push", "open", "click", "redeem", "visit", "dismiss"]
    events = []
    for _ in range(n):
        kind = kinds[rng.integers(len(kinds))]
        events.append(
            og.Event(
                kind,
                int(rng.integers(5)),
                float(rng.uniform(0, 90 * DAY)),
                merchant_id=f"m{rng.integers(4)}",
                category=["coffee", "tea", "food"][rng.integers(3)],
                distance_m=float(rng.uniform(50, 5000)) if kind == "redeem" else None,
                discount_depth=float(rng.uniform(0, 0.5)) if kind in ("push", "redeem") else None,
            )
        )
    return events


def brute_affinity(events, user, key, value, now, half_life_days):
    return sum(
        KW.get(e.kind, 0.0) * 2 ** (-(now - e.ts) / (half_life_days * DAY))
        for e in events
        if e.user_id == user and getattr(e, key) == value and e.ts <= now
    )


def test_affinities_equal_brute_force_in_any_arrival_order():
    rng = np.random.default_rng(8)
    events = random_log(rng)
    now = 90 * DAY
    in_order = og.UserHistory(half_life_days=10)
    shuffled = og.UserHistory(half_life_days=10)
    for e in sorted(events, key=lambda e: e.ts):
        in_order.add(e)
    for i in rng.permutation(len(events)):
        shuffled.add(events[i])
    for user in range(5):
        for cat in ("coffee", "tea", "food"):
            want = brute_affinity(events, user, "category", cat, now, 10)
            assert in_order.category_affinity(user, cat, now) == pytest.approx(want, rel=1e-9, abs=1e-12)
            assert shuffled.category_affinity(user, cat, now) == pytest.approx(want, rel=1e-9, abs=1e-12)
        for m in ("m0", "m1", "m2", "m3"):
            want = brute_affinity(events, user, "merchant_id", m, now, 10)
            assert shuffled.merchant_affinity(user, m, now) == pytest.approx(want, rel=1e-9, abs=1e-12)
        engaged = sum(
            2 ** (-(now - e.ts) / (10 * DAY)) for e in events if e.user_id == user and e.kind in ("redeem", "visit")
        )
        assert shuffled.activity(user, now) == pytest.approx(engaged, rel=1e-9)
        # usual distance: recency-weighted geometric mean of redemption distances
        red = [e for e in events if e.user_id == user and e.kind == "redeem"]
        w = np.array([2 ** (-(now - e.ts) / (10 * DAY)) for e in red])
        gm = math.exp(np.sum(w * np.log([e.distance_m for e in red])) / w.sum())
        assert shuffled.usual_distance_m(user) == pytest.approx(gm, rel=1e-9)


def test_stale_history_decays_and_repeat_redemptions_raise_affinity():
    h = og.UserHistory(half_life_days=14)
    for i in range(10):
        h.add(og.Event("redeem", "u", i * DAY, category="coffee", merchant_id="m"))
    h.add(og.Event("redeem", "u", 9 * DAY, category="tea", merchant_id="t"))
    assert h.category_affinity("u", "coffee", 10 * DAY) > h.category_affinity("u", "tea", 10 * DAY)
    a_now = h.category_affinity("u", "coffee", 10 * DAY)
    assert h.category_affinity("u", "coffee", 24 * DAY) == pytest.approx(a_now / 2)
    assert h.category_affinity("u", "coffee", 10 * DAY + 365 * DAY) < 1e-6


def test_merchant_rate_shrinkage():
    h = og.UserHistory(prior_pushes=50)
    h.add(og.Event("push", "a", 0, merchant_id="lucky"))
    h.add(og.Event("redeem", "a", 1, merchant_id="lucky"))
    for i in range(1000):
        h.add(og.Event("push", i, 0, merchant_id="big"))
        if i < 900:
            h.add(og.Event("redeem", i, 1, merchant_id="big"))
    for i in range(10_000):  # most merchants convert rarely: the global rate is about 9 %
        h.add(og.Event("push", i, 0, merchant_id="rest"))
        if i < 100:
            h.add(og.Event("redeem", i, 1, merchant_id="rest"))
    assert h.merchant_redemption_rate("big") > h.merchant_redemption_rate("lucky")
    glob = (1001 + 50 * 0.05) / (11001 + 50)
    assert h.merchant_redemption_rate("lucky") == pytest.approx((1 + 50 * glob) / 51)
    assert h.merchant_redemption_rate("never-seen") == pytest.approx(glob)
    assert h.merchant_popularity("big") == 900


def test_discount_sensitivity_sign():
    h = og.UserHistory()
    for i in range(20):
        h.add(og.Event("push", "deal-hunter", i, discount_depth=0.1 if i % 2 else 0.5))
        h.add(og.Event("push", "indifferent", i, discount_depth=0.1 if i % 2 else 0.5))
    for i in range(8):
        h.add(og.Event("redeem", "deal-hunter", 100 + i, discount_depth=0.5))
        h.add(og.Event("redeem", "indifferent", 100 + i, discount_depth=0.1 if i % 2 else 0.5))
    assert h.discount_sensitivity("deal-hunter") > 0.1
    assert abs(h.discount_sensitivity("indifferent")) < 0.02
    assert h.discount_sensitivity("new user") == 0.0


def test_cold_start_and_forget_user():
    h = og.UserHistory()
    assert h.category_affinity("ghost", "coffee", 0) == 0.0
    assert h.usual_distance_m("ghost") == 1000.0
    h.add(og.Event("redeem", "u", 0, category="coffee", merchant_id="m", distance_m=300.0))
    assert "u" in h and h.forget_user("u") and "u" not in h
    assert h.category_affinity("u", "coffee", 0) == 0.0 and not h.forget_user("u")
    assert h.merchant_popularity("m") == 1  # anonymous aggregate stays


def test_timestamps_and_bad_events():
    aware = datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    assert og.Event("open", 1, aware).ts == aware.timestamp()
    with pytest.raises(InvalidParameterError, match="has no timezone"):
        og.Event("open", 1, datetime(2026, 3, 1, 8, 0))
    with pytest.raises(InvalidParameterError, match="not a finite time"):
        og.Event("open", 1, float("nan"))
    with pytest.raises(InvalidRecordError, match="kind 'buy' is not one of"):
        og.Event("buy", 1, 0)
    with pytest.raises(InvalidRecordError, match="user_id must be a str or an int"):
        og.Event("open", None, 0)
    with pytest.raises(InvalidRecordError, match="discount_depth must be in"):
        og.Event("redeem", 1, 0, discount_depth=-0.2)
    with pytest.raises(InvalidRecordError, match="amount must be a finite number"):
        og.Event("redeem", 1, 0, amount=-5)
    with pytest.raises(InvalidParameterError, match="half_life_days"):
        og.UserHistory(half_life_days=0)
    with pytest.raises(InvalidRecordError, match="takes an Event"):
        og.UserHistory().add({"kind": "open"})


def test_from_dataframe_equals_from_events():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    events = random_log(rng, 200)
    df = pd.DataFrame([{f: getattr(e, f) for f in og.Event.__dataclass_fields__} for e in events])
    a = og.UserHistory.from_events(events)
    b = og.UserHistory.from_events(df)
    for user in range(5):
        assert a.category_affinity(user, "tea", 90 * DAY) == pytest.approx(b.category_affinity(user, "tea", 90 * DAY))
        assert a.n_events(user, "redeem") == b.n_events(user, "redeem")


def test_pickled_history_has_the_same_features_and_is_independent():
    """Pickling (how o2o_geo.dask ships a scorer to workers) keeps every feature; the copy then evolves alone."""
    import pickle

    rng = np.random.default_rng(5)
    events = random_log(rng)
    h = og.UserHistory.from_events(events, half_life_days=10)
    copy = pickle.loads(pickle.dumps(h))
    now = 91 * DAY
    for user in range(5):
        for cat in ("coffee", "tea", "food"):
            brute = brute_affinity(events, user, "category", cat, now, 10)
            assert math.isclose(copy.category_affinity(user, cat, now), brute, rel_tol=1e-9, abs_tol=1e-12)
        assert copy.usual_distance_m(user) == h.usual_distance_m(user)
        assert copy.discount_sensitivity(user) == h.discount_sensitivity(user)
        assert copy.activity(user, now) == h.activity(user, now)
    assert [copy.merchant_redemption_rate(f"m{i}") for i in range(4)] == [
        h.merchant_redemption_rate(f"m{i}") for i in range(4)
    ]
    copy.add(og.Event("redeem", 0, now, merchant_id="m0", category="coffee"))
    assert copy.n_events(0, "redeem") == h.n_events(0, "redeem") + 1
    assert copy.merchant_popularity("m0") == h.merchant_popularity("m0") + 1


def test_times_as_users_have_them_agree_and_bad_ones_are_typed_errors():
    from datetime import datetime, timedelta, timezone

    import pandas as pd

    from o2o_geo._time import to_epoch_s
    from o2o_geo.errors import InvalidParameterError

    t = 1767258000.0  # 2026-01-01 09:00 UTC
    same = [
        t,
        int(t),
        np.float64(t),
        np.int64(int(t)),
        datetime(2026, 1, 1, 17, 0, tzinfo=timezone(timedelta(hours=8))),
        "2026-01-01T17:00:00+08:00",
        "2026-01-01T09:00:00Z",
        " 2026-01-01 09:00:00+00:00 ",
        np.datetime64("2026-01-01T09:00:00"),
        np.datetime64("2026-01-01T09:00:00.000000000"),
        pd.Timestamp("2026-01-01 09:00:00"),  # naive pandas: datetime64, UTC
        pd.Timestamp("2026-01-01 17:00:00", tz="Asia/Shanghai"),
    ]
    for v in same:
        assert to_epoch_s(v) == t, v
    for bad, match in (
        (t * 1000, "milliseconds\\? divide by 1000"),
        (t * 1e6, "microseconds\\? divide by 1000000"),
        (t * 1e9, "nanoseconds\\? divide by 1000000000"),
        (1e308, "years 1 to 3000"),
        (2**70, "years 1 to 3000"),
        (float("nan"), "not a finite"),
        (datetime(2026, 1, 1, 9), "no timezone"),
        ("2026-01-01T09:00:00", "no UTC offset"),
        ("yesterday", "not an ISO 8601"),
        (np.datetime64("NaT"), "NaT"),
        (True, "epoch seconds"),
        (None, "epoch seconds"),
        (b"1", "epoch seconds"),
        ([t], "epoch seconds"),
    ):
        with pytest.raises(InvalidParameterError, match=match):
            to_epoch_s(bad)
    e = og.Event("visit", "u", "2026-01-01T09:00:00Z", store_id="s")
    assert e.ts == t
