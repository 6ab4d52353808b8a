"""Geodesic distances against Karney's GeographicLib (the pure-Python reference implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import GEOD, geographiclib_m
from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo._geodesy import CHORD_SLACK_M, chord_error_bound_m, ecef_m

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(lat1=lats, lon1=lons, lat2=lats, lon2=lons)
def test_distance_within_1mm_of_geographiclib_anywhere(lat1, lon1, lat2, lon2):
    d = og.geodesic_distance_m(lat1, lon1, lat2, lon2)
    assert abs(d - geographiclib_m(lat1, lon1, lat2, lon2)) <= 1e-3


@settings(max_examples=400, deadline=None)
@given(lat1=lats, lon1=lons, az=st.floats(0, 360), log_d=st.floats(-3, 5.5))
def test_short_and_medium_distances_within_1mm(lat1, lon1, az, log_d):
    # the closed-form path (chords up to 100 km) is where the index spends its time
    lon2, lat2, _ = GEOD.fwd(lon1, lat1, az, 10**log_d)
    d = og.geodesic_distance_m(lat1, lon1, lat2, lon2)
    assert abs(d - geographiclib_m(lat1, lon1, lat2, lon2)) <= 1e-3


def test_error_bound_holds_on_a_million_pairs():
    # the bound drives the index's tie handling: it must hold everywhere, poles included
    rng = np.random.default_rng(5)
    n = 1_000_000
    lat1 = rng.uniform(-90, 90, n)
    lat1[:2000] = rng.choice([-90.0, 90.0, -89.9999, 89.9999], 2000)
    lon1 = rng.uniform(-180, 180, n)
    lon2, lat2, _ = GEOD.fwd(lon1, lat1, rng.uniform(0, 360, n), 10 ** rng.uniform(-2, 5, n))
    ours = og.geodesic_distance_m(lat1, lon1, lat2, lon2)
    _, _, ref = GEOD.inv(lon1, lat1, lon2, lat2)
    p, q = ecef_m(lat1, lon1), ecef_m(np.asarray(lat2), np.asarray(lon2))
    chord = np.linalg.norm(p - q, axis=1)
    assert np.all(np.abs(ours - ref) <= chord_error_bound_m(chord))
    # and a chord never exceeds its geodesic by more than the pruning slack
    assert np.all(chord <= ref + CHORD_SLACK_M)


def test_antimeridian_poles_and_identity():
    cases = [
        (0.0, 179.9999, 0.0, -179.9999),
        (89.9999, 0.0, 89.9999, 180.0),
        (90.0, 0.0, 90.0, 123.0),
        (-90.0, 0.0, -89.0, 45.0),
        (10.0, 20.0, 10.0, 20.0),
        (0.0, 0.0, 0.5, 179.5),
        (0.0, 0.0, 0.0, 180.0),
    ]
    for la1, lo1, la2, lo2 in cases:
        assert og.geodesic_distance_m(la1, lo1, la2, lo2) == pytest.approx(
            geographiclib_m(la1, lo1, la2, lo2), abs=1e-3
        )
    assert og.geodesic_distance_m(90.0, 0.0, 90.0, 123.0) == pytest.approx(0.0, abs=1e-6)


def test_broadcasting_and_shapes():
    d = og.geodesic_distance_m(0.0, 0.0, [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert d.shape == (3,)
    for i, la in enumerate([0.0, 1.0, 2.0]):
        assert d[i] == pytest.approx(geographiclib_m(0.0, 0.0, la, 1.0), abs=1e-3)
    assert isinstance(og.geodesic_distance_m(0, 0, 1, 1), float)
    with pytest.raises(og.errors.ShapeMismatchError, match="cannot pair 2 first points with 3"):
        og.geodesic_distance_m([0.0, 1.0], [0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(og.errors.InvalidCoordinateError, match=r"second point's lat\[1\] = -91.0"):
        og.geodesic_distance_m(0.0, 0.0, [0.0, -91.0], [0.0, 0.0])


def test_ecef_matches_pyproj():
    pyproj = pytest.importorskip("pyproj")
    tr = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:4978", always_xy=True)
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(-90, 90, 1000), rng.uniform(-180, 180, 1000)
    x, y, z = tr.transform(lon, lat, np.zeros(1000))
    np.testing.assert_allclose(og.latlon_to_ecef_m(lat, lon), np.column_stack([x, y, z]), atol=1e-6, rtol=0)
