"""The loop's retention stage: exit and lapsed triggers, audiences, consent and user profiles, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import OPEN, geographiclib_m, offset, run_threads

import o2o_geo as og
from o2o_geo import simulate
from o2o_geo._dispatch._report import REPEAT_COLUMNS
from o2o_geo.errors import InvalidParameterError, InvalidRecordError

CENTRE = (31.2304, 121.4737)
T0 = 1767258000.0  # 2026-01-01 17:00 Asia/Shanghai
DAY = 86400.0
A = CENTRE
B = offset(*CENTRE, 500.0)  # merchant mB
C = offset(*CENTRE, 2000.0, 0.0)  # merchant mA's second store


def make_index():
    return og.StoreIndex.from_records(
        [
            {"store_id": "A", "lat": A[0], "lon": A[1], "merchant_id": "mA"},
            {"store_id": "B", "lat": B[0], "lon": B[1], "merchant_id": "mB"},
            {"store_id": "C", "lat": C[0], "lon": C[1], "merchant_id": "mA"},
        ]
    )


def engine_with(state_factory, offers, state=None, **policy):
    return og.Dispatcher(
        make_index(), og.OfferSet(offers), policy=og.PushPolicy(**{**OPEN, **policy}), state=state or state_factory()
    )


def pushes(eng, user, where, t):
    return [(d.offer_id, d.store_id, d.trigger) for d in eng.on_location(user, *where, t)]


# ------------------------------------------------------------------ exit
def test_exit_fires_once_after_a_visit_when_the_user_leaves_for_good(state_factory):
    eng = engine_with(state_factory, [og.Offer("thanks", "mA", discount_rate=0.9)], triggers=("exit",), dwell_s=300.0)
    assert pushes(eng, "u", A, T0) == []  # enter: not a trigger here
    assert pushes(eng, "u", offset(*A, 20.0), T0 + 400) == []  # the dwell: a visit, no push
    edge = offset(*A, 115.0)  # outside the 100 m fence, inside its 30 m buffer
    assert pushes(eng, "u", edge, T0 + 450) == []
    assert pushes(eng, "u", offset(*A, 90.0), T0 + 500) == []  # back in: the buffer clock restarts
    assert pushes(eng, "u", edge, T0 + 550) == []
    assert pushes(eng, "u", edge, T0 + 600) == []  # 50 s in the buffer: still there
    far = offset(*A, 400.0, 200.0)
    (d,) = eng.on_location("u", *far, T0 + 700)  # beyond the buffer: the stay ends, once
    assert (d.offer_id, d.store_id, d.trigger) == ("thanks", "A", "exit")
    assert d.distance_m == pytest.approx(geographiclib_m(far[0], far[1], *A), abs=1e-6)
    assert pushes(eng, "u", offset(*A, 450.0, 200.0), T0 + 800) == []
    assert [e["kind"] for e in eng.state.events()] == ["visit"]


def test_exit_after_exit_after_s_in_the_buffer_and_never_without_a_visit(state_factory):
    eng = engine_with(state_factory, [og.Offer("thanks", "mA")], triggers=("exit",), dwell_s=300.0, exit_after_s=120.0)
    edge = offset(*A, 115.0)
    # a pass-by (no dwell) never exits
    assert pushes(eng, "passer", A, T0) == []
    assert pushes(eng, "passer", offset(*A, 600.0), T0 + 60) == []
    # a visit, then two minutes at the edge: the exit fires at the ping that ends the stay
    assert pushes(eng, "v", A, T0) == [] and pushes(eng, "v", A, T0 + 301) == []
    assert pushes(eng, "v", edge, T0 + 400) == []
    assert pushes(eng, "v", edge, T0 + 519) == []  # 119 s
    assert pushes(eng, "v", edge, T0 + 520) == [("thanks", "A", "exit")]  # 120 s
    assert pushes(eng, "v", edge, T0 + 640) == []


def test_exit_jitter_at_the_edge_never_fires(state_factory):
    eng = engine_with(state_factory, [og.Offer("thanks", "mA")], triggers=("exit",), dwell_s=60.0, exit_after_s=120.0)
    eng.on_location("u", *A, T0)
    eng.on_location("u", *A, T0 + 61)  # a visit
    t, out = T0 + 61, []
    for k in range(60):  # an hour of GPS jitter across the fence edge, 60 s apart
        t += 60.0
        out += eng.on_location("u", *offset(*A, 95.0 if k % 2 else 125.0), t)
    assert out == []


def test_exit_goes_through_the_same_gates_as_every_push(state_factory):
    eng = engine_with(
        state_factory, [og.Offer("thanks", "mA")], triggers=("exit",), dwell_s=60.0, quiet_hours=(17, 18)
    )  # T0 is 17:00 local: quiet
    eng.on_location("u", *A, T0)
    eng.on_location("u", *A, T0 + 61)
    assert eng.on_location("u", *offset(*A, 500.0), T0 + 120) == []  # dropped, not deferred
    assert eng.stats["quiet_hours"] == 1
    assert eng.on_location("u", *offset(*A, 500.0), T0 + 3700) == []  # after the quiet hours: nothing comes back


# ------------------------------------------------------------------ lapsed
def test_lapsed_fires_on_entering_any_store_of_a_merchant_not_visited_for_lapsed_after_days(state_factory):
    offers = [og.Offer("winback", "mA", discount_rate=0.7), og.Offer("tea", "mB", discount_rate=0.9)]
    eng = engine_with(state_factory, offers, triggers=("lapsed",), lapsed_after_days=30.0)
    t_visit = T0 - 31 * DAY
    eng.record(og.Event("visit", "old", t_visit, store_id="A"))
    eng.record(og.Event("redeem", "recent", T0 - 29 * DAY, offer_id="winback"))
    eng.record(og.Event("visit", "other", T0 - 60 * DAY, store_id="B"))  # lapsed at mB, never seen at mA
    assert pushes(eng, "old", C, T0) == [("winback", "C", "lapsed")]  # C: another store of mA
    assert pushes(eng, "recent", C, T0) == []  # redeemed 29 days ago: not lapsed
    assert pushes(eng, "never", C, T0) == []  # never a customer: nothing to win back
    assert pushes(eng, "other", C, T0) == []
    assert pushes(eng, "other", B, T0 + 10) == [("tea", "B", "lapsed")]
    assert eng.user("old").last_seen_ts == {"mA": t_visit}


def test_lapsed_is_measured_against_the_merchants_last_visit_inferred_or_recorded(state_factory):
    eng = engine_with(state_factory, [og.Offer("o", "mA")], triggers=("enter", "lapsed"), dwell_s=300.0)
    t1 = T0 - 40 * DAY
    eng.on_location("u", *A, t1)  # enter (pushed)
    eng.on_location("u", *A, t1 + 301)  # the dwell: an inferred visit at mA
    assert eng.user("u").last_seen_ts == {"mA": t1 + 301}
    eng.on_location("u", *offset(*A, 800.0), t1 + 400)
    t2 = t1 + 301 + 30 * DAY  # exactly lapsed_after_days later: lapsed
    assert pushes(eng, "u", C, t2) == [("o", "C", "lapsed")]  # the enter becomes the win-back
    eng.on_location("u", *offset(*C, 800.0), t2 + 100)
    assert pushes(eng, "u", A, t2 + 200) == [("o", "A", "lapsed")]  # a push is not a visit: still lapsed
    eng.on_location("u", *offset(*A, 800.0), t2 + 300)
    eng.record(og.Event("visit", "u", t2 + 400, store_id="A"))
    eng.on_location("u", *offset(*C, 800.0), t2 + 500)
    assert pushes(eng, "u", C, t2 + 600) == [("o", "C", "enter")]


# ------------------------------------------------------------------ audiences
def test_audiences_follow_the_users_history_with_the_merchant(state_factory):
    offers = [
        og.Offer("first", "mA", discount_rate=0.7, audience="new"),
        og.Offer("again", "mA", discount_rate=0.9, audience="returning"),
        og.Offer("miss-you", "mA", discount_rate=0.8, audience="lapsed"),
        og.Offer("gold", "mA", discount_rate=0.95, audience="members"),
    ]
    eng = engine_with(state_factory, offers, max_per_ping=4)
    eng.record(og.Event("visit", "back", T0 - 2 * DAY, store_id="A"))
    eng.record(og.Event("visit", "gone", T0 - 90 * DAY, store_id="C"))
    eng.set_user("member", tier="gold")
    got = {u: sorted(o for o, _, _ in pushes(eng, u, A, T0)) for u in ("new", "back", "gone", "member")}
    assert got == {
        "new": ["first"],
        "back": ["again"],
        "gone": ["again", "miss-you"],
        "member": ["first", "gold"],
    }
    assert eng.stats["audience"] == 4 * 4 - 6


def test_a_new_customer_offer_is_given_once_per_merchant_ever(state_factory):
    offers = [og.Offer("first", "mA", discount_rate=0.7, audience="new"), og.Offer("first-2", "mA", audience="new")]
    eng = engine_with(state_factory, offers)
    assert pushes(eng, "u", A, T0) == [("first", "A", "enter")]
    eng.on_location("u", *offset(*A, 800.0), T0 + 60)
    assert pushes(eng, "u", C, T0 + 120) == []  # still never visited, but already welcomed by mA
    assert eng.stats["audience"] == 2


@pytest.mark.parametrize("holdout", [0.0, 0.999])
def test_racing_pings_never_give_a_user_two_new_customer_offers(state_factory, holdout):
    """16 threads, one user, entering both stores of mA at once with two new-customer offers: exactly one decision."""
    offers = [og.Offer("first", "mA", discount_rate=0.7, audience="new"), og.Offer("first-2", "mA", audience="new")]
    index = make_index()
    state = state_factory()
    engines = [
        og.Dispatcher(index, og.OfferSet(offers), policy=og.PushPolicy(**{**OPEN, "holdout_fraction": holdout}),
                      state=state)
        for _ in range(2)
    ]  # fmt: skip
    for round_ in range(3):
        user = f"u{round_}"
        out = run_threads(16, lambda i, user=user: engines[i % 2].on_location(user, *(A if i % 2 else C), T0 + i))
        decisions = [d for ds in out for d in ds]
        assert len(decisions) == 1, decisions
        assert state.read_profile(user)["welcomed"] == ["mA"]
    assert sum(p["offer_id"] in ("first", "first-2") for p in state.pushes()) == 3


# ------------------------------------------------------------------ consent and profiles
def test_an_opted_out_user_is_never_pushed_live_in_a_replay_or_a_dry_run(state_factory):
    eng = engine_with(state_factory, [og.Offer("o", "mA")], triggers=("enter", "dwell", "exit", "lapsed"))
    eng.set_user("no", opt_in=False)
    eng.record(og.Event("visit", "no", T0 - 60 * DAY, store_id="A"))
    assert eng.explain_ping("no", *A, T0).reason == "opted_out"
    route = [A, A, offset(*A, 800.0), C, B]
    ts = [T0, T0 + 400, T0 + 500, T0 + 900, T0 + 1300]
    assert [d for w, t in zip(route, ts, strict=True) for d in eng.on_location("no", *w, t)] == []
    replay = engine_with(
        state_factory,
        [og.Offer("o", "mA")],
        state=state_factory("replay.db"),
        triggers=("enter", "dwell", "exit", "lapsed"),
    )
    replay.set_user("no", opt_in=False)
    lat, lon = zip(*route, strict=True)
    log = {"user_id": ["no", "yes"] * 5, "lat": [x for x in lat for _ in "ab"], "lon": [x for x in lon for _ in "ab"],
           "ts": [t for t in ts for _ in "ab"]}  # fmt: skip
    assert replay.on_locations(log) != []
    assert {p["user_id"] for p in replay.state.pushes()} == {"yes"}
    assert replay.stats["opted_out"] >= 2 and eng.stats["opted_out"] >= 2
    assert [e["kind"] for e in eng.state.events() if e["inferred"]] == ["visit"]  # visits are still measured


def test_require_opt_in_pushes_only_users_who_opted_in(state_factory):
    eng = engine_with(state_factory, [og.Offer("o", "mA")], require_opt_in=True)
    eng.set_user("yes", opt_in=True)
    eng.set_user("member-no-consent", tier="gold")
    assert pushes(eng, "yes", A, T0) == [("o", "A", "enter")]
    assert pushes(eng, "unknown", A, T0) == [] and pushes(eng, "member-no-consent", A, T0) == []
    assert eng.stats["not_opted_in"] == 2


def test_set_user_updates_only_what_it_is_given_and_survives_a_restart(state_factory, tmp_path):
    state = state_factory()
    eng = engine_with(state_factory, [og.Offer("o", "mA")], state=state)
    eng.set_user("u", opt_in=True, tier="gold", city="Shanghai", age=31, vip=False, score=0.5)
    eng.set_user("u", age=None, tier=None)
    p = eng.user("u")
    assert (p.opt_in, p.tier, dict(p.attributes)) == (True, None, {"city": "Shanghai", "vip": False, "score": 0.5})
    if state_factory.kind != "memory":  # a second engine on the same store sees it
        again = og.Dispatcher(make_index(), og.OfferSet([og.Offer("o", "mA")]), state=state)
        assert again.user("u") == p
    assert eng.user(7) == og.UserProfile(7)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"opt_in": "yes"}, InvalidParameterError, "opt_in must be True or False"),
        ({"tier": ""}, InvalidParameterError, "tier must be a non-empty str"),
        ({"tier": 3}, InvalidParameterError, "tier must be"),
        ({"tags": ["a"]}, InvalidParameterError, "attribute 'tags' must be a str, int, float, bool or None"),
        ({"ltv": float("nan")}, InvalidParameterError, "attribute 'ltv' must be finite"),
        ({"note": "x" * 300}, InvalidParameterError, "longer than 256"),
    ],
)
def test_set_user_bad_input_is_a_typed_error_and_changes_nothing(state_factory, kwargs, error, match):
    eng = engine_with(state_factory, [og.Offer("o", "mA")])
    eng.set_user("u", opt_in=False, city="Shanghai")
    before = eng.state.read_profile("u")
    with pytest.raises(error, match=match):
        eng.set_user("u", **{"opt_in": True, "city": "Beijing", **kwargs})
    assert eng.state.read_profile("u") == before
    with pytest.raises(InvalidRecordError, match="user_id must be a str or an int"):
        eng.set_user(None, opt_in=True)


def test_forget_user_erases_the_profile(state_factory):
    eng = engine_with(state_factory, [og.Offer("o", "mA", audience="new")])
    eng.set_user("u", opt_in=True, tier="gold")
    assert pushes(eng, "u", A, T0) == [("o", "A", "enter")]
    eng.record(og.Event("redeem", "u", T0 + 60, offer_id="o"))
    eng.forget_user("u")
    assert eng.state.read_profile("u") is None and eng.user("u") == og.UserProfile("u")
    assert eng.state.read_profile("u") is None


def test_offer_audience_is_checked():
    with pytest.raises(InvalidRecordError, match="audience 'vip'; it must be one of"):
        og.Offer("o", "m", audience="vip")
    assert og.OfferSet.from_records([{"offer_id": "o", "merchant_id": "m", "audience": "new"}])["o"].audience == "new"


# ------------------------------------------------------------------ the report measures retention
def test_report_retention_counts_repeat_visits_after_the_anchor_in_complete_windows(state_factory):
    eng = engine_with(
        state_factory, [og.Offer("thanks", "mA")], triggers=("exit",), dwell_s=300.0, holdout_fraction=0.5
    )
    held = next(u for u in (f"u{i}" for i in range(100)) if eng.policy.is_holdout(u))
    pushed = next(u for u in (f"u{i}" for i in range(100)) if not eng.policy.is_holdout(u))
    late = next(u for u in (f"u{i}" for i in range(100, 200)) if not eng.policy.is_holdout(u))
    for user, t in ((pushed, T0), (held, T0), (late, T0 + 20 * DAY)):
        eng.on_location(user, *A, t)
        eng.on_location(user, *A, t + 301)  # the anchor visit (inferred)
        (d,) = eng.on_location(user, *offset(*A, 900.0), t + 400)
        assert d.trigger == "exit" and d.holdout == (user == held)
    eng.record(og.Event("visit", pushed, T0 + 1800, store_id="A"))  # a check-in of the same stay: not a repeat
    eng.record(og.Event("visit", pushed, T0 + 5 * DAY, store_id="C"))  # back at another store of mA: a repeat
    eng.record(og.Event("visit", held, T0 + 10 * DAY, store_id="A"))  # back after 10 days: 30-day repeat only
    eng.record(og.Event("visit", held, T0 + 2 * DAY, store_id="B"))  # another merchant: not a repeat
    row = eng.report(by="merchant", as_frame=False, as_of=T0 + 31 * DAY)[0]
    assert row["merchant"] == "mA"
    assert (row["visitors_7d_treated"], row["visitors_7d_holdout"]) == (2, 1)  # `late` has 7 days left, not 30
    assert (row["repeat_7d_treated"], row["repeat_7d_holdout"]) == (0.5, 0.0)
    assert (row["visitors_30d_treated"], row["visitors_30d_holdout"]) == (1, 1)
    assert (row["repeat_30d_treated"], row["repeat_30d_holdout"]) == (1.0, 1.0)
    assert row["retention_30d_uplift"] == 0.0 and row["retention_30d_low"] < 0.0 < row["retention_30d_high"]
    frame = eng.report(by="store", as_of=T0 + 31 * DAY)
    assert list(frame.columns[-len(REPEAT_COLUMNS) :]) == list(REPEAT_COLUMNS) and len(frame) == 1
    early = eng.report(by="all", as_frame=False)[0]  # as_of: the latest record, T0 + 20 days
    assert early["visitors_30d_treated"] == 0 and early["visitors_7d_treated"] == 1


def test_the_report_recovers_the_simulated_retention_uplift():
    """Exit pushes to 3,000 simulated visitors, half held out; returns drawn with a known lift."""
    world = simulate.World.generate(seed=3, n_users=3000, n_stores=300, n_offers=60, n_merchants=30)
    policy = og.PushPolicy(**{**OPEN, "holdout_fraction": 0.5}, triggers=("exit",), dwell_s=300.0)
    engine = og.Dispatcher(world.index, world.offers, policy=policy)
    rng = np.random.default_rng(11)
    n = world.n_users
    store = rng.integers(0, len(world.stores), n)
    t_in = np.sort(world.start_ts + rng.uniform(0.0, 2 * DAY, n))
    lat, lon = world.stores.lat[store], world.stores.lon[store]
    log = {
        "user_id": np.tile(np.arange(n), 3),
        "lat": np.concatenate([lat, lat, lat + 0.02]),
        "lon": np.concatenate([lon, lon, lon]),
        "ts": np.concatenate([t_in, t_in + 301.0, t_in + 600.0]),
    }
    order = np.argsort(log["ts"], kind="stable")
    decisions = engine.on_locations({k: v[order] for k, v in log.items()})
    exits = [d for d in decisions if d.trigger == "exit"]
    assert len(exits) > 0.8 * n
    p_return, lift = 0.2, 0.12
    for e in world.returns(exits, seed=5, p_return=p_return, lift=lift):
        engine.record(e)
    row = engine.report(by="all", as_frame=False, as_of=t_in[-1] + 31 * DAY)[0]
    within = 30 * DAY - 7200.0
    truth = {30: lift, 7: lift * (7 * DAY - 7200.0) / within}
    for w, true_uplift in truth.items():
        assert row[f"visitors_{w}d_treated"] + row[f"visitors_{w}d_holdout"] == len(exits)
        assert row[f"retention_{w}d_low"] <= true_uplift <= row[f"retention_{w}d_high"], (w, row)
    assert row["retention_30d_low"] > 0.0  # and the interval is narrow enough to see it
    assert abs(row["repeat_30d_holdout"] - p_return) < 0.04


def test_simulated_returns_follow_their_truth_and_check_their_input():
    world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
    d = og.PushDecision("p1", 1, "o0", "s0", "m0", 0.5, 10.0, "exit", False, T0, {})
    held = og.PushDecision("p2", 2, "o0", "s0", "m0", 0.5, 10.0, "exit", True, T0, {})
    enter = og.PushDecision("p3", 3, "o0", "s0", "m0", 0.5, 10.0, "enter", False, T0, {})
    back = world.returns([d] * 2000 + [held] * 2000 + [enter] * 50, seed=2, p_return=0.3, lift=0.2)
    by_user = {u: [e for e in back if e.user_id == u] for u in (1, 2, 3)}
    assert abs(len(by_user[1]) / 2000 - 0.5) < 0.04 and abs(len(by_user[2]) / 2000 - 0.3) < 0.04
    assert by_user[3] == []
    assert all(T0 + 7200.0 <= e.ts <= T0 + 30 * DAY and e.store_id == "s0" for e in back)
    with pytest.raises(InvalidParameterError, match=r"p_return \+ lift must be in \[0, 1\]"):
        world.returns([d], p_return=0.1, lift=-0.2)


# ------------------------------------------------------------------ the member tier as a scorer feature
def _member_weight(beta, tiers=True):
    """The ``member`` weight fit learns from a simulated push log where members redeem with ``beta`` more log-odds."""
    world = simulate.World.generate(seed=4, n_users=3000, n_stores=300, n_offers=60, n_merchants=20)
    log = world.push_log(n_days=10, pushes_per_user_per_day=2.0, seed=5)
    rng = np.random.default_rng(6)
    member = rng.uniform(size=world.n_users) < 0.3
    logit = world.true_logit(log.user, log.offer, log.distance_m) + beta * member[log.user]
    redeemed = rng.uniform(size=len(log)) < 1.0 / (1.0 + np.exp(-logit))
    ids, offer_ids = world.stores.store_id, world.offers.offer_id
    events = []
    for i in range(len(log)):
        u, ts, d = int(log.user[i]), float(log.ts[i]), float(log.distance_m[i])
        o, s = offer_ids[log.offer[i]], ids[log.store[i]]
        events.append(og.Event("push", u, ts, offer_id=o, store_id=s, distance_m=d))
        if redeemed[i]:
            events.append(og.Event("redeem", u, ts + 600.0, offer_id=o, store_id=s))
    scorer = og.OfferScorer(world.index, world.offers)
    if tiers:
        for u in np.flatnonzero(member).tolist():
            scorer.history.set_tier(u, "gold")
    scorer.fit(events, l2=0.1)
    return dict(zip(og.OfferScorer.FEATURES, scorer.weights_.tolist(), strict=True))["member"]


def test_the_member_tier_is_a_scorer_feature_and_fit_learns_it():
    """A true +1.0 log-odds for members is learnt as clearly positive; none is learnt as about none.

    The fitted model is not the world's (its distance and taste terms differ), and a logistic
    model's effects shrink when others are missing from it, so the estimate sits below 1.0.
    """
    assert 0.4 < _member_weight(1.0) < 1.4
    assert abs(_member_weight(0.0)) < 0.15
    prior = og.OfferScorer(make_index(), og.OfferSet([og.Offer("o", "mA")])).weights_
    assert _member_weight(1.0, tiers=False) == pytest.approx(prior[og.OfferScorer.FEATURES.index("member")])
    # (no tiers given: the column is all zeros and its weight keeps the prior)


def test_set_user_tier_reaches_the_scorer_here_and_in_another_process_on_the_same_state(state_factory):
    """``other`` stands for another process: its own scorer, the same state (MemoryState: the same object)."""
    state = state_factory()
    weights = {"member": 1.5}
    one = og.Dispatcher(make_index(), og.OfferSet([og.Offer("o", "mA")]), policy=og.PushPolicy(**OPEN),
                        state=state, scorer=None)  # fmt: skip
    one.set_user("gold", tier="gold")
    assert one.scorer.history.tier("gold") == "gold"
    other = og.Dispatcher(make_index(), og.OfferSet([og.Offer("o", "mA")]), policy=og.PushPolicy(**OPEN),
                          state=state)  # fmt: skip
    one.scorer.weights_[og.OfferScorer.FEATURES.index("member")] = weights["member"]
    other.scorer.weights_[og.OfferScorer.FEATURES.index("member")] = weights["member"]
    assert other.scorer.history.tier("gold") is None  # not seen yet
    (d,) = other.on_location("gold", *A, T0)  # its profile is read in the decision: the tier reaches the scorer
    assert d.explanation["member"] == 0.0  # ... a tick later, like the ping's own push
    assert other.scorer.history.tier("gold") is None
    other.on_location("gold", *offset(*A, 900.0), T0 + 30)  # (same tick: still pending)
    (d2,) = other.on_location("gold", *C, T0 + 120)  # the next tick
    (plain,) = other.on_location("plain", *C, T0 + 120)
    assert other.scorer.history.tier("gold") == "gold"
    assert d2.explanation["member"] == pytest.approx(1.5) and plain.explanation["member"] == 0.0
    one.set_user("gold", tier=None)
    assert one.scorer.history.tier("gold") is None
    one.forget_user("gold")
    assert other.scorer.history.tier("gold") == "gold"  # until that process reads the profile again


def test_batch_and_per_ping_decide_the_same_when_tiers_were_set_by_another_engine():
    world = simulate.World.generate(seed=8, n_users=400, n_stores=60, n_offers=20, n_merchants=6)
    log = world.pings(n_days=1, pings_per_user_per_day=12.0, seed=9).columns()
    policy = og.PushPolicy(quiet_hours=None, holdout_fraction=0.2)
    runs = []
    for mode in ("batch", "ping"):
        state = og.MemoryState()
        setter = og.Dispatcher(world.index, world.offers, policy=policy, state=state)
        for u in range(0, world.n_users, 3):
            setter.set_user(u, tier="gold")
        engine = og.Dispatcher(world.index, world.offers, policy=policy, state=state)  # knows no tier yet
        w = engine.scorer.weights_
        w[og.OfferScorer.FEATURES.index("member")] = 2.0
        if mode == "batch":
            decisions = engine.on_locations(log)
        else:
            cols = [log[k].tolist() for k in ("user_id", "lat", "lon", "ts")]
            decisions = [d for row in zip(*cols, strict=True) for d in engine.on_location(*row)]
        runs.append([(d.push_id, d.user_id, d.offer_id, d.store_id, round(d.score, 12)) for d in decisions])
        assert sum(engine.scorer.history.tier(u) == "gold" for u in range(world.n_users)) > 0
    assert runs[0] == runs[1] and len(runs[0]) > 50


def test_an_exit_within_the_nearby_radius_is_an_exit_not_a_nearby(state_factory):
    eng = engine_with(state_factory, [og.Offer("thanks", "mA")], triggers=("nearby", "exit"), dwell_s=60.0,
                      nearby_radius_m=300.0)  # fmt: skip
    eng.on_location("u", *A, T0)  # (a nearby push: inside the nearby radius too)
    eng.on_location("u", *A, T0 + 61)  # a visit
    assert pushes(eng, "u", offset(*A, 200.0), T0 + 120) == [("thanks", "A", "exit")]  # 200 m: beyond the buffer
    assert pushes(eng, "u", offset(*A, 210.0), T0 + 180) == [("thanks", "A", "nearby")]  # after it: nearby again
