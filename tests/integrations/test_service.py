"""The example service (examples/service/app.py) under uvicorn, driven over loopback HTTP by concurrent clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pytest
from _worlds import REPO

import o2o_geo as og

SERVICE = REPO / "examples" / "service"
T0 = 1767258000.0  # 2026-01-01 17:00 in Shanghai
SITES = [(31.232486, 121.480102), (31.223421, 121.482099), (31.2400, 121.4500)]  # lucky-09, teagarden-01, no store
POLICY = {"holdout_fraction": 0.2, "quiet_hours": None, "max_per_day": 2, "min_gap_s": 0.0,
          "max_per_offer": None, "max_per_merchant_per_day": None}  # fmt: skip


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "redis"])
def service(request, tmp_path):
    """The service started by uvicorn on a free loopback port, with its environment; stopped by the test."""
    sys.path.insert(0, str(SERVICE))
    try:
        from app import make_demo_data
    finally:
        sys.path.remove(str(SERVICE))
    make_demo_data(str(tmp_path))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    env = {**os.environ, "O2O_INDEX": str(tmp_path / "stores.o2oidx"), "O2O_OFFERS": str(tmp_path / "offers.json"),
           "O2O_POLICY": str(tmp_path / "policy.json"), "O2O_STATE": str(tmp_path / "state.db")}  # fmt: skip
    if request.param == "redis":
        env["O2O_REDIS_URL"] = request.getfixturevalue("redis_server").url
        env["O2O_REDIS_NS"] = f"svc{uuid.uuid4().hex[:10]}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(SERVICE), "app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1.0).json()["ok"]:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the service did not start: {proc.communicate()[1]}")
        time.sleep(0.1)
    yield url, proc, env
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def user_pings(n_users=50, per_user=20):
    """Each user walks lucky-09 -> teagarden-01 -> nowhere, again and again: fences entered many times."""
    return [{"user_id": f"u{u}", "lat": SITES[i % 3][0], "lon": SITES[i % 3][1], "ts": T0 + 60.0 * i,
             "event_id": f"u{u}-{i}"} for u in range(n_users) for i in range(per_user)]  # fmt: skip


async def drive(url, pings):
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        replies = await asyncio.gather(*(client.post("/pings", json=p) for p in pings))
        again = await asyncio.gather(*(client.post("/pings", json=p) for p in pings[:100]))  # redelivered
    return replies, again


def test_concurrent_pings_hold_the_caps_and_the_report_matches_the_decisions(service):
    url, proc, env = service
    pings = user_pings()
    replies, again = asyncio.run(drive(url, pings))
    assert all(r.status_code == 200 for r in replies + again), [r.text for r in replies if r.status_code != 200][:3]
    decisions = [d for r in replies for d in r.json()["decisions"]]
    per_user = Counter(d["user_id"] for d in decisions)
    assert decisions and max(per_user.values()) <= POLICY["max_per_day"]  # caps held under 1,000 concurrent pings
    assert len({d["push_id"] for d in decisions}) == len(decisions)
    first = {p["event_id"]: r.json()["decisions"] for p, r in zip(pings, replies, strict=True)}
    for p, r in zip(pings[:100], again, strict=True):  # a redelivered ping gets the same answer, nothing new
        assert r.json()["decisions"] == first[p["event_id"]]
    treated = [d for d in decisions if not d["holdout"]]
    redeems = [{"kind": "redeem", "user_id": d["user_id"], "ts": d["ts"] + 600, "push_id": d["push_id"],
                "amount": 20.0} for d in treated[::3]]  # fmt: skip
    r = httpx.post(url + "/events", json={"events": redeems}, timeout=60)
    assert r.status_code == 200 and r.json()["push_ids"] == [e["push_id"] for e in redeems]
    (row,) = httpx.get(url + "/report", params={"by": "all"}, timeout=60).json()["rows"]
    assert row["pushed"] == len(treated) and row["holdout"] == len(decisions) - len(treated)
    assert row["redeemed"] == len(redeems) and row["revenue"] == 20.0 * len(redeems)
    assert row["visitors_7d_treated"] == 0 and row["repeat_7d_treated"] is None  # a share of nobody: null
    # bad input: a typed error, and nothing changes
    bad = httpx.post(url + "/pings", json={"user_id": "u1", "lat": 91.0, "lon": 0.0, "ts": T0}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidCoordinateError"
    batch = {"pings": [{"user_id": "z", "lat": SITES[0][0], "lon": SITES[0][1], "ts": T0}, {"user_id": "z"}]}
    assert httpx.post(url + "/pings", json=batch, timeout=10).status_code == 400  # checked before any is processed
    missing = httpx.post(url + "/events", json={"kind": "open", "user_id": "u1", "ts": T0, "push_id": "p999999"})
    assert missing.status_code == 404 and missing.json()["error"] == "UnknownPushError"
    assert httpx.get(url + "/report", params={"by": "all"}, timeout=60).json()["rows"] == [row]
    why = httpx.get(url + "/explain", params={"user_id": "new", "lat": SITES[2][0], "lon": SITES[2][1], "ts": T0})
    assert why.json()["gate"] == "no_fence"
    why = httpx.get(url + "/explain", params={"user_id": "new", "lat": SITES[0][0], "lon": SITES[0][1], "ts": T0})
    assert why.json()["triggers"] == {"lucky-09": "enter"} and why.json()["candidates"]
    # graceful shutdown: SIGTERM, running requests finish, the dispatcher closes, nothing is lost
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), err  # (uvicorn re-raises the signal once it has shut down)
    assert "dispatcher closed" in err
    if "O2O_REDIS_URL" in env:
        state = og.RedisState(env["O2O_REDIS_URL"], namespace=env["O2O_REDIS_NS"])
    else:
        state = og.SQLiteState(env["O2O_STATE"])
    try:
        assert sorted(p["push_id"] for p in state.pushes()) == sorted(d["push_id"] for d in decisions)
        assert sum(e["kind"] == "redeem" for e in state.events()) == len(redeems)
    finally:
        state.close()
