"""Render the pictures of o2o_geo.viz for the docs: a static map, the funnel chart, a folium map in Chromium.

A simulated day (o2o_geo.simulate: SIMULATED users, stores and outcomes) is
replayed through the dispatcher; then, into ``benchmarks/figures/``:

* ``store_map.png``: ``viz.plot_map`` of one district: stores coloured by
  merchant, service areas, 100 m geofences, pings and pushes (matplotlib, Agg);
* ``funnel.png``: ``viz.plot_funnel`` of the report by merchant;
* ``folium_map_chromium.png``: ``viz.folium_map`` of the same district, saved
  as HTML with Leaflet inlined (no network) and photographed by headless
  Chromium (``viz.html_to_png``); it prints how many markers the page's DOM
  holds next to how many stores were drawn.

Run:  python benchmarks/render_figures.py     (needs the viz extra, chromium and a local Leaflet build,
                                              e.g. Debian's chromium and libjs-leaflet packages)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import o2o_geo as og  # noqa: E402
from o2o_geo import simulate, viz  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    world = simulate.World.generate(seed=21, n_users=2000, n_stores=300, n_offers=40, n_merchants=12)
    pings = world.pings(n_days=1, pings_per_user_per_day=12, seed=22)
    policy = og.PushPolicy(max_per_day=2, quiet_hours=None, holdout_fraction=0.2)
    with og.Dispatcher(world.index, world.offers, policy=policy) as engine:
        decisions = engine.on_locations(**pings.columns())
        for event in world.outcomes(decisions, seed=23):
            engine.record(event)
        report = engine.report(by="merchant")

    # one district: the stores within 3 km of the store with the most pushes
    stores = world.index.stores
    busiest = max({d.store_id for d in decisions}, key=[d.store_id for d in decisions].count)
    i = int(stores.position_of([busiest])[0])
    near = world.index.within(float(stores.lat[i]), float(stores.lon[i]), radius_m=3000)
    district = og.StoreSet.from_records(
        [{c: stores[c][p] for c in stores.columns if c != "service_area"} | {"service_area": 400.0}
         for p in near.position.tolist()]
    )  # fmt: skip
    shown = [d for d in decisions if d.store_id in district]
    cols = pings.columns()
    keep = og.geodesic_distance_m(float(stores.lat[i]), float(stores.lon[i]), cols["lat"], cols["lon"]) <= 3000
    ping_latlon = (np.asarray(cols["lat"])[keep], np.asarray(cols["lon"])[keep])

    fig = viz.plot_map(district, decisions=shown, pings=ping_latlon, fence_radius_m=100,
                       title=f"{len(district)} stores within 3 km of {busiest} (simulated day)")  # fmt: skip
    fig.savefig(os.path.join(OUT, "store_map.png"), dpi=110)
    fig = viz.plot_funnel(report, title="simulated day, by merchant")
    fig.savefig(os.path.join(OUT, "funnel.png"), dpi=110)

    leaflet = viz.find_leaflet()
    chromium = viz.find_chromium()
    if leaflet is None or chromium is None:
        print("no local Leaflet build or no Chromium: skipped the folium screenshot", file=sys.stderr)
        return 1
    m = viz.folium_map(district, decisions=shown, fence_radius_m=100, tiles=None, leaflet_dir=leaflet)
    with tempfile.TemporaryDirectory() as tmp:
        page = os.path.join(tmp, "map.html")
        m.save(page)
        viz.html_to_png(page, os.path.join(OUT, "folium_map_chromium.png"), width_px=1200, height_px=800)
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
             "file://" + page],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    markers = len(re.findall(r'<(?:img|div)[^>]+class="leaflet-marker-icon', dom))
    print(f"decisions {len(decisions):,} ({sum(d.holdout for d in decisions):,} held out); district: "
          f"{len(district)} stores, {len(shown)} decisions; folium DOM markers in Chromium: {markers} "
          f"(stores drawn: {len(district)})")  # fmt: skip
    print(f"wrote {', '.join(sorted(f for f in os.listdir(OUT) if f.endswith('.png')))} in benchmarks/figures/")
    return 0 if markers == len(district) else 1


if __name__ == "__main__":
    raise SystemExit(main())
