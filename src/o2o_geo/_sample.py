"""A deterministic sample store chain on real geography (no download)."""

from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon

from ._stores import StoreSet
from ._validate import check_number

__all__ = ["LANDMARKS", "sample_stores"]

#: Real places in Shanghai (lat, lon, degrees), used as query points by the demo.
LANDMARKS: dict[str, tuple[float, float]] = {
    "People's Square": (31.2304, 121.4737),
    "The Bund": (31.2400, 121.4900),
    "Lujiazui": (31.2397, 121.4998),
    "Jing'an Temple": (31.2235, 121.4452),
    "Xujiahui": (31.1950, 121.4370),
    "Hongqiao Station": (31.1945, 121.3200),
}

_MERCHANTS = (
    # merchant_id, name, category, stores, spread_km, service area kind
    ("m-lucky", "Lucky Bean Coffee", "coffee", 24, 6.0, "radius"),
    ("m-teagarden", "Tea Garden", "tea", 16, 7.0, "radius"),
    ("m-freshmart", "Fresh Mart", "grocery", 10, 9.0, "polygon"),
)


def _hexagon(lat: float, lon: float, radius_m: float, rot: float) -> Polygon:
    ang = rot + np.arange(6) * np.pi / 3
    dlat = radius_m * np.cos(ang) / 110_574.0
    dlon = radius_m * np.sin(ang) / (111_320.0 * np.cos(np.radians(lat)))
    return Polygon(np.column_stack([lon + dlon, lat + dlat]))


def sample_stores(seed: int = 7) -> StoreSet:
    """Fifty stores of three merchants around central Shanghai, the same for the same seed.

    Coffee and tea stores get a delivery radius in metres; grocery stores get a
    hexagonal delivery-zone polygon.  Columns: ``merchant_id``, ``name``,
    ``category``, ``service_area``, ``rating``.

    Parameters
    ----------
    seed : int, default 7
        Seed of the random placement.

    Returns
    -------
    StoreSet

    Examples
    --------
    >>> import o2o_geo as og
    >>> stores = og.sample_stores()
    >>> len(stores), sorted(set(stores["category"].tolist()))
    (50, ['coffee', 'grocery', 'tea'])
    """
    rng = np.random.default_rng(check_number(seed, "seed", low=0, high=2**63 - 1, integer=True))
    centre_lat, centre_lon = LANDMARKS["People's Square"]
    records = []
    for merchant_id, name, category, count, spread_km, area_kind in _MERCHANTS:
        for j in range(count):
            r_km = spread_km * np.sqrt(rng.uniform(0.0, 1.0))
            theta = rng.uniform(0.0, 2 * np.pi)
            lat = centre_lat + r_km * 1000 * np.cos(theta) / 110_574.0
            lon = centre_lon + r_km * 1000 * np.sin(theta) / (111_320.0 * np.cos(np.radians(centre_lat)))
            radius_m = float(rng.uniform(1500.0, 3000.0))
            area = radius_m if area_kind == "radius" else _hexagon(lat, lon, radius_m, rng.uniform(0, np.pi))
            records.append(
                {
                    "store_id": f"{merchant_id[2:]}-{j + 1:02d}",
                    "lat": round(float(lat), 6),
                    "lon": round(float(lon), 6),
                    "merchant_id": merchant_id,
                    "name": f"{name} #{j + 1}",
                    "category": category,
                    "service_area": area,
                    "rating": round(float(rng.uniform(3.5, 5.0)), 1),
                }
            )
    return StoreSet.from_records(records)
