"""Load check of the example service (examples/service/app.py): requests/s and latency over loopback HTTP.

World: o2o_geo.simulate (SIMULATED), 2,000 users, 1,000 stores, 200 offers;
the first ``--pings`` pings of its day.  Rows, side by side in one run:

* ``service, one ping per request``: uvicorn (one worker process) serving
  the app on SQLiteState; an httpx client keeps ``--concurrency`` requests
  in flight; latency is the client's, request to response;
* ``HTTP floor``: as many ``GET /health`` requests, same client and server (what HTTP alone costs);
* ``service, batches of 500``: the same pings as ``{"pings": [...]}``;
* ``in process``, the peer: the same pings through ``Dispatcher.on_location``
  on SQLiteState in this process, one call at a time (what the HTTP layer adds is the difference).

Bounded: loopback only, about a minute on 2 cores.

Run:  pip install -e ".[bench]" && python benchmarks/bench_service.py [--pings 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

import o2o_geo as og
from o2o_geo import simulate

SERVICE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "service"
POLICY = {"quiet_hours": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def world_files(folder: str, n_pings: int) -> list[dict]:
    world = simulate.World.generate(seed=3, n_users=2_000, n_stores=1_000, n_offers=200, n_merchants=40)
    world.index.save(os.path.join(folder, "stores.o2oidx"))
    with open(os.path.join(folder, "offers.json"), "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(o) for o in world.offers], f)
    with open(os.path.join(folder, "policy.json"), "w", encoding="utf-8") as f:
        json.dump(POLICY, f)
    log = world.pings(n_days=1.0, pings_per_user_per_day=10.0, seed=4)
    n = min(n_pings, len(log))
    return [{"user_id": int(log.user[i]), "lat": float(log.lat[i]), "lon": float(log.lon[i]), "ts": float(log.ts[i]),
             "accuracy_m": float(log.accuracy_m[i]), "event_id": f"e{i}"} for i in range(n)]  # fmt: skip


def start(folder: str, state: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "O2O_INDEX": os.path.join(folder, "stores.o2oidx"),
           "O2O_OFFERS": os.path.join(folder, "offers.json"), "O2O_POLICY": os.path.join(folder, "policy.json"),
           "O2O_STATE": os.path.join(folder, state)}  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(SERVICE), "app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"], env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the service did not start")


async def one_per_request(
    url: str, pings: list[dict], concurrency: int, health: bool = False
) -> tuple[float, np.ndarray, int]:
    """Every ping in a request of its own (or, ``health``, as many GET /health: the HTTP stack alone)."""
    lat = np.empty(len(pings))
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def send(i: int) -> int:
            async with gate:
                t = time.perf_counter()
                r = await (client.get("/health") if health else client.post("/pings", json=pings[i]))
                lat[i] = time.perf_counter() - t
                r.raise_for_status()
                return 0 if health else len(r.json()["decisions"])

        t0 = time.perf_counter()
        n = sum(await asyncio.gather(*(send(i) for i in range(len(pings)))))
        return time.perf_counter() - t0, lat, n


def batches(url: str, pings: list[dict], size: int = 500) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    with httpx.Client(base_url=url, timeout=120.0) as client:
        for i in range(0, len(pings), size):
            r = client.post("/pings", json={"pings": pings[i : i + size]})
            r.raise_for_status()
            n += len(r.json()["decisions"])
    return time.perf_counter() - t0, n


def in_process(folder: str, pings: list[dict]) -> tuple[float, np.ndarray, int]:
    index = og.StoreIndex.load(os.path.join(folder, "stores.o2oidx"))
    with open(os.path.join(folder, "offers.json"), encoding="utf-8") as f:
        offers = og.OfferSet.from_records(json.load(f))
    engine = og.Dispatcher(index, offers, policy=og.PushPolicy(**POLICY),
                           state=og.SQLiteState(os.path.join(folder, "peer.db")))  # fmt: skip
    engine.on_location("warm-up", 0.0, 0.0, pings[0]["ts"] - 86_400)
    lat = np.empty(len(pings))
    n = 0
    t0 = time.perf_counter()
    for i, p in enumerate(pings):
        t = time.perf_counter()
        n += len(engine.on_location(**p))
        lat[i] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    engine.close()
    return wall, lat, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pings", type=int, default=5_000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="bench_service_")
    pings = world_files(folder, args.pings)
    rows = []
    proc, url = start(folder, "one.db")
    httpx.post(url + "/pings", json={"user_id": "warm-up", "lat": 0.0, "lon": 0.0, "ts": pings[0]["ts"] - 86_400})
    wall, lat, n = asyncio.run(one_per_request(url, pings, args.concurrency))
    rows.append(("service, one ping per request", len(pings) / wall, lat, n))
    wall_h, lat_h, _ = asyncio.run(one_per_request(url, pings, args.concurrency, health=True))
    rows.append(("HTTP floor: GET /health, same client and server", len(pings) / wall_h, lat_h, 0))
    proc.terminate()
    proc.wait(timeout=60)
    proc, url = start(folder, "batch.db")
    wall_b, n_b = batches(url, pings)
    rows.append(("service, batches of 500", len(pings) / wall_b, None, n_b))
    proc.terminate()
    proc.wait(timeout=60)
    wall_p, lat_p, n_p = in_process(folder, pings)
    rows.append(("in process (peer): on_location, SQLiteState", len(pings) / wall_p, lat_p, n_p))
    print(f"{len(pings):,} SIMULATED pings, {args.concurrency} requests in flight, loopback, {os.cpu_count()} cores")
    print("| row | pings/s | p50 ms | p99 ms | decisions |")
    print("|---|---|---|---|---|")
    for name, rate, lats, n in rows:
        p50 = "-" if lats is None else f"{np.percentile(lats, 50) * 1e3:.2f}"
        p99 = "-" if lats is None else f"{np.percentile(lats, 99) * 1e3:.2f}"
        print(f"| {name} | {rate:,.0f} | {p50} | {p99} | {n:,} |")
    print(f"\nservice one-per-request / in-process rate: {rows[0][1] / rows[3][1]:.2f}x; "
          f"batches / in-process: {rows[2][1] / rows[3][1]:.2f}x (concurrent requests reorder a user's pings, "
          "so some arrive stale and the decision counts differ)")  # fmt: skip


if __name__ == "__main__":
    main()
