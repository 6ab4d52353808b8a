"""Far and sparse queries: the bounds behind the search, exact answers when the stores are far, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _worlds import GEOD, brute_nearest, brute_within, geographiclib_m, make_index, random_stores

import o2o_geo as og
from o2o_geo._geodesy import (
    WGS84_A_M,
    WGS84_B_M,
    andoyer_lambert_m,
    chord_reach_m,
    chord_reach_scalar_m,
    ecef_m,
    parametric_unit,
)

DISTANCE_CLASSES_M = [1.0, 1e3, 1e5, 1e6, 1e7]


def _pairs_at(rng, n, distance_m, where="globe"):
    """n point pairs whose geodesic distance is ``distance_m`` (by GeographicLib's direct problem)."""
    if where == "globe":
        lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    elif where == "pole":
        lat = rng.choice([-1.0, 1.0], n) * rng.uniform(89.0, 90.0, n)
    else:  # the antimeridian
        lat = rng.uniform(-60, 60, n)
    if where == "antimeridian":
        lon = rng.uniform(179.0, 180.0, n) * rng.choice([-1.0, 1.0], n)
    else:
        lon = rng.uniform(-180, 180, n)
    lon2, lat2, _ = GEOD.fwd(lon, lat, rng.uniform(0, 360, n), np.full(n, distance_m))
    return lat, lon, np.asarray(lat2), np.asarray(lon2)


def _near_antipodal(rng, n):
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    lat2 = np.clip(-lat + rng.normal(0, 0.5, n), -90, 90)
    lon2 = (lon + 180.0 + rng.normal(0, 0.5, n) + 180.0) % 360.0 - 180.0
    lat[:4], lon[:4], lat2[:4], lon2[:4] = [90, 0, 0, 0.5], [0, 0, 0, 179.9], [-90, 0, 0.0, -0.5], [0, 180, 179.5, -0.1]
    return lat, lon, lat2, lon2


def _chords(lat1, lon1, lat2, lon2):
    p, q = ecef_m(lat1, lon1), ecef_m(lat2, lon2)
    return np.linalg.norm(p - q, axis=1), np.linalg.norm(p, axis=1)


@pytest.mark.parametrize("where", ["globe", "pole", "antimeridian"])
@pytest.mark.parametrize("distance_m", DISTANCE_CLASSES_M)
def test_chord_reach_holds_and_stays_tight_at_every_distance(rng, where, distance_m):
    lat1, lon1, lat2, lon2 = _pairs_at(rng, 400, distance_m, where)
    s = np.array([geographiclib_m(*row) for row in zip(lat1, lon1, lat2, lon2, strict=True)])
    chord, r_p = _chords(lat1, lon1, lat2, lon2)
    reach = chord_reach_m(s, r_p)
    # every point within geodesic s lies within the reach by chord ...
    assert np.all(chord <= reach)
    # ... and the reach is tight whatever the distance: at most (a - b) / b of s beyond the chord
    # (the bare chord bound is 1,000 km loose at 10,000 km)
    assert np.all(reach - chord <= (WGS84_A_M - WGS84_B_M) / WGS84_B_M * s + 1e-7)
    assert [chord_reach_scalar_m(float(a), float(b)) for a, b in zip(s[:20], r_p[:20], strict=True)] == pytest.approx(
        reach[:20], rel=1e-15, abs=1e-9
    )


def test_chord_reach_holds_near_the_antipode(rng):
    lat1, lon1, lat2, lon2 = _near_antipodal(rng, 400)
    s = np.array([geographiclib_m(*row) for row in zip(lat1, lon1, lat2, lon2, strict=True)])
    chord, r_p = _chords(lat1, lon1, lat2, lon2)
    reach = chord_reach_m(s, r_p)
    assert np.all(chord <= reach)
    assert np.all(reach - chord <= 70_000.0)  # the chord alone is over 7,000 km short of these geodesics
    assert np.all(s - chord > 5_000_000.0)


def test_inscribed_sphere_lower_bound(rng):
    # the proof's step: s >= b * (angle between the ECEF vectors), at every distance class and near the antipode
    parts = [_pairs_at(rng, 300, d) for d in DISTANCE_CLASSES_M] + [_near_antipodal(rng, 300)]
    lat1, lon1, lat2, lon2 = (np.concatenate(x) for x in zip(*parts, strict=True))
    _, _, s = GEOD.inv(lon1, lat1, lon2, lat2)
    p, q = ecef_m(lat1, lon1), ecef_m(lat2, lon2)
    theta = np.arctan2(np.linalg.norm(np.cross(p, q), axis=1), np.einsum("ij,ij->i", p, q))
    assert np.all(WGS84_B_M * theta <= s + 1e-6)


def test_andoyer_lambert_bound_holds(rng):
    parts = [_pairs_at(rng, 20_000, d, w) for d in [1e5, 1e6, 5e6, 1e7, 1.5e7] for w in ("globe", "pole")]
    parts.append(_near_antipodal(rng, 40_000))
    lat1, lon1, lat2, lon2 = (np.concatenate(x) for x in zip(*parts, strict=True))
    _, _, s = GEOD.inv(lon1, lat1, lon2, lat2)
    est, bound = andoyer_lambert_m(parametric_unit(lat1, lon1), parametric_unit(lat2, lon2))
    assert np.all(np.abs(est - s) <= bound)
    # and it is a tight filter below 10,000 km: tens of metres, not tens of kilometres
    below = s < 1e7
    assert np.all(bound[below] < 100.0)


@pytest.fixture(scope="module")
def chain():
    return og.sample_stores()  # 50 stores in central Shanghai


def test_a_small_chain_queried_from_the_whole_globe_is_exact(rng, chain):
    index = og.StoreIndex(chain)
    qlat, qlon = random_stores(rng, 400, "globe")
    qlat[:3], qlon[:3] = -31.23, -58.53  # near the chain's antipode
    nb = index.nearest(qlat, qlon, k=5)
    for i in range(len(qlat)):
        d, p = brute_nearest(chain.lat, chain.lon, qlat[i], qlon[i], 5)
        np.testing.assert_array_equal(nb.position[i], p, err_msg=f"query {i}")
        np.testing.assert_allclose(nb.distance_m[i], d, rtol=0, atol=1e-6)
    # a batch large enough for the thread pool (the small chain is searched without a tree) agrees
    blat, blon = random_stores(rng, 9000, "globe")
    blat[:400], blon[:400] = qlat, qlon
    big = index.nearest(blat, blon, k=5)
    np.testing.assert_array_equal(big.position[:400], nb.position)
    np.testing.assert_array_equal(big.distance_m[:400], nb.distance_m)
    # one point at a time gives the same answers, to the bit
    for i in range(0, len(qlat), 7):
        one = index.nearest(float(qlat[i]), float(qlon[i]), k=5)
        np.testing.assert_array_equal(one.position, nb.position[i])
        np.testing.assert_array_equal(one.distance_m, nb.distance_m[i])


def _country(rng, n, lat0, lon0, spread_deg):
    lat = np.clip(lat0 + rng.uniform(-spread_deg, spread_deg, n), -90, 90)
    lon = (lon0 + rng.uniform(-spread_deg, spread_deg, n) + 180) % 360 - 180
    return lat, lon


@pytest.mark.parametrize("k", [1, 3, 8])
def test_a_country_queried_from_the_whole_globe_is_exact(rng, k):
    slat, slon = _country(rng, 3000, 46.5, 2.5, 4.0)  # a France-sized cloud
    qlat, qlon = random_stores(rng, 150, "globe")
    index = make_index(slat, slon)
    nb = index.nearest(qlat, qlon, k=k)
    for i in range(len(qlat)):
        d, p = brute_nearest(slat, slon, qlat[i], qlon[i], k)
        np.testing.assert_array_equal(nb.position[i], p, err_msg=f"query {i}")
        np.testing.assert_allclose(nb.distance_m[i], d, rtol=0, atol=1e-6)


def test_a_far_country_subset_by_where_is_exact_and_max_distance_holds(rng):
    # a world index; the filter keeps one far-away country; pings in another continent
    wlat, wlon = random_stores(rng, 4000, "globe")
    alat, alon = _country(rng, 800, -25.0, 134.0, 12.0)
    slat, slon = np.concatenate([wlat, alat]), np.concatenate([wlon, alon])
    cc = np.array(["XX"] * 4000 + ["AU"] * 800, dtype=object)
    index = make_index(slat, slon, cc=cc)
    qlat, qlon = _country(rng, 120, 50.0, 10.0, 8.0)
    mask = cc == "AU"
    nb = index.nearest(qlat, qlon, k=2, where={"cc": "AU"})
    cap = float(np.median(nb.distance_m[:, 0]))
    capped = index.nearest(qlat, qlon, k=2, where={"cc": "AU"}, max_distance_m=cap)
    for i in range(len(qlat)):
        d, p = brute_nearest(slat, slon, qlat[i], qlon[i], 2, mask=mask)
        np.testing.assert_array_equal(nb.position[i], p)
        np.testing.assert_allclose(nb.distance_m[i], d, rtol=0, atol=1e-6)
        d, p = brute_nearest(slat, slon, qlat[i], qlon[i], 2, max_distance_m=cap, mask=mask)
        np.testing.assert_array_equal(capped.position[i], p)
    assert (capped.position < 0).any() and (capped.position >= 0).any()  # the cap cuts inside the country
    for i in range(0, len(qlat), 10):  # one ping per call (the filter's own tree) agrees to the bit
        one = index.nearest(float(qlat[i]), float(qlon[i]), k=2, where={"cc": "AU"})
        np.testing.assert_array_equal(one.position, nb.position[i])
        np.testing.assert_array_equal(one.distance_m, nb.distance_m[i])
        one = index.nearest(float(qlat[i]), float(qlon[i]), k=2, where={"cc": "AU"}, max_distance_m=cap)
        np.testing.assert_array_equal(one.position, capped.position[i])


def test_within_a_large_radius_is_exact(rng):
    slat, slon = random_stores(rng, 600, "globe")
    qlat, qlon = random_stores(rng, 30, "globe")
    index = make_index(slat, slon)
    radius = 6_000_000.0
    m = index.within(qlat, qlon, radius_m=radius)
    for i in range(len(qlat)):
        d, p = brute_within(slat, slon, qlat[i], qlon[i], radius)
        np.testing.assert_array_equal(m[i].position, p)
        np.testing.assert_allclose(m[i].distance_m, d, rtol=0, atol=1e-6)


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_far_batch_stays_under_a_memory_ceiling(rng):
    # 20,000 pings on the whole globe against a 3,000-store country, k=3: every far ping's
    # certificate needs the stores in a band ~10-60 km wide, hundreds of them; candidates are
    # fetched in bounded groups, so peak memory is the groups', not pings x band
    slat, slon = _country(rng, 3000, 46.5, 2.5, 4.0)
    index = make_index(slat, slon)
    qlat, qlon = random_stores(rng, 20_000, "globe")
    nb = index.nearest(qlat[:10], qlon[:10], k=3)  # warm caches outside the measurement
    peak = _peak_bytes(lambda: index.nearest(qlat, qlon, k=3))
    assert peak < 400 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # a within() of 3,000 km from every ping: its output is what it is, its working set is bounded
    peak_w = _peak_bytes(lambda: index.within(qlat[:2000], qlon[:2000], radius_m=3_000_000.0))
    out = index.within(qlat[:2000], qlon[:2000], radius_m=3_000_000.0)
    out_bytes = out.distance_m.nbytes + out.position.nbytes + out.query.nbytes
    assert peak_w < 4 * out_bytes + 300 * 2**20, f"peak {peak_w / 2**20:.0f} MiB for {out_bytes / 2**20:.0f} MiB out"
    assert nb.shape == (10, 3)


def test_store_accessor_gives_none_and_nan_for_missing_neighbours():
    index = og.StoreIndex.from_records(
        [
            {"store_id": "a", "lat": 0.0, "lon": 0.0, "category": "tea", "seats": 12},
            {"store_id": "b", "lat": 0.0, "lon": 0.01, "category": "coffee", "seats": 30},
        ]
    )
    nb = index.nearest([0.0, 10.0], [0.004, 10.0], k=3, max_distance_m=5_000.0)
    assert nb.store("category").tolist() == [["tea", "coffee", None], [None, None, None]]
    seats = nb.store("seats")
    assert seats.dtype == np.float64 and np.isnan(seats[0, 2]) and np.isnan(seats[1]).all()
    assert seats[0, :2].tolist() == [12.0, 30.0]
    # the trap the accessor avoids: position -1 reads the last store
    assert index.stores["category"][nb.position][0, 2] == "coffee"
    df = nb.to_dataframe(columns=["category", "seats"])
    assert df["category"].tolist() == ["tea", "coffee"] and df["seats"].tolist() == [12.0, 30.0]
    # values are those of the stores when the query ran, even after the index changes
    index.remove("a")
    index.add([{"store_id": "c", "lat": 0.0, "lon": 0.004, "category": "juice", "seats": 4}])
    assert nb.store("category")[0].tolist() == ["tea", "coffee", None]
    assert index.nearest(0.0, 0.004, k=1).store("category").tolist() == ["juice"]
    m = index.within([0.0], [0.004], radius_m=2_000.0)
    assert m.store("category").tolist() == ["juice", "coffee"]
    with pytest.raises(og.errors.InvalidParameterError, match="'colour' is not a store column"):
        nb.store("colour")
    # a result pickles with its store table (e.g. to send it to another process)
    import pickle

    back = pickle.loads(pickle.dumps(index.nearest([0.0], [0.004], k=3)))
    assert back.store("category").tolist() == [["juice", "coffee", None]]


def test_filters_that_match_nothing_warn_with_the_values_that_exist(rng):
    slat, slon = random_stores(rng, 200, "city")
    cc = rng.choice(["FR", "DE", "IT"], 200)
    index = make_index(slat, slon, cc=cc)
    with pytest.warns(og.errors.EmptyResultWarning, match=r"no store has cc 'fr' \(did you mean 'FR'\?\); cc holds"):
        nb = index.nearest(31.2, 121.4, k=1, where={"cc": "fr"})
    assert nb.store_id.tolist() == [None]
    with pytest.warns(og.errors.EmptyResultWarning, match="has values no store has: no store has cc 'ES'"):
        nb = index.nearest(31.2, 121.4, k=1, where={"cc": ["FR", "ES"]})
    assert nb.store("cc").tolist() == ["FR"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.nearest(31.2, 121.4, k=1, where={"cc": ["FR", "DE"]})  # every value exists: no warning
    with pytest.warns(og.errors.EmptyResultWarning, match="no service_area"):
        served = index.serving([31.2], [121.4])
    assert served.counts.tolist() == [0]
