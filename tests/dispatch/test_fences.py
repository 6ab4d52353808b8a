"""Geofences and per-store radii against GeographicLib, point by point."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _worlds import GEOD, geographiclib_m
from geographiclib.geodesic import Geodesic
from shapely.geometry import Polygon, box

import o2o_geo as og
from o2o_geo.errors import InvalidGeometryError, InvalidParameterError, ShapeMismatchError, StaleRadiiError

WGS = Geodesic.WGS84


def towards(lat, lon, az_deg, dist_m):
    g = WGS.Direct(lat, lon, az_deg, dist_m)
    return g["lat2"], g["lon2"]


def ring_of_stores(rng, n, lat0=48.85, lon0=2.35, spread_deg=0.01, **cols):
    recs = []
    for i in range(n):
        rec = {"store_id": f"s{i}", "lat": lat0 + rng.uniform(-spread_deg, spread_deg),
               "lon": lon0 + rng.uniform(-spread_deg, spread_deg)}  # fmt: skip
        for name, values in cols.items():
            rec[name] = values[i]
        recs.append(rec)
    return og.StoreIndex.from_records(recs)


def brute_hits(index, lat, lon, r_in, buf, near):
    """(position, inside, in_buffer, nearby) of each store whose fence, buffer or nearby radius holds the point."""
    out = []
    for p in range(len(index)):
        d = geographiclib_m(lat, lon, float(index.stores.lat[p]), float(index.stores.lon[p]))
        inside, in_buf, nb = d <= r_in[p], d <= r_in[p] + buf, d <= near
        if in_buf or nb:
            out.append((p, inside, in_buf, nb))
    return out


def test_radius_fences_match_geographiclib_at_their_edges(rng):
    n = 60
    radii = rng.uniform(20.0, 300.0, n)
    radii[::7] = np.nan  # the default radius
    index = ring_of_stores(rng, n, geofence=radii.tolist())
    fences = og.Geofences(index, radius_m=80.0, buffer_m=25.0, nearby_m=150.0)
    r_in = np.where(np.isnan(radii), 80.0, radii)
    pts = []
    for _ in range(150):  # points on (to 1 um) and around every kind of edge
        p = int(rng.integers(n))
        edge = float(rng.choice([r_in[p], r_in[p] + 25.0, 150.0]))
        d = edge + float(rng.choice([-1e-6, 0.0, 1e-6, rng.uniform(-40, 40)]))
        pts.append(towards(float(index.stores.lat[p]), float(index.stores.lon[p]), rng.uniform(0, 360), max(d, 0.0)))
    lat = np.array([a for a, _ in pts])
    lon = np.array([b for _, b in pts])
    batch = fences.hits(lat, lon)
    off = batch.offsets(len(pts))
    for i, (a, b) in enumerate(pts):
        want = brute_hits(index, a, b, r_in, 25.0, 150.0)
        one = [(h.position, h.inside, h.in_buffer, h.nearby) for h in fences.hits_at(a, b)]
        sl = slice(off[i], off[i + 1])
        many = list(zip(batch.position[sl].tolist(), batch.inside[sl].tolist(), batch.in_buffer[sl].tolist(),
                        batch.nearby[sl].tolist(), strict=True))  # fmt: skip
        assert one == want, (i, a, b)
        assert many == want, (i, a, b)


def test_polygon_buffer_is_geodesic_metres_at_60_north():
    lat0, lon0 = 60.0, 25.0
    poly = box(lon0 - 0.002, lat0 - 0.001, lon0 + 0.002, lat0 + 0.001)
    index = og.StoreIndex.from_records([{"store_id": "p", "lat": lat0, "lon": lon0, "geofence": poly}])
    fences = og.Geofences(index, buffer_m=30.0)
    # due north of the north edge's middle: the nearest boundary point is the middle itself
    for d, want in ((29.9, True), (30.1, False), (5.0, True)):
        la, lo = towards(lat0 + 0.001, lon0, 0.0, d)
        (hit,) = fences.hits_at(la, lo) or [og.FenceHit(0, None, math.nan, False, False, False)]
        assert (hit.inside, hit.in_buffer) == (False, want), d
    # due east of the east edge (a meridian): about 0.002 deg of longitude is 111 m at 60 N, not 222 m
    la, lo = towards(lat0, lon0 + 0.002, 90.0, 29.0)
    assert fences.hits_at(la, lo)[0].in_buffer
    assert fences.hits_at(lat0, lon0 + 0.0019)[0].inside
    assert fences.hits_at(lat0 + 0.0011, lon0)[0].inside is False


def test_polygon_buffer_matches_a_densely_sampled_boundary(rng):
    poly = Polygon([(2.3500, 48.8500), (2.3530, 48.8505), (2.3520, 48.8530), (2.3505, 48.8515)])
    index = og.StoreIndex.from_records([{"store_id": "p", "lat": 48.851, "lon": 2.351, "geofence": poly}])
    fences = og.Geofences(index, buffer_m=40.0)
    xy = np.asarray(poly.exterior.coords)
    dense = np.concatenate([np.linspace(xy[i], xy[i + 1], 4000, endpoint=False) for i in range(len(xy) - 1)])
    checked = 0
    for _ in range(300):
        la, lo = 48.8515 + rng.uniform(-0.0012, 0.0012), 2.3515 + rng.uniform(-0.0015, 0.0015)
        inside = poly.intersects(og_point(lo, la))
        d = float(GEOD.inv(np.full(len(dense), lo), np.full(len(dense), la), dense[:, 0], dense[:, 1])[2].min())
        if abs(d - 40.0) < 0.5 and not inside:
            continue  # the oracle's sampling error
        hits = fences.hits_at(la, lo)
        got = (hits[0].inside, hits[0].in_buffer) if hits else (False, False)
        assert got == (inside, inside or d <= 40.0), (la, lo, d)
        checked += 1
    assert checked > 250


def og_point(lon, lat):
    from shapely.geometry import Point

    return Point(lon, lat)


def test_polygon_fences_across_the_antimeridian():
    ring = [(179.999, -0.001), (-179.999, -0.001), (-179.999, 0.001), (179.999, 0.001)]  # jumps: crosses 180
    index = og.StoreIndex.from_records([{"store_id": "fiji", "lat": 0.0, "lon": 180.0, "geofence": Polygon(ring)}])
    fences = og.Geofences(index, buffer_m=30.0)
    for lon in (179.9995, -179.9995, 180.0):
        assert fences.hits_at(0.0, lon)[0].inside, lon
    la, lo = towards(0.001, -179.9995, 0.0, 20.0)  # 20 m north of the edge, east of 180
    assert [(h.inside, h.in_buffer) for h in fences.hits_at(la, lo)] == [(False, True)]
    assert fences.hits_at(0.0, 179.99) == []
    batch = fences.hits([0.0, la, 0.0], [-179.9995, lo, 179.99])
    assert batch.ping.tolist() == [0, 1] and batch.inside.tolist() == [True, False]


def test_fences_follow_adds_and_removes_and_build_only_new_stores():
    poly = box(121.4795, 31.2320, 121.4807, 31.2330)
    index = og.StoreIndex.from_records([
        {"store_id": "a", "lat": 31.2325, "lon": 121.4801, "geofence": poly},
        {"store_id": "b", "lat": 31.2400, "lon": 121.4900, "geofence": 50.0},
    ])  # fmt: skip
    fences = og.Geofences(index)
    assert [index.stores.store_id[h.position] for h in fences.hits_at(31.2325, 121.4801)] == ["a"]
    built = dict(fences._specs)
    index.add([{"store_id": "c", "lat": 31.2326, "lon": 121.4802, "geofence": 20.0}])
    got = [index.stores.store_id[h.position] for h in fences.hits_at(31.2325, 121.4801)]
    assert got == ["a", "c"] and all(fences._specs[k][1] is v[1] for k, v in built.items())
    index.remove("a")
    assert [index.stores.store_id[h.position] for h in fences.hits_at(31.2325, 121.4801)] == ["c"]
    assert fences.version == index.version and len(fences._specs) == 2


def test_bad_fences_and_parameters_are_typed_errors():
    for bad in (-5.0, 0.0, "round", math.inf, Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])):
        index = og.StoreIndex.from_records([{"store_id": "x", "lat": 0.0, "lon": 0.0, "geofence": bad}])
        with pytest.raises(InvalidGeometryError, match="store 'x'"):
            og.Geofences(index).hits_at(0.0, 0.0)
    index = og.StoreIndex.from_records([{"store_id": "x", "lat": 0.0, "lon": 0.0}])
    for kw in ({"radius_m": 0.0}, {"buffer_m": -1.0}, {"nearby_m": math.inf}, {"radius_m": True}):
        (name,) = kw
        with pytest.raises(InvalidParameterError, match=rf"{name} must be .*metres.*; got {kw[name]!r}"):
            og.Geofences(index, **kw)
    with pytest.raises(InvalidParameterError, match="Geofences takes a StoreIndex; got str"):
        og.Geofences("not an index")


def test_store_radii_match_brute_force_on_both_paths_and_go_stale(rng):
    index = ring_of_stores(rng, 200, spread_deg=0.02)
    radius = rng.uniform(0.0, 400.0, len(index))
    radius[rng.uniform(size=len(index)) < 0.2] = np.nan
    radii = index.store_radii(radius)
    lat = 48.85 + rng.uniform(-0.02, 0.02, 300)
    lon = 2.35 + rng.uniform(-0.02, 0.02, 300)
    batch = index.pairs_within(lat, lon, radii)
    got_batch = sorted(zip(batch.query.tolist(), batch.position.tolist(), strict=True))
    want = []
    for i in range(300):
        for p in range(len(index)):
            if not np.isnan(radius[p]):
                d = geographiclib_m(lat[i], lon[i], float(index.stores.lat[p]), float(index.stores.lon[p]))
                if d <= radius[p]:
                    want.append((i, p))
        one = index.pairs_within(float(lat[i]), float(lon[i]), radii)
        assert sorted(one.position.tolist()) == [p for q, p in want if q == i]
    assert got_batch == want
    np.testing.assert_array_equal(np.sort(index.pairs_within(lat, lon, radius).position), np.sort(batch.position))
    index.add([{"store_id": "new", "lat": 48.85, "lon": 2.35}])
    with pytest.raises(StaleRadiiError, match="prepare them again"):
        index.pairs_within(48.85, 2.35, radii)
    with pytest.raises(ShapeMismatchError, match=r"expected one radius per store, shape \(201,\)"):
        index.store_radii(radius)
    with pytest.raises(InvalidParameterError, match="store"):
        index.store_radii([-1.0] + [1.0] * (len(index) - 1))


def test_odd_inputs_to_the_fence_and_candidate_calls_are_typed_errors():
    from o2o_geo.errors import InvalidCoordinateError, InvalidRecordError

    index = og.StoreIndex(og.sample_stores())
    fences = og.Geofences(index)
    for lat, message in (
        ("a", "lat must be numbers; got 'a'"),
        (None, "lat = nan is not a finite number"),
        ([1.0, 2.0], "lat has 2 values but lon has 1"),
        (float("nan"), "lat = nan is not a finite number"),
        (91.0, r"lat = 91\.0 is outside \[-90, 90\]"),
    ):
        with pytest.raises((InvalidCoordinateError, InvalidParameterError, ShapeMismatchError), match=message):
            fences.hits_at(lat, 121.48)
    assert fences.hits_at(np.float64(31.2325), 121.4801) == fences.hits_at(31.2325, 121.4801) != []
    scorer = og.OfferScorer(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]))
    for args, err, message in (
        (("u", ["a"], [1.0], 0.0), InvalidParameterError, r"position must be store rows \(ints\)"),
        (("u", [999], [1.0], 0.0), InvalidParameterError, r"position must be rows of index.stores \(0\.\.49\)"),
        (("u", [1], [float("nan")], 0.0), InvalidParameterError, r"distance_m\[0\] = .*nan.* must be metres >= 0"),
        (("u", [1], [-5.0], 0.0), InvalidParameterError, r"distance_m\[0\] = .*-5\.0.* must be metres >= 0"),
        ((None, [1], [1.0], 0.0), InvalidRecordError, "user_id must be a str or an int, or one per row; got None"),
        (([None], [1], [1.0], 0.0), InvalidRecordError, r"user_id\[0\] must be a str or an int; got None"),
        ((["u", "v"], [1], [1.0], 0.0), ShapeMismatchError, "user_id has 2 rows but position has 1"),
        (("u", [1, 2], [1.0], 0.0), ShapeMismatchError, "position has 2 rows but distance_m has 1"),
    ):
        with pytest.raises(err, match=message):
            scorer.score_candidates(*args)
    with pytest.raises(InvalidParameterError, match="radius_m must be numbers of metres, one per store"):
        index.store_radii("abc")
    with pytest.raises(ShapeMismatchError, match=r"radius_m has shape \(\); expected one radius per store"):
        index.store_radii(None)
