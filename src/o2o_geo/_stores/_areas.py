"""Service areas: polygon normalisation (validity, antimeridian) and point-in-polygon."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, shape

from .._types import FloatArray
from ..errors import InvalidGeometryError

__all__ = ["area_from_text", "normalize_service_areas", "split_antimeridian"]

_WORLD = box(-180.0, -90.0, 180.0, 90.0)


def _as_geometry(value: Any, sid: Any) -> Any:
    if isinstance(value, Mapping):
        try:
            value = shape(value)
        except Exception as exc:  # shapely raises several types for bad GeoJSON
            raise InvalidGeometryError(
                f"service_area of store {sid!r} is not a readable GeoJSON geometry: {exc}"
            ) from exc
    if not isinstance(value, (Polygon, MultiPolygon)):
        raise InvalidGeometryError(
            f"service_area of store {sid!r} is a {type(value).__name__}; expected a Polygon, "
            "MultiPolygon, GeoJSON geometry, a radius in metres, or None"
        )
    return value


def area_from_text(text: str, where: str) -> Any:
    """A service area written as text: a radius in metres, WKT, GeoJSON, or empty for none.

    ``where`` names the cell in the error message (``"store 'a'"``, ``"'f.csv' line 3"``).
    """
    t = text.strip()
    if not t:
        return None
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return shapely.from_geojson(t) if t.startswith("{") else shapely.from_wkt(t)
    except Exception as exc:  # shapely raises GEOSException (and others) for unreadable text
        raise InvalidGeometryError(
            f"service_area of {where} is {t[:60]!r}, which is neither a radius in metres, WKT nor GeoJSON ({exc})"
        ) from None


def split_antimeridian(geom: Polygon | MultiPolygon) -> Polygon | MultiPolygon:
    """Return a polygon in (lon, lat) degrees with every part inside [-180, 180].

    A ring with an edge that jumps more than 180 degrees of longitude is taken
    to cross the antimeridian (as GeoJSON writers that do not split emit it):
    its negative longitudes are shifted by +360 so the ring is continuous, and
    the result is cut at 180 degrees, the eastern part shifted back by -360.
    Longitudes already given beyond +-180 (a continuous ring in a shifted
    frame) are cut the same way.

    Examples
    --------
    >>> from shapely.geometry import Polygon
    >>> from o2o_geo._stores import split_antimeridian
    >>> g = split_antimeridian(Polygon([(179, -1), (-179, -1), (-179, 1), (179, 1)]))
    >>> g.geom_type, round(g.area, 6)
    ('MultiPolygon', 4.0)
    """
    merged = _unwrap_antimeridian(geom)
    minx, _, maxx, _ = merged.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return merged
    pieces = []
    for offset in (-360.0, 0.0, 360.0):
        window = box(-180.0 - offset, -90.0, 180.0 - offset, 90.0)
        piece = merged.intersection(window)
        if not piece.is_empty:
            pieces.append(affinity.translate(piece, xoff=offset))
    out = shapely.union_all([p for p in pieces if p.geom_type in ("Polygon", "MultiPolygon")])
    return out


def _unwrap_antimeridian(geom: Polygon | MultiPolygon) -> Polygon | MultiPolygon:
    """Shift negative longitudes of every ring that jumps more than 180 degrees by +360 (a continuous ring)."""
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    fixed = []
    changed = False
    for part in parts:
        ext = np.asarray(part.exterior.coords)
        if np.any(np.abs(np.diff(ext[:, 0])) > 180.0):

            def shift(ring: Any) -> FloatArray:
                xy = np.asarray(ring.coords).copy()
                xy[xy[:, 0] < 0.0, 0] += 360.0
                return xy

            part = Polygon(shift(part.exterior), [shift(r) for r in part.interiors])
            changed = True
        fixed.append(part)
    if not changed:
        return geom
    return fixed[0] if len(fixed) == 1 else MultiPolygon(fixed)


def normalize_service_areas(areas: np.ndarray, ids: np.ndarray, *, repair: bool) -> tuple[np.ndarray, FloatArray]:
    """Split a ``service_area`` column into polygons and radii.

    Returns ``(geoms, radius_m)``: an object array of normalised shapely
    polygons (``None`` where the store has none or has a radius) and a float
    array of radii in metres (NaN where the store has none or has a polygon).

    Raises
    ------
    InvalidGeometryError
        A polygon is invalid (and ``repair`` is false), empty, not polygonal,
        or has coordinates outside the globe; a radius is negative or NaN.
    """
    n = areas.shape[0]
    geoms = np.full(n, None, dtype=object)
    radius = np.full(n, np.nan)
    if areas.dtype.kind == "f":
        bad = ~((areas >= 0) & np.isfinite(areas)) & ~np.isnan(areas)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidGeometryError(
                f"service_area radius of store {ids[i]!r} is {float(areas[i])!r} m; it must be a finite number >= 0"
            )
        radius[:] = areas
        return geoms, radius
    for i, value in enumerate(areas.tolist()):
        sid = ids[i]
        if isinstance(value, str):
            value = area_from_text(value, f"store {sid!r}")
        if value is None:
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            r = float(value)
            if not r >= 0.0 or not np.isfinite(r):
                raise InvalidGeometryError(
                    f"service_area radius of store {sid!r} is {value!r} m; it must be a finite number >= 0"
                )
            radius[i] = r
            continue
        geom = _as_geometry(value, sid)
        if geom.is_empty:
            raise InvalidGeometryError(f"service_area of store {sid!r} is empty")
        minx, miny, maxx, maxy = geom.bounds
        if miny < -90.0 or maxy > 90.0 or minx < -540.0 or maxx > 540.0:
            raise InvalidGeometryError(
                f"service_area of store {sid!r} has bounds {geom.bounds}: latitudes must be in [-90, 90]; "
                "coordinates are (lon, lat) as in GeoJSON"
            )
        geom = _unwrap_antimeridian(geom)  # validity is judged on the continuous ring
        if not geom.is_valid:
            if not repair:
                raise InvalidGeometryError(
                    f"service_area of store {sid!r} is invalid ({shapely.is_valid_reason(geom)}); "
                    "fix it or pass repair_service_areas=True"
                )
            geom = shapely.make_valid(geom)
            polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
            if not polys:
                raise InvalidGeometryError(f"service_area of store {sid!r} has no area left after repair")
            geom = shapely.union_all(polys)
        geom = split_antimeridian(geom)
        shapely.prepare(geom)
        geoms[i] = geom
    return geoms, radius
