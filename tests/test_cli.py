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
