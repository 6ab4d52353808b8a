"""Shared fixtures and the brute-force oracles every index path is checked against."""

from __future__ import annotations

import numpy as np
import pytest
from geographiclib.geodesic import Geodesic
from pyproj import Geod

import o2o_geo as og

GEOD = Geod(ellps="WGS84")


def brute_distances_m(store_lat, store_lon, lat, lon):
    """GeographicLib (pyproj's C port) distance from one point to every store."""
    n = len(store_lat)
    if n == 0:
        return np.empty(0)
    _, _, d = GEOD.inv(
        np.full(n, lon, dtype=float),
        np.full(n, lat, dtype=float),
        np.asarray(store_lon, float),
        np.asarray(store_lat, float),
    )
    return np.asarray(d)


def brute_nearest(store_lat, store_lon, lat, lon, k, max_distance_m=None, mask=None):
    """The k nearest positions by brute force, ties broken by position; -1/inf padding."""
    d = brute_distances_m(store_lat, store_lon, lat, lon)
    pos = np.arange(len(d))
    if mask is not None:
        d, pos = d[mask], pos[mask]
    if max_distance_m is not None:
        keep = d <= max_distance_m
        d, pos = d[keep], pos[keep]
    order = np.lexsort((pos, d))[:k]
    out_d = np.full(k, np.inf)
    out_p = np.full(k, -1)
    out_d[: len(order)] = d[order]
    out_p[: len(order)] = pos[order]
    return out_d, out_p


def brute_within(store_lat, store_lon, lat, lon, radius_m, mask=None):
    d = brute_distances_m(store_lat, store_lon, lat, lon)
    pos = np.arange(len(d))
    keep = d <= radius_m
    if mask is not None:
        keep &= mask
    d, pos = d[keep], pos[keep]
    order = np.lexsort((pos, d))
    return d[order], pos[order]


def geographiclib_m(lat1, lon1, lat2, lon2):
    """Karney's reference implementation (pure Python): the independent distance oracle."""
    return Geodesic.WGS84.Inverse(float(lat1), float(lon1), float(lat2), float(lon2))["s12"]


def random_stores(rng, n, kind="globe"):
    """Seeded store positions: over the globe, clustered in a city, or near the poles/antimeridian."""
    if kind == "globe":
        lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        lon = rng.uniform(-180, 180, n)
    elif kind == "city":
        lat = 31.23 + rng.normal(0, 0.05, n)
        lon = 121.47 + rng.normal(0, 0.05, n)
    elif kind == "pole":
        lat = rng.uniform(88.0, 90.0, n)
        lon = rng.uniform(-180, 180, n)
    elif kind == "antimeridian":
        lat = rng.uniform(-5, 5, n)
        lon = np.where(rng.uniform(size=n) < 0.5, rng.uniform(179.0, 180.0, n), rng.uniform(-180.0, -179.0, n))
    else:
        raise ValueError(kind)
    return np.clip(lat, -90, 90), lon


def make_index(lat, lon, ids=None, **cols):
    ids = np.arange(len(lat)) if ids is None else ids
    return og.StoreIndex(og.StoreSet.from_columns(ids, lat, lon, **cols))


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
