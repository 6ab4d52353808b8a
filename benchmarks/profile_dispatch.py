"""Profile the dispatcher on the quick world of ``bench_dispatch.py --quick`` (MemoryState).

Run:  python -m pyinstrument -r text benchmarks/profile_dispatch.py batch   (on_locations of the whole log)
      python -m pyinstrument -r text benchmarks/profile_dispatch.py ping    (on_location on its first 20,000 pings)

``--src DIR`` imports o2o_geo from another checkout's ``src`` (to profile an earlier commit the same way).
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("batch", "ping"))
    ap.add_argument("--src", help="a checkout's src directory to import o2o_geo from")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    import o2o_geo as og
    from o2o_geo import simulate

    world = simulate.World.generate(seed=7, n_users=10_000, n_stores=1_000, n_offers=200, n_merchants=40)
    log = world.pings(n_days=1, pings_per_user_per_day=10.0, seed=8)
    engine = og.Dispatcher(world.index, world.offers, policy=og.PushPolicy(quiet_hours=None))
    engine.on_location("warm-up", 0.0, 0.0, 0.0)  # far from every store: builds the fences and store zones
    if args.mode == "batch":
        engine.on_locations(**log.columns())
        return
    users = [int(u) for u in log.user.tolist()]
    lat, lon, ts = log.lat.tolist(), log.lon.tolist(), log.ts.tolist()
    for i in range(20_000):
        engine.on_location(users[i], lat[i], lon[i], ts[i])


if __name__ == "__main__":
    main()
