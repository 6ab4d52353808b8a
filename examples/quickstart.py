"""The README's quick start, runnable: python examples/quickstart.py"""

import os
import tempfile

import numpy as np

import o2o_geo as og

index = og.StoreIndex.from_records(
    [
        {"store_id": "bund-1", "lat": 31.2400, "lon": 121.4900, "category": "coffee", "service_area": 2000.0},
        {"store_id": "plaza-2", "lat": 31.2330, "lon": 121.4750, "category": "coffee"},
        {"store_id": "tea-7", "lat": 31.2320, "lon": 121.4760, "category": "tea"},
    ]
)
nb = index.nearest(31.2310, 121.4740, k=2)  # one user: arrays of shape (k,)
print(nb.store_id, nb.distance_m.round(1))
nb = index.nearest(np.array([31.23, 31.24]), np.array([121.47, 121.49]), k=3, where={"category": "coffee"})
print(nb.store_id)  # shape (2, 3); only two coffee shops, so the third column is None
near = index.within(31.2310, 121.4740, radius_m=1500)
print("within 1.5 km:", near.store_id, near.distance_m.round(1))
who = index.serving(31.2390, 121.4880)
print("can deliver:", who.store_id)
index.add([{"store_id": "new-1", "lat": 31.2311, "lon": 121.4741}])
index.remove(["plaza-2"])
print("after updates:", index.nearest(31.2310, 121.4740, k=2).store_id)
path = os.path.join(tempfile.mkdtemp(), "stores.o2oidx")
index.save(path)
print("reloaded:", og.StoreIndex.load(path).nearest(31.2310, 121.4740, k=2).store_id)
