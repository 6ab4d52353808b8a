"""StoreIndex: exact WGS84 nearest, radius and service-area queries over stores.

How a query stays exact and fast
--------------------------------
Stores live as earth-centred (ECEF) points in a kd-tree.  A query asks the tree
for a few more candidates than it needs by chord (straight-line) distance and
turns each chord into its geodesic distance (:mod:`._geodesy`: in closed form up
to 100 km, an Andoyer-Lambert estimate with an error bound beyond).  Then it
checks a certificate that holds at any distance: every store within geodesic
``D`` of the query lies within the chord :func:`~._geodesy.chord_reach_m` of
``D`` (proof in :mod:`._geodesy`), and every store the tree did not return is at
least as far by chord as the last one it did; so once that last chord is beyond
the reach of the k-th distance, no other store can enter the top k.  A row
whose certificate fails fetches every store within that reach in one ball
search.  Far candidates whose bounds overlap the k-th place are measured with
GeographicLib, the others are dropped without it; candidates whose distances
are closer than their error bounds are settled by GeographicLib.  The answer
is therefore the brute-force GeographicLib ranking, ties broken by store
position, and every distance returned is within 1e-6 m of GeographicLib's
(GeographicLib's own beyond 100 km).

Memory stays bounded whatever the geometry: batches run in chunks, candidate
blocks are cache-sized, and a ball search never holds more than
:data:`_PAIR_BUDGET` (query, store) pairs at once (:meth:`StoreIndex.within`
too, apart from its output).  A mapping ``where=`` filter that keeps less than
half the stores gets a kd-tree of its own, cached until the index changes.

Live updates
------------
``add`` puts new stores in a small delta tree and ``remove`` marks stores dead;
queries merge the main and delta trees and skip dead stores.  When the delta
or the dead outgrow :attr:`StoreIndex.compact_fraction` of the index, the next
update compacts it into one tree (an amortised cost, or call :meth:`compact`
yourself at a quiet moment).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree

from ._geodesy import (
    CHORD_SERIES_MAX_M,
    CHORD_SLACK_M,
    _ecef,
    _ecef_scalar,
    _normal_norm,
    _parametric_unit,
    andoyer_lambert_m,
    chord_error_bound_m,
    chord_reach_m,
    chord_reach_scalar_m,
    chord_to_geodesic_m,
    chord_to_geodesic_scalar_m,
    geodesic_inverse_m,
    geodesic_inverse_scalar_m,
)
from ._joins import join_nearest, join_serving, join_within
from ._results import Matches, Neighbors, Pairs, StoreRadii
from ._stores import StoreSet
from ._types import FloatArray, IntArray, Where
from ._validate import as_latlon, check_distance_m, check_k, check_number, warn_user
from .errors import (
    EmptyResultWarning,
    InvalidParameterError,
    InvalidRecordError,
    ShapeMismatchError,
    StaleRadiiError,
    UnknownStoreError,
)

#: The most (point, rank) results one nearest() call returns: 2**27, about 3 GiB of distances, rows and ids.
MAX_RESULT_CELLS = 2**27

__all__ = ["StoreIndex"]

#: Batch queries are cut into chunks of at most this many points (cache-sized) run on a thread pool.
_CHUNK = 16_384
#: Batches of at least this many points use the thread pool, in chunks of at least _MIN_CHUNK points.
_MIN_THREADED = 4_096
_MIN_CHUNK = 1_024
#: At most this many (query, candidate) pairs are held at once by one chunk's search.
_PAIR_BUDGET = 1 << 20
#: Pairs computed on at once where no memory bound forces a size (cache-sized blocks run faster).
_CACHE_PAIRS = 1 << 16
#: Ball searches over more stores than this count their pairs first (to group the queries);
#: over fewer than _BRUTE_MAX they compare every store, without a tree.
_COUNT_ABOVE = 65_536
_BRUTE_MAX = 256
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _n_threads(workers: int) -> int:
    return (os.cpu_count() or 1) if workers == -1 else workers


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide thread pool per size (numpy and cKDTree release the GIL)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="o2o_geo")
        return pool


_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class _Segment:
    """A kd-tree over some slots; ``slots[i]`` is the slot of tree point ``i``."""

    tree: cKDTree
    slots: IntArray
    identity: bool = False  # slots == arange(n): tree points are the slots
    points_t: FloatArray | None = None  # (3, n) ECEF points of a small segment, searched by brute force

    @property
    def n(self) -> int:
        return int(self.slots.shape[0])


def _segment(xyz: FloatArray, slots: IntArray) -> _Segment | None:
    if slots.shape[0] == 0:
        return None
    identity = bool(slots[0] == 0 and slots[-1] == slots.shape[0] - 1)  # slots are sorted and unique
    pts = xyz[slots]
    small = pts.T.copy() if slots.shape[0] <= _BRUTE_MAX else None
    return _Segment(cKDTree(pts, leafsize=32), slots, identity, small)


class _StoreTable:
    """A result's store table, built on first use; pickles as the table itself."""

    __slots__ = ("_build", "_table")

    def __init__(self, table: StoreSet | None, build: Callable[[], StoreSet] | None = None) -> None:
        self._table = table
        self._build = build

    def __call__(self) -> StoreSet:
        if self._table is None:
            assert self._build is not None
            self._table, self._build = self._build(), None
        return self._table

    def __getstate__(self) -> dict[str, Any]:
        return {"table": self()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._table, self._build = state["table"], None


class _Queries:
    """Checked query points and what the distance kernels need of them, computed once per batch.

    ``lat``, ``lon``, ``z`` (ECEF z), ``gn`` (normal norm) and ``r`` (distance
    from the centre) have shape (n,); ``xyz`` (ECEF) and ``u`` (parametric unit
    vectors, computed on first use: only far candidates need them) shape (n, 3).
    """

    __slots__ = ("lat", "lon", "xyz", "z", "gn", "r", "_u")

    def __init__(self, lat: FloatArray, lon: FloatArray) -> None:
        self.lat, self.lon = lat, lon
        self.xyz = _ecef(lat, lon)
        self.z = self.xyz[:, 2].copy()
        self.gn = _normal_norm(self.xyz)
        self.r = np.sqrt(np.einsum("ij,ij->i", self.xyz, self.xyz))
        self._u: FloatArray | None = None

    @property
    def u(self) -> FloatArray:
        if self._u is None:
            self._u = _parametric_unit(self.lat, self.lon)
        return self._u


_BlockDistances = tuple[FloatArray, FloatArray, tuple[IntArray, IntArray, FloatArray] | None]


def _as_store_set(stores: Any) -> StoreSet:
    """A DataFrame or GeoDataFrame given to StoreIndex(...) as a StoreSet; anything else is refused."""
    columns = getattr(stores, "columns", None)
    if columns is not None and hasattr(stores, "iloc"):
        if hasattr(stores, "crs") and not {"lat", "lon"} <= set(columns):
            return StoreSet.from_geodataframe(stores)
        return StoreSet.from_dataframe(stores)
    raise InvalidParameterError(
        f"StoreIndex takes a StoreSet, a pandas DataFrame or a geopandas GeoDataFrame; got {type(stores).__name__} "
        "(for a list of dicts use StoreIndex.from_records)"
    )


def _keep_block_rows(pre: _BlockDistances, keep: np.ndarray) -> _BlockDistances:
    """The block distances of the rows in the boolean mask ``keep`` (rough entries renumbered)."""
    dist, err, rough = pre
    if rough is not None:
        rr, fc, e = rough
        sel = keep[rr]
        new_row = np.cumsum(keep) - 1
        rough = (new_row[rr[sel]], fc[sel], e[sel]) if sel.any() else None
    return dist[keep], err[keep], rough


def _rough_kth(
    dist: FloatArray, err: FloatArray, rough: tuple[IntArray, IntArray, FloatArray], k: int, max_d: float | None
) -> tuple[IntArray, IntArray, FloatArray]:
    """Upper bounds of the k-th distance of the block rows that have rough entries.

    Returns those rows, the row (among them) of each rough entry, and each
    row's k-th smallest upper bound, capped at ``max_d``.
    """
    rr, fc, e = rough
    lr, loc = np.unique(rr, return_inverse=True)
    upper = dist[lr] + err[lr][:, None]
    upper[loc, fc] = dist[rr, fc] + e
    kth = np.partition(upper, k - 1, axis=1)[:, k - 1] if dist.shape[1] >= k else np.full(lr.size, np.inf)
    if max_d is not None:
        np.minimum(kth, max_d, out=kth)
    return lr, loc, kth


def _norm3(d: FloatArray) -> FloatArray:
    """Row norms of an (m, 3) array, summed in the order cKDTree sums them (so chords agree to the bit)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.sqrt((x * x + y * y) + z * z)


def _row_groups(counts: IntArray, budget: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose counts add up to at most ``budget`` (a single larger row stands alone)."""
    n = int(counts.shape[0])
    cum = np.cumsum(counts)
    groups = []
    a = 0
    while a < n:
        base = int(cum[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(cum, base + budget, side="right")))
        groups.append((a, min(b, n)))
        a = b
    return groups


def _ball_lists(seg: _Segment, xyz: FloatArray, reach: FloatArray, workers: int) -> tuple[IntArray, IntArray]:
    """(query, tree point) pairs with chord <= ``reach`` (one radius per query), as flat arrays."""
    lists = seg.tree.query_ball_point(xyz, r=reach, workers=workers, return_sorted=False)
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(counts.sum()))
    return np.repeat(np.arange(xyz.shape[0]), counts), flat


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
            stores = _as_store_set(stores)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers == 0 or workers < -1:
            raise InvalidParameterError(f"workers must be -1 or a positive int; got {workers!r}")
        compact_fraction = check_number(compact_fraction, "compact_fraction", low=0.0, high=1.0, low_open=True)
        self.workers = workers
        self.compact_fraction = float(compact_fraction)
        self._lock = threading.RLock()
        self._load(stores)

    # ------------------------------------------------------------ building
    def _load(self, stores: StoreSet) -> None:
        """(Re)build every structure from a live store set (slots = rows)."""
        n = len(stores)
        self._chunks: list[StoreSet] = [stores]
        self._ids = stores.store_id.copy()
        self._lat = stores.lat.copy()
        self._lon = stores.lon.copy()
        self._xyz = _ecef(self._lat, self._lon)
        self._z = self._xyz[:, 2].copy()
        self._gn = _normal_norm(self._xyz)
        self._u = _parametric_unit(self._lat, self._lon)
        self._areas = stores.service_area_geometry.copy()
        self._radius = stores.service_radius_m.copy()
        self._alive = np.ones(n, dtype=bool)
        self._n_dead = 0
        self._main_end = n
        self._id_to_slot: dict[Any, int] = {sid: i for i, sid in enumerate(self._ids.tolist())}
        self._main = _segment(self._xyz, np.arange(n, dtype=np.int64))
        self._delta: _Segment | None = None
        self._version = getattr(self, "_version", -1) + 1  # monotonic: callers key caches on it
        self._caches: dict[Any, Any] = {}

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
        return int(self._alive.shape[0] - self._n_dead)

    def __repr__(self) -> str:
        extra = [c for c in self._chunks[0].columns if c not in ("store_id", "lat", "lon")]
        n_areas = int(np.count_nonzero(self._alive & (~np.isnan(self._radius) | (self._areas != None))))  # noqa: E711
        churn = self._alive.shape[0] - self._main_end
        live = f", {churn} added and {self._n_dead} removed since the last compaction" if churn or self._n_dead else ""
        return f"StoreIndex({len(self):,} stores, columns {extra}, {n_areas:,} with a service area{live})"

    def __contains__(self, store_id: object) -> bool:
        return isinstance(store_id, Hashable) and store_id in self._id_to_slot

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (e.g. to ship the index to Dask workers): the arrays and trees, not the lock or caches.

        Examples
        --------
        >>> import pickle, o2o_geo as og
        >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
        >>> pickle.loads(pickle.dumps(index)).nearest(0.0, 0.001, k=1).store_id.tolist()
        ['a']
        """
        with self._lock:  # a consistent snapshot: updates replace the arrays, except these three changed in place
            state = self.__dict__.copy()
            state.update(_alive=self._alive.copy(), _id_to_slot=dict(self._id_to_slot), _chunks=list(self._chunks))
        del state["_lock"], state["_caches"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._caches = {}

    # ------------------------------------------------------------ live view
    def _cached(self, key: Any, build: Any) -> Any:
        with self._lock:  # a compaction must not swap the arrays under a build
            entry = self._caches.get(key)
            if entry is None or entry[0] != self._version:
                entry = (self._version, build())
                self._caches[key] = entry
            return entry[1]

    def _physical(self) -> StoreSet:
        """Every slot (dead ones included) as one StoreSet."""
        return self._cached("physical", lambda: StoreSet._concat(self._chunks))

    def _slot_to_pos(self) -> IntArray:
        return self._cached("slot_to_pos", lambda: np.where(self._alive, np.cumsum(self._alive) - 1, -1))

    def _live_ids(self) -> np.ndarray:
        return self._cached("live_ids", lambda: self._ids[self._alive])

    def _live_latlon(self) -> tuple[FloatArray, FloatArray]:
        """Latitudes and longitudes of the live stores by position (results carry them for ``to_geodataframe``)."""
        if self._n_dead == 0:  # every slot is alive, so slots are positions
            return self._lat, self._lon
        return self._cached("live_latlon", lambda: (self._lat[self._alive], self._lon[self._alive]))

    def _stores_at_query(self) -> _StoreTable:
        """The live store table as it is now, built only if a result asks for it (``Neighbors.store``)."""
        entry = self._caches.get("stores")
        if entry is not None and entry[0] == self._version:
            return _StoreTable(entry[1])
        chunks, alive, version = tuple(self._chunks), self._alive, self._version  # never changed in place

        def build() -> StoreSet:
            with self._lock:
                if self._version == version:
                    return self.stores
            whole = chunks[0] if len(chunks) == 1 else StoreSet._concat(chunks)
            return whole if bool(alive.all()) else whole._take(np.flatnonzero(alive))

        return _StoreTable(None, build)

    @property
    def stores(self) -> StoreSet:
        """The live stores; ``position`` in every result is a row of this table."""
        return self._cached(
            "stores",
            lambda: (
                self._chunks[0]
                if len(self._chunks) == 1 and self._n_dead == 0
                else self._physical()._take(np.flatnonzero(self._alive))
            ),
        )

    # ------------------------------------------------------------ updates
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
        from ._stores import _check_unique

        with self._lock:  # the duplicate check must see the same id map the update changes
            self._check_id_kind(new.store_id)
            _check_unique(new.store_id, self._id_to_slot)
            start = self._alive.shape[0]
            xyz = _ecef(new.lat, new.lon)
            self._chunks.append(new)
            self._ids = np.concatenate([self._ids, new.store_id])
            self._lat = np.concatenate([self._lat, new.lat])
            self._lon = np.concatenate([self._lon, new.lon])
            self._xyz = np.concatenate([self._xyz, xyz])
            self._z = self._xyz[:, 2].copy()
            self._gn = np.concatenate([self._gn, _normal_norm(xyz)])
            self._u = np.concatenate([self._u, _parametric_unit(new.lat, new.lon)])
            self._areas = np.concatenate([self._areas, new.service_area_geometry])
            self._radius = np.concatenate([self._radius, new.service_radius_m])
            self._alive = np.concatenate([self._alive, np.ones(len(new), dtype=bool)])
            for i, sid in enumerate(new.store_id.tolist()):
                self._id_to_slot[sid] = start + i
            self._delta = _segment(self._xyz, np.arange(self._main_end, self._alive.shape[0], dtype=np.int64))
            self._changed()

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
        with self._lock:  # slots are looked up under the lock: compaction renumbers them
            slots = []
            seen = set()
            for i, key in enumerate(keys):
                slot = self._id_to_slot.get(key)
                if slot is None:
                    raise UnknownStoreError(f"store_id {key!r} (item {i}) is not in the index; nothing was removed")
                if key not in seen:
                    seen.add(key)
                    slots.append(slot)
            if not slots:
                return
            alive = self._alive.copy()  # copy on write: results hold the old mask (their store table)
            alive[np.asarray(slots, dtype=np.int64)] = False
            self._alive = alive
            self._n_dead += len(slots)
            for key in seen:
                del self._id_to_slot[key]
            self._changed()

    def _check_id_kind(self, new_ids: np.ndarray) -> None:
        """Refuse ids of the other kind (int vs str) than the index already holds."""
        if len(new_ids) == 0 or len(self._ids) == 0:
            return
        have_str = isinstance(self._ids[0], str)
        new_str = isinstance(new_ids[0], str)
        if have_str != new_str:
            kind = "strings" if have_str else "ints"
            raise InvalidRecordError(
                f"the index holds {kind} as store ids; store_id {new_ids[0]!r} is not one (nothing was added)"
            )

    def _changed(self) -> None:
        self._version += 1
        churn = self._n_dead + (self._alive.shape[0] - self._main_end)
        if churn > max(4096, self.compact_fraction * max(len(self), 1)):
            self.compact()

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
        with self._lock:
            self._load(self.stores)

    # ------------------------------------------------------------ segments
    def _segments_for(self, where: Where) -> tuple[list[_Segment], np.ndarray | None]:
        """Trees to search and the slots to skip in them (``None``: skip nothing)."""
        segs = [s for s in (self._main, self._delta) if s is not None]
        dead = None if self._n_dead == 0 else ~self._alive
        if where is None:
            return segs, dead
        key = _where_key(where)
        if key is not None:
            return self._cached(("where", key), lambda: self._filtered(self._eligible(where)))
        return self._filtered(self._eligible(where))

    def _filtered(self, eligible: np.ndarray) -> tuple[list[_Segment], np.ndarray | None]:
        n_ok = int(eligible.sum())
        segs = [s for s in (self._main, self._delta) if s is not None]
        if n_ok >= 0.5 * len(self):
            return segs, ~eligible
        seg = _segment(self._xyz, np.flatnonzero(eligible).astype(np.int64))
        return ([seg] if seg is not None else []), None

    def _eligible(self, where: Where) -> np.ndarray:
        """Boolean mask over slots: alive and passing the filter."""
        n_live = len(self)
        if callable(where):
            try:
                mask = np.asarray(where(self.stores.table()))
            except Exception as exc:  # noqa: BLE001 - the caller's function: named, and chained
                raise InvalidParameterError(f"where(stores) raised {type(exc).__name__}: {exc}") from exc
            return self._live_mask_to_slots(mask, n_live, "where(...) returned")
        if isinstance(where, Mapping):
            table = self._physical()
            mask = np.ones(self._alive.shape[0], dtype=bool)
            for col, want in where.items():
                if col not in table.columns:
                    raise InvalidParameterError(f"where= names column {col!r}; the stores have {table.columns}")
                values = table[col]
                if isinstance(want, (list, tuple, set, frozenset, np.ndarray)):
                    hit = np.isin(
                        values, np.asarray(list(want), dtype=values.dtype if values.dtype != object else object)
                    )
                else:
                    hit = np.asarray(values == want, dtype=bool)
                    if hit.shape != mask.shape:  # e.g. comparing numbers with a string
                        hit = np.zeros(mask.shape, dtype=bool)
                mask &= hit
                _warn_missing_values(where, col, want, values[self._alive], hit[self._alive])
            out = mask & self._alive
            if len(where) > 1 and not out.any():
                warn_user(
                    f"where={dict(where)!r} matches no store: each value exists, but no store has them all",
                    EmptyResultWarning,
                )
            return out
        return self._live_mask_to_slots(np.asarray(where), n_live, "where mask has")

    def _live_mask_to_slots(self, mask: np.ndarray, n_live: int, what: str) -> np.ndarray:
        if mask.dtype != bool or mask.shape != (n_live,):
            raise InvalidParameterError(
                f"{what} dtype {mask.dtype} shape {mask.shape}; expected a boolean mask of shape ({n_live},) "
                "over index.stores"
            )
        out = np.zeros(self._alive.shape[0], dtype=bool)
        out[self._alive] = mask
        return out

    # ------------------------------------------------------------ distances
    def _pair_distance_m(
        self, q: _Queries, qi: IntArray, slots: IntArray, chord_m: FloatArray
    ) -> tuple[FloatArray, FloatArray, np.ndarray]:
        """Distance estimates of (query ``qi``, slot) pairs given as flat arrays.

        Returns the distance, its error bound and a mask of the rough pairs:
        chords up to :data:`CHORD_SERIES_MAX_M` are converted in closed form
        (error below 1e-6 m), longer ones are Andoyer-Lambert estimates whose
        bound is metres; the caller measures those with GeographicLib where
        the bound matters.
        """
        rough = chord_m > CHORD_SERIES_MAX_M
        n_rough = int(np.count_nonzero(rough))
        if n_rough == rough.shape[0]:
            dist, err = andoyer_lambert_m(q.u[qi], self._u[slots])
            return dist, err, rough
        if n_rough:
            short = ~rough
            dist = np.empty(chord_m.shape[0])
            err = np.empty(chord_m.shape[0])
            dist[short], err[short] = self._series_m(q, qi[short], slots[short], chord_m[short])
            dist[rough], err[rough] = andoyer_lambert_m(q.u[qi[rough]], self._u[slots[rough]])
            return dist, err, rough
        dist, err = self._series_m(q, qi, slots, chord_m)
        return dist, err, rough

    def _series_m(
        self, q: _Queries, qi: IntArray, slots: IntArray, chord_m: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Closed-form geodesic lengths of chords up to :data:`CHORD_SERIES_MAX_M`, and their error bounds."""
        dist = chord_to_geodesic_m(chord_m, self._z[slots] - q.z[qi], 0.5 * (q.gn[qi] + self._gn[slots]))
        return dist, np.asarray(chord_error_bound_m(chord_m), dtype=np.float64)

    def _block_distance_m(
        self,
        c: FloatArray,
        s: IntArray,
        rows: IntArray,
        q_z: FloatArray,
        q_gn: FloatArray,
        q_u: FloatArray,
    ) -> _BlockDistances:
        """Distance estimates of an (r, m) block of candidates (``inf`` where ``s < 0``).

        Returns the distances, one error bound per row for the closed-form
        entries (the bound at the row's longest such chord), and the rough
        entries (chord over :data:`CHORD_SERIES_MAX_M`) as (row, column,
        error bound) triples, or ``None`` when there are none.
        """
        valid_all = bool((s >= 0).all())
        sv = s if valid_all else np.maximum(s, 0)
        cv = c if valid_all else np.where(s >= 0, c, 0.0)
        dz = self._z[sv]
        dz -= q_z[rows][:, None]
        gnm = self._gn[sv]
        gnm += q_gn[rows][:, None]
        gnm *= 0.5
        dist = chord_to_geodesic_m(cv, dz, gnm)
        c_max = cv.max(axis=1) if cv.shape[1] else np.zeros(cv.shape[0])
        rough = None
        long_rows = np.flatnonzero(c_max > CHORD_SERIES_MAX_M)
        if long_rows.size:
            c_max[long_rows] = CHORD_SERIES_MAX_M  # their closed-form entries are shorter
            fr, fc = np.nonzero(cv[long_rows] > CHORD_SERIES_MAX_M)
            rr = long_rows[fr]
            est, e = andoyer_lambert_m(q_u[rows[rr]], self._u[sv[rr, fc]])
            dist[rr, fc] = est
            rough = (rr, fc, e)
        err = np.asarray(chord_error_bound_m(c_max), dtype=np.float64)
        if not valid_all:
            dist[s < 0] = np.inf
        return dist, err, rough

    # ------------------------------------------------------------ nearest
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
        with self._lock:
            segs, skip = self._segments_for(where)
            if is_scalar and self._n_dead == 0 and len(segs) == 1 and skip is None:
                # one tree and nothing to skip (the index's or a filter's): slots are positions
                fast = self._nearest_scalar(float(lat_a[0]), float(lon_a[0]), k, max_d, segs[0])
                if fast is not None:
                    return fast
            dist, slots = self._knn(lat_a, lon_a, k, max_d, segs, skip)
            pos = np.full(slots.shape, -1, dtype=np.int64)
            found = slots >= 0
            pos[found] = self._slot_to_pos()[slots[found]]
            ids = self._live_ids()
            s_lat, s_lon = self._live_latlon()
            table = self._stores_at_query()
        if is_scalar:
            return Neighbors(dist[0], pos[0], ids, s_lat, s_lon, table)
        return Neighbors(dist, pos, ids, s_lat, s_lon, table)

    def _nearest_scalar(self, lat: float, lon: float, k: int, max_d: float | None, seg: _Segment) -> Neighbors | None:
        """Pure-Python path for one point searched in one tree (the index's or a filter's).

        Returns ``None`` when the batch path must settle it.  The same rule as
        :meth:`_knn` for one row with k + 1 candidates: give up on any near-tie
        or a borderline ``max_distance_m``; far candidates go to
        :meth:`_nearest_scalar_far`.  Needs an index with no removed stores
        (slots are then positions).
        """
        x, y, z, gn = _ecef_scalar(lat, lon)
        kk = k + 1
        kq = min(kk, seg.n)
        ub = math.inf if max_d is None else max_d + 1.0
        chords_a, idx_a = seg.tree.query((x, y, z), k=kq, distance_upper_bound=ub)
        chords = np.atleast_1d(chords_a).tolist()
        idx = np.atleast_1d(idx_a).tolist()
        if chords[-1] == math.inf:
            found = np.asarray([i for c, i in zip(chords, idx, strict=False) if c != math.inf], dtype=np.int64)
        else:
            found = np.atleast_1d(idx_a)
        if not seg.identity:  # tree points to slots
            found = seg.slots[found]
            idx = found.tolist()
        zs = self._z.take(found).tolist()
        gns = self._gn.take(found).tolist()
        prev_hi = -math.inf
        dist: list[float] = []
        errs: list[float] = []
        if chords[len(found) - 1] > CHORD_SERIES_MAX_M:
            return self._nearest_scalar_far(lat, lon, (x, y, z), gn, k, max_d, chords, found, seg)
        for c, zi, gi in zip(chords, zs, gns, strict=False):
            s = chord_to_geodesic_scalar_m(c, zi - z, 0.5 * (gn + gi))
            e = 2e-8 + 1e-31 * c**5  # chord_error_bound_m, inlined
            if s - e <= prev_hi or (max_d is not None and abs(s - max_d) <= e):
                return None
            if max_d is not None and s > max_d:
                return None  # chord order may differ from geodesic order here: let the batch path decide
            prev_hi = s + e
            dist.append(s)
            errs.append(e)
        c_next = chords[-1] if kq == kk else math.inf
        thr = dist[k - 1] + errs[k - 1] if len(dist) >= k else math.inf
        if max_d is not None:
            thr = min(thr, max_d)
        if not (c_next == math.inf or c_next - CHORD_SLACK_M > thr):
            return None
        m = min(k, len(dist))
        pad = k - m
        out_d = np.array(dist[:m] + [math.inf] * pad)
        out_p = np.array(idx[:m] + [-1] * pad, dtype=np.int64)
        return Neighbors(out_d, out_p, self._ids, self._lat, self._lon, self._stores_at_query())

    def _nearest_scalar_far(
        self,
        lat: float,
        lon: float,
        xyz: tuple[float, float, float],
        gn: float,
        k: int,
        max_d: float | None,
        chords: list[float],
        found: IntArray,
        seg: _Segment,
    ) -> Neighbors | None:
        """:meth:`_nearest_scalar` when a candidate is farther than :data:`CHORD_SERIES_MAX_M` by chord.

        The far candidates get Andoyer-Lambert bounds first.  When the chord
        reach of the k-th upper bound rules out the stores the tree did not
        return, the candidates that can be among the k nearest are measured
        with GeographicLib and sorted; otherwise the single-row ball search of
        the batch path gives the answer.  ``None`` on a near-tie or a
        borderline ``max_distance_m`` (the batch path settles those).
        """
        x, y, z = xyz
        m = found.shape[0]
        c_arr = np.asarray(chords[:m])
        dist = np.empty(m)
        errs = np.empty(m)
        short = c_arr <= CHORD_SERIES_MAX_M
        for j in np.flatnonzero(short).tolist():
            i = int(found[j])
            dist[j] = chord_to_geodesic_scalar_m(chords[j], float(self._z[i]) - z, 0.5 * (gn + float(self._gn[i])))
            errs[j] = chord_error_bound_m(chords[j])
        far = ~short
        fi = found[far]
        u = _parametric_unit(np.array([lat]), np.array([lon]))
        dist[far], errs[far] = andoyer_lambert_m(np.repeat(u, fi.shape[0], axis=0), self._u[fi])
        upper = dist + errs
        thr = float(np.partition(upper, k - 1)[k - 1]) if m >= k else math.inf
        if max_d is not None:
            thr = min(thr, max_d)
        kk = k + 1
        c_next = chords[-1] if len(chords) == kk and chords[-1] != math.inf else math.inf
        reach = chord_reach_scalar_m(thr, math.sqrt(x * x + y * y + z * z))
        if c_next != math.inf and c_next <= reach:  # a store the tree did not return may be nearer
            if thr == math.inf:
                return None
            q = _Queries(np.array([lat]), np.array([lon]))
            d2, s2 = self._ball_knn(
                np.zeros(1, dtype=np.int64), np.array([reach]), np.array([thr]), k, max_d, [seg], None, q
            )
            return Neighbors(d2[0], s2[0], self._ids, self._lat, self._lon, self._stores_at_query())
        keep = dist - errs <= thr  # the others have k candidates certainly nearer
        measure = keep & far
        fm = found[measure]
        dist[measure] = geodesic_inverse_m(
            np.full(fm.shape[0], lat), np.full(fm.shape[0], lon), self._lat[fm], self._lon[fm]
        )
        errs[measure] = 0.0
        dist, errs, found = dist[keep], errs[keep], found[keep]
        order = np.lexsort((found, dist))
        dist, errs, found = dist[order], errs[order], found[order]
        if (np.diff(dist) <= errs[1:] + errs[:-1]).any():
            return None  # a near-tie: the batch path settles it
        if max_d is not None:
            if (np.abs(dist - max_d) <= errs).any():
                return None
            within = dist <= max_d
            dist, found = dist[within], found[within]
        mk = min(k, dist.shape[0])
        out_d = np.full(k, np.inf)
        out_p = np.full(k, -1, dtype=np.int64)
        out_d[:mk] = dist[:mk]
        out_p[:mk] = found[:mk]
        return Neighbors(out_d, out_p, self._ids, self._lat, self._lon, self._stores_at_query())

    def _candidates(
        self, q_xyz: FloatArray, kk: int, ub: float, segs: list[_Segment], skip: np.ndarray | None, workers: int
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        """Kk nearest by chord from each segment: chords, slots (-1: none/skipped), next-chord bound."""
        n = q_xyz.shape[0]
        chords, slots = [], []
        c_next = np.full(n, np.inf)
        for seg in segs:
            kq = min(kk, seg.n)
            d, i = seg.tree.query(q_xyz, k=kq, distance_upper_bound=ub, workers=workers)
            d = d.reshape(n, kq)
            i = i.reshape(n, kq)
            if seg.identity and (ub == math.inf or np.isfinite(d[:, -1]).all()):
                s = i  # every candidate found, tree points are slots
            else:
                found = i < seg.n
                s = np.where(found, seg.slots[np.minimum(i, seg.n - 1)], -1)
            if skip is not None:
                s[(s >= 0) & skip[np.maximum(s, 0)]] = -1
            if kq == kk:  # the segment may hold more: its last chord bounds the rest
                np.minimum(c_next, d[:, -1], out=c_next)
            chords.append(d)
            slots.append(s)
        if not chords:
            return np.full((n, 0), np.inf), np.full((n, 0), -1, dtype=np.int64), c_next
        if len(chords) == 1 and skip is None:
            return chords[0], slots[0], c_next  # already in chord order
        c = np.concatenate(chords, axis=1) if len(chords) > 1 else chords[0]
        s = np.concatenate(slots, axis=1) if len(slots) > 1 else slots[0]
        # chord order, skipped entries last: most rows then need no sort by distance
        c = np.where(s >= 0, c, np.inf)
        order = np.argsort(c, axis=1)
        c = np.take_along_axis(c, order, 1)
        s = np.take_along_axis(s, order, 1)
        if c.shape[1] > kk:  # keep kk; the first one dropped bounds everything not kept
            np.minimum(c_next, c[:, kk], out=c_next)
            c, s = c[:, :kk], s[:, :kk]
        return c, s, c_next

    def _knn(
        self,
        lat: FloatArray,
        lon: FloatArray,
        k: int,
        max_d: float | None,
        segs: list[_Segment],
        skip: np.ndarray | None,
        workers: int = 1,
        threaded: bool = True,
    ) -> tuple[FloatArray, IntArray]:
        """K nearest slots of each point; large batches run in chunks on a thread pool.

        Each chunk asks the trees for a few candidates by chord and ranks them.
        A row whose certificate fails (a store it did not see could still be
        nearer) fetches every store within the chord reach of its k-th
        distance (:func:`chord_reach_m`) in one ball query, in groups of at
        most :data:`_PAIR_BUDGET` candidates, so memory stays bounded whatever
        the geometry.
        """
        n = lat.shape[0]
        threads = _n_threads(self.workers)
        if threaded and n >= _MIN_THREADED and threads > 1:
            # visit the points in a spatial order (half-degree cells) so that neighbouring
            # queries share tree nodes and store rows in cache, then put results back
            chunk = max(_MIN_CHUNK, min(_CHUNK, -(-n // (4 * threads))))
            order = _spatial_order(lat, lon)
            lat_s, lon_s = lat[order], lon[order]
            bounds = list(range(0, n, chunk)) + [n]
            parts = _pool(threads).map(
                lambda ab: self._knn(lat_s[ab[0] : ab[1]], lon_s[ab[0] : ab[1]], k, max_d, segs, skip, threaded=False),
                zip(bounds[:-1], bounds[1:], strict=False),
            )
            ds, ss = zip(*parts, strict=False)
            out_d = np.empty((n, k))
            out_s = np.empty((n, k), dtype=np.int64)
            out_d[order] = np.concatenate(ds)
            out_s[order] = np.concatenate(ss)
            return out_d, out_s
        out_d = np.full((n, k), np.inf)
        out_s = np.full((n, k), -1, dtype=np.int64)
        total = sum(s.n for s in segs)
        if n == 0 or total == 0:
            return out_d, out_s
        q = _Queries(lat, lon)
        ub = math.inf if max_d is None else max_d + 1.0  # chords never exceed geodesics
        n_skip = 0 if skip is None else int(skip[np.concatenate([s.slots for s in segs])].sum())
        frac_ok = max(0.05, 1.0 - n_skip / total)
        kk = min(int(math.ceil((k + 1) / frac_ok)) + (0 if n_skip == 0 else 2), total)
        pending = np.arange(n)
        while pending.size:
            retry = []
            step = max(1, _CACHE_PAIRS // kk)  # rows x candidates per block stays bounded
            for a in range(0, pending.size, step):
                rows = pending[a : a + step]
                c, s, c_next = self._candidates(q.xyz[rows], kk, ub, segs, skip, workers)
                pre: _BlockDistances | None = self._block_distance_m(c, s, rows, q.z, q.gn, q.u)
                if pre is not None and pre[2] is not None and kk < total:
                    # far rows whose certificate fails even on the candidates' upper bounds go
                    # straight to the ball search, before any GeographicLib call is spent on them
                    lr, _, kth = _rough_kth(pre[0], pre[1], pre[2], k, max_d)
                    reach = chord_reach_m(kth, q.r[rows[lr]])
                    fail = np.isfinite(kth) & (c_next[lr] <= reach)
                    if fail.any():
                        fr = lr[fail]
                        out_d[rows[fr]], out_s[rows[fr]] = self._ball_knn(
                            rows[fr], reach[fail], kth[fail], k, max_d, segs, skip, q
                        )
                        keep = np.ones(rows.size, dtype=bool)
                        keep[fr] = False
                        rows, c, s, c_next = rows[keep], c[keep], s[keep], c_next[keep]
                        pre = _keep_block_rows(pre, keep)
                dist, slots, err = self._rank_rows(c, s, rows, k, q, max_d, pre)
                kcol = min(k, dist.shape[1])
                thr = dist[:, k - 1] + err if kcol == k else np.full(rows.size, np.inf)
                if max_d is not None:
                    thr = np.minimum(thr, max_d)
                # certificate: a store not returned is at least c_next away by chord, and a store
                # within geodesic thr is within chord_reach(thr); so c_next > reach rules them all out
                reach = chord_reach_m(thr, q.r[rows])
                done = (c_next == np.inf) | (c_next > reach) | (kk >= total)
                r = rows[done]
                out_d[r, :kcol] = dist[done, :kcol]
                out_s[r, :kcol] = slots[done, :kcol]
                ball = ~done & np.isfinite(thr)
                if ball.any():
                    br = rows[ball]
                    out_d[br], out_s[br] = self._ball_knn(br, reach[ball], thr[ball], k, max_d, segs, skip, q)
                retry.append(rows[~done & ~ball])
            pending = np.concatenate(retry)
            kk = min(kk * 2, total)
        return out_d, out_s

    def _ball_knn(
        self,
        rows: IntArray,
        reach: FloatArray,
        thr: FloatArray,
        k: int,
        max_d: float | None,
        segs: list[_Segment],
        skip: np.ndarray | None,
        q: _Queries,
    ) -> tuple[FloatArray, IntArray]:
        """K nearest slots of each row among every store within its chord ``reach`` (which holds them all).

        ``thr`` is an upper bound of each row's k-th distance (or ``max_distance_m``):
        candidates whose lower bound exceeds it cannot be among the k nearest.
        """
        out = (np.full((rows.size, k), np.inf), np.full((rows.size, k), -1, dtype=np.int64))
        xyz = q.xyz[rows]
        for a, b in self._ball_groups(segs, xyz, reach):
            qs, ss = [], []
            for seg in segs:
                ql, i = self._ball_pairs(seg, xyz[a:b], reach[a:b], 1)
                qs.append(ql + a)
                ss.append(seg.slots[i])
            self._rank_ball(rows, np.concatenate(qs), np.concatenate(ss), thr, k, max_d, skip, q, out)
        return out

    def _rank_ball(
        self,
        rows: IntArray,
        ql: IntArray,
        s: IntArray,
        thr: FloatArray,
        k: int,
        max_d: float | None,
        skip: np.ndarray | None,
        q: _Queries,
        out: tuple[FloatArray, IntArray],
    ) -> None:
        """The k nearest of each row among (row ``ql``, slot ``s``) candidate pairs, written into ``out``."""
        if skip is not None and s.size:
            keep = ~skip[s]
            ql, s = ql[keep], s[keep]
        if not s.size:
            return
        qi = rows[ql]
        dist, err, rough = self._pair_distance_m(q, qi, s, _norm3(self._xyz[s] - q.xyz[qi]))
        maybe = dist - err <= thr[ql]  # the others have k stores certainly nearer
        ql, qi, s, dist, err, rough = ql[maybe], qi[maybe], s[maybe], dist[maybe], err[maybe], rough[maybe]
        self._measure(qi, s, dist, err, rough, q.lat, q.lon)
        if max_d is not None:
            self._measure(qi, s, dist, err, np.abs(dist - max_d) <= err, q.lat, q.lon)
            keep = dist <= max_d
            ql, qi, s, dist, err = ql[keep], qi[keep], s[keep], dist[keep], err[keep]
        ql, s, dist = self._order_pairs(ql, s, dist, err, qi, q.lat, q.lon)
        cnt = np.bincount(ql, minlength=rows.size)
        rank = np.arange(ql.size) - (np.cumsum(cnt) - cnt)[ql]
        top = rank < k
        out[0][ql[top], rank[top]] = dist[top]
        out[1][ql[top], rank[top]] = s[top]

    def _ball_groups(self, segs: list[_Segment], xyz: FloatArray, reach: FloatArray) -> list[tuple[int, int]]:
        """Row ranges whose ball searches return at most :data:`_PAIR_BUDGET` pairs (a larger single row alone)."""
        n, total = xyz.shape[0], sum(seg.n for seg in segs)
        brute = all(seg.points_t is not None for seg in segs)
        budget = _CACHE_PAIRS if brute else _PAIR_BUDGET  # brute force computes every pair: cache-sized
        if n * total <= budget:
            return [(0, n)]
        if brute or total <= _COUNT_ABOVE:  # small enough to bound by the store count: no counting pass
            step = max(1, budget // total)
            return [(a, min(a + step, n)) for a in range(0, n, step)]
        counts = sum(
            (np.asarray(seg.tree.query_ball_point(xyz, r=reach, return_length=True)) for seg in segs),
            np.zeros(n, dtype=np.int64),
        )
        return _row_groups(counts, _PAIR_BUDGET)

    def _ball_pairs(self, seg: _Segment, xyz: FloatArray, reach: FloatArray, workers: int) -> tuple[IntArray, IntArray]:
        """(query, tree point) pairs with chord <= ``reach`` (one per query); a small segment by brute force."""
        pts = seg.points_t
        if pts is None:
            return _ball_lists(seg, xyz, reach, workers)
        dx = xyz[:, 0:1] - pts[0]
        dy = xyz[:, 1:2] - pts[1]
        dz = xyz[:, 2:3] - pts[2]
        chord = np.sqrt((dx * dx + dy * dy) + dz * dz)  # as cKDTree sums them: chords agree to the bit
        qi, i = np.nonzero(chord <= reach[:, None])
        return qi.astype(np.int64), i.astype(np.int64)

    def _measure(
        self,
        qi: IntArray,
        s: IntArray,
        dist: FloatArray,
        err: FloatArray,
        which: np.ndarray,
        lat: FloatArray,
        lon: FloatArray,
    ) -> None:
        """Replace the distances of the pairs in ``which`` by GeographicLib's (error bound 0), in place."""
        if which.any():
            dist[which] = geodesic_inverse_m(lat[qi[which]], lon[qi[which]], self._lat[s[which]], self._lon[s[which]])
            err[which] = 0.0

    def _rank_rows(
        self,
        c: FloatArray,
        s: IntArray,
        rows: IntArray,
        k: int,
        q: _Queries,
        max_d: float | None,
        pre: _BlockDistances | None = None,
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        """Sort each row's candidates by exact geodesic distance, ties by slot.

        ``pre`` is the block's :meth:`_block_distance_m` if already computed.

        Returns distances (``inf`` and slot ``-1`` past the last store kept),
        slots, and each row's error bound (0 for rows settled by GeographicLib).
        Far candidates (rough estimates) that cannot be among the k nearest
        are dropped; the others are measured with GeographicLib.
        """
        lat, lon = q.lat, q.lon
        dist, err, rough = self._block_distance_m(c, s, rows, q.z, q.gn, q.u) if pre is None else pre
        if rough is not None:
            self._settle_rough(dist, s, err, rough, rows, k, max_d, lat, lon)
        if max_d is not None:
            over = dist - err[:, None] > max_d
            if over.any():
                dist[over] = np.inf
                s = np.where(over, -1, s)
        # rows already in order, every neighbour pair apart by more than the error bounds
        ok = _separated(dist, err)
        if max_d is not None:
            ok &= ~np.any(np.abs(dist - max_d) <= err[:, None], axis=1)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            sub_d, sub_s, sub_e = dist[bad], s[bad], err[bad]
            order = np.lexsort((sub_s, sub_d), axis=-1)
            sub_d = np.take_along_axis(sub_d, order, 1)
            sub_s = np.take_along_axis(sub_s, order, 1)
            still = ~_separated(sub_d, sub_e)
            if max_d is not None:
                still |= np.any(np.abs(sub_d - max_d) <= sub_e[:, None], axis=1)
            if still.any():
                # near-ties (or a borderline max_distance_m): settle them with GeographicLib
                fix = np.flatnonzero(still)
                fs = sub_s[fix]
                vr, vc = np.nonzero(fs >= 0)
                qi = rows[bad[fix][vr]]
                exact = np.full(fs.shape, np.inf)
                exact[vr, vc] = geodesic_inverse_m(lat[qi], lon[qi], self._lat[fs[vr, vc]], self._lon[fs[vr, vc]])
                if max_d is not None:
                    exact[exact > max_d] = np.inf
                fs = np.where(np.isinf(exact), -1, fs)
                o2 = np.lexsort((np.where(fs < 0, np.iinfo(np.int64).max, fs), exact), axis=-1)
                sub_d[fix] = np.take_along_axis(exact, o2, 1)
                sub_s[fix] = np.take_along_axis(fs, o2, 1)
                sub_e[fix] = 0.0
            dist[bad], s[bad], err[bad] = sub_d, sub_s, sub_e
        if not (s >= 0).all() or np.isinf(dist[:, -1:]).any():
            s = np.where(np.isinf(dist), -1, s)
        return dist, s, err

    def _settle_rough(
        self,
        dist: FloatArray,
        s: IntArray,
        err: FloatArray,
        rough: tuple[IntArray, IntArray, FloatArray],
        rows: IntArray,
        k: int,
        max_d: float | None,
        lat: FloatArray,
        lon: FloatArray,
    ) -> None:
        """Measure the far entries that can be among the k nearest with GeographicLib, drop the rest (in place)."""
        rr, fc, e = rough
        lr, loc, kth = _rough_kth(dist, err, rough, k, max_d)
        maybe = dist[rr, fc] - e <= kth[loc]
        mr, mc = rr[maybe], fc[maybe]
        if mr.size:
            qi = rows[mr]
            dist[mr, mc] = geodesic_inverse_m(lat[qi], lon[qi], self._lat[s[mr, mc]], self._lon[s[mr, mc]])
        # a far entry whose lower bound exceeds k upper bounds in its row cannot be among the k nearest
        dist[rr[~maybe], fc[~maybe]] = np.inf
        s[rr[~maybe], fc[~maybe]] = -1
        err[lr] = chord_error_bound_m(CHORD_SERIES_MAX_M)  # the row's closed-form entries are shorter

    # ------------------------------------------------------------ within
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
        with self._lock:
            q, s, dist, err = self._within_pairs(lat_a, lon_a, radius, where)
            dist, pos, offsets = self._sort_pairs(q, s, dist, err, lat_a, lon_a)
            q = np.repeat(np.arange(lat_a.shape[0]), np.diff(offsets))
            ids = self._live_ids()
            s_lat, s_lon = self._live_latlon()
            table = self._stores_at_query()
        if is_scalar:
            return Neighbors(dist, pos, ids, s_lat, s_lon, table)
        return Matches(q, dist, pos, offsets, ids, s_lat, s_lon, table)

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
        return self._version

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
        with self._lock:
            n = len(self)
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
                    f"radius_m[{i}] = {arr[i]!r} (store {self._live_ids()[i]!r}) must be a finite number of metres "
                    ">= 0, or NaN for none"
                )
            arr.flags.writeable = False
            by_slot = np.full(self._alive.shape[0], -1.0)
            by_slot[self._alive] = np.nan_to_num(arr, nan=-1.0)
            top = float(np.nanmax(arr)) if n and not np.isnan(arr).all() else 0.0
            return StoreRadii(arr, self._version, top, by_slot)

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
        scalar = type(lat) is float and type(lon) is float and where is None
        if scalar and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
            if isinstance(radius_m, StoreRadii):
                return self._pairs_scalar(lat, lon, radius_m)
            if type(radius_m) is float and radius_m >= 0.0 and radius_m != math.inf:
                return self._pairs_scalar(lat, lon, radius_m)
        lat_a, lon_a, _ = as_latlon(lat, lon)
        if not isinstance(radius_m, StoreRadii) and np.ndim(radius_m) == 1:
            radius_m = self.store_radii(radius_m)
        with self._lock:
            if isinstance(radius_m, StoreRadii):
                self._check_radii(radius_m)
                q, slot, dist, _ = self._within_pairs(lat_a, lon_a, radius_m.max_m, where, radius_m.by_slot)
            else:
                radius = check_distance_m(radius_m, "radius_m")
                assert radius is not None
                q, slot, dist, _ = self._within_pairs(lat_a, lon_a, radius, where)
            return Pairs(q, self._slot_to_pos()[slot], dist, self._version)

    def _check_radii(self, radii: StoreRadii) -> None:
        if radii.version != self._version:
            raise StaleRadiiError(
                f"these radii were prepared for index version {radii.version}; the index is at version "
                f"{self._version} (stores were added or removed): prepare them again with index.store_radii(...)"
            )

    def _pairs_scalar(self, lat: float, lon: float, radius_m: float | StoreRadii) -> Pairs:
        """:meth:`pairs_within` for one point and no filter, in plain floats (the same exact pairs)."""
        with self._lock:
            per_slot = None
            if isinstance(radius_m, StoreRadii):
                self._check_radii(radius_m)
                per_slot, top = radius_m.by_slot_list(), radius_m.max_m
            else:
                top = radius_m
            x, y, z, gn = _ecef_scalar(lat, lon)
            reach = chord_reach_scalar_m(top, math.sqrt(x * x + y * y + z * z))
            dead = self._n_dead > 0
            xyz, zs, gns = self._scalar_lists()
            out_s: list[int] = []
            out_d: list[float] = []
            for seg in (self._main, self._delta):
                if seg is None:
                    continue
                found = seg.tree.query_ball_point((x, y, z), reach)
                if not found:
                    continue
                slots = found if seg.identity else seg.slots[found].tolist()
                for s in slots:
                    if dead and not self._alive[s]:
                        continue
                    r = top if per_slot is None else per_slot[s]
                    if r < 0.0:
                        continue
                    sx, sy, sz = xyz[s]
                    dx, dy, dz = sx - x, sy - y, sz - z
                    c = math.sqrt(dx * dx + dy * dy + dz * dz)
                    if c > CHORD_SERIES_MAX_M:
                        d = geodesic_inverse_scalar_m(lat, lon, float(self._lat[s]), float(self._lon[s]))
                    else:
                        d = chord_to_geodesic_scalar_m(c, sz - z, 0.5 * (gn + gns[s]))
                        if abs(d - r) <= chord_error_bound_m(c):
                            d = geodesic_inverse_scalar_m(lat, lon, float(self._lat[s]), float(self._lon[s]))
                    if d <= r:
                        out_s.append(s)
                        out_d.append(d)
            slot_a = np.array(out_s, dtype=np.int64)
            pos = slot_a if not dead else self._slot_to_pos()[slot_a]
            return Pairs(np.zeros(len(out_s), dtype=np.int64), pos, np.array(out_d, dtype=np.float64), self._version)

    def _scalar_lists(self) -> tuple[list[list[float]], list[float], list[float]]:
        """ECEF points, their z and normal norms by slot, as Python lists (the one-point path reads items)."""
        return self._cached("scalar_lists", lambda: (self._xyz.tolist(), self._z.tolist(), self._gn.tolist()))

    def _within_pairs(
        self, lat: FloatArray, lon: FloatArray, radius_m: float, where: Where = None, per_slot: FloatArray | None = None
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        """Unsorted (query, slot, distance, error bound) of every store within ``radius_m`` (checked inputs).

        With ``per_slot`` (a radius per slot, negative for none), ``radius_m`` is its maximum.
        """
        segs, skip = self._segments_for(where)
        q = _Queries(lat, lon)
        qs, sl = [], []
        for seg in segs:
            qi, i = self._ball(seg, q, radius_m)
            qs.append(qi)
            sl.append(seg.slots[i])
        qi = np.concatenate(qs) if qs else _EMPTY_I
        s = np.concatenate(sl) if sl else _EMPTY_I
        if skip is not None and s.size:
            keep = ~skip[s]
            qi, s = qi[keep], s[keep]
        return self._exact_pairs(qi, s, q, radius_m if per_slot is None else per_slot)

    def _ball(self, seg: _Segment, q: _Queries, distance_m: float) -> tuple[IntArray, IntArray]:
        """(query, tree point) pairs that can be within geodesic ``distance_m`` (by chord reach).

        Queries are fetched in groups of at most :data:`_PAIR_BUDGET` pairs, so the
        tree's Python lists never hold more than that at once.
        """
        n = q.lat.shape[0]
        workers = self.workers if n >= 1024 else 1  # threads cost more than they save on a few points
        if n == 1:
            reach = np.array([chord_reach_scalar_m(float(distance_m), float(q.r[0]))])
        else:
            reach = chord_reach_m(np.full(n, float(distance_m)), q.r)
        qs, ii = [], []
        for a, b in self._ball_groups([seg], q.xyz, reach):
            qi, i = self._ball_pairs(seg, q.xyz[a:b], reach[a:b], workers)
            qs.append(qi + a)
            ii.append(i)
        if not qs:
            return _EMPTY_I, _EMPTY_I
        return np.concatenate(qs), np.concatenate(ii)

    def _exact_pairs(
        self, qi: IntArray, s: IntArray, q: _Queries, radius_m: float | FloatArray | None
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        """Geodesic distances of (query, slot) pairs, kept where within the radius (per slot when an array).

        Far pairs are ranked out by their Andoyer-Lambert bounds or measured
        with GeographicLib; pairs within the error bound of the radius are
        settled by GeographicLib.
        """
        if not qi.size:
            return qi, s, _EMPTY_F, _EMPTY_F
        dist, err, rough = self._pair_distance_m(q, qi, s, _norm3(self._xyz[s] - q.xyz[qi]))
        if radius_m is not None:
            rad = radius_m[s] if isinstance(radius_m, np.ndarray) else float(radius_m)
            keep = ~rough | (dist - err <= rad)  # far pairs proven outside need no GeographicLib
            if not keep.all():
                qi, s, dist, err, rough = qi[keep], s[keep], dist[keep], err[keep], rough[keep]
                rad = rad[keep] if isinstance(rad, np.ndarray) else rad
            self._measure(qi, s, dist, err, rough, q.lat, q.lon)
            self._measure(qi, s, dist, err, np.abs(dist - rad) <= err, q.lat, q.lon)
            keep = dist <= rad
            return qi[keep], s[keep], dist[keep], err[keep]
        self._measure(qi, s, dist, err, rough, q.lat, q.lon)
        return qi, s, dist, err

    def _order_pairs(
        self,
        key: IntArray,
        s: IntArray,
        dist: FloatArray,
        err: FloatArray,
        qi: IntArray,
        lat: FloatArray,
        lon: FloatArray,
    ) -> tuple[IntArray, IntArray, FloatArray]:
        """Pairs sorted by ``key``, then exact distance, then slot; returns key, slot, distance.

        ``qi`` indexes each pair's query point in ``lat``/``lon``.  Neighbours
        closer than their error bounds are settled by GeographicLib first.
        """
        if not key.size:
            return key, s, dist
        order = _pair_order(key, s, dist)
        key, s, dist, err, qi = key[order], s[order], dist[order], err[order], qi[order]
        tie = (key[1:] == key[:-1]) & (dist[1:] - err[1:] <= dist[:-1] + err[:-1])
        fix = np.zeros(key.shape, dtype=bool)
        fix[1:] |= tie
        fix[:-1] |= tie
        if fix.any():
            dist = dist.copy()
            dist[fix] = geodesic_inverse_m(lat[qi[fix]], lon[qi[fix]], self._lat[s[fix]], self._lon[s[fix]])
            order = _pair_order(key, s, dist)
            key, s, dist = key[order], s[order], dist[order]
        return key, s, dist

    def _sort_pairs(
        self, q: IntArray, s: IntArray, dist: FloatArray, err: FloatArray, lat: FloatArray, lon: FloatArray
    ) -> tuple[FloatArray, IntArray, IntArray]:
        """Sort pairs by query, exact distance, position; returns dist, position, offsets."""
        n = lat.shape[0]
        q, s, dist = self._order_pairs(q, s, dist, err, q, lat, lon)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(q, minlength=n), out=offsets[1:])
        return dist, self._slot_to_pos()[s], offsets

    # ------------------------------------------------------------ serving
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
        with self._lock:
            queries = _Queries(lat_a, lon_a)
            poly_tree, poly_slots = self._cached("poly_tree", self._build_poly_tree)
            if not poly_slots.size and not (self._alive & ~np.isnan(self._radius)).any() and len(self):
                warn_user(
                    f"serving() on an index whose {len(self):,} stores have no service_area can only return nothing; "
                    "give stores a service_area (a radius in metres or a polygon), or use within(...)",
                    EmptyResultWarning,
                )
            q_p, s_p = _EMPTY_I, _EMPTY_I
            if poly_slots.size:
                pairs = poly_tree.query(shapely.points(lon_a, lat_a), predicate="intersects")
                q_p, s_p = pairs[0].astype(np.int64), poly_slots[pairs[1]]
            parts = [self._exact_pairs(q_p, s_p, queries, None)]
            radius = np.where(self._alive, self._radius, np.nan)
            has_r = ~np.isnan(radius)
            if has_r.any():
                seg = self._cached("radius_seg", lambda: _segment(self._xyz, np.flatnonzero(has_r).astype(np.int64)))
                q_r, i_r = self._ball(seg, queries, float(radius[has_r].max()))
                rad = np.nan_to_num(radius, nan=-1.0)
                parts.append(self._exact_pairs(q_r, seg.slots[i_r], queries, rad))
            q, s, d, e = (np.concatenate(c) for c in zip(*parts, strict=True))
            dist, pos, offsets = self._sort_pairs(q, s, d, e, lat_a, lon_a)
            q = np.repeat(np.arange(lat_a.shape[0]), np.diff(offsets))
            ids = self._live_ids()
            s_lat, s_lon = self._live_latlon()
            table = self._stores_at_query()
        if is_scalar:
            return Neighbors(dist, pos, ids, s_lat, s_lon, table)
        return Matches(q, dist, pos, offsets, ids, s_lat, s_lon, table)

    def _build_poly_tree(self) -> tuple[Any, IntArray]:
        has_area = np.fromiter((g is not None for g in self._areas.tolist()), dtype=bool, count=self._areas.shape[0])
        has = np.flatnonzero(self._alive & has_area)
        return shapely.STRtree(self._areas[has]), has.astype(np.int64)

    # ------------------------------------------------------------ joins (tables in, tables out: ._joins)
    join_nearest = join_nearest
    join_within = join_within
    join_serving = join_serving

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the live stores to ``path`` in the documented o2o_geo index format.

        See :mod:`o2o_geo._io` for the format (a zip of numpy arrays with a JSON
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
        from ._io import save_stores

        with self._lock:
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
        from ._io import load_stores

        return cls(load_stores(path), **kwargs)


def _pair_order(q: IntArray, s: IntArray, dist: FloatArray) -> IntArray:
    """Permutation sorting pairs by query, then distance, then slot (stable sorts: radix for the ints)."""
    order = np.argsort(s, kind="stable")
    order = order[np.argsort(dist[order], kind="stable")]
    return order[np.argsort(q[order], kind="stable")]


def _spatial_order(lat: FloatArray, lon: FloatArray) -> IntArray:
    """A permutation visiting points cell by cell (0.5 degree cells, row-major)."""
    cell = (np.floor((lat + 90.0) * 2.0) * 721.0 + np.floor((lon + 180.0) * 2.0)).astype(np.int32)
    return np.argsort(cell, kind="stable")


def _separated(dist: FloatArray, err: FloatArray) -> np.ndarray:
    """Rows whose finite distances increase by more than twice the row's error bound at each step.

    Infinite (missing) entries must all come after the finite ones.
    """
    if dist.shape[1] < 2:
        return np.ones(dist.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):  # inf - inf between two missing entries
        lo = dist[:, 1:] - dist[:, :-1]
        step_ok = (lo > 2.0 * err[:, None]) | np.isinf(dist[:, 1:])
    return np.asarray(step_ok.all(axis=1))


def _warn_missing_values(where: Mapping[str, Any], col: str, want: Any, values: np.ndarray, hit: np.ndarray) -> None:
    """Warn (EmptyResultWarning) about ``where=`` values of ``col`` that no live store has."""
    many = isinstance(want, (list, tuple, set, frozenset, np.ndarray))
    message = missing_values_message(f"where={dict(where)!r}", col, list(want) if many else [want], values, hit)
    if message is not None:
        warn_user(message, EmptyResultWarning)


def missing_values_message(label: str, col: str, wanted: list[Any], values: np.ndarray, hit: np.ndarray) -> str | None:
    """The message for filter values of ``col`` that no store has (``None`` when every value exists).

    ``values`` is the column over the stores and ``hit`` the stores the filter kept;
    the message names the missing values, a near match (by case) and some values that exist.
    """
    if hit.any():
        present = set(values[hit].tolist())
        missing = [w for w in wanted if w not in present]
    else:
        missing = wanted
    if not missing:
        return None
    have = sorted({repr(v) for v in values.tolist()})
    shown = ", ".join(have[:5]) + (f", ... ({len(have)} values)" if len(have) > 5 else "")
    lower = {str(v).casefold(): v for v in values.tolist()}
    hints = [f"did you mean {lower[str(w).casefold()]!r}?" for w in missing if str(w).casefold() in lower]
    which = ", ".join(repr(w) for w in missing)
    hint = f" ({' '.join(hints)})" if hints else ""
    what = "matches no store" if not hit.any() else "has values no store has"
    return (
        f"{label} {what}: no store has {col} {which}{hint}; "
        f"{col} holds {shown if shown else 'no values (the index is empty)'}"
    )


def _where_key(where: Where) -> Any:
    """A hashable cache key for mapping filters; ``None`` for masks and callables."""
    if not isinstance(where, Mapping):
        return None
    items = []
    for col, want in sorted(where.items(), key=lambda kv: str(kv[0])):
        if isinstance(want, (list, tuple, set, frozenset, np.ndarray)):
            want = ("in", tuple(sorted(map(repr, want))))
        else:
            want = ("eq", repr(want))
        items.append((col, want))
    return tuple(items)
