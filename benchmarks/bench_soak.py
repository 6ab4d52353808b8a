"""Soak benchmark: one Dispatcher for 30 simulated days; does its state stay bounded?

World: o2o_geo.simulate (SIMULATED users, stores and offers around Shanghai),
20,000 users, 1,000 stores of 50 merchants, 400 offers run as week-long
campaigns (each offer valid 7 days, starts staggered over the month, so
about 80 run on any day).  Every day: 100,000 pings (5 per user), each with
an ``event_id``; a tenth of the day's pings arrive twice (redelivered, with
the same id); every treated push gets an ``open`` (30 %) and a ``redeem``
(6 %) event with ids.  Policy: ``PushPolicy(quiet_hours=None)``, the rest
at defaults (7-day attribution window).

Rows, each backend in a process of its own (so one's memory is not the
other's), side by side in one run:

* ``Memory`` / ``SQLite`` with retention: the default lifetimes
  (``idempotency_ttl_s`` 7 days, ``user_ttl_s`` 30 days) and
  ``retention_days=7``;
* ``Memory keep`` / ``SQLite keep``, the peer: the same engine keeping
  every event id, fence state and ledger record (lifetimes of 10**12 s, no
  ``retention_days``).  Counters follow their windows in both (they are not
  configurable); before retention they never expired on these backends.

Each day: the day's pings through ``on_locations`` (the batch path) except
its last 2,000, which go one ``on_location`` call at a time, timed call by
call (p50, p99, max); then RSS (``VmRSS`` after ``gc.collect()``; Memory) or
the file's size with its WAL (SQLite), ``state.sizes()``, and the scorer's
history (the learned per-user profiles: its pickled size, "history MiB"),
which lives in the same process but is not dispatch state.  Targets
(issue: bounded state): once the windows have filled, day 29 within 10 %
of day 10 in size and in per-ping p99.

Run:  python benchmarks/bench_soak.py              (about 30 minutes on 2 cores)
      python benchmarks/bench_soak.py --quick      (12 days of 20,000 pings: a smoke run, a minute or two)
      python benchmarks/bench_soak.py --rows "Memory,SQLite"   (some rows only)
      python benchmarks/bench_soak.py --pauses     (1,000,000 users' state expiring in one hour: the longest
                                                    transaction, against one sweep; about a minute)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

import numpy as np
from bench_dispatch import status_mib  # the same folder: run as a script, benchmarks/ is on sys.path

import o2o_geo as og
from o2o_geo import simulate

DAY = 86_400.0
ROWS = ("Memory", "Memory keep", "SQLite", "SQLite keep")
KEEP = {"idempotency_ttl_s": 1e12, "user_ttl_s": 1e12, "retention_days": None}
RETAIN = {"retention_days": 7}
SAMPLE = 10_000  # per-ping calls timed each day (a p99 of 2,000 calls is their 20th slowest: too noisy a figure)
FIRST, LAST = 10, 29  # the days compared (0-based), or the quick run's equivalents


def rss_mib() -> float:
    """The process's resident set now, MiB (NaN where /proc is missing)."""
    return status_mib("VmRSS")


def compared_days(days: int) -> tuple[int, int]:
    """The two days the targets compare: 10 and 29 of a full run, or a shorter run's equivalents."""
    return (FIRST, LAST) if days >= 30 else (max(2, days // 3), days - 1)


def shown(day: int, first: int, last: int) -> bool:
    """Whether the table shows the day (or the ratios read it)."""
    return day in (0, 3, 5, (first + last) // 2) or day % 5 == 0 or abs(day - first) <= 1 or day >= last - 2


def deep_mib(root: object) -> float:
    """Bytes of every object reachable from ``root`` (``sys.getsizeof`` each, once), MiB: a MemoryState's own size.

    Classes, modules and functions are not followed (they are not state).
    """
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total / 2**20


def make_world(n_users: int, seed: int = 11) -> tuple[simulate.World, og.OfferSet]:
    world = simulate.World.generate(seed=seed, n_users=n_users, n_stores=1_000, n_offers=400, n_merchants=50)
    start = world.start_ts
    begins = [start + (i % 37 - 7) * DAY + (i % 10) * 3600.0 for i in range(len(world.offers))]  # days -7 to 29
    pairs = zip(world.offers, begins, strict=True)
    offers = og.OfferSet([dataclasses.replace(o, valid_from=b, valid_until=b + 7 * DAY) for o, b in pairs])
    return world, offers


def one_row(row: str, days: int, per_day: int, seed: int) -> None:
    """Run one row in this process; print one JSON line per day."""
    n_users = per_day // 5
    world, offers = make_world(n_users)
    lifetimes = KEEP if row.endswith("keep") else RETAIN
    tmp = tempfile.mkdtemp(prefix="bench_soak_")
    path = os.path.join(tmp, "state.db")
    state = og.MemoryState(**lifetimes) if row.startswith("Memory") else og.SQLiteState(path, **lifetimes)
    engine = og.Dispatcher(world.index, offers, policy=og.PushPolicy(quiet_hours=None), state=state)
    engine.on_location("warm-up", 0.0, 0.0, world.start_ts - DAY)  # builds the fences and the stores' zones
    rng = np.random.default_rng(seed)

    def outcomes(decisions: list[og.PushDecision]) -> None:
        for d in decisions:
            if d.holdout:
                continue
            u = rng.random()
            if u < 0.3:
                engine.record(og.Event("open", d.user_id, d.ts + 60, push_id=d.push_id, event_id=f"o-{d.push_id}"))
            if u < 0.06:
                engine.record(
                    og.Event(
                        "redeem", d.user_id, d.ts + 1800, push_id=d.push_id, amount=25.0, event_id=f"r-{d.push_id}"
                    )
                )

    for day in range(days):
        log = world.pings(n_days=1.0, pings_per_user_per_day=5.0, seed=seed * 1000 + day)
        ts = log.ts + day * DAY
        ids = np.array([f"{day}-{i}" for i in range(len(log))], dtype=object)
        n_batch = len(log) - SAMPLE
        again = rng.random(n_batch) < 0.1  # redelivered copies, sent right after the originals
        order = np.concatenate([np.arange(n_batch), np.flatnonzero(again)])
        order = order[np.argsort(ts[order], kind="stable")]
        t0 = time.perf_counter()
        batch = engine.on_locations(
            user_id=log.user[order], lat=log.lat[order], lon=log.lon[order], ts=ts[order],
            accuracy_m=log.accuracy_m[order], event_id=ids[order],
        )  # fmt: skip
        t_batch = time.perf_counter() - t0
        outcomes(batch)
        ns = np.empty(SAMPLE, dtype=np.int64)
        sample: list[og.PushDecision] = []
        clock = time.perf_counter_ns
        for j, i in enumerate(range(n_batch, len(log))):
            a = clock()
            sample += engine.on_location(int(log.user[i]), float(log.lat[i]), float(log.lon[i]), float(ts[i]),
                                         accuracy_m=float(log.accuracy_m[i]), event_id=ids[i])  # fmt: skip
            ns[j] = clock() - a
        outcomes(sample)
        gc.collect()
        state_mib = None
        if row.startswith("Memory"):
            size = rss_mib()
            if shown(day, *compared_days(days)):
                state_mib = deep_mib(state)
        else:
            size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20
        us = ns / 1e3
        print(
            json.dumps(
                {
                    "row": row,
                    "day": day,
                    "pings": int(len(order) + SAMPLE),
                    "batch_per_s": len(order) / t_batch,
                    "p50_us": float(np.percentile(us, 50)),
                    "p99_us": float(np.percentile(us, 99)),
                    "max_us": float(us.max()),
                    "size_mib": size,
                    "state_mib": state_mib,
                    "sizes": state.sizes(),
                    "history_mib": len(pickle.dumps(engine.scorer.history)) / 2**20,
                    "pushes": sum(not d.holdout for d in batch + sample),
                }
            ),
            flush=True,
        )
    engine.close()


def pauses(n_users: int, n_after: int = 20_000) -> str:
    """Both rows of :func:`pause_rows`: Python's garbage collector as it is, and after ``gc.freeze()``."""
    gc.collect()
    first = pause_rows(n_users, n_after, freeze=False)
    gc.collect()
    second = pause_rows(n_users, n_after, freeze=True)
    return "\n".join(
        [
            f"| {n_users:,} users' fence state expiring in one hour | p50 us | p99 us | max us | users left |",
            "|---|---|---|---|---|",
            *first[:2],
            *second[:1],
            "",
            f"max pause, peer / MemoryState: {first[2]:.0f}x (GC as is), {second[2]:.0f}x (after gc.freeze()); "
            f"target no pause over 10 ms: {first[3]} / {second[3]}",
        ]
    )


def pause_rows(n_users: int, n_after: int, *, freeze: bool) -> tuple[str, str, float, str]:
    """The longest transactions while a million users' fence states expire in the same hour, and the peer.

    Every user is written in one hour of event time (``user_ttl_s`` one
    day); then ``n_after`` transactions two days later each write a new user,
    timed one by one: MemoryState deletes the expired ones 256 per
    transaction.  The peer is what a retention without the wheel would do:
    one sweep of the whole dict for expired users (timed once).
    """
    state = og.MemoryState(user_ttl_s=DAY)
    t0 = 1_767_225_600.0
    with state.group():
        for i in range(n_users):
            with state.transaction() as tx:
                tx.advance_clock(t0 + i * (3000.0 / n_users))
                tx.put_user(i, {"in": [], "last_ts": t0})
    if freeze:  # a long-running service's usual step: move the loaded objects out of the collector's reach
        gc.freeze()
    ns = np.empty(n_after, dtype=np.int64)
    clock = time.perf_counter_ns
    for j in range(n_after):
        a = clock()
        with state.transaction() as tx:
            tx.advance_clock(t0 + 2 * DAY + j)
            tx.put_user(("late", j), {"in": [], "last_ts": t0 + 2 * DAY})
        ns[j] = clock() - a
    left = state.sizes()["users"] - n_after
    expires = {i: t0 + DAY for i in range(n_users)}  # the peer: one sweep over every user's expiry
    users = {i: {"in": []} for i in range(n_users)}
    a = clock()
    for k in [k for k, e in expires.items() if e <= t0 + 2 * DAY]:
        del users[k]
    sweep_ms = (clock() - a) / 1e6
    us = ns / 1e3
    if freeze:
        gc.unfreeze()
    how = "after gc.freeze()" if freeze else "GC as is"
    row = (f"| MemoryState, 256 per transaction, {how} | {np.percentile(us, 50):.1f} | "
           f"{np.percentile(us, 99):.1f} | {us.max():,.0f} | {left:,} |")  # fmt: skip
    peer = f"| peer: one sweep of every user | - | - | {sweep_ms * 1e3:,.0f} (one pause) | 0 |"
    return row, peer, sweep_ms * 1e3 / us.max(), "met" if us.max() <= 10_000 else "missed"


def table(results: dict[str, list[dict[str, Any]]], first: int, last: int) -> str:
    lines = [
        "| row | day | pings/s (batch) | p50 us | p99 us | max us | size MiB | state MiB | history MiB | users "
        "| counters | event ids | pushes kept | events kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row, days in results.items():
        for r in days:
            if r["day"] not in (0, 3, 5, first, (first + last) // 2, last) and r["day"] % 5:
                continue
            s = r["sizes"]
            own = "-" if r.get("state_mib") is None else f"{r['state_mib']:.1f}"
            lines.append(
                f"| {row} | {r['day']} | {r['batch_per_s']:,.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
                f"{r['max_us']:,.0f} | {r['size_mib']:.1f} | {own} | {r['history_mib']:.1f} | {s['users']:,} | "
                f"{s['counters']:,} | {s['idempotency']:,} | {s['pushes']:,} | {s['events']:,} |"
            )
    lines += ["", f"| row | state size day {last} / day {first} | process RSS day {last} / day {first} | p99 day "
              f"{last} / day {first} (median of days {first - 1}-{first + 1} and {last - 2}-{last}) | target |",
              "|---|---|---|---|---|"]  # fmt: skip
    for row, days in results.items():
        by_day = {r["day"]: r for r in days}
        if first not in by_day or last not in by_day:
            continue
        memory = row.startswith("Memory")
        key = "state_mib" if memory else "size_mib"  # a MemoryState's own objects; a SQLite file with its WAL
        size = by_day[last][key] / by_day[first][key]
        rss = f"{by_day[last]['size_mib'] / by_day[first]['size_mib']:.3f}" if memory else "-"
        p99 = statistics.median(by_day[d]["p99_us"] for d in range(last - 2, last + 1)) / statistics.median(
            by_day[d]["p99_us"] for d in range(first - 1, first + 2)
        )
        ok = "met" if size <= 1.10 and p99 <= 1.10 else "missed"
        verdict = "peer" if "keep" in row else ok
        lines.append(f"| {row} | {size:.3f} | {rss} | {p99:.3f} | <= 1.10 state size and p99: {verdict} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="12 days of 20,000 pings")
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--pauses", action="store_true", help="only the expiry-pause rows (1,000,000 users)")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    ap.add_argument("--per-day", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    days = args.days or (12 if args.quick else 30)
    per_day = args.per_day or (20_000 if args.quick else 100_000)
    if args.row:
        one_row(args.row, days, per_day, args.seed)
        return
    if args.pauses:
        print(pauses(100_000 if args.quick else 1_000_000))
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        ap.error(f"unknown rows {bad}; rows are {', '.join(ROWS)}")
    first, last = compared_days(days)
    print(f"soak: {days} days x {per_day:,} pings/day; o2o_geo {og.__version__}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}", flush=True)  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cmd = [sys.executable, __file__, "--row", row, "--days", str(days), "--per-day", str(per_day),
               "--seed", str(args.seed)]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"row {row} failed:\n{out.stderr}")
        results[row] = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        print(f"{row}: {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(table(results, first, last))


if __name__ == "__main__":
    main()
