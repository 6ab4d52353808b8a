"""Store locator: the nearest open store that delivers to the user, and the nearest open store to walk to.

python examples/store_locator.py
"""

from datetime import datetime, timedelta, timezone

import numpy as np

import o2o_geo as og

stores = og.sample_stores(seed=7)  # 50 stores of 3 merchants in central Shanghai, with service areas
# Opening hours as numbers, so a `where=` callable can filter on them (local hours, Asia/Shanghai).
rng = np.random.default_rng(1)
opens_h = rng.choice([7, 8, 10], len(stores)).astype(float)
closes_h = rng.choice([20, 22, 24], len(stores)).astype(float)
cols = {c: stores[c] for c in stores.columns if c not in ("store_id", "lat", "lon")}
index = og.StoreIndex(
    og.StoreSet.from_columns(stores.store_id, stores.lat, stores.lon, **cols, opens_h=opens_h, closes_h=closes_h)
)

user_lat, user_lon = 31.2304, 121.4737  # People's Square
now = datetime(2026, 1, 1, 21, 30, tzinfo=timezone(timedelta(hours=8)))
hour = now.hour + now.minute / 60


def open_now(table):
    """A boolean mask over index.stores: open at `hour` (local time)."""
    return (table["opens_h"] <= hour) & (hour < table["closes_h"])


print(f"User at People's Square, {now:%H:%M} local time")
walk = index.nearest(user_lat, user_lon, k=3, where=open_now)
# .store(column) reads store attributes safely: None/NaN where fewer than k stores were found
# (index.stores[column][walk.position] would read the last store there: position is -1)
rows = zip(walk.store_id, walk.store("name"), walk.store("opens_h"), walk.store("closes_h"), walk.distance_m, strict=True)
for sid, name, opens, closes, d in rows:
    if sid is None:
        continue
    print(f"  open, to walk to: {sid:12} {name:28} {d:7,.0f} m  (open {opens:.0f}-{closes:.0f})")

who = index.serving(user_lat, user_lon)  # every store whose service area covers the user
is_open = open_now({c: who.store(c) for c in ("opens_h", "closes_h")})
deliver = [(sid, d) for sid, d, ok in zip(who.store_id, who.distance_m, is_open, strict=True) if ok]
print(
    f"  {len(who)} stores deliver here, {len(deliver)} of them open now; nearest open: "
    f"{deliver[0][0] if deliver else 'none'}" + (f" at {deliver[0][1]:,.0f} m" if deliver else "")
)

# The same question for a thousand users at once: one batch call, no Python loop.
lat = user_lat + rng.normal(0, 0.02, 1000)
lon = user_lon + rng.normal(0, 0.02, 1000)
nb = index.nearest(lat, lon, k=1, max_distance_m=3000, where=open_now)
found = nb.position[:, 0] >= 0
print(
    f"  1,000 users: {found.sum()} have an open store within 3 km; median distance "
    f"{np.median(nb.distance_m[found, 0]):,.0f} m"
)
