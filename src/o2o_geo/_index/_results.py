"""Result containers returned by the index: fixed-k neighbours and ragged matches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._types import FloatArray, IntArray
from .._validate import import_optional

__all__ = ["Matches", "Neighbors", "Pairs", "StoreRadii", "neighbors_like"]


class Pairs(NamedTuple):
    """(point, store) pairs from :meth:`StoreIndex.pairs_within`, in no particular order.

    Attributes
    ----------
    query : ndarray of int64, shape (n_pairs,)
        Row of the query points.
    position : ndarray of int64, shape (n_pairs,)
        Row of ``index.stores`` (as of ``version``).
    distance_m : ndarray of float64, shape (n_pairs,)
        WGS84 geodesic distance, metres.
    version : int
        The index version the positions refer to (:attr:`StoreIndex.version`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
    >>> pairs = index.pairs_within(0.0, 0.0005, radius_m=100)
    >>> pairs.query.tolist(), pairs.position.tolist(), pairs.distance_m.round(1).tolist()
    ([0], [0], [55.7])
    """

    query: IntArray
    position: IntArray
    distance_m: FloatArray
    version: int


@dataclass(frozen=True, eq=False, repr=False)
class StoreRadii:
    """A radius per store, checked once, for :meth:`StoreIndex.pairs_within` (from :meth:`StoreIndex.store_radii`).

    Attributes
    ----------
    radius_m : ndarray of float64, shape (n_stores,)
        By row of ``index.stores`` as of ``version`` (read-only); NaN: the store is never within.
    version : int
        The index version the rows refer to; a query on a changed index raises
        :class:`~o2o_geo.errors.StaleRadiiError` (prepare them again).
    max_m : float
        The largest radius (0 when there is none).

    Examples
    --------
    >>> import numpy as np, o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": i, "lat": 0.0, "lon": i * 0.001} for i in range(3)])
    >>> radii = index.store_radii(np.array([50.0, 200.0, np.nan]))
    >>> radii.max_m, radii.version == index.version
    (200.0, True)
    """

    radius_m: FloatArray
    version: int
    max_m: float
    by_slot: FloatArray = field(repr=False)  # -1.0 for none (no store is within a negative radius)

    def by_slot_list(self) -> list[float]:
        """``by_slot`` as a Python list (built once; the one-point query path reads it item by item).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": i, "lat": 0.0, "lon": i * 0.001} for i in range(2)])
        >>> index.store_radii([50.0, None]).by_slot_list()
        [50.0, -1.0]
        """
        got = self.__dict__.get("_by_slot_list")
        if got is None:
            got = self.by_slot.tolist()
            object.__setattr__(self, "_by_slot_list", got)
        return got

    def __repr__(self) -> str:
        n = int(np.count_nonzero(~np.isnan(self.radius_m)))
        return (
            f"StoreRadii({n:,} of {self.radius_m.shape[0]:,} stores, up to {self.max_m:,.1f} m, version {self.version})"
        )


def _gather_ids(ids: np.ndarray, position: IntArray) -> np.ndarray:
    out = np.full(position.shape, None, dtype=object)
    found = position >= 0
    out[found] = ids[position[found]]
    return out


def _gather_column(stores: Callable[[], Any] | None, column: str, position: IntArray) -> np.ndarray:
    """Column ``column`` of the stores at ``position`` (same shape); NaN (numbers) or None where ``position < 0``."""
    from ..errors import InvalidParameterError

    if stores is None:
        raise InvalidParameterError("this result carries no store table; query the index again")
    table = stores()
    if not isinstance(column, str) or column not in table.columns:
        raise InvalidParameterError(f"column {column!r} is not a store column; the stores have {table.columns}")
    values = table[column]
    found = position >= 0
    if values.dtype.kind in "fiu":
        out = np.full(position.shape, np.nan, dtype=np.float64)
    else:
        out = np.full(position.shape, None, dtype=object)
    out[found] = values[position[found]]
    return out


def _column_names(columns: Sequence[str]) -> list[str]:
    from ..errors import InvalidParameterError

    if isinstance(columns, str):
        return [columns]
    try:
        return list(columns)
    except TypeError:
        raise InvalidParameterError(f"columns must be a sequence of column names; got {columns!r}") from None


def _found_text(ids: np.ndarray, position: IntArray, distance_m: FloatArray, most: int) -> str:
    """``'a' 12.3 m, 'b' 45.6 m, None`` for the first ``most`` entries of a 1-D result."""
    items = [
        "None" if p < 0 else f"{ids[p]!r} {d:,.1f} m"
        for p, d in zip(position[:most].tolist(), distance_m[:most].tolist(), strict=True)
    ]
    more = position.shape[0] - most
    return ", ".join(items) + (f", ... ({more} more)" if more > 0 else "")


def _with_points(gpd: Any, df: Any, lat: FloatArray, lon: FloatArray) -> Any:
    """``df`` (which has a ``position`` column) as a GeoDataFrame of the stores' Points, EPSG:4326."""
    pos = df["position"].to_numpy(dtype=np.int64)
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(lon[pos], lat[pos]), crs="EPSG:4326")


@dataclass(frozen=True, eq=False)
class Neighbors:
    """Stores found for one query point or for each of n query points.

    Attributes
    ----------
    distance_m : ndarray of shape (k,) or (n, k)
        WGS84 geodesic distance to each store in metres, nearest first;
        ``inf`` where no store was found.
    position : ndarray of int64, same shape
        Row of the store in ``index.stores`` at query time; ``-1`` where none.
        For experts: ``-1`` is a valid numpy index (the last row), so
        ``index.stores[col][nb.position]`` silently reads the wrong store where
        a neighbour is missing; :meth:`store` returns NaN/None there.
    store_id : ndarray of object, same shape
        Store id (str or int); ``None`` where none.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([
    ...     {"store_id": "a", "lat": 0.0, "lon": 0.0},
    ...     {"store_id": "b", "lat": 0.0, "lon": 0.01}])
    >>> nb = index.nearest(0.0, 0.004, k=3)
    >>> nb.store_id.tolist(), nb.position.tolist()
    (['a', 'b', None], [0, 1, -1])
    >>> print(nb.distance_m.round(2))
    [445.28 667.92    inf]
    """

    distance_m: FloatArray
    position: IntArray
    _ids: np.ndarray = field(repr=False)
    _lat: FloatArray = field(repr=False)  # of the stores, by position (to_geodataframe)
    _lon: FloatArray = field(repr=False)
    _stores: Callable[[], Any] | None = field(default=None, repr=False)  # the store table at query time

    @property
    def store_id(self) -> np.ndarray:
        """Store ids, object array shaped like ``position``; ``None`` where no store."""
        return _gather_ids(self._ids, self.position)

    def __repr__(self) -> str:
        if self.position.ndim == 1:
            return f"Neighbors(k={self.position.shape[0]}: {_found_text(self._ids, self.position, self.distance_m, 8)})"
        n, k = self.position.shape
        rows = [f"[{i}] {_found_text(self._ids, self.position[i], self.distance_m[i], 3)}" for i in range(min(n, 3))]
        more = f"; ... ({n - 3:,} more)" if n > 3 else ""
        return f"Neighbors(n={n}, k={k}: " + "; ".join(rows) + more + ")"

    def store(self, column: str) -> np.ndarray:
        """A store attribute for every neighbour, shaped like ``position``; NaN or None where there is none.

        This is the safe way to read store columns: ``index.stores[column][nb.position]``
        looks the same but reads the *last* store where a neighbour is missing
        (``position = -1``).  The values are those of the stores when the query ran.

        Parameters
        ----------
        column : str
            A column of ``index.stores`` (``"lat"``, ``"category"``, ...).

        Returns
        -------
        ndarray
            float64 with NaN for missing neighbours when the column holds numbers,
            else object with None.

        Raises
        ------
        InvalidParameterError
            ``column`` is not a store column.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 0.0, "category": "tea", "seats": 12},
        ...     {"store_id": "b", "lat": 0.0, "lon": 0.01, "category": "coffee", "seats": 30}])
        >>> nb = index.nearest(0.0, 0.004, k=3)
        >>> nb.store("category").tolist(), nb.store("seats").tolist()
        (['tea', 'coffee', None], [12.0, 30.0, nan])
        """
        return _gather_column(self._stores, column, self.position)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the result arrays."""
        return tuple(self.position.shape)

    def __len__(self) -> int:
        return int(self.position.shape[0])

    def to_dataframe(self, columns: Sequence[str] = ()) -> Any:
        """Long-form pandas DataFrame of the stores found (one row per query and rank).

        Columns ``query`` (only for array queries), ``rank``, ``store_id``,
        ``position``, ``distance_m``, then the store ``columns`` asked for; rows
        with no store are left out.

        Parameters
        ----------
        columns : sequence of str, optional
            Store columns to add (their values when the query ran).

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> df = index.nearest([31.2304, 31.2243], [121.4737, 121.4768], k=2).to_dataframe()
        >>> df.columns.tolist(), len(df)
        (['query', 'rank', 'store_id', 'position', 'distance_m'], 4)
        >>> bool((df.groupby("query")["distance_m"].diff().dropna() >= 0).all())   # nearest first
        True
        """
        pd = import_optional("pandas", needed_by="Neighbors.to_dataframe", extra="geo")

        pos = np.atleast_2d(self.position)
        dist = np.atleast_2d(self.distance_m)
        q, r = np.nonzero(pos >= 0)
        cols: dict[str, Any] = {}
        if self.position.ndim == 2:
            cols["query"] = q
        cols.update(rank=r, store_id=self._ids[pos[q, r]], position=pos[q, r], distance_m=dist[q, r])
        for name in _column_names(columns):
            cols[name] = _gather_column(self._stores, name, pos[q, r])
        return pd.DataFrame(cols)

    def to_geodataframe(self) -> Any:
        """:meth:`to_dataframe` as a geopandas GeoDataFrame of the stores' positions.

        The same rows and columns, plus a ``geometry`` column: the Point
        (lon, lat) of each store found, CRS EPSG:4326.  Rows with no store are
        left out, as in :meth:`to_dataframe`, so every geometry is a Point.  The
        positions are those of the stores at query time (carried by the
        result), so the frame stays right after the index changes.

        Returns
        -------
        geopandas.GeoDataFrame

        Raises
        ------
        ImportError
            geopandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 0.0},
        ...     {"store_id": "b", "lat": 0.0, "lon": 0.01}])
        >>> gdf = index.nearest(0.0, 0.004, k=3).to_geodataframe()
        >>> gdf.store_id.tolist(), gdf.crs.to_epsg()
        (['a', 'b'], 4326)
        >>> [(p.x, p.y) for p in gdf.geometry]
        [(0.0, 0.0), (0.01, 0.0)]
        """
        gpd = import_optional("geopandas", needed_by="Neighbors.to_geodataframe", extra="geo")
        return _with_points(gpd, self.to_dataframe(), self._lat, self._lon)


@dataclass(frozen=True, eq=False)
class Matches:
    """Every store matched by each of n query points (a ragged result, flat arrays).

    Pairs are sorted by query, then by distance, then by position.  The
    matches of query ``i`` are ``offsets[i]:offsets[i + 1]``, or ``matches[i]``.

    Attributes
    ----------
    query : ndarray of int64, shape (m,)
        Index of the query point of each match.
    distance_m : ndarray of shape (m,)
        WGS84 geodesic distance from the query point to the store, metres.
    position : ndarray of int64, shape (m,)
        Row of the store in ``index.stores`` at query time.
    offsets : ndarray of int64, shape (n + 1,)
        Start of each query's matches in the flat arrays.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([
    ...     {"store_id": "a", "lat": 0.0, "lon": 0.0},
    ...     {"store_id": "b", "lat": 0.0, "lon": 0.01}])
    >>> m = index.within([0.0, 0.0], [0.0, 0.02], radius_m=1500)
    >>> m.query.tolist(), m.store_id.tolist(), m.counts.tolist()
    ([0, 0, 1], ['a', 'b', 'b'], [2, 1])
    >>> m[1].store_id.tolist()
    ['b']
    """

    query: IntArray
    distance_m: FloatArray
    position: IntArray
    offsets: IntArray
    _ids: np.ndarray = field(repr=False)
    _lat: FloatArray = field(repr=False)  # of the stores, by position (to_geodataframe)
    _lon: FloatArray = field(repr=False)
    _stores: Callable[[], Any] | None = field(default=None, repr=False)  # the store table at query time

    @property
    def store_id(self) -> np.ndarray:
        """Store id of each match, object array of shape (m,)."""
        return _gather_ids(self._ids, self.position)

    def __repr__(self) -> str:
        n, counts = len(self), self.counts
        if n == 0:
            return "Matches(0 queries)"
        head = (
            f"Matches({n} queries, {int(self.offsets[-1]):,} matches, {int(counts.min())} to {int(counts.max())} each"
        )
        first = self[0]
        return head + f"; [0]: {_found_text(first._ids, first.position, first.distance_m, 3) or 'none'})"

    def store(self, column: str) -> np.ndarray:
        """A store attribute for every match, shape (m,) (as :meth:`Neighbors.store`).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 0.0, "category": "tea"},
        ...     {"store_id": "b", "lat": 0.0, "lon": 0.01, "category": "coffee"}])
        >>> index.within([0.0, 0.0], [0.0, 0.02], radius_m=1500).store("category").tolist()
        ['tea', 'coffee', 'coffee']
        """
        return _gather_column(self._stores, column, self.position)

    @property
    def counts(self) -> IntArray:
        """Number of matches of each query point, shape (n,)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> Neighbors:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"query {i} out of range for {n} queries")
        i %= n
        sl = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return neighbors_like(self, self.distance_m[sl], self.position[sl])

    def to_dataframe(self, columns: Sequence[str] = ()) -> Any:
        """Pandas DataFrame with columns ``query``, ``store_id``, ``position``, ``distance_m``, then store ``columns``.

        One row per (query, store) match, each query's stores nearest first.

        Parameters
        ----------
        columns : sequence of str, optional
            Store columns to add (their values when the query ran).

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> df = index.within([31.2304, 31.2243], [121.4737, 121.4768], radius_m=800).to_dataframe()
        >>> df.columns.tolist()
        ['query', 'store_id', 'position', 'distance_m']
        >>> bool(df["distance_m"].max() <= 800.0), sorted(df["query"].unique().tolist())
        (True, [0, 1])
        """
        pd = import_optional("pandas", needed_by="Matches.to_dataframe", extra="geo")
        cols = {
            "query": self.query,
            "store_id": self.store_id,
            "position": self.position,
            "distance_m": self.distance_m,
        }
        for name in _column_names(columns):
            cols[name] = self.store(name)
        return pd.DataFrame(cols)

    def to_geodataframe(self) -> Any:
        """:meth:`to_dataframe` as a geopandas GeoDataFrame of the matched stores' positions.

        The same rows and columns, plus a ``geometry`` column: the Point
        (lon, lat) of each matched store (of the stores at query time), CRS
        EPSG:4326.

        Returns
        -------
        geopandas.GeoDataFrame

        Raises
        ------
        ImportError
            geopandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 0.0},
        ...     {"store_id": "b", "lat": 0.0, "lon": 0.01}])
        >>> gdf = index.within([0.0, 0.0], [0.0, 0.02], radius_m=1500).to_geodataframe()
        >>> gdf[["query", "store_id"]].values.tolist()
        [[0, 'a'], [0, 'b'], [1, 'b']]
        >>> [(p.x, p.y) for p in gdf.geometry]
        [(0.0, 0.0), (0.01, 0.0), (0.01, 0.0)]
        """
        gpd = import_optional("geopandas", needed_by="Matches.to_geodataframe", extra="geo")
        return _with_points(gpd, self.to_dataframe(), self._lat, self._lon)


def neighbors_like(result: Neighbors | Matches, distance_m: FloatArray, position: IntArray) -> Neighbors:
    """Other entries over the same stores as ``result``, as a flat :class:`Neighbors` (package-internal: the joins)."""
    return Neighbors(distance_m, position, result._ids, result._lat, result._lon, result._stores)
