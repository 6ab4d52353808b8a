"""StoreSet: the columnar table of stores the index is built over.

The file formats (CSV, GeoJSON, pandas and geopandas frames) live in :mod:`o2o_geo._io`; the
``from_*`` / ``to_*`` methods (``_formats``, StoreSet's base) hand off to it, imported when called
(``_io`` sits above this package).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._types import FloatArray, StoreId
from .._validate import as_items, as_latlon, rows_of
from ..errors import (
    DuplicateStoreError,
    InvalidParameterError,
    InvalidRecordError,
    ShapeMismatchError,
)
from ._areas import normalize_service_areas
from ._formats import StoreSetFormats

__all__ = ["StoreSet", "as_store_set"]

#: Columns with a meaning of their own; every other column is a free attribute.
CORE_COLUMNS = ("store_id", "lat", "lon", "merchant_id", "category", "service_area")


def _ids_to_array(ids: Any) -> np.ndarray:
    """Store ids as an object array of Python ``str`` or ``int``, checked."""
    if ids is None or isinstance(ids, (str, bytes, int, float)) or not hasattr(ids, "__len__"):
        raise InvalidRecordError(f"store_id must be a sequence of ids (str or int), one per store; got {ids!r}")
    if isinstance(ids, np.ndarray) or hasattr(ids, "to_numpy"):
        arr = np.asarray(ids)
    else:  # a plain sequence: keep every value's own type (numpy would coerce ["a", 1] to strings)
        arr = np.empty(len(ids), dtype=object)
        arr[:] = list(ids)
    if arr.ndim != 1:
        arr = np.asarray(list(ids), dtype=object)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).astype(object)
    if arr.dtype.kind == "U":
        return arr.astype(object)
    out = np.empty(arr.shape[0], dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer, np.str_)):
            raise InvalidRecordError(
                f"store_id[{i}] = {v!r} is a {type(v).__name__}; a store id must be a str or an int"
            )
        out[i] = str(v) if isinstance(v, (str, np.str_)) else int(v)
    kinds = {type(v) for v in out.tolist()}
    if len(kinds) > 1:
        first_str = next(i for i, v in enumerate(out.tolist()) if isinstance(v, str))
        first_int = next(i for i, v in enumerate(out.tolist()) if isinstance(v, int))
        raise InvalidRecordError(
            f"store ids mix ints and strings (store_id[{first_int}] = {out[first_int]!r}, "
            f"store_id[{first_str}] = {out[first_str]!r}); use one kind, e.g. all strings"
        )
    return out


def check_unique(ids: np.ndarray, existing: Mapping[StoreId, int] | None = None) -> dict[StoreId, int]:
    """Return ``{id: row}``; raise :class:`DuplicateStoreError` naming the first repeat."""
    lookup: dict[StoreId, int] = {}
    for row, sid in enumerate(ids.tolist()):
        if sid in lookup:
            raise DuplicateStoreError(f"store_id {sid!r} appears twice (rows {lookup[sid]} and {row})")
        if existing is not None and sid in existing:
            raise DuplicateStoreError(f"store_id {sid!r} (row {row}) is already in the index")
        lookup[sid] = row
    return lookup


def _column(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
    if arr.shape[0] != n:
        raise ShapeMismatchError(f"column {name!r} has {arr.shape[0]} values but there are {n} stores")
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    return arr


class StoreSet(StoreSetFormats):
    """An immutable, columnar table of stores.

    Every store has a unique ``store_id`` (str or int) and a WGS84 position;
    ``merchant_id``, ``category`` and ``service_area`` are optional, and any
    other column is a free attribute that ``where=`` filters can use.

    A service area is a shapely ``Polygon``/``MultiPolygon``, a GeoJSON
    geometry mapping, or a number (a radius in metres around the store,
    measured geodesically); ``None`` means the store has none.  Polygons are in
    (lon, lat) degrees as in GeoJSON; one that crosses the antimeridian (an
    edge jumping more than 180 degrees of longitude, or longitudes beyond 180)
    is split into parts on either side of it.

    Build one with :meth:`from_records`, :meth:`from_columns`,
    :meth:`from_dataframe`, :meth:`from_csv`, :meth:`from_geojson` or
    :meth:`from_geodataframe`; export it with :meth:`to_dataframe`,
    :meth:`to_geodataframe` or :meth:`to_geojson`.

    Examples
    --------
    >>> import o2o_geo as og
    >>> stores = og.StoreSet.from_records([
    ...     {"store_id": "a", "lat": 31.2304, "lon": 121.4737, "category": "coffee"},
    ...     {"store_id": "b", "lat": 31.2243, "lon": 121.4768, "category": "tea",
    ...      "service_area": 1500.0},
    ... ])
    >>> len(stores), stores.store_id.tolist(), stores.columns
    (2, ['a', 'b'], ['store_id', 'lat', 'lon', 'category', 'service_area'])
    """

    __slots__ = ("_cols", "_lookup", "_areas", "_radius_m")

    def __init__(self) -> None:  # use the from_* constructors
        self._cols: dict[str, np.ndarray] = {}
        self._lookup: dict[StoreId, int] = {}
        self._areas: np.ndarray = np.empty(0, dtype=object)
        self._radius_m: FloatArray = np.empty(0)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_columns(
        cls,
        store_id: Any,
        lat: Any,
        lon: Any,
        *,
        repair_service_areas: bool = False,
        **columns: Any,
    ) -> StoreSet:
        """Build from whole columns: the fast path for large tables.

        Parameters
        ----------
        store_id : array_like of shape (n,)
            Unique store ids, str or int.
        lat, lon : array_like of shape (n,)
            WGS84 position of each store, degrees.
        repair_service_areas : bool, default False
            Repair invalid (e.g. self-intersecting) service-area polygons with
            shapely's ``make_valid`` instead of raising.
        **columns : array_like of shape (n,)
            ``merchant_id``, ``category``, ``service_area`` and free attributes.

        Returns
        -------
        StoreSet

        Raises
        ------
        InvalidCoordinateError, ShapeMismatchError, InvalidRecordError,
        DuplicateStoreError, InvalidGeometryError
            Bad input, named by row and store id.

        Examples
        --------
        >>> import o2o_geo as og
        >>> s = og.StoreSet.from_columns([1, 2], [10.0, 10.1], [20.0, 20.1], category=["x", "y"])
        >>> s.store_id.tolist(), s["category"].tolist()
        ([1, 2], ['x', 'y'])
        """
        ids = _ids_to_array(store_id)
        n = ids.shape[0]
        lat_a, lon_a, _ = as_latlon(lat, lon, what="store ", labels=ids)
        if lat_a.shape[0] != n:
            raise ShapeMismatchError(f"{n} store ids but {lat_a.shape[0]} positions")
        lookup = check_unique(ids)
        self = cls()
        self._cols = {"store_id": ids, "lat": lat_a.copy(), "lon": lon_a.copy()}
        self._lookup = lookup
        areas_in = columns.pop("service_area", None)
        for name, values in columns.items():
            if name in ("store_id", "lat", "lon"):
                continue
            self._cols[name] = _column(values, n, name)
        if areas_in is None:
            self._areas = np.full(n, None, dtype=object)
            self._radius_m = np.full(n, np.nan)
        else:
            areas_col = _column(areas_in, n, "service_area")
            self._areas, self._radius_m = normalize_service_areas(areas_col, ids, repair=repair_service_areas)
            self._cols["service_area"] = areas_col
        return self

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, repair_service_areas: bool = False) -> StoreSet:
        """Build from an iterable of mappings, one per store.

        Each record needs ``store_id``, ``lat`` and ``lon``; a column that some
        records lack is ``None`` for them.

        Parameters
        ----------
        records : iterable of mapping
            One mapping per store.
        repair_service_areas : bool, default False
            See :meth:`from_columns`.

        Returns
        -------
        StoreSet

        Raises
        ------
        InvalidRecordError
            A record lacks ``store_id``, ``lat`` or ``lon``, or is not a mapping.

        Examples
        --------
        >>> import o2o_geo as og
        >>> len(og.StoreSet.from_records([{"store_id": 7, "lat": 0.0, "lon": 0.0}]))
        1
        """
        recs = as_items(records, "records")
        names: dict[str, None] = {"store_id": None, "lat": None, "lon": None}
        for row, rec in enumerate(recs):
            if not isinstance(rec, Mapping):
                raise InvalidRecordError(f"record {row} is a {type(rec).__name__}, not a mapping")
            for req in ("store_id", "lat", "lon"):
                if req not in rec:
                    raise InvalidRecordError(f"record {row} has no {req!r} field; got fields {sorted(rec)}")
            for key in rec:
                names.setdefault(key, None)
        cols: dict[str, Any] = {}
        for name in names:
            col = np.empty(len(recs), dtype=object)
            col[:] = [rec.get(name) for rec in recs]
            cols[name] = col
        ids = cols.pop("store_id")
        lat = _float_column(cols.pop("lat"), "lat", ids)
        lon = _float_column(cols.pop("lon"), "lon", ids)
        for name in list(cols):
            cols[name] = _tighten(cols[name])
        return cls.from_columns(ids, lat, lon, repair_service_areas=repair_service_areas, **cols)

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self._cols["store_id"].shape[0]) if self._cols else 0

    def __repr__(self) -> str:
        return f"StoreSet({len(self)} stores, columns={self.columns})"

    @property
    def columns(self) -> list[str]:
        """Column names, ``store_id``, ``lat``, ``lon`` first."""
        return list(self._cols)

    @property
    def store_id(self) -> np.ndarray:
        """Store ids, an object array of str or int, shape (n,)."""
        return self._cols["store_id"]

    @property
    def lat(self) -> FloatArray:
        """Latitudes in degrees, shape (n,)."""
        return self._cols["lat"]

    @property
    def lon(self) -> FloatArray:
        """Longitudes in degrees, shape (n,)."""
        return self._cols["lon"]

    @property
    def service_area_geometry(self) -> np.ndarray:
        """Normalised service-area polygons (object array of shapely geometries or ``None``)."""
        return self._areas

    @property
    def service_radius_m(self) -> FloatArray:
        """Service-area radius in metres where one was given, else NaN; shape (n,)."""
        return self._radius_m

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __contains__(self, store_id: object) -> bool:
        return store_id in self._lookup

    def table(self) -> dict[str, np.ndarray]:
        """The columns as a dict of arrays (what ``where=`` callables receive).

        Returns
        -------
        dict of str to ndarray of shape (n,)
            A new dict; the arrays are the store set's own (do not modify them).

        Examples
        --------
        >>> import o2o_geo as og
        >>> t = og.sample_stores().table()
        >>> list(t)[:3], sorted(set(t["category"].tolist()))
        (['store_id', 'lat', 'lon'], ['coffee', 'grocery', 'tea'])
        """
        return dict(self._cols)

    def position_of(self, store_ids: Any) -> np.ndarray:
        """Rows of the given store ids; raise :class:`UnknownStoreError` for any unknown one.

        Examples
        --------
        >>> import o2o_geo as og
        >>> s = og.StoreSet.from_columns(["a", "b"], [0.0, 1.0], [0.0, 1.0])
        >>> s.position_of(["b", "a"]).tolist()
        [1, 0]
        """
        from ..errors import UnknownStoreError

        def unknown(sid: Any, i: int) -> UnknownStoreError:
            return UnknownStoreError(f"store_id {sid!r} (item {i}) is not in this store set")

        return rows_of(store_ids, self._lookup, "store_ids", unknown)


def _float_column(col: np.ndarray, name: str, ids: np.ndarray) -> FloatArray:
    out = np.empty(col.shape[0])
    for i, v in enumerate(col):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InvalidRecordError(f"{name} of store {ids[i]!r} (row {i}) = {v!r} is not a number") from None
    return out


def _tighten(col: np.ndarray) -> np.ndarray:
    """Give an object column a numeric dtype when every value is a plain number."""
    vals = col.tolist()
    if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=np.float64 if any(isinstance(v, float) for v in vals) else np.int64)
    if vals and all(isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=bool)
    return col


def take_rows(stores: StoreSet, rows: np.ndarray) -> StoreSet:
    """The stores at ``rows`` as a new StoreSet (package-internal: the index's live view)."""
    out = StoreSet()
    out._cols = {k: v[rows] for k, v in stores._cols.items()}
    out._lookup = {sid: i for i, sid in enumerate(out._cols["store_id"].tolist())}
    out._areas = stores._areas[rows]
    out._radius_m = stores._radius_m[rows]
    return out


def concat_stores(parts: Sequence[StoreSet]) -> StoreSet:
    """Concatenate store sets (ids must already be unique across them; package-internal: the index's chunks)."""
    parts = [p for p in parts if len(p)] or list(parts[:1])
    out = StoreSet()
    names: dict[str, None] = {}
    for p in parts:
        for k in p._cols:
            names.setdefault(k, None)
    cols = {}
    for name in names:
        chunks = []
        for p in parts:
            if name in p._cols:
                chunks.append(p._cols[name])
            else:
                chunks.append(np.full(len(p), None, dtype=object))
        if len({c.dtype for c in chunks}) > 1:
            chunks = [c.astype(object) for c in chunks]
        cols[name] = np.concatenate(chunks)
    out._cols = cols
    lookup: dict[StoreId, int] = {}
    for p in parts:
        base = len(lookup)
        lookup.update({sid: base + i for sid, i in p._lookup.items()})
    out._lookup = lookup
    out._areas = np.concatenate([p._areas for p in parts])
    out._radius_m = np.concatenate([p._radius_m for p in parts])
    return out


def export_columns(stores: StoreSet) -> dict[str, np.ndarray]:
    """The columns as exported: each as stored, int ids as int64 when all fit, service areas normalised."""
    cols = stores.table()
    ids = cols["store_id"]
    if len(ids) and isinstance(ids[0], int):  # one kind of id per set
        lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        if all(lo <= v <= hi for v in ids.tolist()):  # else they stay Python ints (JSON holds any int)
            cols["store_id"] = ids.astype(np.int64)
    areas = cols.get("service_area")
    if areas is not None and areas.dtype.kind not in "iuf":  # numbers are radii exactly as given
        out = np.full(len(stores), None, dtype=object)
        has_geom = np.fromiter(
            (g is not None for g in stores.service_area_geometry.tolist()), dtype=bool, count=len(stores)
        )
        has_radius = ~np.isnan(stores.service_radius_m)
        out[has_geom] = stores.service_area_geometry[has_geom]
        out[has_radius] = stores.service_radius_m[has_radius]
        cols["service_area"] = out
    return cols


def as_store_set(stores: Any) -> StoreSet:
    """A DataFrame or GeoDataFrame given to ``StoreIndex(...)`` as a StoreSet; anything else is refused."""
    columns = getattr(stores, "columns", None)
    if columns is not None and hasattr(stores, "iloc"):
        if hasattr(stores, "crs") and not {"lat", "lon"} <= set(columns):
            return StoreSet.from_geodataframe(stores)
        return StoreSet.from_dataframe(stores)
    raise InvalidParameterError(
        f"StoreIndex takes a StoreSet, a pandas DataFrame or a geopandas GeoDataFrame; got {type(stores).__name__} "
        "(for a list of dicts use StoreIndex.from_records)"
    )
