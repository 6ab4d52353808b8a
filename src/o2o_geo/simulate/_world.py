"""The World: stores, offers, users and the ground-truth choice model, generated from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._index import StoreIndex
from .._offers import Offer, OfferSet
from .._stores import StoreSet
from .._types import FloatArray, IntArray
from .._validate import check_number
from ..errors import InvalidParameterError
from ._common import CATEGORIES, CITIES, MAX_SIZE, scatter, seeded_rng
from ._logs import WorldLogs

__all__ = ["World"]


@dataclass(frozen=True, eq=False)
class World(WorldLogs):
    """Stores, offers, users and the ground-truth choice model (see the module docstring).

    Build one with :meth:`generate`; every array is indexed by user, merchant
    or category number.

    Examples
    --------
    >>> from o2o_geo import simulate
    >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
    >>> world.n_users, world.taste.shape, world.quality.shape
    (50, (50, 8), (5,))
    >>> world.offers.merchant_id[0], int(world.offer_merchant[0])  # offer o0 is merchant number 2's
    ('m2', 2)
    >>> home = world.index.nearest(world.home_lat[0], world.home_lon[0], k=1)  # user 0's nearest store
    >>> print(home.store_id[0], f"{home.distance_m[0]:.0f} m")
    s5 138 m
    """

    stores: StoreSet
    offers: OfferSet
    index: StoreIndex
    home_lat: FloatArray
    home_lon: FloatArray
    taste: FloatArray  # (n_users, n_categories), logit units
    tolerance_m: FloatArray  # (n_users,)
    decay: FloatArray  # (n_users,)
    sensitivity: FloatArray  # (n_users,)
    quality: FloatArray  # (n_merchants,)
    offer_merchant: IntArray
    offer_category: IntArray
    offer_depth: FloatArray
    store_merchant: IntArray
    base_logit: float
    start_ts: float

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        n_users: int = 10_000,
        n_stores: int = 2_000,
        n_offers: int = 200,
        n_merchants: int = 40,
        cities: tuple[str, ...] = ("shanghai",),
        city_radius_m: float = 8_000.0,
        base_logit: float = -3.2,
        start_ts: float = 1_767_225_600.0,
    ) -> World:
        """Make a world; the same arguments give the same world.

        Parameters
        ----------
        seed : int
            Seed of every random draw.
        n_users, n_stores, n_offers, n_merchants : int
            Sizes.
        cities : tuple of str
            Keys of :data:`CITIES` to place stores and users around.
        city_radius_m : float
            Spread (standard deviation) of stores and homes around a city centre, metres.
        base_logit : float
            Ground-truth intercept (about 4 % redemption for an average push).
        start_ts : float
            Epoch seconds of day 0 (default 2026-01-01 UTC).

        Returns
        -------
        World

        Examples
        --------
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> len(world.stores), len(world.offers), world.n_users
        (30, 6, 50)
        >>> world.stores.store_id[:3].tolist(), world.stores["merchant_id"][:3].tolist()
        (['s0', 's1', 's2'], ['m0', 'm1', 'm2'])
        >>> again = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> bool((again.stores.lat == world.stores.lat).all() and (again.taste == world.taste).all())
        True
        >>> two = simulate.World.generate(seed=2, n_users=10, n_stores=20, n_offers=4, cities=("london", "sydney"))
        >>> int((two.stores.lat > 0).sum()), int((two.stores.lat < 0).sum())  # stores north and south
        (5, 15)
        """
        for name, v in (
            ("n_users", n_users),
            ("n_stores", n_stores),
            ("n_offers", n_offers),
            ("n_merchants", n_merchants),
        ):
            check_number(v, name, low=1, high=MAX_SIZE, integer=True)
        check_number(city_radius_m, "city_radius_m", low=0.0, high=2_000_000.0)
        check_number(base_logit, "base_logit", low=-50.0, high=50.0)
        check_number(start_ts, "start_ts", low=0.0, high=32_503_680_000.0)  # years 1970 to 3000
        if not isinstance(cities, (tuple, list)) or not all(isinstance(c, str) for c in cities):
            raise InvalidParameterError(f"cities must be a tuple of city names; got {cities!r:.80}")
        unknown = [c for c in cities if c not in CITIES]
        if unknown or not cities:
            raise InvalidParameterError(f"unknown cities {unknown}; choose from {sorted(CITIES)}")
        rng = seeded_rng(seed)
        n_cat = len(CATEGORIES)
        centres = np.array([CITIES[c] for c in cities])
        merchant_cat = rng.integers(0, n_cat, n_merchants)
        quality = rng.normal(0.0, 0.5, n_merchants)
        # stores: each of a merchant, around a city
        store_merchant = rng.integers(0, n_merchants, n_stores)
        store_merchant[: min(n_merchants, n_stores)] = np.arange(min(n_merchants, n_stores))
        city_of_store = rng.integers(0, len(cities), n_stores)
        s_lat, s_lon = scatter(centres[city_of_store, 0], centres[city_of_store, 1], rng, city_radius_m)
        stores = StoreSet.from_columns(
            [f"s{i}" for i in range(n_stores)],
            s_lat,
            s_lon,
            merchant_id=np.array([f"m{m}" for m in store_merchant], dtype=object),
            category=np.array([CATEGORIES[merchant_cat[m]] for m in store_merchant], dtype=object),
        )
        # offers: of merchants that have stores
        merchants_with_stores = np.unique(store_merchant)
        offer_merchant = rng.choice(merchants_with_stores, n_offers)
        offer_depth = np.round(rng.choice([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5], n_offers), 2)
        offers = OfferSet(
            [
                Offer(
                    f"o{i}",
                    f"m{offer_merchant[i]}",
                    category=CATEGORIES[merchant_cat[offer_merchant[i]]],
                    discount_rate=float(1.0 - offer_depth[i]),
                )
                for i in range(n_offers)
            ]
        )
        # users
        city_of_user = rng.integers(0, len(cities), n_users)
        h_lat, h_lon = scatter(centres[city_of_user, 0], centres[city_of_user, 1], rng, city_radius_m)
        taste = rng.normal(0.0, 1.0, (n_users, n_cat))
        tolerance_m = np.exp(rng.normal(np.log(1500.0), 0.5, n_users))
        decay = rng.uniform(0.8, 2.0, n_users)
        sensitivity = rng.gamma(2.0, 2.0, n_users)
        return cls(
            stores=stores,
            offers=offers,
            index=StoreIndex(stores),
            home_lat=h_lat,
            home_lon=h_lon,
            taste=taste,
            tolerance_m=tolerance_m,
            decay=decay,
            sensitivity=sensitivity,
            quality=quality,
            offer_merchant=offer_merchant.astype(np.int64),
            offer_category=merchant_cat[offer_merchant].astype(np.int64),
            offer_depth=offer_depth,
            store_merchant=store_merchant.astype(np.int64),
            base_logit=float(base_logit),
            start_ts=float(start_ts),
        )
