"""The StoreIndex facade: the public queries and updates over the slots, filters, kNN and radius modules."""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from .._geodesy import GeoPoints
from .._stores import StoreSet, as_store_set
from .._types import FloatArray, IntArray, Where
from .._validate import as_latlon, check_distance_m, check_k, check_number, warn_user
from ..errors import EmptyResultWarning, InvalidParameterError, InvalidRecordError, ShapeMismatchError
from ._filters import segments_for
from ._joins import join_nearest, join_serving, join_within
from ._knn import knn, n_threads, nearest_scalar
from ._radius import check_radii, has_service_areas, pairs_scalar, serving_pairs, sort_pairs, within_pairs
from ._results import Matches, Neighbors, Pairs, StoreRadii
from ._slots import Slots, StoreTable

#: The most (point, rank) results one nearest() call returns: 2**27, about 3 GiB of distances, rows and ids.
MAX_RESULT_CELLS = 2**27

__all__ = ["MAX_RESULT_CELLS", "StoreIndex"]


class StoreIndex:
    """Spatial index over store locations with exact WGS84 geodesic answers.

    Parameters
    ----------
    stores : StoreSet, pandas.DataFrame or geopandas.GeoDataFrame
        The stores to index; a DataFrame is read by :meth:`StoreSet.from_dataframe`
        (columns ``store_id``, ``lat``, ``lon``), a GeoDataFrame of Points by
        :meth:`StoreSet.from_geodataframe`.
    workers : int, default -1
        Threads for batch queries (``-1``: all cores).  Scalar queries use one.
    compact_fraction : float, default 0.05
        Compact automatically when stores added or removed since the last
        compaction exceed this fraction of the index (and 4,096 stores).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([
    ...     {"store_id": "bund", "lat": 31.2400, "lon": 121.4900, "category": "coffee"},
    ...     {"store_id": "plaza", "lat": 31.2330, "lon": 121.4750, "category": "coffee"},
    ...     {"store_id": "tea1", "lat": 31.2320, "lon": 121.4760, "category": "tea"},
    ... ])
    >>> nb = index.nearest(31.2310, 121.4740, k=2)
    >>> nb.store_id.tolist()
    ['tea1', 'plaza']
    >>> print(nb.distance_m.round(1))
    [220.5 241.3]
    >>> index.nearest(31.2310, 121.4740, k=1, where={"category": "coffee"}).store_id.tolist()
    ['plaza']
    """

    def __init__(self, stores: StoreSet | Any, *, workers: int = -1, compact_fraction: float = 0.05) -> None:
        if not isinstance(stores, StoreSet):
            stores = as_store_set(stores)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers == 0 or workers < -1:
            raise InvalidParameterError(f"workers must be -1 or a positive int; got {workers!r}")
        compact_fraction = check_number(compact_fraction, "compact_fraction", low=0.0, high=1.0, low_open=True)
        self.workers = workers
        self.compact_fraction = float(compact_fraction)
        self._slots = Slots(stores)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], **kwargs: Any) -> StoreIndex:
        """Build an index straight from store records (see :meth:`StoreSet.from_records`).

        Examples
        --------
        >>> import o2o_geo as og
        >>> len(og.StoreIndex.from_records([{"store_id": 1, "lat": 0.0, "lon": 0.0}]))
        1
        """
        repair = kwargs.pop("repair_service_areas", False)
        return cls(StoreSet.from_records(records, repair_service_areas=repair), **kwargs)

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        sl = self._slots
        extra = [c for c in sl.chunks[0].columns if c not in ("store_id", "lat", "lon")]
        n_areas = int(np.count_nonzero(sl.alive & (~np.isnan(sl.radius) | (sl.areas != None))))  # noqa: E711
        churn = sl.n_slots - sl.main_end
        live = f", {churn} added and {sl.n_dead} removed since the last compaction" if churn or sl.n_dead else ""
        return f"StoreIndex({len(self):,} stores, columns {extra}, {n_areas:,} with a service area{live})"

    def __contains__(self, store_id: object) -> bool:
        return isinstance(store_id, Hashable) and store_id in self._slots.id_to_slot

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (e.g. to ship the index to Dask workers): the arrays and trees, not the lock or caches.

        Examples
        --------
        >>> import pickle, o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
        >>> pickle.loads(pickle.dumps(index)).nearest(0.0, 0.001, k=1).store_id.tolist()
        ['a']
        """
        return self.__dict__.copy()  # the slots pickle a consistent snapshot of themselves, without lock or caches

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def stores(self) -> StoreSet:
        """The live stores; ``position`` in every result is a row of this table."""
        return self._slots.stores()

    def add(self, records: StoreSet | Iterable[Mapping[str, Any]]) -> None:
        """Add stores (a StoreSet or records); all or nothing.

        Every record is checked before anything changes, so a failed ``add``
        leaves the index exactly as it was.

        Parameters
        ----------
        records : StoreSet or iterable of mapping
            The new stores; their ids must not be in the index yet.

        Raises
        ------
        DuplicateStoreError
            An id is already in the index, or given twice.
        InvalidRecordError
            The ids are ints while the index holds strings, or the other way round.
        InvalidCoordinateError, InvalidRecordError, InvalidGeometryError
            A record is bad (nothing is added).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
        >>> index.add([{"store_id": "b", "lat": 0.0, "lon": 0.001}])
        >>> index.nearest(0.0, 0.0009, k=1).store_id.tolist()
        ['b']
        """
        new = records if isinstance(records, StoreSet) else StoreSet.from_records(records)
        if len(new) == 0:
            return
        with self._slots.lock:  # the duplicate check must see the same id map the update changes
            self._slots.add(new)
            self._compact_if_churned()

    def remove(self, store_ids: Any) -> None:
        """Remove stores by id; all or nothing.

        Parameters
        ----------
        store_ids : str, int or iterable of them
            Ids of stores in the index.

        Raises
        ------
        UnknownStoreError
            An id is not in the index (nothing is removed).
        InvalidRecordError
            An item is not a str or int id (e.g. a float or a bool).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 0.0}, {"store_id": "b", "lat": 0.0, "lon": 0.001}])
        >>> index.remove("b")
        >>> index.nearest(0.0, 0.0009, k=1).store_id.tolist(), len(index)
        (['a'], 1)
        """
        if isinstance(store_ids, (str, int, np.integer)):
            ids = [store_ids]
        elif isinstance(store_ids, Iterable):
            ids = list(store_ids)
        else:
            raise InvalidRecordError(f"store_ids must be an id or an iterable of ids; got {type(store_ids).__name__}")
        keys = []
        for i, sid in enumerate(ids):
            if isinstance(sid, (bool, np.bool_)) or not isinstance(sid, (str, int, np.integer)):
                raise InvalidRecordError(
                    f"store_id {sid!r} (item {i}) is a {type(sid).__name__}; a store id is a str or an int"
                )
            keys.append(int(sid) if isinstance(sid, np.integer) else sid)
        with self._slots.lock:  # slots are looked up under the lock: compaction renumbers them
            if self._slots.remove(keys):
                self._compact_if_churned()

    def compact(self) -> None:
        """Rebuild one tree over the live stores (drops dead slots, merges the delta).

        Positions do not change: they are rows of :attr:`stores` before and after.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": i, "lat": 0.0, "lon": i / 1000} for i in range(3)])
        >>> index.remove(1); index.compact(); len(index)
        2
        """
        with self._slots.lock:
            self._slots.load(self._slots.stores())

    def nearest(
        self,
        lat: Any,
        lon: Any,
        k: int = 5,
        max_distance_m: float | None = None,
        where: Where = None,
    ) -> Neighbors:
        """The k stores nearest to each point by WGS84 geodesic distance.

        Exact: the stores returned are those a brute-force GeographicLib
        ranking returns, ties broken by store position.

        Parameters
        ----------
        lat, lon : float or array_like of shape (n,)
            Query points, degrees (numpy arrays or pandas Series).
        k : int, default 5
            Number of stores per point.
        max_distance_m : float, optional
            Ignore stores farther than this many metres.
        where : mapping, boolean mask or callable, optional
            Only stores passing this filter: ``{"category": "coffee"}``,
            ``{"category": ["coffee", "tea"]}``, a boolean mask over
            :attr:`stores`, or a callable taking the store table and returning
            one.  Mapping filters are cached until the index changes.

        Returns
        -------
        Neighbors
            Arrays of shape (k,) for a scalar point, (n, k) for n points.
            Missing neighbours have ``distance_m = inf``, ``position = -1``,
            ``store_id = None``; read store columns with :meth:`Neighbors.store`,
            which gives NaN/None there (``index.stores[col][position]`` would
            read the last store).

        Raises
        ------
        InvalidCoordinateError, ShapeMismatchError, InvalidParameterError
            Bad points, lengths, ``k``, distance or filter.

        Warns
        -----
        EmptyResultWarning
            A mapping ``where=`` value that no store has (the message names the
            values that exist).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "a", "lat": 0.0, "lon": 179.999},
        ...     {"store_id": "b", "lat": 0.0, "lon": -179.99}])
        >>> nb = index.nearest([0.0, 0.0], [-179.999, 179.99], k=1)
        >>> nb.store_id.tolist(), nb.shape
        ([['a'], ['a']], (2, 1))
        >>> index.nearest(0.0, 0.0, k=1, max_distance_m=1000).store_id.tolist()
        [None]
        """
        lat_a, lon_a, is_scalar = as_latlon(lat, lon)
        k = check_k(k)
        if lat_a.shape[0] * k > MAX_RESULT_CELLS:
            raise InvalidParameterError(
                f"k={k:,} for {lat_a.shape[0]:,} points asks for more than {MAX_RESULT_CELLS:,} results "
                f"(the index holds {len(self):,} stores; a k beyond that only pads): lower k or query in chunks"
            )
        max_d = check_distance_m(max_distance_m, "max_distance_m", allow_none=True)
        sl = self._slots
        with sl.lock:
            segs, skip = segments_for(sl, where)
            if is_scalar and sl.n_dead == 0 and len(segs) == 1 and skip is None:
                # one tree and nothing to skip (the index's or a filter's): slots are positions
                fast = nearest_scalar(sl.pts, float(lat_a[0]), float(lon_a[0]), k, max_d, segs[0])
                if fast is not None:
                    return Neighbors(fast[0], fast[1], sl.ids, sl.pts.lat, sl.pts.lon, sl.stores_at_query())
            dist, slots = knn(sl.pts, lat_a, lon_a, k, max_d, segs, skip, n_threads(self.workers))
            pos = np.full(slots.shape, -1, dtype=np.int64)
            found = slots >= 0
            pos[found] = sl.slot_to_pos()[slots[found]]
            result = self._result_parts()
        if is_scalar:
            return Neighbors(dist[0], pos[0], *result)
        return Neighbors(dist, pos, *result)

    def within(self, lat: Any, lon: Any, radius_m: float, where: Where = None) -> Neighbors | Matches:
        """Every store within ``radius_m`` metres (WGS84 geodesic) of each point, nearest first.

        Parameters
        ----------
        lat, lon : float or array_like of shape (n,)
            Query points, degrees.
        radius_m : float
            Search radius in metres; a store exactly at the radius is included.
        where : mapping, boolean mask or callable, optional
            Filter, as in :meth:`nearest`.

        Returns
        -------
        Neighbors or Matches
            For a scalar point, a :class:`Neighbors` of variable length; for
            arrays, a :class:`Matches` (flat arrays sorted by query, then distance).

        Raises
        ------
        InvalidCoordinateError, ShapeMismatchError, InvalidParameterError

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": i, "lat": 0.0, "lon": i * 0.001} for i in range(5)])
        >>> res = index.within(0.0, 0.0021, radius_m=150)
        >>> res.store_id.tolist(), res.distance_m.round(1).tolist()
        ([2, 3, 1], [11.1, 100.2, 122.5])
        """
        lat_a, lon_a, is_scalar = as_latlon(lat, lon)
        radius = check_distance_m(radius_m, "radius_m")
        assert radius is not None
        sl = self._slots
        with sl.lock:
            q = GeoPoints(lat_a, lon_a)
            qi, s, dist, err = within_pairs(sl, q, radius, where, self.workers)
            return self._sorted_result(qi, s, dist, err, q, is_scalar)

    @property
    def version(self) -> int:
        """A number that changes whenever stores are added or removed (for callers caching derived tables).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
        >>> v = index.version
        >>> index.add([{"store_id": "b", "lat": 0.0, "lon": 0.001}])
        >>> index.version != v
        True
        """
        return self._slots.version

    def store_radii(self, radius_m: Any) -> StoreRadii:
        """Check a radius per store once, for many :meth:`pairs_within` calls (geofences, service rings).

        Parameters
        ----------
        radius_m : array_like of shape (len(index),)
            Metres, by row of :attr:`stores`; NaN (or None) for a store that is never within.

        Returns
        -------
        StoreRadii
            Valid for this index :attr:`version`.

        Raises
        ------
        ShapeMismatchError
            Not one radius per store.
        InvalidParameterError
            A negative or infinite radius (the message names the store).

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": i, "lat": 0.0, "lon": i * 0.001} for i in range(3)])
        >>> radii = index.store_radii([50.0, 200.0, None])
        >>> pairs = index.pairs_within(0.0, 0.0, radii)       # store 1 is 111 m away: within its 200 m
        >>> sorted(pairs.position.tolist())
        [0, 1]
        """
        sl = self._slots
        with sl.lock:
            n = len(sl)
            try:
                arr = np.array(radius_m, dtype=np.float64, copy=True).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(f"radius_m must be numbers of metres, one per store: {exc}") from None
            if np.ndim(radius_m) != 1 or arr.shape[0] != n:
                raise ShapeMismatchError(
                    f"radius_m has shape {np.shape(radius_m)}; expected one radius per store, shape ({n},)"
                )
            bad = ~np.isnan(arr) & ~((arr >= 0.0) & np.isfinite(arr))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidParameterError(
                    f"radius_m[{i}] = {arr[i]!r} (store {sl.live_ids()[i]!r}) must be a finite number of metres "
                    ">= 0, or NaN for none"
                )
            arr.flags.writeable = False
            by_slot = np.full(sl.n_slots, -1.0)
            by_slot[sl.alive] = np.nan_to_num(arr, nan=-1.0)
            top = float(np.nanmax(arr)) if n and not np.isnan(arr).all() else 0.0
            return StoreRadii(arr, sl.version, top, by_slot)

    def pairs_within(self, lat: Any, lon: Any, radius_m: float | StoreRadii | Any, where: Where = None) -> Pairs:
        """Every (point, store) pair within ``radius_m`` metres (exact WGS84), in no particular order.

        The unsorted, allocation-light form of :meth:`within` for callers that
        do their own ranking (the offer scorer, the dispatcher's geofences); the
        distances and the set of pairs are exactly :meth:`within`'s.  One point
        (floats) takes a pure-Python path.

        Parameters
        ----------
        lat, lon : float or array_like of shape (n,)
            Query points, degrees.
        radius_m : float, StoreRadii or array_like of shape (len(index),)
            Search radius in metres, one for all stores or one per store (see
            :meth:`store_radii`, which checks them once); a store exactly at its
            radius is included.
        where : mapping, boolean mask or callable, optional
            Filter, as in :meth:`nearest`.

        Returns
        -------
        Pairs
            ``query`` (row of the input), ``position`` (row of :attr:`stores`) and
            ``distance_m``, each of shape (n_pairs,), plus the index ``version``
            the positions refer to.

        Raises
        ------
        StaleRadiiError
            ``radius_m`` was prepared for an earlier index version.

        Examples
        --------
        >>> import o2o_geo as og
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": i, "lat": 0.0, "lon": i * 0.001} for i in range(5)])
        >>> pairs = index.pairs_within([0.0, 0.0], [0.0021, 0.0], radius_m=150)
        >>> order = sorted(zip(pairs.query.tolist(), pairs.distance_m.round(1).tolist()))
        >>> order
        [(0, 11.1), (0, 100.2), (0, 122.5), (1, 0.0), (1, 111.3)]
        """
        sl = self._slots
        scalar = type(lat) is float and type(lon) is float and where is None
        if scalar and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
            if isinstance(radius_m, StoreRadii) or (
                type(radius_m) is float and radius_m >= 0.0 and radius_m != math.inf
            ):
                with sl.lock:
                    out_s, out_d = pairs_scalar(sl, lat, lon, radius_m)
                    slot_a = np.array(out_s, dtype=np.int64)
                    pos = slot_a if sl.n_dead == 0 else sl.slot_to_pos()[slot_a]
                    return Pairs(np.zeros(len(out_s), dtype=np.int64), pos, np.array(out_d), sl.version)
        lat_a, lon_a, _ = as_latlon(lat, lon)
        if not isinstance(radius_m, StoreRadii) and np.ndim(radius_m) == 1:
            radius_m = self.store_radii(radius_m)
        with sl.lock:
            q = GeoPoints(lat_a, lon_a)
            if isinstance(radius_m, StoreRadii):
                check_radii(sl, radius_m)
                qi, slot, dist, _ = within_pairs(sl, q, radius_m.max_m, where, self.workers, radius_m.by_slot)
            else:
                radius = check_distance_m(radius_m, "radius_m")
                assert radius is not None
                qi, slot, dist, _ = within_pairs(sl, q, radius, where, self.workers)
            return Pairs(qi, sl.slot_to_pos()[slot], dist, sl.version)

    def serving(self, lat: Any, lon: Any) -> Neighbors | Matches:
        """Stores whose service area contains each point, nearest store first.

        A polygon area contains the points inside it or on its boundary
        ((lon, lat) planar, as GeoJSON; antimeridian-crossing polygons are
        split on load); a radius area contains the points within that many
        metres (WGS84 geodesic) of the store.  Stores with no service area
        never serve.

        Parameters
        ----------
        lat, lon : float or array_like of shape (n,)
            Query points, degrees.

        Returns
        -------
        Neighbors or Matches
            As :meth:`within`: ``distance_m`` is the distance to the store.

        Raises
        ------
        InvalidCoordinateError, ShapeMismatchError

        Examples
        --------
        >>> import o2o_geo as og
        >>> from shapely.geometry import box
        >>> index = og.StoreIndex.from_records([
        ...     {"store_id": "zone", "lat": 0.0, "lon": 0.0, "service_area": box(-0.01, -0.01, 0.01, 0.01)},
        ...     {"store_id": "ring", "lat": 0.0, "lon": 0.02, "service_area": 1500.0},
        ...     {"store_id": "none", "lat": 0.0, "lon": 0.005}])
        >>> index.serving(0.0, 0.008).store_id.tolist()
        ['zone', 'ring']
        """
        lat_a, lon_a, is_scalar = as_latlon(lat, lon)
        sl = self._slots
        with sl.lock:
            if len(sl) and not has_service_areas(sl):
                warn_user(
                    f"serving() on an index whose {len(sl):,} stores have no service_area can only return nothing; "
                    "give stores a service_area (a radius in metres or a polygon), or use within(...)",
                    EmptyResultWarning,
                )
            q = GeoPoints(lat_a, lon_a)
            qi, s, dist, err = serving_pairs(sl, q, lon_a, lat_a, self.workers)
            return self._sorted_result(qi, s, dist, err, q, is_scalar)

    # ------------------------------------------------------------ shared by the queries (the caller holds the lock)
    def _compact_if_churned(self) -> None:
        sl = self._slots
        if sl.churn > max(4096, self.compact_fraction * max(len(sl), 1)):
            sl.load(sl.stores())

    def _result_parts(self) -> tuple[np.ndarray, FloatArray, FloatArray, StoreTable]:
        """What every result carries about the live stores: ids, lat, lon and the table, by position."""
        sl = self._slots
        s_lat, s_lon = sl.live_latlon()
        return sl.live_ids(), s_lat, s_lon, sl.stores_at_query()

    def _sorted_result(
        self, qi: IntArray, s: IntArray, dist: FloatArray, err: FloatArray, q: GeoPoints, is_scalar: bool
    ) -> Neighbors | Matches:
        """(query, slot) pairs sorted by query, distance and position, as :meth:`within` returns them."""
        dist, pos, offsets = sort_pairs(self._slots, qi, s, dist, err, q)
        if is_scalar:
            return Neighbors(dist, pos, *self._result_parts())
        q_of = np.repeat(np.arange(q.lat.shape[0]), np.diff(offsets))
        return Matches(q_of, dist, pos, offsets, *self._result_parts())

    # ------------------------------------------------------------ joins (tables in, tables out: .._joins)
    join_nearest = join_nearest
    join_within = join_within
    join_serving = join_serving

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the live stores to ``path`` in the documented o2o_geo index format.

        See :mod:`o2o_geo._io._index_file` for the format (a zip of numpy arrays with a JSON
        header; no pickle).  The file is written atomically: a crash mid-write
        leaves any previous file at ``path`` intact.

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 1.0, "lon": 2.0, "category": "tea"}])
        >>> p = os.path.join(tempfile.mkdtemp(), "stores.o2oidx")
        >>> index.save(p)
        >>> og.StoreIndex.load(p).stores["category"].tolist()
        ['tea']
        """
        from .._io import save_stores

        with self._slots.lock:
            save_stores(self.stores, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> StoreIndex:
        """Read an index written by :meth:`save`.

        Raises
        ------
        IndexFormatError
            The file is corrupt, truncated, of a newer format version, or not an o2o_geo index.

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> index = og.StoreIndex(og.sample_stores())
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "stores.o2oidx")
        ...     index.save(path)
        ...     loaded = og.StoreIndex.load(path)
        >>> len(loaded), loaded.stores.columns == index.stores.columns
        (50, True)
        >>> hit = loaded.nearest(31.2304, 121.4737, k=1)
        >>> print(hit.store_id[0], f"{hit.distance_m[0]:.1f} m")
        lucky-09 652.3 m
        """
        from .._io import load_stores

        return cls(load_stores(path), **kwargs)
