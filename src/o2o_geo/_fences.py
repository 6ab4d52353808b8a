"""Geofences over a StoreIndex: a radius or a polygon per store, a geodesic exit buffer, exact WGS84 decisions.

A fence is to a push what a service area is to delivery: per store, a
radius in metres or a polygon, read from a store column, plus a hysteresis
buffer of ``buffer_m`` metres around it that a user must leave before the
stay ends.  Every decision is exact on the WGS84 ellipsoid:

* a radius fence holds a point when the geodesic distance to the store is
  at most the radius (the buffer: radius + ``buffer_m``);
* a polygon fence holds a point inside it or on its boundary, (lon, lat)
  planar as in GeoJSON; polygons across the antimeridian are split as
  service areas are (:func:`~o2o_geo._stores.split_antimeridian`).  Its buffer
  holds the points within ``buffer_m`` metres (geodesic) of the polygon: the
  boundary, densified to pieces of at most :data:`POLYGON_STEP_DEG`, is
  measured in the azimuthal equidistant frame of the point (GeographicLib's
  distances and azimuths from it), so the buffer is as wide at 60 degrees
  north as at the equator;
* ``nearby`` holds the points within ``nearby_m`` of the store.

The geometry query is the index's own: one :meth:`StoreIndex.pairs_within`
with a radius per store (:meth:`StoreIndex.store_radii`), the reach of
each fence.  Distances within the index's error bound of a fence edge are
measured again with GeographicLib.  When stores are added or removed only
the new stores' fences are built (a cache by store id and position).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import shapely

from ._geodesy import (
    CHORD_SERIES_MAX_M,
    chord_error_bound_m,
    geodesic_inverse_az_m,
    geodesic_inverse_m,
    geodesic_inverse_scalar_m,
)
from ._index import StoreIndex
from ._stores import split_antimeridian
from ._types import FloatArray, IntArray
from ._validate import as_latlon, as_point, check_metres
from .errors import InvalidGeometryError, InvalidParameterError, ShapeMismatchError, StaleRadiiError

__all__ = ["FenceHit", "FenceHits", "Geofences"]

#: Polygon edges are cut into pieces of at most this many degrees before the buffer is measured.
POLYGON_STEP_DEG = 0.001
_EMPTY_I = np.empty(0, dtype=np.int64)


class FenceHit(NamedTuple):
    """One store whose fence, buffer or nearby radius holds a point (:meth:`Geofences.hits_at`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> (hit,) = og.Geofences(og.StoreIndex(og.sample_stores())).hits_at(31.2325, 121.4801)
    >>> hit.store_id, hit.inside, hit.in_buffer, hit.nearby
    ('lucky-09', True, True, False)
    """

    position: int
    """Row of ``index.stores`` (as the index was at the query)."""
    store_id: Any
    """The store."""
    distance_m: float
    """WGS84 distance from the point to the store."""
    inside: bool
    """Inside the fence."""
    in_buffer: bool
    """Inside the fence or its exit buffer."""
    nearby: bool
    """Within ``nearby_m`` of the store."""


@dataclass(frozen=True)
class FenceHits:
    """Every (point, store) pair whose fence, buffer or nearby radius holds the point, by point then position.

    Attributes
    ----------
    ping : ndarray of int64, shape (n_pairs,)
        Row of the query points.
    position : ndarray of int64, shape (n_pairs,)
        Row of ``index.stores`` (as of ``version``).
    store_id : ndarray of object, shape (n_pairs,)
        The stores.
    distance_m : ndarray of float64, shape (n_pairs,)
        WGS84 distance to the store.
    inside, in_buffer, nearby : ndarray of bool, shape (n_pairs,)
        As :class:`FenceHit`.
    version : int
        The index version the positions refer to.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> hits = og.Geofences(index, nearby_m=500.0).hits([31.2325], [121.4801])
    >>> int(hits.inside.sum()), int(hits.nearby.sum()) >= 1, hits.version == index.version
    (1, True, True)
    """

    ping: IntArray
    position: IntArray
    store_id: np.ndarray
    distance_m: FloatArray
    inside: np.ndarray
    in_buffer: np.ndarray
    nearby: np.ndarray
    version: int

    def offsets(self, n_points: int) -> IntArray:
        """Where each point's pairs start and end: point ``i`` owns ``[offsets[i], offsets[i + 1])``.

        Returns
        -------
        ndarray of int64, shape (n_points + 1,)

        Examples
        --------
        >>> import o2o_geo as og
        >>> hits = og.Geofences(og.StoreIndex(og.sample_stores())).hits([31.2325, 0.0], [121.4801, 0.0])
        >>> hits.offsets(2).tolist()
        [0, 1, 1]
        """
        out = np.zeros(n_points + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.ping, minlength=n_points), out=out[1:])
        return out


class _Polygon:
    """A polygon fence: containment on the antimeridian-split polygon, the buffer on its densified rings."""

    __slots__ = ("contains", "ring_lat", "ring_lon", "reach_m")

    def __init__(self, poly: Any, lat0: float, lon0: float, sid: Any) -> None:
        if poly.is_empty or not poly.is_valid:
            raise InvalidGeometryError(f"store {sid!r}: geofence polygon is invalid or empty")
        split = split_antimeridian(poly)
        shapely.prepare(split)
        self.contains = split
        rings = []
        for part in getattr(split, "geoms", [split]):
            rings.append(part.exterior)
            rings.extend(part.interiors)
        self.ring_lat: list[FloatArray] = []
        self.ring_lon: list[FloatArray] = []
        for ring in rings:
            xy = shapely.get_coordinates(shapely.segmentize(ring, POLYGON_STEP_DEG))
            self.ring_lon.append(np.ascontiguousarray(xy[:, 0]))
            self.ring_lat.append(np.ascontiguousarray(xy[:, 1]))
        lat_v, lon_v = np.concatenate(self.ring_lat), np.concatenate(self.ring_lon)
        self.reach_m = float(
            geodesic_inverse_m(np.full(lat_v.shape, lat0), np.full(lon_v.shape, lon0), lat_v, lon_v).max()
        )

    def holds(self, lat: float, lon: float) -> bool:
        return bool(shapely.intersects_xy(self.contains, lon, lat))  # inside or on the boundary

    def boundary_distance_m(self, lat: float, lon: float) -> float:
        """Geodesic distance from a point outside the polygon to it (its densified boundary)."""
        best = math.inf
        for ring_lat, ring_lon in zip(self.ring_lat, self.ring_lon, strict=True):
            az, s = geodesic_inverse_az_m(
                np.full(ring_lat.shape, lat), np.full(ring_lon.shape, lon), ring_lat, ring_lon
            )
            a = np.radians(az)
            line = shapely.linestrings(s * np.sin(a), s * np.cos(a))
            best = min(best, float(shapely.distance(line, shapely.points(0.0, 0.0))))
        return best


class _Layout:
    """The fences of one index version, by position (built from one consistent view of the stores)."""

    def __init__(self, fences: Geofences, index: StoreIndex) -> None:
        while True:  # an add or remove during the build: build again (versions only grow)
            version = index.version
            stores = index.stores
            n = len(stores)
            ids = stores.store_id.tolist()
            lat, lon = stores.lat.tolist(), stores.lon.tolist()
            given = stores[fences.column].tolist() if fences.column in stores.columns else [None] * n
            r_in = np.full(n, float(fences.radius_m))
            reach = np.empty(n)
            polygons: dict[int, _Polygon] = {}
            for i in range(n):
                spec = fences._spec(ids[i], lat[i], lon[i], given[i])
                if isinstance(spec, _Polygon):
                    polygons[i] = spec
                    r_in[i] = math.nan
                    reach[i] = spec.reach_m + fences.buffer_m
                else:
                    r_in[i] = spec
                    reach[i] = spec + fences.buffer_m
            try:
                radii = index.store_radii(np.maximum(reach, fences.nearby_m))
            except ShapeMismatchError:
                continue
            if radii.version == version:
                break
        self.version, self.radii, self.polygons = version, radii, polygons
        self.ids_a, self.ids, self.lat, self.lon = stores.store_id, ids, lat, lon
        self.r_in, self.r_in_a = r_in.tolist(), r_in


class Geofences:
    """Per-store geofences (radius or polygon) with a geodesic exit buffer and a nearby radius, over an index.

    Parameters
    ----------
    index : StoreIndex
        The stores; the fences follow its adds and removes.
    radius_m : float, default 100
        The fence of a store without its own.
    buffer_m : float, default 30
        The hysteresis buffer around every fence, metres (0 for none).
    column : str, default "geofence"
        Store column with a store's own fence: a radius in metres, a shapely
        Polygon or MultiPolygon, or None/NaN for the default.
    nearby_m : float, default 0
        The radius of the ``nearby`` flag (0: never).

    Raises
    ------
    InvalidGeometryError
        A fence that is not a positive radius or a valid polygon (named by store, when first queried).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> fences = og.Geofences(index, radius_m=100.0, buffer_m=30.0)
    >>> [(index.stores.store_id[h.position], round(h.distance_m), h.inside, h.in_buffer)
    ...  for h in fences.hits_at(31.2325, 121.4801)]
    [('lucky-09', 2, True, True)]
    >>> hits = fences.hits([31.2325, 31.2335], [121.4801, 121.4801])   # the second 110 m north: in the buffer
    >>> hits.ping.tolist(), hits.inside.tolist(), hits.in_buffer.tolist()
    ([0, 1], [True, False], [True, True])
    """

    def __init__(
        self,
        index: StoreIndex,
        *,
        radius_m: float = 100.0,
        buffer_m: float = 30.0,
        column: str = "geofence",
        nearby_m: float = 0.0,
    ) -> None:
        if not isinstance(index, StoreIndex):
            raise InvalidParameterError(f"Geofences takes a StoreIndex; got {type(index).__name__}")
        self.index = index
        self.radius_m: float = check_metres(radius_m, "radius_m", positive=True)
        self.buffer_m: float = check_metres(buffer_m, "buffer_m")
        self.nearby_m: float = check_metres(nearby_m, "nearby_m")
        if not isinstance(column, str):
            raise InvalidParameterError(f"column must be a column name; got {column!r}")
        self.column = column
        self._specs: dict[tuple[Any, float, float], tuple[Any, float | _Polygon]] = {}
        self._layout_cache: _Layout | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Geofences({len(self.index):,} stores, {self.radius_m:g} m default, buffer {self.buffer_m:g} m, "
            f"nearby {self.nearby_m:g} m, column {self.column!r})"
        )

    # ------------------------------------------------------------ building
    def _spec(self, sid: Any, lat: float, lon: float, value: Any) -> float | _Polygon:
        """A store's fence, built once per (store, position, value)."""
        key = (sid, lat, lon)
        hit = self._specs.get(key)
        if hit is not None and (hit[0] is value or _same(hit[0], value)):
            return hit[1]
        spec: float | _Polygon
        if value is None or (isinstance(value, float) and math.isnan(value)):
            spec = self.radius_m
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            if not (value > 0 and math.isfinite(value)):
                raise InvalidGeometryError(f"store {sid!r}: geofence radius {value!r} must be > 0 metres")
            spec = float(value)
        elif isinstance(value, (shapely.Polygon, shapely.MultiPolygon)):
            spec = _Polygon(value, lat, lon, sid)
        else:
            raise InvalidGeometryError(
                f"store {sid!r}: geofence must be a radius in metres or a shapely polygon; got {value!r}"
            )
        self._specs[key] = (value, spec)
        return spec

    def _layout(self) -> _Layout:
        lay = self._layout_cache
        if lay is None or lay.version != self.index.version:
            with self._lock:
                lay = self._layout_cache
                if lay is None or lay.version != self.index.version:
                    lay = self._layout_cache = _Layout(self, self.index)
                    live = set(zip(lay.ids, lay.lat, lay.lon, strict=True))
                    for key in [k for k in self._specs if k not in live]:  # removed stores
                        del self._specs[key]
        return lay

    @property
    def version(self) -> int:
        """The index version of the fences last built (builds them when the index changed)."""
        return self._layout().version

    # ------------------------------------------------------------ queries
    def hits_at(self, lat: float, lon: float) -> list[FenceHit]:
        """The fences (and nearby radii) that hold one point, by position (a pure-Python path).

        Parameters
        ----------
        lat, lon : float
            Degrees.

        Returns
        -------
        list of FenceHit
            Stores whose fence, buffer or nearby radius holds the point; empty when none.

        Examples
        --------
        >>> import o2o_geo as og
        >>> fences = og.Geofences(og.StoreIndex(og.sample_stores()))
        >>> fences.hits_at(31.2400, 121.4500)
        []
        """
        lat, lon = as_point(lat, lon, "hits_at", "hits")
        while True:
            lay = self._layout()
            try:
                pairs = self.index.pairs_within(lat, lon, lay.radii)
            except StaleRadiiError:  # stores changed between the two calls
                continue
            break
        if not pairs.position.shape[0]:
            return []
        out = []
        near_m, buf = self.nearby_m, self.buffer_m
        for p, d in sorted(zip(pairs.position.tolist(), pairs.distance_m.tolist(), strict=True)):
            r_in = lay.r_in[p]
            e = chord_error_bound_m(d) if d <= CHORD_SERIES_MAX_M else 0.0
            if r_in == r_in:  # a radius fence
                if abs(d - r_in) <= e or abs(d - r_in - buf) <= e or abs(d - near_m) <= e:
                    d = geodesic_inverse_scalar_m(lat, lon, lay.lat[p], lay.lon[p])
                inside, in_buffer = d <= r_in, d <= r_in + buf
            else:
                if abs(d - near_m) <= e:
                    d = geodesic_inverse_scalar_m(lat, lon, lay.lat[p], lay.lon[p])
                poly = lay.polygons[p]
                inside = poly.holds(lat, lon)
                in_buffer = inside or (buf > 0.0 and poly.boundary_distance_m(lat, lon) <= buf)
            nearby = d <= near_m
            if in_buffer or nearby:
                out.append(FenceHit(p, lay.ids[p], d, inside, in_buffer, nearby))
        return out

    def hits(self, lat: Any, lon: Any) -> FenceHits:
        """The fences (and nearby radii) that hold each point, vectorised.

        Parameters
        ----------
        lat, lon : float or array_like of shape (n,)
            Degrees.

        Returns
        -------
        FenceHits
            Sorted by point, then position; the same decisions as :meth:`hits_at` point by point.

        Raises
        ------
        InvalidCoordinateError, ShapeMismatchError

        Examples
        --------
        >>> import o2o_geo as og
        >>> fences = og.Geofences(og.StoreIndex(og.sample_stores()))
        >>> hits = fences.hits([31.2400, 31.2325], [121.4500, 121.4801])
        >>> hits.ping.tolist(), hits.offsets(2).tolist()
        ([1], [0, 0, 1])
        """
        lat_a, lon_a, _ = as_latlon(lat, lon)
        while True:
            lay = self._layout()
            try:
                pairs = self.index.pairs_within(lat_a, lon_a, lay.radii)
            except StaleRadiiError:
                continue
            break
        q, pos, dist = pairs.query, pairs.position, pairs.distance_m
        order = np.lexsort((pos, q))
        q, pos, dist = q[order], pos[order], dist[order].copy()
        r_in = lay.r_in_a[pos]
        buf, near_m = self.buffer_m, self.nearby_m
        err = np.where(dist <= CHORD_SERIES_MAX_M, chord_error_bound_m(dist), 0.0)
        poly = np.isnan(r_in)
        edge = (np.abs(dist - near_m) <= err) | (
            ~poly & ((np.abs(dist - r_in) <= err) | (np.abs(dist - r_in - buf) <= err))
        )
        if edge.any():
            s_lat, s_lon = np.asarray(lay.lat)[pos[edge]], np.asarray(lay.lon)[pos[edge]]
            dist[edge] = geodesic_inverse_m(lat_a[q[edge]], lon_a[q[edge]], s_lat, s_lon)
        with np.errstate(invalid="ignore"):
            inside = dist <= r_in
            in_buffer = dist <= r_in + buf
        if poly.any():  # containment in one call per polygon; the buffer measured only outside it
            rows = np.flatnonzero(poly)
            for p in np.unique(pos[rows]).tolist():
                mine = rows[pos[rows] == p]
                pg = lay.polygons[p]
                inside[mine] = shapely.intersects_xy(pg.contains, lon_a[q[mine]], lat_a[q[mine]])
                in_buffer[mine] = inside[mine]
                if buf > 0.0:
                    for j in mine[~inside[mine]].tolist():
                        in_buffer[j] = pg.boundary_distance_m(float(lat_a[q[j]]), float(lon_a[q[j]])) <= buf
        nearby = dist <= near_m
        keep = in_buffer | nearby
        if not keep.all():
            q, pos, dist = q[keep], pos[keep], dist[keep]
            inside, in_buffer, nearby = inside[keep], in_buffer[keep], nearby[keep]
        return FenceHits(q, pos, lay.ids_a[pos], dist, inside, in_buffer, nearby, lay.version)


def _same(a: Any, b: Any) -> bool:
    """Whether two fence values are the same fence (floats by value, polygons by geometry)."""
    if isinstance(a, (shapely.Polygon, shapely.MultiPolygon)) or isinstance(b, (shapely.Polygon, shapely.MultiPolygon)):
        return (
            isinstance(a, shapely.Geometry)
            and isinstance(b, shapely.Geometry)
            and bool(shapely.equals_exact(a, b, 0.0))
        )
    try:
        return bool(a == b) or (a != a and b != b)
    except (TypeError, ValueError):
        return False
