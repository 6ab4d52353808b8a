"""Shared worlds and oracles of the tests: brute-force GeographicLib answers, seeded stores, a real
redis-server, snapshots of every state backend, and the ring world of the dispatcher tests.

Test modules import these by name (``tests/`` is on ``sys.path``: see ``pythonpath`` in pyproject.toml);
the fixtures built from them are in ``conftest.py``.
"""

from __future__ import annotations

import copy
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from geographiclib.geodesic import Geodesic
from pyproj import Geod

import o2o_geo as og

#: The project checkout (README, examples, docs).
REPO = Path(__file__).resolve().parent.parent
#: This folder: worker processes put it on their ``sys.path`` to import the test modules' helpers.
TESTS = Path(__file__).resolve().parent

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


# ------------------------------------------------------------------ a real redis-server
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server process on a free loopback port (no persistence), started and stopped by the tests."""

    def __init__(self, workdir):
        import shutil

        exe = shutil.which("redis-server")
        if exe is None:
            import os

            if os.environ.get("O2O_REQUIRE_REDIS"):
                pytest.fail("redis-server is required here (O2O_REQUIRE_REDIS is set) but is not installed")
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        self.exe, self.workdir, self.port, self.proc = exe, workdir, _free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self):
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(200):
            try:
                if client.ping():
                    client.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def new_redis_state(server, **kwargs):
    """A RedisState in a namespace of its own (tests share one server)."""
    import uuid

    return og.RedisState(server.url, namespace=f"t{uuid.uuid4().hex[:12]}", **kwargs)


def snapshot(st):
    """Everything a backend holds: the SQLite file's full dump, or a deep copy of the in-memory tables."""
    if isinstance(st, og.SQLiteState):
        con = sqlite3.connect(st.path)
        try:
            return list(con.iterdump())
        finally:
            con.close()
    if isinstance(st, og.RedisState):  # every key's bytes and whether it expires, in one round trip
        keys = sorted(st.r.scan_iter(match=f"{st.ns}:*", count=10_000))
        pipe = st.r.pipeline(transaction=True)
        for key in keys:
            pipe.dump(key)
            pipe.ttl(key)
        got = pipe.execute()
        return {key: (got[2 * i], got[2 * i + 1] > 0) for i, key in enumerate(keys)}
    return copy.deepcopy({k: v for k, v in vars(st).items() if k != "_lock"})


def run_threads(n, work):
    """``work(i)`` in ``n`` threads released together; results in thread order (any exception is re-raised).

    Meanwhile the interpreter switches threads every microsecond (not every 5 ms), so that a check-then-write
    that is not atomic gets interleaved with the other threads' writes.
    """
    start = threading.Barrier(n, timeout=60)

    def body(i):
        start.wait()
        return work(i)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(body, range(n)))
    finally:
        sys.setswitchinterval(interval)


# ------------------------------------------------------------------ dispatcher tests: policy, places, backends
#: A policy without gaps, caps, quiet hours or holdout: every trigger pushes (the tests add the limits they test).
#: No quiet hours, holdout, gap, per-offer or per-merchant limit; the daily and weekly caps keep their defaults.
UNGATED = {
    "quiet_hours": None,
    "holdout_fraction": 0.0,
    "min_gap_s": 0.0,
    "max_per_offer": None,
    "max_per_merchant_per_day": None,
}
#: ... and no daily or weekly cap either: every trigger pushes (the tests add the limits they test).
OPEN = {**UNGATED, "max_per_day": None, "max_per_week": None}


def offset(lat, lon, dist_m, az_deg=90.0):
    """The point ``dist_m`` metres from (lat, lon) along azimuth ``az_deg`` (GeographicLib's direct problem)."""
    lon2, lat2, _ = GEOD.fwd(lon, lat, az_deg, dist_m)
    return float(lat2), float(lon2)


# ------------------------------------------------------------------ the ring world: two merchants around Shanghai
LAT0, LON0 = 31.23, 121.47  # Shanghai
T0 = 1767229200.0  # 2026-01-01 09:00 in Shanghai (01:00 UTC)


def ring(prefix, merchant, radius_m, n=16):
    """``n`` stores of one merchant on a circle around the centre (neighbours 390 m apart at 1 km)."""
    stores = []
    for i in range(n):
        lon, lat, _ = GEOD.fwd(LON0, LAT0, 360.0 * i / n, radius_m)
        stores.append({"store_id": f"{prefix}{i}", "lat": float(lat), "lon": float(lon), "merchant_id": merchant})
    return stores


# Fences are 100 m with a 30 m exit buffer: a ping at one store is outside every other store's outer fence,
# so each ping at a store other than the last one exits the old fence and enters a new one.
RING_A = ring("a", "m1", 1000.0)  # merchant m1: offer o1
RING_B = ring("b", "m2", 3000.0)  # merchant m2: offer o2


def make_world(**policy):
    """The two rings' index, one offer per merchant, and an ungated policy with ``policy``'s changes."""
    index = og.StoreIndex.from_records(RING_A + RING_B)
    offers = og.OfferSet(
        [
            og.Offer("o1", "m1", category="coffee", discount_rate=0.8),
            og.Offer("o2", "m2", category="tea", discount_rate=0.9),
        ]
    )
    return index, offers, og.PushPolicy(**{**UNGATED, **policy})


def at(store):
    """A store record's (lat, lon)."""
    return store["lat"], store["lon"]
