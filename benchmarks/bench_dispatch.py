"""Dispatcher benchmark: replay simulated location pings through o2o_geo.Dispatcher, in one run.

World: o2o_geo.simulate (SIMULATED users, stores and offers around Shanghai),
100,000 users, 10,000 stores of 400 merchants, 2,000 live offers; one day of
pings, 10 per user (about 1,000,000), 30 % of them in store-visit bursts.
Policy: PushPolicy(quiet_hours=None) (the simulated pings run around the
clock), everything else at its defaults (enter and dwell triggers, 100 m
fences, 10 % holdout).  Rows, side by side:

* batch replay, ``engine.on_locations(**log.columns())``, with MemoryState and
  with SQLiteState (a file in a temporary directory);
* per-ping ``engine.on_location(...)`` on a prefix of the same log (timed call
  by call with ``time.perf_counter_ns``), with each state backend;
* the raw geometry as reference peers: ``index.within(lat, lon,
  radius_m=policy.fence_radius_m)`` on the same pings, batch and one ping per
  call, so the table shows what share of the engine's time is the spatial query;
* off the friendly path: a 50-store chain with the pings spread over the
  whole globe (almost every ping idle), a dense centre (2,000 stores
  within about 1.5 km, 10 offers each, every ping inside several fences),
  and the retention stage on that centre (visits of three pings over 40
  days, exit and lapsed triggers, offers aimed at audiences, a fifth of the
  users opted out and a fifth members).

Peak memory: each row's peak resident set (``VmHWM`` after resetting it
through ``/proc/self/clear_refs``), in MiB, on Linux.

Every engine run starts from an empty state; building the geofences and the
stores' time zones (the first call) is timed separately, not in the rates.

Run:  python benchmarks/bench_dispatch.py            (several minutes on 2 cores)
      python benchmarks/bench_dispatch.py --quick    (10k users, 1k stores, 200 offers; a smoke run)

The engine rows are medians of ``--repeats`` runs (default 1: one run replays
1,000,000 pings, and the quick run must stay under a minute); the geometry rows
medians of at least 3.  Latency percentiles pool every call of every repeat.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import o2o_geo as og
from o2o_geo import simulate

TARGETS = {"batch Memory": 100_000.0, "batch SQLite": 30_000.0, "Memory": 20_000.0, "SQLite": 5_000.0, "Redis": 4_000.0}
P50_TARGET_US, P99_TARGET_US = 25.0, 250.0  # per-ping MemoryState
FULL = {"users": 100_000, "stores": 10_000, "offers": 2_000, "merchants": 400, "per_ping_n": 200_000,
        "per_ping_n_sqlite": 100_000, "per_ping_n_redis": 50_000, "repeats": 1}  # fmt: skip
QUICK = {"users": 10_000, "stores": 1_000, "offers": 200, "merchants": 40, "per_ping_n": 20_000,
         "per_ping_n_sqlite": 10_000, "per_ping_n_redis": 10_000, "repeats": 1}  # fmt: skip
REDIS_URL: str | None = None  # set by main() when a redis-server runs for the RedisState rows


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A local redis-server on a free loopback port (no persistence) for the RedisState rows; None without one."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench_redis_") as tmp:
        cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def reset_peak() -> None:
    """Reset the process's peak RSS (Linux: writing 5 to /proc/self/clear_refs); no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``...), MiB (NaN where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def peak_mib() -> float:
    """The peak RSS since the last reset_peak(), MiB (NaN where /proc is missing)."""
    return status_mib("VmHWM")


def decision_key(d: og.PushDecision) -> tuple[Any, ...]:
    return (d.push_id, d.user_id, d.offer_id, d.store_id, d.trigger, d.holdout)


@contextmanager
def fresh_engine(world: simulate.World, policy: og.PushPolicy, kind: str) -> Iterator[tuple[og.Dispatcher, float]]:
    """A dispatcher on an empty state (SQLite: a new file in a temporary directory), warmed up.

    Yields the engine and the time of its first call (building geofences and store time zones).
    """
    with tempfile.TemporaryDirectory(prefix="bench_dispatch_") as tmp:
        if kind == "Redis":
            state: og.DispatchState = og.RedisState(REDIS_URL, namespace=f"bench{time.monotonic_ns()}")
        else:
            state = og.MemoryState() if kind == "Memory" else og.SQLiteState(os.path.join(tmp, "state.db"))
        with og.Dispatcher(world.index, world.offers, policy=policy, state=state) as engine:
            t0 = time.perf_counter()
            engine.on_location("warm-up", 0.0, 0.0, 0.0)  # far from every store: builds the fences and store zones
            yield engine, time.perf_counter() - t0


def run_batch(world, policy, kind: str, cols: dict[str, Any]) -> dict[str, Any]:
    with fresh_engine(world, policy, kind) as (engine, t_start):
        gc.collect()
        reset_peak()
        t0 = time.perf_counter()
        decisions = engine.on_locations(**cols)
        dt = time.perf_counter() - t0
        peak = peak_mib()
        stats = Counter(engine.stats)
    return {"time": dt, "start": t_start, "decisions": decisions, "stats": stats, "peak": peak}


def time_calls(engine: og.Dispatcher, rows: tuple[list, ...]) -> tuple[float, np.ndarray, list[og.PushDecision]]:
    """One ``on_location`` call per row, each timed: (total seconds, ns per call, decisions)."""
    users, lat, lon, ts, acc = rows
    n = len(users)
    ns = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    on_location = engine.on_location
    out: list[og.PushDecision] = []
    t0 = time.perf_counter()
    for i in range(n):
        a = clock()
        d = on_location(users[i], lat[i], lon[i], ts[i], accuracy_m=acc[i])
        ns[i] = clock() - a
        if d:
            out += d
    return time.perf_counter() - t0, ns, out


def run_per_ping(world, policy, kind: str, rows: tuple[list, ...]) -> dict[str, Any]:
    with fresh_engine(world, policy, kind) as (engine, t_start):
        gc.collect()
        reset_peak()
        dt, ns, out = time_calls(engine, rows)
        peak = peak_mib()
        stats = Counter(engine.stats)
        trips = getattr(engine.state, "round_trips", None)
    return {
        "time": dt,
        "start": t_start,
        "decisions": out,
        "ns": ns,
        "stats": stats,
        "round_trips": trips,
        "peak": peak,
    }


def progress(msg: str) -> None:
    """Progress on stderr (the full run takes minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (with the latencies of every run pooled, when timed per call)."""
    ordered = sorted(runs, key=lambda r: r["time"])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    if "ns" in mid:
        mid["ns"] = np.concatenate([r["ns"] for r in runs])
    keys = [decision_key(d) for d in runs[0]["decisions"]]
    mid["deterministic"] = all([decision_key(d) for d in r["decisions"]] == keys for r in runs[1:])
    return mid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k users, 1k stores, 200 offers: a smoke run")
    ap.add_argument("--users", type=int, help="simulated users (default 100,000; quick 10,000)")
    ap.add_argument("--stores", type=int, help="stores (default 10,000; quick 1,000)")
    ap.add_argument("--offers", type=int, help="live offers (default 2,000; quick 200)")
    ap.add_argument("--merchants", type=int, help="merchants (default 400; quick 40)")
    ap.add_argument("--pings-per-user", type=float, default=10.0, help="pings per user in the one simulated day")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, help="runs per engine row (default 1)")
    ap.add_argument("--per-ping-n", type=int, help="log prefix for per-ping MemoryState (default 200,000)")
    ap.add_argument("--per-ping-n-sqlite", type=int, help="log prefix for per-ping SQLiteState (default 100,000)")
    ap.add_argument("--per-ping-n-redis", type=int, help="log prefix for per-ping RedisState (default 50,000)")
    args = ap.parse_args()
    size = QUICK if args.quick else FULL
    cfg = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in size.items()}
    repeats = max(1, cfg["repeats"])

    # ---------------------------------------------------------------- data
    t0 = time.perf_counter()
    world = simulate.World.generate(
        seed=args.seed, n_users=cfg["users"], n_stores=cfg["stores"], n_offers=cfg["offers"],
        n_merchants=cfg["merchants"],
    )  # fmt: skip
    log = world.pings(n_days=1, pings_per_user_per_day=args.pings_per_user, seed=args.seed + 1)
    t_data = time.perf_counter() - t0
    n = len(log)
    cols = log.columns()
    policy = og.PushPolicy(quiet_hours=None)
    query_m = policy.fence_radius_m + policy.exit_buffer_m  # what the engine asks the index (enter/dwell triggers)
    n_mem = min(cfg["per_ping_n"], n)
    n_sql = min(cfg["per_ping_n_sqlite"], n)
    n_red = min(cfg["per_ping_n_redis"], n)
    rows = (
        [int(u) for u in log.user.tolist()],
        log.lat.tolist(),
        log.lon.tolist(),
        log.ts.tolist(),
        log.accuracy_m.tolist(),
    )

    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, o2o_geo {og.__version__}"
    )
    print(
        f"SIMULATED world (seed {args.seed}): {cfg['users']:,} users, {cfg['stores']:,} stores, "
        f"{cfg['merchants']:,} merchants, {cfg['offers']:,} offers; {n:,} pings in one day "
        f"({args.pings_per_user:g} per user, {np.mean(log.store >= 0):.0%} in store visits); "
        f"generated in {t_data:.1f} s"
    )
    print(
        f"policy: PushPolicy(quiet_hours=None), otherwise defaults: triggers {policy.triggers}, "
        f"fence {policy.fence_radius_m:g} m (+{policy.exit_buffer_m:g} m exit buffer), dwell {policy.dwell_s:g} s, "
        f"holdout {policy.holdout_fraction:.0%}"
    )
    print()

    # ---------------------------------------------------------------- geometry reference
    index = world.index
    index.within(log.lat[:1000], log.lon[:1000], radius_m=policy.fence_radius_m)  # warm up
    t_geo = median_time(lambda: index.within(log.lat, log.lon, radius_m=policy.fence_radius_m), max(3, repeats))
    t_geo_q = median_time(lambda: index.within(log.lat, log.lon, radius_m=query_m), max(3, repeats))
    touched = float(np.mean(index.within(log.lat, log.lon, radius_m=policy.fence_radius_m).counts > 0))
    touched_q = float(np.mean(index.within(log.lat, log.lon, radius_m=query_m).counts > 0))
    within = index.within
    r_fence = policy.fence_radius_m
    geo_ns, geo_t = [], []
    la, lo = rows[1], rows[2]
    for _ in range(repeats):
        part = np.empty(n_mem, dtype=np.int64)
        gc.collect()
        t0 = time.perf_counter()
        for i in range(n_mem):
            a = time.perf_counter_ns()
            within(la[i], lo[i], radius_m=r_fence)
            part[i] = time.perf_counter_ns() - a
        geo_t.append(time.perf_counter() - t0)
        geo_ns.append(part)
    progress(f"geometry reference: batch {n / t_geo:,.0f} pings/s, per ping {n_mem / statistics.median(geo_t):,.0f}/s")
    geo_scalar_ns = np.concatenate(geo_ns)
    geo_scalar_t = statistics.median(geo_t)

    # ---------------------------------------------------------------- engine runs
    results: dict[str, dict[str, Any]] = {}
    for kind in ("Memory", "SQLite"):
        runs = []
        for _ in range(repeats):
            runs.append(run_batch(world, policy, kind, cols))
            progress(f"batch {kind}: {n:,} pings in {runs[-1]['time']:.1f} s")
        results[f"batch {kind}"] = median_run(runs)
    kinds = [("Memory", n_mem), ("SQLite", n_sql)] + ([("Redis", n_red)] if REDIS_URL else [])
    for kind, m in kinds:
        sub = tuple(r[:m] for r in rows)
        runs = []
        for _ in range(repeats):
            runs.append(run_per_ping(world, policy, kind, sub))
            progress(f"per-ping {kind}: {m:,} pings in {runs[-1]['time']:.1f} s")
        results[f"per-ping {kind}"] = median_run(runs)

    # ---------------------------------------------------------------- report
    rate_geo = n / t_geo
    rate_geo_scalar = n_mem / geo_scalar_t
    header = (
        f"| {'run':42} | {'pings':>9} | {'pings/s':>9} | {'p50 us':>7} | {'p99 us':>7} | {'decisions':>9} "
        f"| {'target/s':>8} | {'vs target':>9} | {'geometry share':>14} | {'peak MiB':>8} |"
    )
    print(f"Replay: engine and per-ping geometry rows median of {repeats} run(s), batch geometry of {max(3, repeats)}")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.strip("|").split("|")) + "|")

    def row(name, pings, rate, p50, p99, dec, target, share, peak=None):
        p50s = "-" if p50 is None else f"{p50:,.0f}"
        p99s = "-" if p99 is None else f"{p99:,.0f}"
        decs = "-" if dec is None else f"{dec:,}"
        tgt = "-" if target is None else f"{target:,.0f}"
        vs = "-" if target is None else f"{rate / target:.2f}x"
        pk = "-" if peak is None else f"{peak:,.0f}"
        print(
            f"| {name:42} | {pings:9,} | {rate:9,.0f} | {p50s:>7} | {p99s:>7} | {decs:>9} "
            f"| {tgt:>8} | {vs:>9} | {share:>14} | {pk:>8} |"
        )

    for key, label in (
        ("batch Memory", "batch on_locations, MemoryState"),
        ("batch SQLite", "batch on_locations, SQLiteState"),
        ("per-ping Memory", "per-ping on_location, MemoryState"),
        ("per-ping SQLite", "per-ping on_location, SQLiteState"),
        ("per-ping Redis", "per-ping on_location, RedisState"),
    ):
        if key not in results:
            continue
        r = results[key]
        pings = n if key.startswith("batch") else {"Memory": n_mem, "SQLite": n_sql, "Redis": n_red}[key.split()[1]]
        rate = pings / r["time"]
        target = TARGETS[key] if key.startswith("batch") else TARGETS[key.split()[1]]
        share = f"{rate / rate_geo:.1%}"
        if key.startswith("batch"):
            p50 = p99 = None
        else:
            p50 = float(np.percentile(r["ns"], 50)) / 1e3
            p99 = float(np.percentile(r["ns"], 99)) / 1e3
        row(label, pings, rate, p50, p99, len(r["decisions"]), target, share, r["peak"])
    row(f"reference: index.within {r_fence:g} m, batch", n, rate_geo, None, None, None, None, "100%")
    gp50 = float(np.percentile(geo_scalar_ns, 50)) / 1e3
    gp99 = float(np.percentile(geo_scalar_ns, 99)) / 1e3
    row(f"reference: index.within {r_fence:g} m, per ping", n_mem, rate_geo_scalar, gp50, gp99, None, None, "100%")
    print(
        f"per-ping rows replay the first {n_mem:,} (MemoryState) and {n_sql:,} (SQLiteState) pings of the log "
        f"(time-sorted: the first {(log.ts[n_mem - 1] - log.ts[0]) / 3600:.1f} h and "
        f"{(log.ts[n_sql - 1] - log.ts[0]) / 3600:.1f} h of the day); the per-ping geometry row the first {n_mem:,}."
    )
    if "per-ping Redis" in results:
        rr = results["per-ping Redis"]
        push_pings = len({d.ts for d in rr["decisions"]})
        print(
            f"RedisState (a local redis-server, loopback): {rr['round_trips'] / n_red:.2f} round trips per ping on "
            f"average over the first {n_red:,} pings ({push_pings:,} of them pushed); an idle ping is 1 (one GET), "
            "a ping inside a fence that changes nothing 1 (one MGET of the user and caps), one that changes the "
            "fence state 2 (and one commit script), a push 2 (the first MGET also reads the limits a push there could "
            "charge), "
            "a dwell's visit 1 more (its attribution)."
        )
    else:
        print("RedisState rows skipped: no redis-server on this machine (apt-get install redis-server)")
    print(
        "geometry share: the engine's rate over the batch geometry row's rate, i.e. the share of the engine's time "
        "a batch index.within of the same pings would take; the rest is the engine beyond the spatial query."
    )
    pm = results["per-ping Memory"]
    p50m, p99m = (float(np.percentile(pm["ns"], q)) / 1e3 for q in (50, 99))
    print(
        f"per-ping MemoryState latency: p50 {p50m:.0f} us (target {P50_TARGET_US:.0f}: {P50_TARGET_US / p50m:.2f}x), "
        f"p99 {p99m:.0f} us (target {P99_TARGET_US:.0f}: {P99_TARGET_US / p99m:.2f}x); the public scalar "
        f"index.within alone costs p50 {gp50:.0f} us (it sorts and builds a Neighbors result; the engine's fences "
        "use index.pairs_within with a radius per store)."
    )
    print()

    # ---------------------------------------------------------------- what the engine did
    bm = results["batch Memory"]
    dec = bm["decisions"]
    holdout = sum(d.holdout for d in dec)
    triggers = Counter(d.trigger for d in dec)
    print("What the engine did (batch replay, MemoryState)")
    print(
        f"- pings that touched a fence: {touched:.1%} had a store within {r_fence:g} m "
        f"({touched_q:.1%} within {query_m:g} m, the engine's query radius with the exit buffer; "
        f"index.within at {query_m:g} m: {n / t_geo_q:,.0f} pings/s)"
    )
    print(
        f"- decisions: {len(dec):,} ({len(dec) / n:.2%} of pings): {len(dec) - holdout:,} pushes, "
        f"{holdout:,} holdout; triggers " + ", ".join(f"{k} {v:,}" for k, v in sorted(triggers.items()))
    )
    print("- engine.stats: " + ", ".join(f"{k} {v:,}" for k, v in sorted(bm["stats"].items())))
    same_backends = [decision_key(d) for d in dec] == [decision_key(d) for d in results["batch SQLite"]["decisions"]]
    checks = [f"MemoryState and SQLiteState batch decisions identical: {'yes' if same_backends else 'NO'}"]
    for kind, m in kinds:
        last = log.ts[m - 1]
        expect = [decision_key(d) for d in dec if d.ts <= last]
        got = [decision_key(d) for d in results[f"per-ping {kind}"]["decisions"]]
        checks.append(f"per-ping {kind} == batch on its prefix: {'yes' if got == expect else 'NO'}")
    if repeats > 1:
        same = all(results[k]["deterministic"] for k in results)
        checks.append(f"repeats identical: {'yes' if same else 'NO'}")
    print("- checks: " + "; ".join(checks))
    starts = {k: results[k]["start"] for k in results}
    print(
        "- engine start-up (first call: geofences, store time zones), not in the rates: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in starts.items())
    )
    off_path(args.quick, args.seed)


def off_path(quick: bool, seed: int) -> None:
    """Three worlds off the friendly path, each replayed in batch and per ping, beside the raw geometry."""
    rng = np.random.default_rng(seed)
    policy = og.PushPolicy(quiet_hours=None)
    n_pings = 20_000 if quick else 100_000
    print()
    print("Off the friendly path (MemoryState; each row one run)")
    header = (
        f"| {'world':44} | {'pings':>7} | {'batch/s':>8} | {'per-ping/s':>10} | {'p50 us':>6} | {'p99 us':>6} "
        f"| {'decisions':>9} | {'within/s':>9} | {'batch/within':>12} | {'peak MiB':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.strip("|").split("|")) + "|")

    # a 50-store chain, pings uniform on the globe: nearly every ping is idle
    z = rng.uniform(-1, 1, 50)
    chain = og.StoreIndex.from_records(
        [{"store_id": f"c{i}", "lat": float(np.degrees(np.arcsin(z[i]))), "lon": float(rng.uniform(-180, 180)),
          "merchant_id": "chain"} for i in range(50)]
    )  # fmt: skip
    chain_offers = og.OfferSet([og.Offer(f"o{i}", "chain", discount_rate=0.8) for i in range(3)])
    zq = rng.uniform(-1, 1, n_pings)
    globe = {"lat": np.degrees(np.arcsin(zq)), "lon": rng.uniform(-180, 180, n_pings)}
    # a dense centre: 2,000 stores within about 1.5 km, 200 merchants with 10 offers each
    r = 1500.0 * np.sqrt(rng.uniform(0, 1, 2000))
    az = rng.uniform(0, 360, 2000)
    lon0, lat0 = 121.4737, 31.2304
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    slon, slat, _ = g.fwd(np.full(2000, lon0), np.full(2000, lat0), az, r)
    dense = og.StoreIndex.from_records(
        [{"store_id": f"d{i}", "lat": float(slat[i]), "lon": float(slon[i]), "merchant_id": f"m{i % 200}"}
         for i in range(2000)]
    )  # fmt: skip
    dense_offers = og.OfferSet(
        [
            og.Offer(f"m{m}-{k}", f"m{m}", discount_rate=float(rng.uniform(0.6, 0.95)))
            for m in range(200)
            for k in range(10)
        ]
    )
    rq = 1500.0 * np.sqrt(rng.uniform(0, 1, n_pings))
    qlon, qlat, _ = g.fwd(np.full(n_pings, lon0), np.full(n_pings, lat0), rng.uniform(0, 360, n_pings), rq)
    centre = {"lat": qlat, "lon": qlon}
    # the retention stage on the dense centre: visits of three pings 200 s apart (a dwell, then an exit at
    # the next visit), offers aimed at audiences, exit and win-back triggers, 20 % opted out, 20 % members
    n_users = n_pings // 20
    n_visits = n_pings // 3
    v_user = rng.integers(0, n_users, n_visits)
    v_start = 1767225600.0 + rng.uniform(0, 40 * 86_400, n_visits)  # 40 days: some customers lapse
    v_at = rng.integers(0, n_pings, n_visits)
    r_users = np.repeat(v_user, 3)
    r_ts = (v_start[:, None] + np.array([0.0, 200.0, 400.0])).ravel()
    r_order = np.argsort(r_ts, kind="stable")
    visits = {"lat": np.repeat(qlat[v_at], 3)[r_order], "lon": np.repeat(qlon[v_at], 3)[r_order],
              "user_id": r_users[r_order].tolist(), "ts": r_ts[r_order]}  # fmt: skip
    audiences = ("all", "new", "returning", "lapsed", "members")
    aimed = og.OfferSet(
        [
            og.Offer(o.offer_id, o.merchant_id, discount_rate=o.discount_rate, audience=audiences[k % 5])
            for k, o in enumerate(dense_offers)
        ]
    )
    retention = og.PushPolicy(quiet_hours=None, triggers=("enter", "dwell", "exit", "lapsed"))
    profiles = {u: {"opt_in": False} for u in range(0, n_users, 5)}
    profiles |= {u: {"tier": "gold"} for u in range(2, n_users, 5)}
    for name, index, offers, where, pol in (
        ("50-store chain, pings uniform on the globe", chain, chain_offers, globe, policy),
        ("dense centre: 2,000 stores in 1.5 km, 10 offers each", dense, dense_offers, centre, policy),
        ("retention: dense centre, audiences, exit, lapsed", dense, aimed, visits, retention),
    ):
        users = visits["user_id"] if "user_id" in where else rng.integers(0, n_users, n_pings).tolist()
        ts = where["ts"] if "ts" in where else np.sort(1767225600.0 + rng.uniform(0, 86_400, n_pings))
        n_pings = len(users)
        cols = {"user_id": users, "lat": where["lat"], "lon": where["lon"], "ts": ts}
        t_within = median_time(
            lambda index=index, where=where: index.within(where["lat"], where["lon"], radius_m=policy.fence_radius_m), 3
        )
        engine = og.Dispatcher(index, offers, policy=pol)
        engine.on_location("warm-up", -89.9, 0.0, 0.0)
        for u, prof in profiles.items() if pol is retention else ():
            engine.set_user(u, **prof)
        gc.collect()
        reset_peak()
        t0 = time.perf_counter()
        batch = engine.on_locations(**cols)
        t_batch = time.perf_counter() - t0
        peak = peak_mib()
        by_trigger = Counter(d.trigger for d in batch)
        opted_out = sum(d.user_id in profiles and profiles[d.user_id].get("opt_in") is False for d in batch)
        engine = og.Dispatcher(index, offers, policy=pol)
        engine.on_location("warm-up", -89.9, 0.0, 0.0)
        for u, prof in profiles.items() if pol is retention else ():
            engine.set_user(u, **prof)
        la, lo, tl = where["lat"].tolist(), where["lon"].tolist(), ts.tolist()
        t_one, ns, one = time_calls(engine, (users, la, lo, tl, [None] * n_pings))
        same = [decision_key(d) for d in batch] == [decision_key(d) for d in one]
        print(
            f"| {name:44} | {n_pings:7,} | {n_pings / t_batch:8,.0f} | {n_pings / t_one:10,.0f} "
            f"| {np.percentile(ns, 50) / 1e3:6.0f} | {np.percentile(ns, 99) / 1e3:6.0f} | {len(batch):9,} "
            f"| {n_pings / t_within:9,.0f} | {t_within / t_batch:11.2f}x | {peak:8,.0f} |"
        )
        progress(f"off-path {name}: batch == per ping: {same}; triggers {dict(by_trigger)}")
        if pol is retention:
            print(f"  retention row: decisions by trigger {dict(sorted(by_trigger.items()))}; "
                  f"for opted-out users: {opted_out}; stats {dict(sorted(engine.stats.items()))}")  # fmt: skip
        if not same:
            print(f"  ! {name}: batch and per-ping decisions differ")


if __name__ == "__main__":
    with redis_server() as url:
        REDIS_URL = url
        main()
