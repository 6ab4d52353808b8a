"""The synthetic world: deterministic, internally consistent, outcomes drawn from its ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import brute_nearest

from o2o_geo import simulate
from o2o_geo.errors import InvalidParameterError


@pytest.fixture(scope="module")
def world():
    return simulate.World.generate(
        seed=5, n_users=3000, n_stores=400, n_offers=60, n_merchants=20, cities=("shanghai", "suva")
    )


def test_same_seed_same_world(world):
    again = simulate.World.generate(
        seed=5, n_users=3000, n_stores=400, n_offers=60, n_merchants=20, cities=("shanghai", "suva")
    )
    np.testing.assert_array_equal(again.stores.lat, world.stores.lat)
    np.testing.assert_array_equal(again.taste, world.taste)
    a = world.push_log(n_days=3, seed=1)
    b = again.push_log(n_days=3, seed=1)
    np.testing.assert_array_equal(a.redeemed, b.redeemed)
    assert not np.array_equal(world.push_log(n_days=3, seed=2).user[:50], a.user[:50])


def test_push_goes_to_the_offers_nearest_store(world):
    log = world.push_log(n_days=2, seed=3)
    assert np.all(np.diff(log.ts) >= 0)
    merchant = world.stores["merchant_id"]
    assert all(merchant[log.store[i]] == f"m{world.offer_merchant[log.offer[i]]}" for i in range(len(log)))
    # the store is the offer merchant's nearest to where the user was, and the distance is right
    rng = np.random.default_rng(0)
    s = world.stores
    for i in rng.choice(len(log), 30, replace=False):
        mask = merchant == f"m{world.offer_merchant[log.offer[i]]}"
        d, p = brute_nearest(s.lat, s.lon, log.lat[i], log.lon[i], 1, mask=mask)
        assert log.store[i] == p[0]
        assert abs(log.distance_m[i] - d[0]) < 1e-3


def test_outcomes_follow_the_ground_truth(world):
    log = world.push_log(n_days=14, pushes_per_user_per_day=1.0, seed=4)
    assert len(log) > 30_000
    # calibration of the draws: per decile of p, the redemption rate is within 4 standard errors
    edges = np.quantile(log.p_redeem, np.linspace(0, 1, 11))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (log.p_redeem >= lo) & (log.p_redeem <= hi)
        p = log.p_redeem[m].mean()
        se = np.sqrt(p * (1 - p) / m.sum())
        assert abs(log.redeemed[m].mean() - p) < 4 * se + 1e-3
    # direction: the same user and offer, farther away, is less likely
    u, o = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    lg = world.true_logit(u, o, np.array([100.0, 1000.0, 10000.0]))
    assert lg[0] > lg[1] > lg[2]
    # overall rate is a plausible coupon redemption rate
    assert 0.01 < log.redeemed.mean() < 0.3


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="unknown cities \\['atlantis'\\]"):
        simulate.World.generate(cities=("atlantis",))
    with pytest.raises(InvalidParameterError, match="n_users must be >= 1"):
        simulate.World.generate(n_users=0)
