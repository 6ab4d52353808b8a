"""Offers matched to the stores they can be redeemed at, as the arrays the scorer ranks over.

A :class:`Catalog` is built from one version of the index: it goes stale when
stores are added or removed, and the scorer builds a new one then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from .._events import Event
from .._offers import OfferSet, offer_rows
from .._time import store_zones, zone
from .._types import FloatArray, IntArray
from ..errors import InvalidParameterError

__all__ = ["Catalog"]


def _codes(values: list[Any], index: dict[Any, int], labels: list[Any]) -> IntArray:
    """Integer codes of ``values`` (None -> -1), adding unseen values to ``index``/``labels``."""
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            out[i] = -1
            continue
        c = index.get(v)
        if c is None:
            c = index[v] = len(labels)
            labels.append(v)
        out[i] = c
    return out


class Catalog:
    """Which offers can be redeemed where, with the codes and zones the features need.

    Offers redeemable at the same set of stores form a *group* (usually one
    merchant's offers at all its stores): candidates are found per store,
    reduced to the best store per group, then expanded to the group's offers.

    Parameters
    ----------
    stores : StoreSet
        The index's live stores (``index.stores``), with a ``merchant_id`` column.
    offers : OfferSet
    version : int
        The index version ``stores`` is from.
    attraction_column : str, optional
        Store column of positive attractiveness; its log is a feature.
    tz_column : str
        Store column of IANA zones (looked up at the position where absent).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee")])
    >>> cat = Catalog(index.stores, offers, index.version)
    >>> int(cat.store_offsets[-1]), len(cat.zone_names)
    (24, 1)
    """

    def __init__(
        self,
        stores: Any,
        offers: OfferSet,
        version: int,
        attraction_column: str | None = None,
        tz_column: str = "tz",
    ) -> None:
        self.version = version
        self.n_stores = n = len(stores)
        self.store_ids = stores.store_id
        self.store_pos = {sid: i for i, sid in enumerate(self.store_ids.tolist())}
        self.store_merchant = stores["merchant_id"]
        offsets, positions = offers.redeemable_positions(stores["merchant_id"], stores.store_id)
        group_of: dict[bytes, int] = {}
        offer_group = np.empty(len(offers), dtype=np.int64)
        group_positions: list[IntArray] = []
        for o in range(len(offers)):
            rows = positions[offsets[o] : offsets[o + 1]]
            key = rows.tobytes()
            g = group_of.get(key)
            if g is None:
                g = group_of[key] = len(group_positions)
                group_positions.append(rows)
            offer_group[o] = g
        self.n_groups = len(group_positions)
        g_of_pos = np.repeat(np.arange(self.n_groups), [r.shape[0] for r in group_positions])
        pos_all = np.concatenate(group_positions) if group_positions else np.empty(0, dtype=np.int64)
        order = np.lexsort((g_of_pos, pos_all))
        #: store position -> groups redeemable there (CSR)
        self.store_groups = g_of_pos[order]
        self.store_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(pos_all, minlength=n), out=self.store_offsets[1:])
        #: group -> its offers (CSR)
        self.group_offers = np.argsort(offer_group, kind="stable")
        self.group_offsets = np.zeros(self.n_groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(offer_group, minlength=self.n_groups), out=self.group_offsets[1:])
        #: one group of one offer per store, in store order: candidates need no grouping
        self.one_to_one = bool(
            self.n_groups == n
            and np.array_equal(self.store_groups, np.arange(n))
            and np.array_equal(self.group_offsets, np.arange(n + 1))
        )
        #: store position -> the offers redeemable there (the dispatcher's per-ping lookups)
        so, sg, go, gof = self.store_offsets, self.store_groups, self.group_offsets, self.group_offers
        self.store_offer_lists = [
            np.concatenate([gof[go[g] : go[g + 1]] for g in sg[so[p] : so[p + 1]]])
            if so[p + 1] > so[p]
            else np.empty(0, dtype=np.int64)
            for p in range(n)
        ]
        has_store = np.diff(offsets) > 0
        self.offer_first_store = np.full(len(offers), -1, dtype=np.int64)
        self.offer_first_store[has_store] = positions[offsets[:-1][has_store]]
        if attraction_column is not None:
            a = np.asarray(stores[attraction_column], dtype=np.float64)
            if not np.all(a > 0):
                raise InvalidParameterError(f"attraction column {attraction_column!r} must be > 0 for every store")
            self.log_attr: FloatArray = np.log(a)
        else:
            self.log_attr = np.zeros(n)
        # categories and merchants, coded once: an offer's category, else its store's
        self.cat_index: dict[Any, int] = {}
        self.cats: list[Any] = []
        self.offer_cat = _codes(offers.category.tolist(), self.cat_index, self.cats)
        store_cat = stores["category"].tolist() if "category" in stores.columns else [None] * n
        self.store_cat = _codes(store_cat, self.cat_index, self.cats)
        self.mer_index: dict[Any, int] = {}
        self.mers: list[Any] = []
        self.offer_mer = _codes(offers.merchant_id.tolist(), self.mer_index, self.mers)
        self.offer_lookup = offer_rows(offers)
        self.offer_depth = offers.discount_depth
        self.offer_category = offers.category
        self.offer_merchant = offers.merchant_id
        # time zones: code per store, the distinct names
        names = store_zones(stores, tz_column) if n else []
        zone_index: dict[str, int] = {}
        self.zone_names: list[str] = []
        self.store_zone = np.array([zone_index.setdefault(z, len(zone_index)) for z in names], dtype=np.int64)
        self.zone_names = list(zone_index)
        self._zones = [zone(z) for z in self.zone_names]
        self._offsets: dict[int, FloatArray] = {}

    def pair_category(self, offer: IntArray, pos: IntArray) -> IntArray:
        """Category code of each (offer, store) pair: the offer's, else the store's (-1: none)."""
        c = self.offer_cat[offer]
        return np.where(c >= 0, c, self.store_cat[pos])

    def utc_offsets_s(self, t: float) -> FloatArray:
        """UTC offset of every zone at time ``t``, seconds (indexed by ``store_zone``).

        Cached per UTC hour: zones change their offset on the hour or half-hour, so
        an hour is looked up at its start and its end and cached only when they agree.
        """
        hour = int(t // 3600)
        hit = self._offsets.get(hour)
        if hit is not None:
            return hit
        out = np.array([datetime.fromtimestamp(t, z).utcoffset().total_seconds() for z in self._zones])  # type: ignore[union-attr]
        end = [datetime.fromtimestamp(hour * 3600 + 3599, z).utcoffset().total_seconds() for z in self._zones]  # type: ignore[union-attr]
        start = [datetime.fromtimestamp(hour * 3600, z).utcoffset().total_seconds() for z in self._zones]  # type: ignore[union-attr]
        if start == end:
            if len(self._offsets) >= 100_000:
                self._offsets.clear()
            self._offsets[hour] = out
        return out

    def resolve(self, event: Event) -> tuple[Any, Any, float]:
        """An event's merchant, category and its store's UTC offset (seconds), from the offers and stores.

        The offer tells the merchant and category; without one, the store does
        (its ``merchant_id`` and ``category`` columns).  The local time is the
        store's, else that of the first store the offer can be redeemed at, else UTC.
        """
        merchant = category = None
        pos = self.store_pos.get(event.store_id) if event.store_id is not None else None
        o = self.offer_lookup.get(event.offer_id) if event.offer_id is not None else None
        if o is not None:
            merchant, category = self.offer_merchant[o], self.offer_category[o]
            if pos is None and self.offer_first_store[o] >= 0:
                pos = int(self.offer_first_store[o])
        if pos is not None:
            if merchant is None:
                merchant = self.store_merchant[pos]
            if category is None and self.store_cat[pos] >= 0:
                category = self.cats[int(self.store_cat[pos])]
            return merchant, category, float(self.utc_offsets_s(event.ts)[int(self.store_zone[pos])])
        return merchant, category, 0.0
