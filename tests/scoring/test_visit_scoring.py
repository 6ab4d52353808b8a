"""The scorer on visits: histories resolved against the catalog, events in any table form, the one feature
extractor checked against a plain-Python oracle, and fit(target="visit") against a simulated ground truth."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo._history import bind_resolver
from o2o_geo._scoring._replay import replay_pushes
from o2o_geo._time import hour_bin
from o2o_geo.errors import InvalidParameterError, InvalidRecordError

T0 = 1_767_258_000.0  # Thursday 2026-01-01 09:00 UTC
DAY = 86_400.0
HOUR = 3600.0
F = og.OfferScorer.FEATURES


def col(name):
    return F.index(name)


@pytest.fixture(scope="module")
def town():
    """Six stores on a line near the equator in UTC, each its own merchant with one offer."""
    cats = ["coffee", "coffee", "gym", "bar", "office", "coffee"]
    recs = [
        {"store_id": f"s{i}", "lat": 0.0, "lon": 0.002 * i, "merchant_id": f"m{i}", "category": c, "tz": "UTC"}
        for i, c in enumerate(cats)
    ]
    index = og.StoreIndex.from_records(recs)
    offers = og.OfferSet([og.Offer(f"o{i}", f"m{i}", discount_rate=0.9) for i in range(len(cats))])
    return index, offers, cats


def test_history_of_id_only_events_learns_affinities(town):
    """Redeems and visits carrying only offer_id or store_id: their category and merchant come from the catalog."""
    index, offers, _ = town
    h = og.UserHistory()
    for i in range(10):
        h.add(og.Event("redeem", "fan", T0 + i * HOUR, offer_id="o0"))  # coffee, merchant m0
        h.add(og.Event("visit", "fan", T0 + i * HOUR + 60, store_id="s4"))  # office, merchant m4
    assert h.category_affinity("fan", "coffee", T0 + 10 * HOUR) == 0.0  # alone, the history cannot tell
    scorer = og.OfferScorer(index, offers, history=h)
    now = T0 + 11 * HOUR
    assert h.category_affinity("fan", "coffee", now) > 1.0
    assert h.merchant_affinity("fan", "m4", now) > 1.0
    # o5 (coffee, never redeemed) beats o3 (bar) for the fan at an equal distance, not for a cold user
    lat, lon = 0.0, 0.008  # between s3 (0.006) and s5 (0.010): equidistant
    fan = {s.offer_id: s for s in scorer.rank("fan", lat, lon, now=now, k=6)}
    cold = {s.offer_id: s for s in scorer.rank("cold", lat, lon, now=now, k=6)}
    assert fan["o5"].distance_m == pytest.approx(fan["o3"].distance_m, abs=1e-6)
    assert fan["o5"].explain()["category_affinity"] > 0.5
    assert fan["o5"].score - fan["o3"].score > 0.05
    assert abs(cold["o5"].score - cold["o3"].score) < 1e-9
    # events recorded later are resolved as they arrive
    scorer.record(og.Event("visit", "new", now, store_id="s2"))
    assert h.category_affinity("new", "gym", now) > 0


def test_fit_takes_events_records_and_dataframes_alike(town):
    index, offers, _ = town
    rows = []
    for i in range(60):
        d = 150.0 if i % 2 else 2500.0
        rows.append({"kind": "push", "user_id": f"u{i}", "ts": T0 + i * 60, "offer_id": "o1", "store_id": "s1",
                     "distance_m": d, "push_id": f"p{i}"})  # fmt: skip
        if i % 4 == 1 or i % 10 == 0:
            rows.append({"kind": "redeem", "user_id": f"u{i}", "ts": T0 + i * 60 + 600, "offer_id": "o1",
                         "store_id": None, "distance_m": None, "push_id": f"p{i}"})  # fmt: skip
    events = [og.Event(**{k: v for k, v in r.items() if v is not None}) for r in rows]
    w_events = og.OfferScorer(index, offers).fit(events).weights_
    w_records = og.OfferScorer(index, offers).fit(rows).weights_
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rows)
    assert frame["distance_m"].isna().any()  # NaN cells are left out, as None is
    w_frame = og.OfferScorer(index, offers).fit(frame).weights_
    np.testing.assert_array_equal(w_events, w_records)
    np.testing.assert_array_equal(w_events, w_frame)
    bad = frame.astype({"ts": object})
    bad.loc[3, "ts"] = "yesterday"
    with pytest.raises(InvalidRecordError, match=r"events\[3\]: .*ts"):
        og.OfferScorer(index, offers).fit(bad)
    with pytest.raises(InvalidRecordError, match=r"events\[0\]: unknown field 'user' \(did you mean 'user_id'\?\)"):
        og.OfferScorer(index, offers).fit(frame.rename(columns={"user_id": "user"}))
    with pytest.raises(InvalidRecordError, match=r"events\[1\]: no ts"):
        og.OfferScorer(index, offers).fit([rows[0], {"kind": "push", "user_id": "u"}])
    for odd in (None, "x", 3, {"kind": "push"}):
        with pytest.raises(InvalidParameterError, match="Event objects, dict records or a DataFrame"):
            og.OfferScorer(index, offers).fit(odd)
    with pytest.raises(InvalidParameterError, match="target must be"):
        og.OfferScorer(index, offers).fit(events, target="click")


def test_redemptions_are_credited_once_by_push_id_else_to_the_latest_push(town):
    index, offers, _ = town
    scorer = og.OfferScorer(index, offers)
    push = dict(kind="push", offer_id="o1", store_id="s1", distance_m=100.0)
    log = [
        og.Event(user_id="a", ts=T0, push_id="pa1", **push),
        og.Event(user_id="a", ts=T0 + HOUR, push_id="pa2", **push),
        og.Event("redeem", "a", T0 + 2 * HOUR, offer_id="o1", push_id="pa1"),  # by id: the first push
        og.Event(user_id="b", ts=T0, push_id="pb1", **push),
        og.Event(user_id="b", ts=T0 + HOUR, push_id="pb2", **push),
        og.Event("redeem", "b", T0 + 2 * HOUR, offer_id="o1"),  # no id: the latest push (pb2)
        og.Event("redeem", "b", T0 + 3 * HOUR, offer_id="o1"),  # the next uncredited one (pb1)
        og.Event("redeem", "b", T0 + 4 * HOUR, offer_id="o1"),  # nothing left: counted nowhere
        og.Event(user_id="c", ts=T0, push_id="pc1", **push),
        og.Event("redeem", "c", T0 + 8 * DAY, offer_id="o1", push_id="pc1"),  # after the 7-day window
    ]
    cat = scorer._catalog()
    hist = og.UserHistory()
    bind_resolver(hist, scorer._resolve)
    _, y = replay_pushes(scorer._extractor, cat, hist, sorted(log, key=lambda e: e.ts), 7 * DAY)
    pushes = [e.push_id for e in sorted(log, key=lambda e: e.ts) if e.kind == "push"]
    assert dict(zip(pushes, y.tolist(), strict=True)) == {
        "pa1": 1.0, "pa2": 0.0, "pb1": 1.0, "pb2": 1.0, "pc1": 0.0}  # fmt: skip


def _oracle_features(town_stores, visits, user, lat, lon, t, store):
    """The visit features of one (user, store) candidate, computed from the raw visit list by hand."""
    hl = 30 * DAY
    mine = [(ts, s) for u, ts, s in visits if u == user and ts <= t]
    at_store = [ts for ts, s in mine if s == store]
    prev_ts, prev_store = mine[-1]
    out = {
        "known_store": 1.0 if at_store else 0.0,
        "store_familiarity": math.log1p(sum(2 ** (-(t - ts) / hl) for ts in at_store)),
        "visited_last_24h": 1.0 if at_store and t - max(at_store) < DAY else 0.0,
    }
    moves = list(zip(mine[:-1], mine[1:], strict=True))
    out["store_next"] = math.log1p(sum(1 for (_, a), (_, b) in moves if a == prev_store and b == store))
    everyone = {}
    for u, ts, s in visits:
        everyone.setdefault(u, []).append((ts, s))
    crowd = sum(
        1 for seq in everyone.values() for (_, a), (_, b) in zip(seq[:-1], seq[1:], strict=True)
        if a == prev_store and b == store)  # fmt: skip
    out["crowd_next"] = math.log1p(crowd)
    b_now = hour_bin(t, 0.0)
    near = {24 * (b_now // 24) + (b_now + dh) % 24 for dh in (-1, 0, 1)}
    out["next_at_hour"] = math.log1p(sum(1 for (ta, _), (_, s) in moves if s == store and hour_bin(ta, 0.0) in near))
    out["store_popularity"] = math.log1p(sum(1 for _, _, s in visits if s == store))
    # category at this hour: the user's profile shrunk to all users', theirs to the overall shares
    cats = town_stores
    c = cats[int(store[1:])]
    n_cat = len(set(cats))
    total = {k: sum(1 for _, _, s in visits if cats[int(s[1:])] == k) for k in set(cats)}
    share = (total[c] + 1) / (len(visits) + n_cat)
    at_b = [s for _, ts, s in visits if hour_bin(ts, 0.0) == b_now]
    pop = (sum(1 for s in at_b if cats[int(s[1:])] == c) + 20 * share) / (len(at_b) + 20)
    mine_b = [s for ts, s in mine if hour_bin(ts, 0.0) == b_now]
    p_user = (sum(1 for s in mine_b if cats[int(s[1:])] == c) + 5 * pop) / (len(mine_b) + 5)
    out["category_at_hour"] = math.log(p_user) - math.log(share)
    return out


def test_visit_features_equal_a_plain_python_oracle(town):
    index, offers, cats = town
    rng = np.random.default_rng(4)
    visits = []
    for u in ("ann", "bob", "cy"):
        t = T0
        for _ in range(25):
            t += float(rng.uniform(0.2, 30)) * HOUR
            visits.append((u, t, f"s{int(rng.integers(0, 6))}"))
    visits.sort(key=lambda v: v[1])
    h = og.UserHistory()
    for u, t, s in visits:
        h.add(og.Event("visit", u, t, store_id=s))
    scorer = og.OfferScorer(index, offers, history=h)
    t = visits[-1][1] + 2 * HOUR
    lat, lon = 0.0, 0.005
    ranked = {s.store_id: s for s in scorer.rank("ann", lat, lon, now=t, k=6)}
    assert len(ranked) == 6
    for store, s in ranked.items():
        want = _oracle_features(cats, visits, "ann", lat, lon, t, store)
        got = s.explain()
        for name, value in want.items():
            w = og._scoring.DEFAULT_WEIGHTS[name]
            assert got[name] == pytest.approx(w * value, rel=1e-9, abs=1e-12), (store, name)


def test_one_extractor_for_rank_rank_many_and_the_dispatcher(town):
    index, offers, _ = town
    h = og.UserHistory()
    for i, s in enumerate(["s0", "s2", "s0", "s4", "s1", "s0"]):
        h.add(og.Event("visit", "ann", T0 + i * 5 * HOUR, store_id=s))
    h.add(og.Event("redeem", "ann", T0 + 31 * HOUR, offer_id="o3", distance_m=300.0))
    scorer = og.OfferScorer(index, offers, history=h)
    t = T0 + 40 * HOUR
    lat, lon = 0.0003, 0.0041
    single = {s.offer_id: s for s in scorer.rank("ann", lat, lon, now=t, k=6)}
    many = scorer.rank_many(["bob", "ann"], [lat, lat], [lon, lon], now=t, k=6, as_frame=False)
    rows = np.flatnonzero(many["query"] == 1)
    assert len(rows) == len(single) == 6
    for r in rows.tolist():
        assert many["score"][r] == pytest.approx(single[many["offer_id"][r]].score, rel=1e-12)
    pos = np.arange(6)
    dist = np.asarray(og.geodesic_distance_m(lat, lon, index.stores.lat, index.stores.lon))
    sc = scorer.score_candidates("ann", pos, dist, t)
    for j, (o, lg, x) in enumerate(zip(sc.offer.tolist(), sc.logit.tolist(), sc.features, strict=True)):
        s = single[offers.offer_id[o]]
        assert lg == pytest.approx(s.logit, rel=1e-12, abs=1e-12)
        assert dict(zip(F, (x * scorer.weights_).tolist(), strict=True)) == pytest.approx(s.explain())
        assert sc.explanation(j) == pytest.approx(s.explain())
    # a batch of (user, time) rows scores each row as that user alone at that time
    both = scorer.score_candidates(["bob", "ann", "ann"], [0, 1, 2], dist[:3], [t, t, t + DAY])
    for j in range(len(both)):
        r = int(both.row[j])
        alone = scorer.score_candidates(["bob", "ann", "ann"][r], [r], dist[r : r + 1], [t, t, t + DAY][r])
        k = int(np.flatnonzero(alone.offer == both.offer[j])[0])
        assert both.logit[j] == alone.logit[k]


def _simulate_choices(rng, stores_lat, stores_lon, n_users, n_visits, beta, habit):
    """Users hop between stores; each next store drawn with utility -beta * log(d) + habit * known."""
    n = stores_lat.shape[0]
    events = []
    for u in range(n_users):
        here = int(rng.integers(0, n))
        known = {here}
        t = T0 + float(rng.uniform(0, DAY))
        events.append(og.Event("visit", u, t, store_id=f"s{here}"))
        for _ in range(n_visits):
            d = np.asarray(og.geodesic_distance_m(stores_lat[here], stores_lon[here], stores_lat, stores_lon))
            util = -beta * np.log(np.maximum(d, 10.0) / 1000.0) + habit * np.isin(np.arange(n), list(known))
            util[d > 5000] = -np.inf
            p = np.exp(util - util.max())
            here = int(rng.choice(n, p=p / p.sum()))
            known.add(here)
            t += float(rng.uniform(1, 12)) * HOUR
            events.append(og.Event("visit", u, t, store_id=f"s{here}"))
    return events


def test_fit_visit_recovers_a_simulated_choice_model():
    """Ground truth: distance decay beta = 1.5 and +1.2 for a known store, nothing else."""
    rng = np.random.default_rng(7)
    n = 250
    lat = rng.uniform(-0.02, 0.02, n)
    lon = rng.uniform(-0.02, 0.02, n)
    recs = [{"store_id": f"s{i}", "lat": float(a), "lon": float(b), "merchant_id": f"m{i}", "tz": "UTC"}
            for i, (a, b) in enumerate(zip(lat, lon, strict=True))]  # fmt: skip
    index = og.StoreIndex.from_records(recs)
    offers = og.OfferSet([og.Offer(f"o{i}", f"m{i}") for i in range(n)])
    events = _simulate_choices(rng, lat, lon, n_users=60, n_visits=40, beta=1.5, habit=1.2)
    scorer = og.OfferScorer(index, offers).fit(events, target="visit", l2=0.1)
    w = dict(zip(F, scorer.weights_, strict=True))
    assert scorer.n_fit_examples_ == 60 * 40
    assert w["distance"] == pytest.approx(1.5, abs=0.25)
    assert abs(w["distance_x_new_store"]) < 0.3
    assert w["known_store"] + w["store_familiarity"] * math.log(2) == pytest.approx(1.2, abs=0.45)
    assert w["intercept"] == og._scoring.DEFAULT_WEIGHTS["intercept"]  # not identified by choices: kept
    assert w["discount"] == og._scoring.DEFAULT_WEIGHTS["discount"]
    assert len(scorer.history) == 0 and len(scorer.fit_history_) == 60  # fit leaves the given history alone


def test_fit_visit_learns_a_routine_nearest_first_misses(town):
    """A hand-made check-in log: from the office (s4) everyone goes to the bar (s3), never to s5 next door."""
    index, offers, _ = town
    log = []
    for u in range(12):
        t = T0 + u * 600
        for _day in range(8):
            for s in ("s0", "s4", "s3"):
                log.append(og.Event("visit", f"u{u}", t, store_id=s))
                t += 4 * HOUR
            t += 12 * HOUR
    scorer = og.OfferScorer(index, offers).fit(log, target="visit", record=True)
    lat, lon = float(index.stores.lat[4]), float(index.stores.lon[4]) + 0.0001  # at the office
    top = scorer.rank("u0", lat, lon, now=log[-2].ts, k=3)
    assert top[0].store_id == "s3"
    assert index.nearest(lat, lon, k=2).store_id.tolist()[1] != "s3"  # nearest-first would not say so
    with pytest.raises(InvalidParameterError, match="no visit to learn from"):
        og.OfferScorer(index, offers).fit([og.Event("visit", "x", T0, store_id="s1")], target="visit")


def test_scorer_survives_pickling_with_its_history_bound(town):
    index, offers, _ = town
    h = og.UserHistory()
    scorer = og.OfferScorer(index, offers, history=h)
    for i, s in enumerate(["s0", "s2", "s0"]):
        scorer.record(og.Event("visit", "ann", T0 + i * HOUR, store_id=s))
    copy = pickle.loads(pickle.dumps(scorer))
    a = scorer.rank("ann", 0.0, 0.001, now=T0 + 5 * HOUR, k=6)
    b = copy.rank("ann", 0.0, 0.001, now=T0 + 5 * HOUR, k=6)
    assert [(s.offer_id, s.score) for s in a] == [(s.offer_id, s.score) for s in b]
    copy.record(og.Event("visit", "ann", T0 + 6 * HOUR, store_id="s2"))  # resolved in the copy too
    assert copy.history.category_affinity("ann", "gym", T0 + 6 * HOUR) > h.category_affinity(
        "ann", "gym", T0 + 6 * HOUR
    )


def test_parameters_are_stored_as_given_and_bad_ones_are_typed_errors(town):
    index, offers, _ = town
    weights = {"distance": 1.2}
    scorer = og.OfferScorer(index, offers, distance_scale_m=800, weights=weights, tz_column="tz")
    assert scorer.distance_scale_m == 800 and type(scorer.distance_scale_m) is int
    assert scorer.weights is weights and scorer.weights_[col("distance")] == 1.2
    log = [og.Event("visit", "a", T0, store_id="s0"), og.Event("visit", "a", T0 + HOUR, store_id="s1")]
    for kwargs, match in (
        ({"choice_radius_m": 0}, "choice_radius_m"),
        ({"choice_radius_m": True}, "choice_radius_m"),
        ({"n_negatives": 1}, "n_negatives"),
        ({"l2": -1.0}, "l2"),
        ({"window_days": float("nan")}, "window_days"),
    ):
        with pytest.raises(InvalidParameterError, match=match):
            scorer.fit(log, target="visit", **kwargs)
    with pytest.raises(InvalidParameterError, match="history must be a UserHistory"):
        og.OfferScorer(index, offers, history=[])
    with pytest.raises(InvalidParameterError, match=r"weights\['distance'\] must be a finite number"):
        og.OfferScorer(index, offers, weights={"distance": float("inf")})
    w_before = scorer.weights_.copy()
    with pytest.raises(InvalidRecordError, match=r"events\[1\]: no ts \(every event needs kind, user_id and ts\)"):
        scorer.fit([log[0], {"kind": "visit", "user_id": "a"}], target="visit")
    np.testing.assert_array_equal(scorer.weights_, w_before)  # a failed fit changes nothing


def test_many_users_at_once_stay_linear_in_memory(town):
    """20,000 user rows in one extractor call (as when fit or a benchmark featurises a whole log)."""
    import tracemalloc

    index, offers, _ = town
    h = og.UserHistory()
    for u in range(0, 20_000, 7):
        h.add(og.Event("visit", u, T0 + u, store_id=f"s{u % 6}"))
    scorer = og.OfferScorer(index, offers, history=h)
    n = 20_000
    users = list(range(n))
    idx = np.arange(n, dtype=np.int64)
    tracemalloc.start()
    X = scorer._features(users, idx, idx % 6, idx % 6, np.full(n, 300.0), T0 + np.arange(n, dtype=float) + 30.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert X.shape == (n, len(F))
    assert peak < 64 * 2**20  # a (users x users) table would be 3 GB
    assert X[7, col("known_store")] == 1.0 and X[8, col("known_store")] == 0.0


def test_a_pickled_scorer_carries_no_caches(town):
    index, offers, _ = town
    scorer = og.OfferScorer(index, offers)
    for u in range(300):
        scorer.record(og.Event("visit", u, T0 + u, store_id=f"s{u % 6}"))
        scorer.rank(u, 0.0, 0.003, now=T0 + 400.0, k=3)  # fills the per-user cache
    assert len(scorer._extractor._views) == 300
    copy = pickle.loads(pickle.dumps(scorer))
    assert not getattr(copy._extractor, "_views", None)
    assert [s.offer_id for s in copy.rank(5, 0.0, 0.003, now=T0 + 400.0, k=3)] == [
        s.offer_id for s in scorer.rank(5, 0.0, 0.003, now=T0 + 400.0, k=3)
    ]
