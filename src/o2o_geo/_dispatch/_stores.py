"""What the dispatcher needs of each store, by position: id, merchant, local time zone and opening hours."""

from __future__ import annotations

import threading
from typing import Any
from zoneinfo import ZoneInfo

from .._index import StoreIndex
from .._offers import OfferSet
from .._policy import PushPolicy
from .._time import parse_hours, tz_at, zone

__all__ = ["StoreFacts", "StoreFactsCache"]


class StoreFacts:
    """The stores of one index version, by position (built by :class:`StoreFactsCache`).

    ``offers`` holds, per store, the offer ids redeemable there (what a push there could charge);
    ``position`` maps a store id to its position.
    """

    __slots__ = ("version", "ids", "merchant", "zone", "hours", "offers", "lat", "lon", "position")

    def __init__(
        self,
        version: int,
        ids: list[Any],
        merchant: list[Any],
        zones: list[ZoneInfo],
        hours: list[Any],
        offers: list[list[Any]],
        lat: list[float],
        lon: list[float],
    ) -> None:
        self.version = version
        self.ids = ids
        self.merchant = merchant
        self.zone = zones
        self.hours = hours
        self.offers = offers
        self.lat = lat
        self.lon = lon
        self.position = {sid: i for i, sid in enumerate(ids)}


class StoreFactsCache:
    """The current :class:`StoreFacts`; on an index change only new stores get a zone lookup and an hours parse."""

    def __init__(self, index: StoreIndex, policy: PushPolicy, offers: OfferSet) -> None:
        self.index = index
        self.policy = policy
        self.offer_set = offers
        self._per_store: dict[tuple[Any, ...], tuple[ZoneInfo, Any]] = {}
        self._facts: StoreFacts | None = None
        self._lock = threading.Lock()

    def get(self) -> StoreFacts:
        f = self._facts
        if f is None or f.version != self.index.version:
            with self._lock:
                f = self._facts
                if f is None or f.version != self.index.version:
                    f = self._facts = self._build()
        return f

    def _build(self) -> StoreFacts:
        version = self.index.version  # read first: a change after it makes these facts stale, never wrong
        stores = self.index.stores
        n = len(stores)
        pol = self.policy
        ids = stores.store_id.tolist()
        lat, lon = stores.lat.tolist(), stores.lon.tolist()
        tzs = stores[pol.tz_column].tolist() if pol.tz_column in stores.columns else [None] * n
        hours = stores[pol.hours_column].tolist() if pol.hours_column in stores.columns else [None] * n
        cache = self._per_store
        fresh: dict[tuple[Any, ...], tuple[ZoneInfo, Any]] = {}
        zones, parsed = [], []
        for i in range(n):
            key = (ids[i], lat[i], lon[i], _plain(tzs[i]), _plain(hours[i]))
            hit = cache.get(key)
            if hit is None:
                name = str(tzs[i]) if isinstance(tzs[i], str) and tzs[i] else tz_at(lat[i], lon[i])
                hit = (zone(name), parse_hours(hours[i], ids[i], lat[i], lon[i]))
            fresh[key] = hit
            zones.append(hit[0])
            parsed.append(hit[1])
        self._per_store = fresh  # removed stores are forgotten
        merchant = stores["merchant_id"]
        at: list[list[Any]] = [[] for _ in range(n)]
        offsets, positions = self.offer_set.redeemable_positions(merchant, stores.store_id)
        oids = self.offer_set.offer_id.tolist()
        for o, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
            for p in positions[a:b].tolist():
                at[p].append(oids[o])
        return StoreFacts(version, ids, merchant.tolist(), zones, parsed, at, lat, lon)


def _plain(value: Any) -> Any:
    """A cell as a cache key: text and None as they are, anything else (NaN from pandas, say) by its repr."""
    return value if value is None or isinstance(value, str) else repr(value)
