"""The stores of a StoreIndex by slot: arrays, kd-trees, live updates and the caches keyed on its version.

A *slot* is a store's row in the arrays here; a *position* is its row of the
live table ``StoreIndex.stores``.  They are the same until a store is removed:
``remove`` only marks the slot dead, ``add`` appends slots and a small delta
tree, and a compaction rebuilds one tree over the live stores (slots become
positions again).  Everything derived from the slots is cached under the
version, which every change bumps: :meth:`Slots.cached` is the one mechanism.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from .._geodesy import GeoPoints
from .._stores import StoreSet, check_unique, concat_stores, take_rows
from .._types import FloatArray, IntArray
from ..errors import InvalidRecordError, UnknownStoreError

#: Segments of at most this many stores keep their points for brute-force ball searches (no tree walk).
BRUTE_MAX = 256


@dataclass(frozen=True)
class Segment:
    """A kd-tree over some slots; ``slots[i]`` is the slot of tree point ``i``."""

    tree: cKDTree
    slots: IntArray
    identity: bool = False  # slots == arange(n): tree points are the slots
    points_t: FloatArray | None = None  # (3, n) ECEF points of a small segment, searched by brute force

    @property
    def n(self) -> int:
        return int(self.slots.shape[0])


def segment(xyz: FloatArray, slots: IntArray) -> Segment | None:
    """A segment over ``slots`` (sorted, unique) of the ECEF points ``xyz``; ``None`` for no slots."""
    if slots.shape[0] == 0:
        return None
    identity = bool(slots[0] == 0 and slots[-1] == slots.shape[0] - 1)
    pts = xyz[slots]
    small = pts.T.copy() if slots.shape[0] <= BRUTE_MAX else None
    return Segment(cKDTree(pts, leafsize=32), slots, identity, small)


class StoreTable:
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


class Slots:
    """Every store an index has held since its last compaction, by slot, and the trees over them.

    Arrays are replaced, never changed in place (results keep the ones they
    were built from), except ``id_to_slot``; callers hold :attr:`lock` while
    they read or change anything here.
    """

    def __init__(self, stores: StoreSet) -> None:
        self.lock = threading.RLock()
        self.version = -1
        self.load(stores)

    def load(self, stores: StoreSet) -> None:
        """(Re)build every structure from a live store set (slots = rows); the version moves on."""
        n = len(stores)
        self.chunks: list[StoreSet] = [stores]
        self.ids = stores.store_id.copy()
        self.pts = GeoPoints(stores.lat.copy(), stores.lon.copy())
        self.areas = stores.service_area_geometry.copy()
        self.radius = stores.service_radius_m.copy()
        self.alive = np.ones(n, dtype=bool)
        self.n_dead = 0
        self.main_end = n
        self.id_to_slot: dict[Any, int] = {sid: i for i, sid in enumerate(self.ids.tolist())}
        self.main = segment(self.pts.xyz, np.arange(n, dtype=np.int64))
        self.delta: Segment | None = None
        self.version += 1  # monotonic: callers key caches on it
        self.caches: dict[Any, Any] = {}

    def __len__(self) -> int:
        return int(self.alive.shape[0] - self.n_dead)

    @property
    def n_slots(self) -> int:
        return int(self.alive.shape[0])

    @property
    def churn(self) -> int:
        """Slots added or removed since the last compaction."""
        return self.n_dead + (self.n_slots - self.main_end)

    def segments(self) -> list[Segment]:
        return [s for s in (self.main, self.delta) if s is not None]

    def __getstate__(self) -> dict[str, Any]:
        with self.lock:  # a consistent snapshot: these three are the ones changed in place
            state = self.__dict__.copy()
            state.update(alive=self.alive.copy(), id_to_slot=dict(self.id_to_slot), chunks=list(self.chunks))
        del state["lock"], state["caches"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self.caches = {}

    # ------------------------------------------------------------ derived, cached under the version
    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()``, kept until the slots change (the one cache of everything derived from them)."""
        with self.lock:  # a compaction must not swap the arrays under a build
            entry = self.caches.get(key)
            if entry is None or entry[0] != self.version:
                entry = (self.version, build())
                self.caches[key] = entry
            return entry[1]

    def physical(self) -> StoreSet:
        """Every slot (dead ones included) as one StoreSet."""
        return self.cached("physical", lambda: concat_stores(self.chunks))

    def slot_to_pos(self) -> IntArray:
        return self.cached("slot_to_pos", lambda: np.where(self.alive, np.cumsum(self.alive) - 1, -1))

    def live_ids(self) -> np.ndarray:
        return self.cached("live_ids", lambda: self.ids[self.alive])

    def live_latlon(self) -> tuple[FloatArray, FloatArray]:
        """Latitudes and longitudes of the live stores by position (results carry them for ``to_geodataframe``)."""
        if self.n_dead == 0:  # every slot is alive, so slots are positions
            return self.pts.lat, self.pts.lon
        return self.cached("live_latlon", lambda: (self.pts.lat[self.alive], self.pts.lon[self.alive]))

    def stores(self) -> StoreSet:
        """The live stores by position."""
        return self.cached(
            "stores",
            lambda: (
                self.chunks[0]
                if len(self.chunks) == 1 and self.n_dead == 0
                else take_rows(self.physical(), np.flatnonzero(self.alive))
            ),
        )

    def stores_at_query(self) -> StoreTable:
        """The live store table as it is now, built only if a result asks for it (``Neighbors.store``)."""
        entry = self.caches.get("stores")
        if entry is not None and entry[0] == self.version:
            return StoreTable(entry[1])
        chunks, alive, version = tuple(self.chunks), self.alive, self.version  # never changed in place

        def build() -> StoreSet:
            with self.lock:
                if self.version == version:
                    return self.stores()
            whole = chunks[0] if len(chunks) == 1 else concat_stores(chunks)
            return whole if bool(alive.all()) else take_rows(whole, np.flatnonzero(alive))

        return StoreTable(None, build)

    def scalar_lists(self) -> tuple[list[list[float]], list[float], list[float]]:
        """ECEF points, their z and normal norms by slot, as Python lists (the one-point paths read items)."""
        return self.cached("scalar_lists", lambda: (self.pts.xyz.tolist(), self.pts.z.tolist(), self.pts.gn.tolist()))

    # ------------------------------------------------------------ updates (the caller holds the lock)
    def add(self, new: StoreSet) -> None:
        """Append the stores of ``new`` (checked whole first: a refused add changes nothing)."""
        self._check_id_kind(new.store_id)
        check_unique(new.store_id, self.id_to_slot)
        start = self.n_slots
        self.chunks.append(new)
        self.ids = np.concatenate([self.ids, new.store_id])
        self.pts = self.pts.concat(GeoPoints(new.lat, new.lon))
        self.areas = np.concatenate([self.areas, new.service_area_geometry])
        self.radius = np.concatenate([self.radius, new.service_radius_m])
        self.alive = np.concatenate([self.alive, np.ones(len(new), dtype=bool)])
        for i, sid in enumerate(new.store_id.tolist()):
            self.id_to_slot[sid] = start + i
        self.delta = segment(self.pts.xyz, np.arange(self.main_end, self.n_slots, dtype=np.int64))
        self.version += 1

    def remove(self, keys: list[Any]) -> bool:
        """Mark the stores of ``keys`` dead; all or nothing.  Returns whether anything changed."""
        slots = []
        seen = set()
        for i, key in enumerate(keys):
            slot = self.id_to_slot.get(key)
            if slot is None:
                raise UnknownStoreError(f"store_id {key!r} (item {i}) is not in the index; nothing was removed")
            if key not in seen:
                seen.add(key)
                slots.append(slot)
        if not slots:
            return False
        alive = self.alive.copy()  # copy on write: results hold the old mask (their store table)
        alive[np.asarray(slots, dtype=np.int64)] = False
        self.alive = alive
        self.n_dead += len(slots)
        for key in seen:
            del self.id_to_slot[key]
        self.version += 1
        return True

    def _check_id_kind(self, new_ids: np.ndarray) -> None:
        """Refuse ids of the other kind (int vs str) than the index already holds."""
        if len(new_ids) == 0 or len(self.ids) == 0:
            return
        have_str = isinstance(self.ids[0], str)
        new_str = isinstance(new_ids[0], str)
        if have_str != new_str:
            kind = "strings" if have_str else "ints"
            raise InvalidRecordError(
                f"the index holds {kind} as store ids; store_id {new_ids[0]!r} is not one (nothing was added)"
            )
