"""OfferScorer: feature directions, explanations, batch = scalar, diversity, calibration after fit, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo import simulate
from o2o_geo.errors import InvalidParameterError, InvalidRecordError, UnknownOfferError

T0 = 1_767_225_600.0
DAY = 86_400.0


@pytest.fixture(scope="module")
def index():
    return og.StoreIndex(og.sample_stores(7))


def make_offers():
    return og.OfferSet(
        [
            og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
            og.Offer("espresso", "m-lucky", category="coffee", discount_rate=0.9),
            og.Offer("milk-tea", "m-teagarden", category="tea", discount_rate=0.8),
            og.Offer("veg", "m-freshmart", category="grocery", discount_rate=0.8),
        ]
    )


def test_closer_store_scores_higher_all_else_equal(index):
    scorer = og.OfferScorer(
        index, og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)]), search_radius_m=20_000
    )
    s = index.stores
    lucky = np.flatnonzero(s["merchant_id"] == "m-lucky")
    lat, lon = float(s.lat[lucky[0]]), float(s.lon[lucky[0]])
    near = scorer.rank("u", lat, lon + 0.001, now=T0)[0]
    far = scorer.rank("u", lat, lon + 0.01, now=T0)
    assert near.distance_m < far[0].distance_m
    assert near.score > far[0].score
    # and the store chosen is the nearest of the merchant's stores (no attraction column)
    nb = index.nearest(lat, lon + 0.01, k=1, where={"merchant_id": "m-lucky"})
    assert far[0].store_id == nb.store_id[0]


def test_history_moves_the_ranking_and_decays(index):
    scorer = og.OfferScorer(index, make_offers())
    lat, lon = 31.2304, 121.4737
    cold = {o.offer_id: o.score for o in scorer.rank("fan", lat, lon, now=T0 + 30 * DAY, k=10)}
    for i in range(10):
        scorer.record(og.Event("redeem", "fan", T0 + i * DAY, offer_id="milk-tea", distance_m=800.0))
    warm = {o.offer_id: o.score for o in scorer.rank("fan", lat, lon, now=T0 + 11 * DAY, k=10)}
    assert warm["milk-tea"] > cold["milk-tea"]
    assert scorer.rank("fan", lat, lon, now=T0 + 11 * DAY, k=1)[0].offer_id == "milk-tea"
    stale = {o.offer_id: o.score for o in scorer.rank("fan", lat, lon, now=T0 + 400 * DAY, k=10)}
    assert cold["milk-tea"] < stale["milk-tea"] < warm["milk-tea"]


def test_explanation_adds_up_and_scores_are_probabilities(index):
    scorer = og.OfferScorer(index, make_offers())
    for o in scorer.rank("u", 31.23, 121.47, now=T0, k=10):
        terms = o.explain()
        assert set(terms) == set(og._scoring.FEATURES)
        assert sum(terms.values()) == pytest.approx(o.logit, abs=1e-12)
        assert o.score == pytest.approx(1 / (1 + np.exp(-o.logit)), rel=1e-12)
        assert 0 < o.score < 1


@pytest.mark.parametrize("cap", [None, 1])
def test_batch_equals_scalar_and_no_offer_twice(index, cap):
    scorer = og.OfferScorer(index, make_offers(), max_per_merchant=cap)
    rng = np.random.default_rng(4)
    lats = 31.23 + rng.normal(0, 0.03, 40)
    lons = 121.47 + rng.normal(0, 0.03, 40)
    users = [f"u{i % 7}" for i in range(40)]
    table = scorer.rank_many(users, lats, lons, now=T0, k=3)
    for i in range(40):
        one = scorer.rank(users[i], float(lats[i]), float(lons[i]), now=T0, k=3)
        rows = table[table["query"] == i]
        assert rows["offer_id"].tolist() == [o.offer_id for o in one]
        assert rows["store_id"].tolist() == [o.store_id for o in one]
        np.testing.assert_allclose(rows["score"], [o.score for o in one], rtol=1e-12)
        merchants = [o.merchant_id for o in one]
        if cap == 1:
            assert len(set(merchants)) == len(merchants)
        assert len({o.offer_id for o in one}) == len(one)


def test_category_cap_and_validity_window(index):
    offers = og.OfferSet(
        [
            og.Offer("a", "m-lucky", category="coffee", discount_rate=0.5),
            og.Offer("b", "m-lucky", category="coffee", discount_rate=0.6),
            og.Offer("c", "m-teagarden", category="tea", discount_rate=0.9, valid_until=T0 - 1),
            og.Offer("d", "m-freshmart", category="grocery", discount_rate=0.95),
        ]
    )
    scorer = og.OfferScorer(index, offers, max_per_category=1)
    got = [o.offer_id for o in scorer.rank("u", 31.2304, 121.4737, now=T0, k=4)]
    assert got == ["a", "d"]  # one coffee (the deeper discount), expired tea left out


def test_fit_learns_and_is_calibrated_on_the_simulated_world():
    world = simulate.World.generate(seed=3, n_users=3000, n_stores=600, n_offers=60, n_merchants=15)
    log = world.push_log(n_days=35, pushes_per_user_per_day=0.5, seed=4)
    events = world.events(log, seed=5, max_delay_days=2.0)
    split = world.start_ts + 28 * DAY
    scorer = og.OfferScorer(world.index, world.offers).fit([e for e in events if e.ts < split], record=True)
    w = dict(zip(og._scoring.FEATURES, scorer.weights_, strict=True))
    assert w["discount"] + w["discount_x_sensitivity"] > 0  # the simulated users like discounts
    assert w["distance"] + w["beyond_usual_distance"] > 0  # ... and dislike distance
    ev = np.flatnonzero(log.ts >= split)
    users = log.user[ev].tolist()
    X = scorer._features(users, np.arange(ev.size), log.offer[ev], log.store[ev], log.distance_m[ev], split)
    _, p = scorer._score_pairs(X)
    y = log.redeemed[ev]
    # calibration: predicted vs observed redemption rate per quintile of the prediction
    edges = np.quantile(p, np.linspace(0, 1, 6))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (p >= lo) & (p <= hi)
        se = np.sqrt(p[m].mean() * (1 - p[m].mean()) / m.sum())
        assert abs(p[m].mean() - y[m].mean()) < 0.01 + 3 * se  # a point plus sampling noise
    # and it ranks the evaluation pushes better than nearest-first (rank correlation with outcomes)
    from scipy.stats import mannwhitneyu

    auc_fit = mannwhitneyu(p[y], p[~y]).statistic / (y.sum() * (~y).sum())
    d = log.distance_m[ev]
    auc_near = mannwhitneyu(-d[y], -d[~y]).statistic / (y.sum() * (~y).sum())
    assert auc_fit > auc_near + 0.05


def test_bad_input(index):
    offers = make_offers()
    with pytest.raises(InvalidParameterError, match="decay must be"):
        og.OfferScorer(index, offers, decay="linear")
    with pytest.raises(InvalidParameterError, match="unknown feature 'colour'"):
        og.OfferScorer(index, offers, weights={"colour": 1.0})
    with pytest.raises(InvalidRecordError, match="offer 'ghost' has no store in the index"):
        og.OfferScorer(index, og.OfferSet([og.Offer("ghost", "m-none")]))
    scorer = og.OfferScorer(index, offers)
    with pytest.raises(og.errors.InvalidCoordinateError, match=r"lat\[0\] = nan is not a finite number"):
        scorer.rank("u", float("nan"), 121.47, now=T0)
    with pytest.raises(InvalidParameterError, match="has no timezone"):
        import datetime as dt

        scorer.rank("u", 31.23, 121.47, now=dt.datetime(2026, 1, 1))
    with pytest.raises(UnknownOfferError, match="'nope'"):
        scorer.record(og.Event("redeem", "u", T0, offer_id="nope"))
    with pytest.raises(InvalidParameterError, match="3 user ids but 2 positions"):
        scorer.rank_many(["a", "b", "c"], [31.2, 31.3], [121.4, 121.5], now=T0)
    # a cold-start user is not an error
    assert scorer.rank("never-seen", 31.23, 121.47, now=T0)


def test_dense_top_k_equals_sorted_top_k():
    world = simulate.World.generate(seed=2, n_users=50, n_stores=300, n_offers=80, n_merchants=10)
    scorer = og.OfferScorer(world.index, world.offers)
    rng = np.random.default_rng(1)
    n = 300
    q = np.sort(rng.integers(0, 40, n))
    offer = rng.integers(0, 80, n)
    keep = np.unique(q * 1000 + offer, return_index=True)[1]  # one row per (query, offer)
    q, offer = q[keep], offer[keep]
    logit = np.round(rng.normal(0, 1, q.shape[0]), 1)  # many exact ties
    dense = scorer._top_k(scorer._catalog(), q, offer, logit, 5)
    scorer.max_per_merchant = 10**6  # forces the sorted path without changing the answer
    sorted_rows = scorer._top_k(scorer._catalog(), q, offer, logit, 5)
    np.testing.assert_array_equal(dense, sorted_rows)
    # brute force: per query, sort by (-logit, offer)
    for query in np.unique(q):
        rows = np.flatnonzero(q == query)
        want = rows[np.lexsort((offer[rows], -logit[rows]))][:5]
        np.testing.assert_array_equal(dense[q[dense] == query], want)
