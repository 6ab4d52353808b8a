"""A seeded synthetic O2O world with a known ground truth, for what-if studies and benchmarks.

No public labelled O2O data set ships with a package, so this module makes
one whose answers are known: stores of several merchants around real city
centres, users with latent tastes, homes, travel tolerance and discount
sensitivity, offers, and a ground-truth choice model that turns pushes into
redemptions.  Every figure measured on it is a *simulated* figure.

The ground truth: a push of offer ``o`` (merchant ``m``, category ``c``,
discount depth ``g``) at store ``s``, ``d`` metres from user ``u``, is
redeemed with probability ``sigmoid(b0 + taste[u, c] + quality[m]
- decay[u] * log1p(d / tolerance_m[u]) + sensitivity[u] * g)``.

Examples
--------
>>> from o2o_geo import simulate
>>> world = simulate.World.generate(seed=1, n_users=200, n_stores=60, n_offers=12)
>>> len(world.stores), len(world.offers), world.n_users
(60, 12, 200)
>>> log = world.push_log(n_days=7, pushes_per_user_per_day=1.0, seed=2)
>>> bool(0.0 < log.redeemed.mean() < 0.5)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._events import Event
from ._geodesy import geodesic_forward
from ._index import StoreIndex
from ._offers import Offer, OfferSet
from ._stores import StoreSet
from ._types import FloatArray, IntArray
from ._validate import check_number
from .errors import InvalidParameterError

__all__ = ["CITIES", "CATEGORIES", "PingLog", "PushLog", "World"]

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


def _rng(seed: Any) -> np.random.Generator:
    """The generator of a seed: an int >= 0 (InvalidParameterError otherwise)."""
    return np.random.default_rng(check_number(seed, "seed", low=0, high=2**63 - 1, integer=True))


def _check_volume(n_days: Any, per_user_per_day: Any, n_users: int, name: str) -> None:
    """Days and a daily rate that give at most :data:`MAX_SIZE` x 10 rows (InvalidParameterError otherwise)."""
    check_number(n_days, "n_days", low=0.0, high=36_500.0)
    check_number(per_user_per_day, name, low=0.0, high=1e6)
    if n_days * per_user_per_day * n_users > 10 * MAX_SIZE:
        raise InvalidParameterError(
            f"{n_days:g} days x {per_user_per_day:g} per user per day x {n_users:,} users is more than "
            f"{10 * MAX_SIZE:,} rows: simulate fewer days at a time"
        )


def _offset(lat: FloatArray, lon: FloatArray, rng: np.random.Generator, sigma_m: float) -> tuple[Any, Any]:
    az = rng.uniform(0.0, 360.0, lat.shape[0])
    dist = np.abs(rng.normal(0.0, sigma_m, lat.shape[0]))
    lat2, lon2 = geodesic_forward(lat, lon, az, dist)
    return np.asarray(lat2), np.asarray(lon2)


@dataclass(frozen=True, eq=False)
class PushLog:
    """Pushes and their simulated outcomes, one row per push (arrays of equal length).

    ``lat``/``lon`` is where the user was, ``store`` the row of the store in
    ``world.stores``, ``p_redeem`` the ground-truth probability and
    ``redeemed`` the drawn outcome.

    Examples
    --------
    >>> from o2o_geo import simulate
    >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
    >>> log = world.push_log(n_days=7, pushes_per_user_per_day=1.0, seed=2)
    >>> len(log), int(log.redeemed.sum())
    (336, 25)
    >>> i = 0  # the first push: who, what, where, and what came of it
    >>> int(log.user[i]), world.offers.offer_id[log.offer[i]], world.stores.store_id[log.store[i]]
    (20, 'o1', 's4')
    >>> print(f"{log.distance_m[i]:.0f} m, p = {log.p_redeem[i]:.4f}, redeemed: {bool(log.redeemed[i])}")
    9838 m, p = 0.0040, redeemed: False
    """

    ts: FloatArray
    user: IntArray
    lat: FloatArray
    lon: FloatArray
    offer: IntArray
    store: IntArray
    distance_m: FloatArray
    p_redeem: FloatArray
    redeemed: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, eq=False)
class PingLog:
    """Location pings of simulated users, sorted by time (arrays of equal length).

    ``user`` is the user number (the ``user_id`` to give the dispatcher),
    ``store`` the row of the store the user is visiting (-1 when just moving
    about), ``accuracy_m`` the fix's accuracy.

    Examples
    --------
    >>> from o2o_geo import simulate
    >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
    >>> pings = world.pings(n_days=0.5, pings_per_user_per_day=4.0, seed=1)
    >>> len(pings)
    100
    >>> for i in range(3):  # user 22 is visiting store row 1, the others are moving about
    ...     print(int(pings.user[i]), f"{pings.lat[i]:.4f} {pings.lon[i]:.4f}", int(pings.store[i]))
    15 31.2522 121.4018 -1
    22 31.2657 121.4638 1
    21 31.2066 121.4431 -1
    """

    ts: FloatArray
    user: IntArray
    lat: FloatArray
    lon: FloatArray
    accuracy_m: FloatArray
    store: IntArray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def columns(self) -> dict[str, Any]:
        """The log as the columns :meth:`~o2o_geo.Dispatcher.on_locations` takes.

        Examples
        --------
        >>> import o2o_geo as og
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> pings = world.pings(n_days=0.5, pings_per_user_per_day=4.0, seed=1)
        >>> sorted(pings.columns())
        ['accuracy_m', 'lat', 'lon', 'ts', 'user_id']
        >>> engine = og.Dispatcher(world.index, world.offers, policy=og.PushPolicy(quiet_hours=None))
        >>> decisions = engine.on_locations(pings.columns())
        >>> len(decisions), [(d.user_id, d.offer_id, d.store_id, d.trigger) for d in decisions[:2]]
        (9, [(22, 'o2', 's1', 'enter'), (1, 'o1', 's17', 'enter')])
        """
        return {"user_id": self.user, "lat": self.lat, "lon": self.lon, "ts": self.ts, "accuracy_m": self.accuracy_m}


@dataclass(frozen=True, eq=False)
class World:
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

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.home_lat.shape[0])

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
        rng = _rng(seed)
        n_cat = len(CATEGORIES)
        centres = np.array([CITIES[c] for c in cities])
        merchant_cat = rng.integers(0, n_cat, n_merchants)
        quality = rng.normal(0.0, 0.5, n_merchants)
        # stores: each of a merchant, around a city
        store_merchant = rng.integers(0, n_merchants, n_stores)
        store_merchant[: min(n_merchants, n_stores)] = np.arange(min(n_merchants, n_stores))
        city_of_store = rng.integers(0, len(cities), n_stores)
        s_lat, s_lon = _offset(centres[city_of_store, 0], centres[city_of_store, 1], rng, city_radius_m)
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
        h_lat, h_lon = _offset(centres[city_of_user, 0], centres[city_of_user, 1], rng, city_radius_m)
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

    def true_logit(self, user: IntArray, offer: IntArray, distance_m: FloatArray) -> FloatArray:
        """Ground-truth log-odds of redemption for (user, offer, distance) triples.

        Examples
        --------
        The same user and offer, 100 m, 1 km and 10 km from the store:

        >>> import numpy as np
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> user, offer = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
        >>> logit = world.true_logit(user, offer, np.array([100.0, 1000.0, 10000.0]))
        >>> print(" ".join(f"{p:.4f}" for p in 1.0 / (1.0 + np.exp(-logit))))
        0.0561 0.0186 0.0009
        """
        return (
            self.base_logit
            + self.taste[user, self.offer_category[offer]]
            + self.quality[self.offer_merchant[offer]]
            - self.decay[user] * np.log1p(distance_m / self.tolerance_m[user])
            + self.sensitivity[user] * self.offer_depth[offer]
        )

    def push_log(
        self, n_days: int = 28, pushes_per_user_per_day: float = 0.5, seed: int = 0, roam_m: float = 1500.0
    ) -> PushLog:
        """Simulate untargeted pushes (random offer, its nearest store) and their redemptions.

        Each push finds the user within about ``roam_m`` metres of home, picks a
        random offer, sends it for the offer's store nearest to the user, and
        draws the redemption from the ground truth.  Random (not targeted)
        pushes keep the log free of selection bias, like a logged exploration
        policy.

        Returns
        -------
        PushLog
            Sorted by time.

        Examples
        --------
        >>> import numpy as np
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> log = world.push_log(n_days=7, pushes_per_user_per_day=1.0, seed=2)
        >>> len(log), bool(np.all(np.diff(log.ts) >= 0))
        (336, True)
        >>> bool((world.store_merchant[log.store] == world.offer_merchant[log.offer]).all())  # the offer's own stores
        True
        >>> print(f"mean p_redeem {log.p_redeem.mean():.3f}, redeemed {log.redeemed.mean():.3f}")
        mean p_redeem 0.055, redeemed 0.074
        """
        rng = _rng(seed)
        _check_volume(n_days, pushes_per_user_per_day, self.n_users, "pushes_per_user_per_day")
        check_number(roam_m, "roam_m", low=0.0, high=2_000_000.0)
        n = int(rng.poisson(pushes_per_user_per_day * n_days * self.n_users))
        user = rng.integers(0, self.n_users, n)
        ts = self.start_ts + np.sort(rng.uniform(0.0, n_days * 86_400.0, n))
        lat, lon = _offset(self.home_lat[user], self.home_lon[user], rng, roam_m)
        offer = rng.integers(0, len(self.offers), n)
        # the offer's nearest store: nearest store of the offer's merchant
        store = np.empty(n, dtype=np.int64)
        dist = np.empty(n)
        for m in np.unique(self.offer_merchant[offer]):
            rows = np.flatnonzero(self.offer_merchant[offer] == m)
            nb = self.index.nearest(lat[rows], lon[rows], k=1, where={"merchant_id": f"m{m}"})
            store[rows] = nb.position[:, 0]
            dist[rows] = nb.distance_m[:, 0]
        p = 1.0 / (1.0 + np.exp(-self.true_logit(user, offer, dist)))
        redeemed = rng.uniform(size=n) < p
        return PushLog(
            ts=ts, user=user, lat=lat, lon=lon, offer=offer, store=store, distance_m=dist, p_redeem=p, redeemed=redeemed
        )

    def pings(
        self,
        n_days: float = 1.0,
        pings_per_user_per_day: float = 10.0,
        visit_share: float = 0.3,
        seed: int = 0,
        roam_m: float = 2000.0,
        pings_per_visit: int = 3,
        visit_gap_s: float = 240.0,
    ) -> PingLog:
        """Simulate users moving about and visiting stores near home.

        A share ``visit_share`` of the pings belong to store visits: bursts of
        ``pings_per_visit`` pings ``visit_gap_s`` apart within about 15 m of a
        store among the 20 nearest the user's home (so the default burst
        enters a 100 m fence and then dwells for 8 minutes).  The rest are
        single pings within about ``roam_m`` of home.  Pings start at 08:00 UTC of day 0.

        Returns
        -------
        PingLog
            Sorted by time.

        Examples
        --------
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> pings = world.pings(n_days=1.0, seed=2)
        >>> len(pings), int((pings.store >= 0).sum())  # 144 pings are 48 store visits of 3 pings
        (484, 144)
        >>> print(f"first ping {(pings.ts[0] - world.start_ts) / 3600:.2f} h after midnight UTC")
        first ping 8.05 h after midnight UTC
        """
        rng = _rng(seed)
        _check_volume(n_days, pings_per_user_per_day, self.n_users, "pings_per_user_per_day")
        check_number(visit_share, "visit_share", low=0.0, high=1.0)
        check_number(roam_m, "roam_m", low=0.0, high=2_000_000.0)
        check_number(pings_per_visit, "pings_per_visit", low=1, high=1_000, integer=True)
        check_number(visit_gap_s, "visit_gap_s", low=0.0, high=86_400.0)
        n = int(rng.poisson(pings_per_user_per_day * n_days * self.n_users))
        n_visits = int(n * visit_share) // max(pings_per_visit, 1)
        n_roam = n - n_visits * pings_per_visit
        span = n_days * 86_400.0
        t0 = self.start_ts + 8 * 3600.0
        # roaming pings
        ru = rng.integers(0, self.n_users, n_roam)
        rlat, rlon = _offset(self.home_lat[ru], self.home_lon[ru], rng, roam_m)
        rts = t0 + rng.uniform(0.0, span, n_roam)
        # visits: a store among the 20 nearest home, a burst of pings near it
        vu = rng.integers(0, self.n_users, n_visits)
        near = self.index.nearest(self.home_lat[vu], self.home_lon[vu], k=min(20, len(self.stores))).position
        vs = near[np.arange(n_visits), rng.integers(0, near.shape[1], n_visits)]
        vstart = t0 + rng.uniform(0.0, span, n_visits)
        reps = pings_per_visit
        vu_r, vs_r = np.repeat(vu, reps), np.repeat(vs, reps)
        vts = np.repeat(vstart, reps) + np.tile(np.arange(reps) * visit_gap_s, n_visits)
        vlat, vlon = _offset(self.stores.lat[vs_r], self.stores.lon[vs_r], rng, 15.0)
        ts = np.concatenate([rts, vts])
        order = np.argsort(ts, kind="stable")
        acc = np.minimum(rng.gamma(2.0, 8.0, ts.shape[0]), 500.0)
        return PingLog(
            ts=ts[order],
            user=np.concatenate([ru, vu_r])[order],
            lat=np.concatenate([rlat, vlat])[order],
            lon=np.concatenate([rlon, vlon])[order],
            accuracy_m=acc,
            store=np.concatenate([np.full(n_roam, -1), vs_r])[order],
        )

    def outcomes(
        self, decisions: Any, seed: int = 0, open_rate: float = 0.5, organic_share: float = 0.3
    ) -> list[Event]:
        """What users do after the dispatcher's decisions, drawn from the ground truth.

        A delivered (non-holdout) push is opened with probability
        ``open_rate`` and redeemed with the ground-truth probability ``p``
        (:meth:`true_logit` at the push's distance); every decided user, held
        out or not, also visits the store on their own with probability
        ``organic_share * p``.  So the true uplift of a push on "redeemed or
        visited" is ``p - p * organic_share * p``, known per decision.

        Parameters
        ----------
        decisions : iterable of PushDecision
            From :meth:`~o2o_geo.Dispatcher.on_location` / ``on_locations`` (user ids are user numbers).
        seed : int

        Returns
        -------
        list of Event
            Sorted by time, each naming its push (``push_id``) when the user was pushed.

        Examples
        --------
        >>> from collections import Counter
        >>> import o2o_geo as og
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> engine = og.Dispatcher(world.index, world.offers,
        ...                        policy=og.PushPolicy(quiet_hours=None, holdout_fraction=0.5))
        >>> decisions = engine.on_locations(world.pings(seed=2).columns())
        >>> len(decisions), sum(d.holdout for d in decisions)
        (37, 15)
        >>> events = world.outcomes(decisions, seed=2)
        >>> sorted(Counter(e.kind for e in events).items())
        [('open', 12), ('redeem', 5), ('visit', 4)]
        >>> for e in events:
        ...     _ = engine.record(e)
        >>> row = engine.report(by="all", as_frame=False)[0]
        >>> row["pushed"], row["holdout"], row["redeemed"]
        (22, 15, 5)
        """
        rng = _rng(seed)
        out: list[Event] = []
        for d in decisions:
            o = int(self.offers.position_of(d.offer_id)[0])
            p = float(
                1.0
                / (1.0 + np.exp(-self.true_logit(np.array([d.user_id]), np.array([o]), np.array([d.distance_m]))[0]))
            )
            t = d.ts
            if not d.holdout:
                if rng.uniform() < open_rate:
                    out.append(Event("open", d.user_id, t + rng.uniform(5.0, 600.0), push_id=d.push_id))
                if rng.uniform() < p:
                    amount = float(np.round(rng.gamma(4.0, 12.0), 2))
                    out.append(
                        Event("redeem", d.user_id, t + rng.uniform(600.0, 7200.0), push_id=d.push_id, amount=amount)
                    )
            if rng.uniform() < organic_share * p:
                out.append(Event("visit", d.user_id, t + rng.uniform(600.0, 86_400.0), store_id=d.store_id))
        out.sort(key=lambda e: e.ts)
        return out

    def returns(
        self,
        decisions: Any,
        seed: int = 0,
        p_return: float = 0.2,
        lift: float = 0.1,
        within_days: float = 30.0,
        min_delay_s: float = 7200.0,
    ) -> list[Event]:
        """Return visits after ``exit`` decisions, with a known retention uplift (the truth of the report's retention).

        After an ``exit`` decision (a user who visited the store just left
        it), the user comes back to the same store once, at a delay uniform
        in ``[min_delay_s, within_days]``, with probability ``p_return`` when
        held out and ``p_return + lift`` when pushed.  So the true uplift of
        the return within ``within_days`` is ``lift``, and within ``w`` days
        ``lift * (w * 86400 - min_delay_s) / (within_days * 86400 - min_delay_s)``
        (for ``w`` in that range).  Other decisions draw nothing.

        Parameters
        ----------
        decisions : iterable of PushDecision
        seed : int
        p_return : float, default 0.2
            Probability of a return without the push, in [0, 1].
        lift : float, default 0.1
            What the push adds to it; ``p_return + lift`` must be in [0, 1].
        within_days : float, default 30
        min_delay_s : float, default 7200
            The earliest return (later than the report's same-stay gap of one hour).

        Returns
        -------
        list of Event
            ``visit`` events, sorted by time.

        Raises
        ------
        InvalidParameterError
            A probability outside [0, 1], or a delay range that is empty.

        Examples
        --------
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> world.returns([], seed=1)
        []
        >>> world.returns([], p_return=0.95, lift=0.1)
        Traceback (most recent call last):
        ...
        o2o_geo.errors.InvalidParameterError: p_return + lift must be in [0, 1]; got 1.05
        """
        check_number(p_return, "p_return", low=0.0, high=1.0)
        check_number(lift, "lift", low=-1.0, high=1.0)
        if not 0.0 <= p_return + lift <= 1.0:
            raise InvalidParameterError(f"p_return + lift must be in [0, 1]; got {p_return + lift:g}")
        check_number(within_days, "within_days", low=0.0, high=3650.0)
        check_number(min_delay_s, "min_delay_s", low=0.0, high=within_days * 86_400.0)
        rng = _rng(seed)
        out = []
        for d in decisions:
            if d.trigger != "exit":
                continue
            p = p_return if d.holdout else p_return + lift
            delay = rng.uniform(min_delay_s, within_days * 86_400.0)
            if rng.uniform() < p:
                out.append(Event("visit", d.user_id, d.ts + float(delay), store_id=d.store_id))
        out.sort(key=lambda e: e.ts)
        return out

    def events(self, log: PushLog, seed: int = 0, max_delay_days: float = 3.0) -> list[Event]:
        """The log as :class:`~o2o_geo.Event` objects: each push, and each redemption a random delay after it.

        Parameters
        ----------
        log : PushLog
            From :meth:`push_log`.
        seed : int
            Seed of the redemption delays (uniform, 10 minutes to ``max_delay_days``).
        max_delay_days : float, default 3

        Returns
        -------
        list of Event
            In log order (pushes by time; a redemption right after its push).

        Examples
        --------
        Events are what :meth:`~o2o_geo.OfferScorer.fit` learns from:

        >>> from collections import Counter
        >>> import o2o_geo as og
        >>> from o2o_geo import simulate
        >>> world = simulate.World.generate(seed=1, n_users=50, n_stores=30, n_offers=6, n_merchants=5)
        >>> events = world.events(world.push_log(n_days=7, pushes_per_user_per_day=1.0, seed=2), seed=3)
        >>> sorted(Counter(e.kind for e in events).items())
        [('push', 336), ('redeem', 25)]
        >>> e = events[0]
        >>> e.kind, e.user_id, e.offer_id, e.store_id, round(e.distance_m)
        ('push', 20, 'o1', 's4', 9838)
        >>> og.OfferScorer(world.index, world.offers).fit(events).n_fit_examples_
        336
        """
        rng = _rng(seed)
        ids, offer_ids = self.stores.store_id, self.offers.offer_id
        delays = rng.uniform(600.0, max_delay_days * 86_400.0, len(log))
        out = []
        for i in range(len(log)):
            user, ts, dist = int(log.user[i]), float(log.ts[i]), float(log.distance_m[i])
            oid, sid = offer_ids[log.offer[i]], ids[log.store[i]]
            out.append(Event("push", user, ts, offer_id=oid, store_id=sid, distance_m=dist))
            if log.redeemed[i]:
                out.append(Event("redeem", user, ts + float(delays[i]), offer_id=oid, store_id=sid, distance_m=dist))
        return out
