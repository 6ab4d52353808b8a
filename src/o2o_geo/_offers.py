"""Offers (coupons, deals) and the columnar OfferSet."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ._time import to_epoch_s
from ._types import FloatArray, IntArray
from ._validate import as_items, check_id, check_metres, rows_of
from .errors import DuplicateOfferError, InvalidRecordError, UnknownOfferError

__all__ = ["AUDIENCES", "Offer", "OfferSet", "offer_rows"]

#: The audiences an :class:`Offer` can be aimed at (see ``Offer.audience``).
AUDIENCES = ("all", "new", "returning", "lapsed", "members")


@dataclass(frozen=True, slots=True)
class Offer:
    """One merchant offer: a coupon or a deal.

    Give the discount either as ``discount_rate`` (the share of the price
    paid: 0.8 is 20 % off) or as ``spend_amount`` and ``off_amount`` ("spend
    100, get 20 off").

    Parameters
    ----------
    offer_id : str or int
        Unique id.
    merchant_id : str or int
        The merchant that funds it.
    category : str, optional
        What it is for ("coffee", "grocery", ...).
    discount_rate : float, optional
        Share of the price paid, in (0, 1].
    spend_amount, off_amount : float, optional
        Threshold form: ``off_amount`` off a spend of at least ``spend_amount``.
    valid_from, valid_until : float or datetime, optional
        Validity window (epoch seconds or aware datetimes); open-ended when ``None``.
    store_ids : sequence, optional
        Stores where it can be redeemed; ``None``: every store of the merchant.
    max_distance_m : float, optional
        Only offered to users within this many metres of the store.
    audience : {"all", "new", "returning", "lapsed", "members"}, default "all"
        Who a :class:`~o2o_geo.Dispatcher` may push it to, from the user's
        history with the merchant as the state holds it: ``"new"`` never
        visited or redeemed there (and given none of its new-customer offers
        yet: at most one per merchant, ever), ``"returning"`` did, ``"lapsed"``
        did, but not in the policy's ``lapsed_after_days``, ``"members"`` has a
        tier set (:meth:`~o2o_geo.Dispatcher.set_user`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> og.Offer("o1", "m1", category="coffee", discount_rate=0.8).discount_depth
    0.2
    >>> og.Offer("o2", "m1", spend_amount=100, off_amount=20).discount_depth
    0.2
    """

    offer_id: Any
    merchant_id: Any
    category: Any = None
    discount_rate: float | None = None
    spend_amount: float | None = None
    off_amount: float | None = None
    valid_from: Any = None
    valid_until: Any = None
    store_ids: tuple[Any, ...] | None = None
    max_distance_m: float | None = None
    audience: str = "all"

    def __post_init__(self) -> None:
        oid = self.offer_id
        if oid is None or isinstance(oid, bool) or not isinstance(oid, (str, int)):
            raise InvalidRecordError(f"offer_id must be a str or an int; got {oid!r}")
        if self.merchant_id is None:
            raise InvalidRecordError(f"offer {oid!r} has no merchant_id")
        rate, spend, off = self.discount_rate, self.spend_amount, self.off_amount
        if rate is not None:
            if spend is not None or off is not None:
                raise InvalidRecordError(f"offer {oid!r}: give discount_rate or spend_amount/off_amount, not both")
            if not (isinstance(rate, (int, float)) and 0.0 < rate <= 1.0):
                raise InvalidRecordError(
                    f"offer {oid!r} has discount_rate {rate!r}; it is the share of the price paid, in (0, 1] "
                    "(0.8 = 20 % off)"
                )
        elif spend is not None or off is not None:
            if not (_nonneg(spend) and _nonneg(off) and spend and 0 < off <= spend):  # type: ignore[operator]
                raise InvalidRecordError(
                    f"offer {oid!r} has spend_amount {spend!r} and off_amount {off!r}; "
                    "need 0 < off_amount <= spend_amount"
                )
        vf = None if self.valid_from is None else to_epoch_s(self.valid_from, f"offer {oid!r} valid_from")
        vu = None if self.valid_until is None else to_epoch_s(self.valid_until, f"offer {oid!r} valid_until")
        if vf is not None and vu is not None and vu < vf:
            raise InvalidRecordError(f"offer {oid!r} ends (valid_until) before it starts (valid_from)")
        object.__setattr__(self, "valid_from", vf)
        object.__setattr__(self, "valid_until", vu)
        if self.store_ids is not None:
            raw = [self.store_ids] if isinstance(self.store_ids, (str, int)) else as_items(self.store_ids, "store_ids")
            ids = tuple(check_id(s, f"offer {oid!r} store_ids") for s in raw)
            if not ids:
                raise InvalidRecordError(f"offer {oid!r} has an empty store_ids list; use None for all stores")
            object.__setattr__(self, "store_ids", ids)
        check_metres(self.max_distance_m, f"offer {oid!r} max_distance_m", allow_inf=True, allow_none=True,
                     error=InvalidRecordError)  # fmt: skip
        if not isinstance(self.audience, str) or self.audience not in AUDIENCES:
            raise InvalidRecordError(f"offer {oid!r} has audience {self.audience!r:.80}; it must be one of {AUDIENCES}")

    @property
    def discount_depth(self) -> float:
        """Share of the price taken off (0.2 for 20 % off, or for "spend 100 get 20"); 0 with no discount."""
        if self.discount_rate is not None:
            return round(1.0 - float(self.discount_rate), 12)
        if self.spend_amount is not None and self.off_amount is not None:
            return float(self.off_amount) / float(self.spend_amount)
        return 0.0

    def is_valid_at(self, now: Any) -> bool:
        """Whether ``now`` is inside the validity window (ends inclusive).

        Examples
        --------
        >>> from datetime import datetime, timezone
        >>> import o2o_geo as og
        >>> lunch = og.Offer("lunch", "m1", discount_rate=0.9,
        ...                  valid_from=datetime(2026, 1, 1, 11, tzinfo=timezone.utc),
        ...                  valid_until=datetime(2026, 1, 1, 14, tzinfo=timezone.utc))
        >>> lunch.is_valid_at(datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc))
        True
        >>> lunch.is_valid_at(lunch.valid_until), lunch.is_valid_at(lunch.valid_until + 1)
        (True, False)
        >>> og.Offer("always", "m1").is_valid_at(0)  # no window: always valid
        True
        """
        t = to_epoch_s(now, "now")
        return (self.valid_from is None or self.valid_from <= t) and (self.valid_until is None or t <= self.valid_until)


def _nonneg(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


_FIELDS = tuple(f.name for f in fields(Offer))


class OfferSet:
    """A columnar set of offers, unique by ``offer_id``.

    Examples
    --------
    >>> import o2o_geo as og
    >>> offers = og.OfferSet.from_records([
    ...     {"offer_id": "o1", "merchant_id": "m-lucky", "category": "coffee", "discount_rate": 0.8},
    ...     {"offer_id": "o2", "merchant_id": "m-tea", "category": "tea", "spend_amount": 50, "off_amount": 10,
    ...      "valid_until": 1767225600}])
    >>> len(offers), offers.discount_depth.tolist()
    (2, [0.2, 0.2])
    >>> offers.valid_at(1767225601).tolist()
    [True, False]
    """

    def __repr__(self) -> str:
        merchants = len(set(self.merchant_id.tolist()))
        categories = len({c for c in self.category.tolist() if c is not None})
        return f"OfferSet({len(self):,} offers of {merchants:,} merchants, {categories:,} categories)"

    def __init__(self, offers: Sequence[Offer]) -> None:
        lookup: dict[Any, int] = {}
        offers = as_items(offers, "offers")
        for i, o in enumerate(offers):
            if not isinstance(o, Offer):
                raise InvalidRecordError(f"OfferSet takes Offer objects; item {i} is a {type(o).__name__}")
            if o.offer_id in lookup:
                raise DuplicateOfferError(f"offer_id {o.offer_id!r} appears twice (items {lookup[o.offer_id]} and {i})")
            lookup[o.offer_id] = i
        self._offers = tuple(offers)
        self._lookup = lookup
        n = len(self._offers)
        self.offer_id = np.empty(n, dtype=object)
        self.offer_id[:] = [o.offer_id for o in self._offers]
        self.merchant_id = np.empty(n, dtype=object)
        self.merchant_id[:] = [o.merchant_id for o in self._offers]
        self.category = np.empty(n, dtype=object)
        self.category[:] = [o.category for o in self._offers]
        self.discount_depth: FloatArray = np.array([o.discount_depth for o in self._offers], dtype=np.float64)
        self.valid_from_s: FloatArray = np.array(
            [-math.inf if o.valid_from is None else o.valid_from for o in self._offers], dtype=np.float64
        )
        self.valid_until_s: FloatArray = np.array(
            [math.inf if o.valid_until is None else o.valid_until for o in self._offers], dtype=np.float64
        )
        self.max_distance_m: FloatArray = np.array(
            [math.inf if o.max_distance_m is None else o.max_distance_m for o in self._offers], dtype=np.float64
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> OfferSet:
        """Build from mappings with :class:`Offer`'s field names.

        Raises
        ------
        InvalidRecordError
            An unknown field, or a field with a bad value (named with the offer id).
        DuplicateOfferError
            The same ``offer_id`` twice.

        Examples
        --------
        >>> import o2o_geo as og
        >>> offers = og.OfferSet.from_records([
        ...     {"offer_id": "latte", "merchant_id": "m-lucky", "category": "coffee", "discount_rate": 0.8},
        ...     {"offer_id": "cake", "merchant_id": "m-lucky", "spend_amount": 30, "off_amount": 6}])
        >>> len(offers), "cake" in offers, offers["cake"].discount_depth
        (2, True, 0.2)
        >>> try:
        ...     og.OfferSet.from_records([{"offer_id": "o1", "merchant_id": "m", "discount": 0.8}])
        ... except og.errors.InvalidRecordError as exc:
        ...     print(type(exc).__name__, "-", str(exc).split(";")[0])
        InvalidRecordError - offer record 0 has unknown fields ['discount']
        """
        offers = []
        for row, rec in enumerate(as_items(records, "records")):
            if not isinstance(rec, Mapping):
                raise InvalidRecordError(f"offer record {row} is a {type(rec).__name__}, not a mapping")
            extra = set(rec) - set(_FIELDS)
            if extra:
                raise InvalidRecordError(
                    f"offer record {row} has unknown fields {sorted(extra)}; known: {list(_FIELDS)}"
                )
            clean: dict[str, Any] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
            if clean.get("audience", "all") is None:  # a missing cell: the default
                del clean["audience"]
            offers.append(Offer(**clean))
        return cls(offers)

    @classmethod
    def from_dataframe(cls, df: Any) -> OfferSet:
        """Build from a pandas DataFrame with :class:`Offer`'s field names as columns.

        Examples
        --------
        >>> import pandas as pd, o2o_geo as og
        >>> df = pd.DataFrame({"offer_id": ["a", "b"], "merchant_id": ["m", "m"], "discount_rate": [0.9, 0.7]})
        >>> og.OfferSet.from_dataframe(df).discount_depth.round(2).tolist()
        [0.1, 0.3]
        """
        if not (hasattr(df, "columns") and hasattr(df, "to_dict")):
            raise InvalidRecordError(f"OfferSet.from_dataframe takes a pandas DataFrame; got {type(df).__name__}")
        return cls.from_records(df.to_dict("records"))

    def __len__(self) -> int:
        return len(self._offers)

    def __iter__(self) -> Any:
        return iter(self._offers)

    def __getitem__(self, offer_id: Any) -> Offer:
        i = self._lookup.get(offer_id) if isinstance(offer_id, Hashable) else None
        if i is None:
            raise UnknownOfferError(f"offer_id {offer_id!r} is not in this offer set")
        return self._offers[i]

    def __contains__(self, offer_id: object) -> bool:
        return isinstance(offer_id, Hashable) and offer_id in self._lookup

    def position_of(self, offer_ids: Any) -> IntArray:
        """Rows of the given offer ids, in the set's order; raise :class:`UnknownOfferError` for any unknown one.

        Examples
        --------
        >>> import o2o_geo as og
        >>> offers = og.OfferSet([og.Offer("a", "m"), og.Offer("b", "m")])
        >>> offers.position_of(["b", "a"]).tolist(), offers.position_of("b").tolist()
        ([1, 0], [1])
        """

        def unknown(oid: Any, i: int) -> UnknownOfferError:
            return UnknownOfferError(f"offer_id {oid!r} (item {i}) is not in this offer set")

        return rows_of(offer_ids, self._lookup, "offer_ids", unknown)

    def valid_at(self, now: Any) -> np.ndarray:
        """Boolean mask of the offers valid at ``now``, shape (n_offers,).

        Examples
        --------
        >>> import o2o_geo as og
        >>> day = 86400
        >>> offers = og.OfferSet([og.Offer("week-1", "m1", valid_from=0, valid_until=7 * day),
        ...                       og.Offer("week-2", "m1", valid_from=7 * day, valid_until=14 * day),
        ...                       og.Offer("open-ended", "m1")])
        >>> offers.valid_at(3 * day).tolist()
        [True, False, True]
        >>> offers.offer_id[offers.valid_at(7 * day)].tolist()  # both ends are inclusive
        ['week-1', 'week-2', 'open-ended']
        """
        t = to_epoch_s(now, "now")
        return (self.valid_from_s <= t) & (t <= self.valid_until_s)

    def redeemable_positions(self, stores_merchant_id: np.ndarray, stores_id: np.ndarray) -> tuple[IntArray, IntArray]:
        """Store rows where each offer can be redeemed, as CSR ``(offsets, positions)``.

        ``stores_merchant_id`` and ``stores_id`` are the columns of the store
        table (e.g. ``index.stores["merchant_id"]`` and ``index.stores.store_id``).

        Raises
        ------
        InvalidRecordError
            An offer names a store that is not in the table, or has no store at all.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a1", "lat": 31.23, "lon": 121.47, "merchant_id": "m-a"},
        ...     {"store_id": "b1", "lat": 31.24, "lon": 121.48, "merchant_id": "m-b"},
        ...     {"store_id": "a2", "lat": 31.25, "lon": 121.49, "merchant_id": "m-a"}])
        >>> offers = og.OfferSet([og.Offer("o1", "m-a"), og.Offer("o2", "m-a", store_ids=("a2",)),
        ...                       og.Offer("o3", "m-b")])
        >>> offsets, positions = offers.redeemable_positions(index.stores["merchant_id"], index.stores.store_id)
        >>> offsets.tolist(), positions.tolist()
        ([0, 2, 3, 4], [0, 2, 2, 1])
        >>> [index.stores.store_id[positions[offsets[i]:offsets[i + 1]]].tolist() for i in range(len(offers))]
        [['a1', 'a2'], ['a2'], ['b1']]
        """
        by_merchant: dict[Any, list[int]] = {}
        for pos, m in enumerate(stores_merchant_id.tolist()):
            by_merchant.setdefault(m, []).append(pos)
        row_of = {sid: i for i, sid in enumerate(stores_id.tolist())}
        offsets = np.zeros(len(self._offers) + 1, dtype=np.int64)
        chunks: list[list[int]] = []
        for i, o in enumerate(self._offers):
            if o.store_ids is None:
                rows = by_merchant.get(o.merchant_id, [])
            else:
                missing = [s for s in o.store_ids if s not in row_of]
                if missing:
                    raise InvalidRecordError(f"offer {o.offer_id!r} names stores not in the index: {missing[:5]}")
                rows = sorted(row_of[s] for s in o.store_ids)
            if not rows:
                raise InvalidRecordError(
                    f"offer {o.offer_id!r} has no store in the index (merchant {o.merchant_id!r} has none)"
                )
            chunks.append(rows)
            offsets[i + 1] = offsets[i] + len(rows)
        positions = np.fromiter((p for rows in chunks for p in rows), dtype=np.int64, count=int(offsets[-1]))
        return offsets, positions


def offer_rows(offers: OfferSet) -> Mapping[Any, int]:
    """Offer id -> row (package-internal: the scorer's catalog resolves events' offers with it; read it, never write).

    The set's own mapping, typed read-only: a copy per catalog would cost
    memory for nothing, and a proxy would not pickle to a Dask worker.
    """
    return offers._lookup
