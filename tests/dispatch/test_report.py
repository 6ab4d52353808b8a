"""The report: a monotone funnel, visits beside it, the conversion the caller picks, and an interval that covers."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo import simulate
from o2o_geo._dispatch._report import diff_interval, wilson_interval
from o2o_geo.errors import InvalidParameterError


@pytest.fixture(scope="module")
def campaign():
    """A simulated day of a geofence campaign with its outcomes recorded (walk-ins make inferred visits)."""
    world = simulate.World.generate(seed=21, n_users=1500, n_stores=200, n_offers=30, n_merchants=10)
    pings = world.pings(n_days=1, pings_per_user_per_day=12, seed=22)
    policy = og.PushPolicy(quiet_hours=None, holdout_fraction=0.3, max_per_day=2)
    engine = og.Dispatcher(world.index, world.offers, policy=policy)
    decisions = engine.on_locations(**pings.columns())
    for event in world.outcomes(decisions, seed=23):
        engine.record(event)
    for d in decisions[::50]:  # a few failed deliveries: neither opened nor redeemed can count them
        if not d.holdout:
            engine.record(og.Event("failed", d.user_id, d.ts + 1, push_id=d.push_id))
    engine.flush_feedback()
    yield engine
    engine.close()


def recount(engine, metric):
    """The report's columns, counted again from the stored records, per merchant."""
    kinds = defaultdict(set)
    for e in engine.state.events():
        if e["push_id"] is not None:
            kinds[e["push_id"]].add("inferred" if e["kind"] == "visit" and e["inferred"] else e["kind"])
    want = {"redeem"} if metric == "redeem" else {"redeem", "visit", "inferred"}
    out = defaultdict(lambda: defaultdict(int))
    users = defaultdict(lambda: {True: {}, False: {}})
    for p in engine.state.pushes():
        k, row = kinds[p["push_id"]], out[p["merchant_id"]]
        u = users[p["merchant_id"]][p["holdout"]]
        u[p["user_id"]] = u.get(p["user_id"], False) or bool(k & want)
        if p["holdout"]:
            continue
        row["pushed"] += 1
        ok = "failed" not in k
        row["delivered"] += ok
        row["opened"] += ok and bool(k & {"open", "click", "redeem"})
        row["redeemed"] += ok and "redeem" in k
        row["visited"] += "visit" in k
        row["visited_inferred"] += "inferred" in k
    for m, row in out.items():
        treated, held = users[m][False], users[m][True]
        row["conversion_treated"] = sum(treated.values()) / len(treated)
        row["conversion_holdout"] = sum(held.values()) / len(held) if held else float("nan")
    return out


@pytest.mark.parametrize("metric", ["redeem", "redeem_or_visit"])
def test_funnel_is_monotone_and_matches_a_recount(campaign, metric):
    rows = campaign.report(by="merchant", as_frame=False, metric=metric)
    expected = recount(campaign, metric)
    assert {r["merchant"] for r in rows} == set(expected)
    for r in rows:
        assert r["pushed"] >= r["delivered"] >= r["opened"] >= r["redeemed"] >= 0
        e = expected[r["merchant"]]
        for col in ("pushed", "delivered", "opened", "redeemed", "visited", "visited_inferred"):
            assert r[col] == e[col], (r["merchant"], col)
        assert r["conversion_treated"] == pytest.approx(e["conversion_treated"])
        assert r["conversion_holdout"] == pytest.approx(e["conversion_holdout"], nan_ok=True)
        assert r["metric"] == metric and "Newcombe" in r["interval"]
    total = campaign.report(by="all", as_frame=False, metric=metric)[0]
    assert total["visited_inferred"] > 0 and total["pushed"] > total["delivered"]  # the world exercises both


def test_the_uplift_on_redemptions_is_real_and_walk_ins_swamp_the_other(campaign):
    # the simulated truth: a held-out user never redeems (no coupon), a pushed one with p; both walk in
    redeem = campaign.report(by="all", as_frame=False)[0]
    assert redeem["metric"] == "redeem" and redeem["conversion_holdout"] == 0.0
    assert redeem["uplift_low"] > 0.0  # an interval that excludes 0: the push works
    either = campaign.report(by="all", as_frame=False, metric="redeem_or_visit")[0]
    assert either["conversion_holdout"] > 0.5 and either["conversion_treated"] > 0.5  # walk-ins, in both groups
    assert either["uplift_high"] - either["uplift_low"] > redeem["uplift_high"] - redeem["uplift_low"]
    with pytest.raises(InvalidParameterError, match="did you mean 'redeem'"):
        campaign.report(metric="redeemed")


@pytest.mark.parametrize(
    "p1, p0, n1, n0", [(0.30, 0.18, 400, 120), (0.08, 0.0, 300, 80), (0.5, 0.45, 60, 25), (0.97, 0.9, 200, 50)]
)
def test_the_interval_covers_the_true_difference_95_percent_of_the_time(p1, p0, n1, n0):
    rng = np.random.default_rng(11)
    trials = 4000
    x1, x0 = rng.binomial(n1, p1, trials), rng.binomial(n0, p0, trials)
    bounds = [diff_interval(a, n1, b, n0)[1:] for a, b in zip(x1, x0, strict=True)]
    covered = sum(lo <= p1 - p0 <= hi for lo, hi in bounds)
    assert 0.93 <= covered / trials <= 0.99, covered / trials  # (conservative at a boundary, as published)
    # where the normal approximation collapses (no conversions in an arm), the score interval keeps a width
    d, lo, hi = diff_interval(0, n1, 0, n0)
    assert d == 0.0 and lo < 0.0 < hi


def test_wilson_interval_against_its_closed_form():
    for x, n in [(0, 10), (3, 10), (10, 10), (45, 300)]:
        lo, hi = wilson_interval(x, n)
        p, z = x / n, 1.959963984540054
        # the Wilson bounds are the roots of (p - q)^2 = z^2 q (1 - q) / n
        for q in (lo, hi):
            if 0.0 < q < 1.0:
                assert (p - q) ** 2 == pytest.approx(z * z * q * (1 - q) / n, rel=1e-9)
        assert lo <= p <= hi
