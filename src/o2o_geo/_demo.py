"""``python -m o2o_geo demo``: a tour of the store index on a sample chain."""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

import numpy as np

from ._events import Event
from ._index import StoreIndex
from ._offers import Offer, OfferSet
from ._sample import LANDMARKS, sample_stores
from ._scoring import OfferScorer

__all__ = ["run_demo"]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join([line, rule, *body])


def run_demo(seed: int = 7, out: IO[str] | None = None) -> None:
    """Print nearest, radius and service-area queries over :func:`sample_stores`."""
    import sys

    out = out or sys.stdout
    stores = sample_stores(seed)
    index = StoreIndex(stores)
    names = stores["name"]
    say = lambda s="": print(s, file=out)  # noqa: E731
    say(f"o2o_geo demo: {len(index)} stores of 3 merchants around central Shanghai (seed {seed})")
    say("Distances are WGS84 geodesic metres (exact, GeographicLib-grade).")
    say()
    lats = np.array([v[0] for v in LANDMARKS.values()])
    lons = np.array([v[1] for v in LANDMARKS.values()])
    nb = index.nearest(lats, lons, k=3)
    rows = []
    for i, place in enumerate(LANDMARKS):
        for r in range(3):
            p = int(nb.position[i, r])
            rows.append([place if r == 0 else "", r + 1, nb.store_id[i, r], names[p], f"{nb.distance_m[i, r]:,.0f}"])
    say("1. The 3 nearest stores to each landmark (one batch call)")
    say(_table(rows, ["landmark", "rank", "store_id", "name", "distance_m"]))
    say()
    lat0, lon0 = LANDMARKS["People's Square"]
    coffee = index.within(lat0, lon0, radius_m=3000, where={"category": "coffee"})
    say("2. Coffee shops within 3 km of People's Square, nearest first")
    say(
        _table(
            [
                [sid, names[p], f"{d:,.0f}"]
                for sid, p, d in zip(coffee.store_id, coffee.position, coffee.distance_m, strict=False)
            ],
            ["store_id", "name", "distance_m"],
        )
    )
    say()
    rows = []
    for place, (la, lo) in LANDMARKS.items():
        srv = index.serving(la, lo)
        cats: list[str] = srv.store("category").tolist()
        rows.append(
            [
                place,
                len(srv),
                ", ".join(f"{s} ({c})" for s, c in list(zip(srv.store_id, cats, strict=False))[:3]) or "-",
            ]
        )
    say("3. Who can deliver here? Stores whose service area (radius or zone polygon) covers each landmark")
    say(_table(rows, ["landmark", "stores", "nearest three of them"]))
    say()
    first = nb.store_id[0, 0]
    index.remove(first)
    after = index.nearest(lat0, lon0, k=1)
    say(
        f"4. Live update: store {first} closes; nearest to People's Square is now "
        f"{after.store_id[0]} at {after.distance_m[0]:,.0f} m (no rebuild)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "shanghai.o2oidx")
        index.save(path)
        again = StoreIndex.load(path).nearest(lat0, lon0, k=1)
        size_kb = os.path.getsize(path) / 1024
    say(
        f"5. Saved and loaded ({size_kb:.0f} KiB, no pickle): nearest is still {again.store_id[0]} "
        f"at {again.distance_m[0]:,.0f} m"
    )
    say()
    _offer_demo(index, say)
    say()
    _dispatch_demo(say)


def _offer_demo(index: StoreIndex, say: Any) -> None:
    """Section 6: a user's ranked offers, before and after some history, with explanations."""
    t0 = 1_767_225_600.0  # 2026-01-01 UTC
    offers = OfferSet(
        [
            Offer("latte-20", "m-lucky", category="coffee", discount_rate=0.8),
            Offer("beans-10", "m-lucky", category="coffee", discount_rate=0.9),
            Offer("milk-tea-30", "m-teagarden", category="tea", discount_rate=0.7),
            Offer("veg-100-20", "m-freshmart", category="grocery", spend_amount=100, off_amount=20),
        ]
    )
    scorer = OfferScorer(index, offers, max_per_merchant=2)
    lat, lon = LANDMARKS["People's Square"]

    def show(title: str, now: float) -> None:
        ranked = scorer.rank("ada", lat, lon, now=now, k=3)
        say(title)
        rows = []
        for o in ranked:
            why = ", ".join(f"{k} {v:+.2f}" for k, v in list(o.explain().items())[:3])
            rows.append([o.offer_id, o.store_id, f"{o.distance_m:,.0f}", f"{o.score:.3f}", why])
        say(_table(rows, ["offer", "store", "distance_m", "p(redeem)", "largest terms of the logit"]))

    show("6. Offers for user 'ada' at People's Square, cold start (no history)", t0)
    for day in range(6):
        scorer.record(Event("redeem", "ada", t0 + day * 86_400, offer_id="milk-tea-30", distance_m=900.0))
    say()
    show(
        "7. The same place a week later, after 'ada' redeemed milk tea 6 times (recency-weighted affinity)",
        t0 + 7 * 86_400,
    )


def _dispatch_demo(say: Any) -> None:
    """Section 8: a simulated day through the Dispatcher, pings in, pushes out, outcomes, funnel."""
    from . import simulate
    from ._dispatch import Dispatcher
    from ._policy import PushPolicy

    world = simulate.World.generate(seed=11, n_users=3000, n_stores=400, n_offers=60, n_merchants=20)
    log = world.pings(n_days=1, pings_per_user_per_day=12, seed=12)
    engine = Dispatcher(world.index, world.offers, policy=PushPolicy(holdout_fraction=0.2, max_per_day=2))
    decisions = engine.on_locations(**log.columns())
    outcomes = world.outcomes(decisions, seed=13)
    for e in outcomes:
        engine.record(e)
    held = sum(d.holdout for d in decisions)
    say(
        f"8. A simulated day in Shanghai: {len(log):,} pings of {world.n_users:,} users among "
        f"{len(world.stores)} stores -> {len(decisions) - held:,} pushes (+{held:,} held-out decisions "
        f"not sent), {len(outcomes):,} opens, redemptions and visits recorded"
    )
    d = next(x for x in decisions if not x.holdout)
    verb = {"enter": "enters", "dwell": "dwells at", "nearby": "passes", "exit": "leaves", "lapsed": "comes back to"}
    why = ", ".join(f"{k} {v:+.2f}" for k, v in list(d.explain().items())[:3])
    say(
        f"   e.g. {d.push_id}: user {d.user_id} {verb[d.trigger]} store {d.store_id} ({d.distance_m:,.0f} m) -> "
        f"offer {d.offer_id}, p(redeem) {d.score:.2f} ({why})"
    )
    skipped = {k: v for k, v in engine.stats.items() if k not in ("pushed", "holdout")}
    say("   decisions withheld by the policy: " + ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items())))
    (row,) = engine.report(by="all", as_frame=False)
    say()
    say("9. The funnel (push -> open -> redeem), visits beside it, and the uplift on redemptions over the holdout")
    say("   Visits need no open: recorded ones and those inferred from dwell pings; held-out users walk in too.")
    say(
        _table(
            [
                [
                    f"{row['pushed']:,}",
                    f"{row['opened']:,} ({row['open_rate']:.0%})",
                    f"{row['redeemed']:,} ({row['redeem_rate']:.1%})",
                    f"{row['visited']:,} + {row['visited_inferred']:,} inferred",
                    f"{row['revenue']:,.0f}",
                    f"{row['conversion_treated']:.1%} vs {row['conversion_holdout']:.1%}",
                    f"{row['uplift']:+.1%} [{row['uplift_low']:+.1%}, {row['uplift_high']:+.1%}]",
                ]
            ],
            ["pushed", "opened", "redeemed", "visited", "revenue", "redeemed: treated vs holdout", "uplift (95% CI)"],
        )
    )
