"""The synthetic world's constants and small helpers (seeds, volumes, scattering points)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._geodesy import geodesic_forward
from .._types import FloatArray
from .._validate import check_number
from ..errors import InvalidParameterError

__all__ = ["CATEGORIES", "CITIES", "MAX_SIZE", "check_volume", "scatter", "seeded_rng"]

#: Real city centres (lat, lon degrees) the synthetic stores are placed around.
CITIES: dict[str, tuple[float, float]] = {
    "shanghai": (31.2304, 121.4737),
    "beijing": (39.9042, 116.4074),
    "shenzhen": (22.5431, 114.0579),
    "chengdu": (30.5728, 104.0668),
    "singapore": (1.2903, 103.8520),
    "london": (51.5072, -0.1276),
    "new_york": (40.7128, -74.0060),
    "sao_paulo": (-23.5505, -46.6333),
    "sydney": (-33.8688, 151.2093),
    "suva": (-18.1248, 178.4501),
}
#: Offer categories of the synthetic world.
CATEGORIES = ("coffee", "tea", "bakery", "grocery", "fast_food", "cinema", "beauty", "pharmacy")


#: The largest size (users, stores, offers, merchants) a simulated world takes: beyond it, memory runs out.
MAX_SIZE = 10_000_000


def seeded_rng(seed: Any) -> np.random.Generator:
    """The generator of a seed: an int >= 0 (InvalidParameterError otherwise)."""
    return np.random.default_rng(check_number(seed, "seed", low=0, high=2**63 - 1, integer=True))


def check_volume(n_days: Any, per_user_per_day: Any, n_users: int, name: str) -> None:
    """Days and a daily rate that give at most :data:`MAX_SIZE` x 10 rows (InvalidParameterError otherwise)."""
    check_number(n_days, "n_days", low=0.0, high=36_500.0)
    check_number(per_user_per_day, name, low=0.0, high=1e6)
    if n_days * per_user_per_day * n_users > 10 * MAX_SIZE:
        raise InvalidParameterError(
            f"{n_days:g} days x {per_user_per_day:g} per user per day x {n_users:,} users is more than "
            f"{10 * MAX_SIZE:,} rows: simulate fewer days at a time"
        )


def scatter(lat: FloatArray, lon: FloatArray, rng: np.random.Generator, sigma_m: float) -> tuple[Any, Any]:
    az = rng.uniform(0.0, 360.0, lat.shape[0])
    dist = np.abs(rng.normal(0.0, sigma_m, lat.shape[0]))
    lat2, lon2 = geodesic_forward(lat, lon, az, dist)
    return np.asarray(lat2), np.asarray(lon2)
