"""Offer scoring on REAL behaviour: next-venue ranking on Foursquare check-ins in New York (TSMC2014).

Setup: every venue is a store and its own merchant, with its Foursquare
category; its position is the median of its check-ins.  Every venue has one
offer (discount_rate 0.9).  Every check-in is a ``visit`` event naming only
the store, so the scorer resolves merchant and category itself.

Protocol: temporal split at the 80 % time quantile.  Each test check-in is
ranked from the user's previous check-in (the ping: that venue's position, at
that time) among the offers within 5 km; the histories grow as the test period
is replayed.  Acc@k: the visited venue is among the top k; MRR@10: mean of
1 / rank (0 beyond 10).  Side by side in one run:

- nearest-first;
- most-popular (visits by all users so far), then nearest;
- the user's most-visited venues (so far), then nearest;
- OfferScorer with default weights;
- OfferScorer after ``fit(target="visit")`` on the training period.

The data is read from ``--data`` (default: the shared copy beside the
repository); it is not part of the project.

Run:  python benchmarks/bench_realdata.py --data PATH [--sample 1.0]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

import o2o_geo as og

RADIUS_M = 5000.0


def load(path: str):
    """Check-ins sorted by time, and the venues (median position, most frequent category)."""
    import pandas as pd

    df = pd.read_csv(path)
    df["ts"] = (pd.to_datetime(df["utc_time"]) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    df = df.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    g = df.groupby("venue_id")
    venues = pd.DataFrame(
        {
            "lat": g["lat"].median(),
            "lon": g["lon"].median(),
            "category": g["category"].agg(lambda s: s.mode().iloc[0]),
        }
    )
    return df, venues


def metrics(ranks: list[int]) -> dict[str, float]:
    """Acc@1/5/10 and MRR@10 from 0-based ranks (-1: not ranked at all)."""
    r = np.asarray(ranks)
    n = max(r.shape[0], 1)
    hit = r >= 0
    return {
        "Acc@1": float(np.sum(hit & (r < 1)) / n),
        "Acc@5": float(np.sum(hit & (r < 5)) / n),
        "Acc@10": float(np.sum(hit & (r < 10)) / n),
        "MRR@10": float(np.sum(1.0 / (r[hit & (r < 10)] + 1.0)) / n),
    }


def rank_of(target: int, key: np.ndarray, dist: np.ndarray, pos: np.ndarray) -> int:
    """0-based rank of store ``target`` when candidates are sorted by ``key`` (desc), then distance (asc)."""
    at = np.flatnonzero(pos == target)
    if not at.size:
        return -1
    j = at[0]
    better = (key > key[j]) | ((key == key[j]) & (dist < dist[j]))
    return int(np.count_nonzero(better))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="path of nyc_checkins.csv.gz (not part of the project)")
    ap.add_argument("--sample", type=float, default=1.0, help="share of test check-ins the scorers rank (all: 1.0)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not os.path.exists(args.data):
        sys.exit(
            f"bench_realdata: no check-in file at {args.data!r}; pass --data PATH to the Foursquare NYC "
            "check-ins (nyc_checkins.csv.gz, TSMC2014)"
        )
    t0 = time.perf_counter()
    df, venues = load(args.data)
    ids = venues.index.to_numpy()
    stores = og.StoreSet.from_columns(
        ids,
        venues["lat"].to_numpy(),
        venues["lon"].to_numpy(),
        merchant_id=ids,
        category=venues["category"].to_numpy(dtype=object),
        tz=np.full(ids.shape[0], "America/New_York", dtype=object),
    )
    index = og.StoreIndex(stores)
    offers = og.OfferSet(
        [og.Offer(int(v), int(v), category=c, discount_rate=0.9) for v, c in zip(ids, venues["category"], strict=True)]
    )
    pos_of = {int(v): i for i, v in enumerate(ids.tolist())}
    users = df["user_id"].to_numpy()
    venue = np.array([pos_of[int(v)] for v in df["venue_id"].tolist()])
    ts = df["ts"].to_numpy()
    split = float(np.quantile(ts, 0.8))
    train = ts < split
    events = [
        og.Event("visit", int(u), float(t), store_id=int(ids[p]))
        for u, t, p in zip(users.tolist(), ts.tolist(), venue.tolist(), strict=True)
    ]
    load_s = time.perf_counter() - t0
    print(
        f"# {len(df):,} check-ins, {df['user_id'].nunique():,} users, {len(ids):,} venues; "
        f"{int(train.sum()):,} before the split, {int((~train).sum()):,} after; "
        f"loaded in {load_s:.1f} s; {os.cpu_count()} cores",
        flush=True,
    )

    train_events = [e for e, tr in zip(events, train.tolist(), strict=True) if tr]
    history = og.UserHistory.from_events(train_events)
    default = og.OfferScorer(index, offers, history=history)
    fitted = og.OfferScorer(index, offers, history=history)
    a = time.perf_counter()
    fitted.fit(train_events, target="visit")
    fit_s = time.perf_counter() - a
    print(f"# fit(target='visit'): {fitted.n_fit_examples_:,} visits in {fit_s:.1f} s", flush=True)

    # baselines' counters as of the split
    n_pos = len(ids)
    popular = np.bincount(venue[train], minlength=n_pos).astype(np.float64)
    mine: dict[int, dict[int, int]] = {}
    for u, p in zip(users[train].tolist(), venue[train].tolist(), strict=True):
        d = mine.setdefault(u, {})
        d[p] = d.get(p, 0) + 1
    last: dict[int, int] = {}
    for i in np.flatnonzero(train).tolist():
        last[int(users[i])] = i

    rng = np.random.default_rng(args.seed)
    ranks: dict[str, list[int]] = {k: [] for k in ("nearest", "popular", "mine", "default", "fitted")}
    rank_ms: list[float] = []
    dense_ms: list[float] = []  # pings with more than 10,000 offers within 5 km
    in_range: list[int] = []
    n_eval = 0
    s_lat, s_lon = index.stores.lat, index.stores.lon
    a = time.perf_counter()
    for i in np.flatnonzero(~train).tolist():
        u, target = int(users[i]), int(venue[i])
        prev = last.get(u)
        if prev is not None:
            p0, t_ping = int(venue[prev]), float(ts[prev])
            lat0, lon0 = float(s_lat[p0]), float(s_lon[p0])
            if rng.random() < args.sample:
                n_eval += 1
                pairs = index.pairs_within(lat0, lon0, RADIUS_M)
                pos, dist = pairs.position, pairs.distance_m
                in_range.append(pos.shape[0])
                ranks["nearest"].append(rank_of(target, np.zeros(pos.shape[0]), dist, pos))
                ranks["popular"].append(rank_of(target, popular[pos], dist, pos))
                m = mine.get(u, {})
                ranks["mine"].append(rank_of(target, np.array([m.get(p, 0) for p in pos.tolist()], float), dist, pos))
                for name, sc in (("default", default), ("fitted", fitted)):
                    b = time.perf_counter()
                    top = sc.rank(u, lat0, lon0, now=t_ping, k=10)
                    if name == "fitted":
                        rank_ms.append((time.perf_counter() - b) * 1e3)
                        if pos.shape[0] > 10_000:
                            dense_ms.append(rank_ms[-1])
                    got = [j for j, s in enumerate(top) if s.store_id == ids[target]]
                    ranks[name].append(got[0] if got else -1)
        # the test check-in becomes history
        history.add(events[i])
        popular[target] += 1
        mm = mine.setdefault(u, {})
        mm[target] = mm.get(target, 0) + 1
        last[u] = i
    eval_s = time.perf_counter() - a
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    labels = {
        "nearest": "nearest-first",
        "popular": "most-popular, then nearest",
        "mine": "user's most-visited, then nearest",
        "default": "OfferScorer, default weights",
        "fitted": "OfferScorer, fit(target='visit')",
    }
    res = {k: metrics(v) for k, v in ranks.items()}
    print(
        f"\n{n_eval:,} test check-ins ranked (sample {args.sample:g}); "
        f"{statistics.median(in_range):,.0f} offers within 5 km of the median ping (max {max(in_range):,}); "
        f"replay {eval_s:.0f} s; peak RSS {peak_mib:,.0f} MiB\n"
    )
    print("| method | Acc@1 | Acc@5 | Acc@10 | MRR@10 |")
    print("|---|---|---|---|---|")
    for k, lab in labels.items():
        r = res[k]
        print(f"| {lab} | {r['Acc@1']:.3f} | {r['Acc@5']:.3f} | {r['Acc@10']:.3f} | {r['MRR@10']:.3f} |")
    base = res["mine"]
    fit_r = res["fitted"]
    print(
        f"\nfitted vs user's most-visited: Acc@10 {fit_r['Acc@10'] - base['Acc@10']:+.4f} (target +0.05), "
        f"MRR@10 {fit_r['MRR@10'] - base['MRR@10']:+.4f} (target +0.03)"
    )
    q = np.percentile(rank_ms, [50, 90, 99])
    print(f"rank() on the fitted scorer: p50 {q[0]:.2f} ms, p90 {q[1]:.2f} ms, p99 {q[2]:.2f} ms (target p50 <= 5 ms)")
    if dense_ms:
        print(
            f"rank() where more than 10,000 offers are within 5 km ({len(dense_ms):,} pings): "
            f"p50 {np.median(dense_ms):.2f} ms"
        )
    print(f"fit(target='visit'): {fit_s:.1f} s for {fitted.n_fit_examples_:,} visits")
    w = dict(zip(og.OfferScorer.FEATURES, fitted.weights_.round(3).tolist(), strict=True))
    print("fitted weights:", ", ".join(f"{k} {v:+.3f}" for k, v in w.items()))


if __name__ == "__main__":
    main()
