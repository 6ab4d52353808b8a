"""`python -m o2o_geo demo` runs and its figures agree with an independent computation."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from conftest import brute_nearest

import o2o_geo as og
from o2o_geo._sample import LANDMARKS


def test_demo_runs_and_reports_true_nearest_stores():
    out = subprocess.run(
        [sys.executable, "-m", "o2o_geo", "demo"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    stores = og.sample_stores(7)
    for place, (lat, lon) in LANDMARKS.items():
        d, p = brute_nearest(stores.lat, stores.lon, lat, lon, 1)
        sid = stores.store_id[p[0]]
        row = re.search(rf"^{re.escape(place)}\s+1\s+(\S+)\s+.*?\s([\d,]+)\s*$", out, re.M)
        assert row is not None, place
        assert row.group(1) == sid
        assert int(row.group(2).replace(",", "")) == round(d[0])
    assert "Saved and loaded" in out


def test_sample_stores_are_deterministic():
    a, b = og.sample_stores(3), og.sample_stores(3)
    assert a.store_id.tolist() == b.store_id.tolist()
    np.testing.assert_array_equal(a.lat, b.lat)
    assert og.sample_stores(4).lat.tolist() != a.lat.tolist()


def test_cli_usage_error_is_one_line_and_nonzero():
    res = subprocess.run([sys.executable, "-m", "o2o_geo", "nosuch"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "invalid choice" in res.stderr


def test_demo_day_counts_agree_with_per_ping_replay():
    from o2o_geo import simulate

    out = subprocess.run(
        [sys.executable, "-m", "o2o_geo", "demo"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    m = re.search(r"-> ([\d,]+) pushes \(\+([\d,]+) held-out", out)
    assert m is not None and "uplift (95% CI)" in out
    # the demo replays the log in one batch call; replay it here ping by ping
    world = simulate.World.generate(seed=11, n_users=3000, n_stores=400, n_offers=60, n_merchants=20)
    log = world.pings(n_days=1, pings_per_user_per_day=12, seed=12)
    engine = og.Dispatcher(world.index, world.offers, policy=og.PushPolicy(holdout_fraction=0.2, max_per_day=2))
    decisions = []
    for i in range(len(log)):
        decisions += engine.on_location(
            int(log.user[i]),
            float(log.lat[i]),
            float(log.lon[i]),
            float(log.ts[i]),
            accuracy_m=float(log.accuracy_m[i]),
        )
    held = sum(d.holdout for d in decisions)
    assert (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) == (len(decisions) - held, held)
