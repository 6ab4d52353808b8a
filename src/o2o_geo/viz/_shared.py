"""What both kinds of map share: the inputs read, the merchants' colours, geodesic rings, unwrapped longitudes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._geodesy import geodesic_distance_m
from .._index import StoreIndex
from .._stores import StoreSet
from .._types import FloatArray
from .._validate import as_items, as_latlon, check_metres, check_number
from ..errors import InvalidParameterError, InvalidRecordError

__all__ = [
    "GROUP_COLOURS",
    "MAX_LEGEND",
    "OTHER_COLOUR",
    "PALETTE",
    "RING_POINTS",
    "area_rings",
    "check_fence",
    "merchant_colours",
    "fence_rings",
    "geodesic_ring_lonlat",
    "metres_per_degree_lon",
    "pings_of",
    "polygon_rings",
    "push_counts",
    "reference_lon",
    "ring_xy",
    "stores_of",
    "unwrap",
]

#: Colours cycled over merchants (matplotlib's tab10), so both map kinds agree.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
RING_POINTS = 72


# ------------------------------------------------------------------ inputs
def stores_of(stores: StoreSet | StoreIndex) -> StoreSet:
    if isinstance(stores, StoreIndex):
        return stores.stores
    if isinstance(stores, StoreSet):
        return stores
    raise InvalidParameterError(f"stores must be a StoreSet or a StoreIndex; got {type(stores).__name__}")


def push_counts(decisions: Any) -> tuple[Counter[Any], Counter[Any]]:
    """(treated, holdout) decisions per store id, from PushDecisions, dicts or a DataFrame."""
    treated: Counter[Any] = Counter()
    held: Counter[Any] = Counter()
    if decisions is None:
        return treated, held
    if hasattr(decisions, "to_dict") and hasattr(decisions, "columns"):  # a DataFrame
        rows: Iterable[Any] = decisions.to_dict("records")
    else:
        rows = as_items(decisions, "decisions")
    for i, d in enumerate(rows):
        if isinstance(d, Mapping):
            if "store_id" not in d:
                raise InvalidRecordError(f"decision {i} has no 'store_id'; got fields {sorted(d)}")
            sid, hold = d["store_id"], bool(d.get("holdout", False))
        elif hasattr(d, "store_id"):
            sid, hold = d.store_id, bool(getattr(d, "holdout", False))
        else:
            raise InvalidRecordError(f"decision {i} is a {type(d).__name__}, not a PushDecision or a mapping")
        (held if hold else treated)[sid] += 1
    return treated, held


def pings_of(pings: Any) -> tuple[FloatArray, FloatArray]:
    """(lat, lon) of pings given as a DataFrame/mapping with lat and lon, or a (lat, lon) pair."""
    if isinstance(pings, Mapping) or hasattr(pings, "columns"):
        try:
            lat, lon = pings["lat"], pings["lon"]
        except KeyError:
            raise InvalidParameterError("pings need 'lat' and 'lon' columns") from None
    else:
        try:
            lat, lon = pings
        except (TypeError, ValueError):
            raise InvalidParameterError("pings must be a table with lat and lon, or a (lat, lon) pair") from None
    la, lo, _ = as_latlon(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64), what="ping ")
    return np.atleast_1d(la), np.atleast_1d(lo)


#: Groups a map colours apart at most (the palette without its grey); past it, the smallest groups share
#: one grey legend entry that names them.
MAX_LEGEND = 9
OTHER_COLOUR = "#bdbdbd"
GROUP_COLOURS = tuple(c for c in PALETTE if c != "#7f7f7f")


def merchant_colours(stores: StoreSet, colour_by: str | None) -> tuple[list[str], dict[str, str]]:
    """A colour per store, and the legend (label -> colour), by a column (merchant by default).

    Up to :data:`MAX_LEGEND` values get a colour each; with more, the
    :data:`MAX_LEGEND` with the most stores keep theirs and the rest share
    grey under one entry that says how many it folded, so no two groups
    share a colour unseen.
    """
    if colour_by is not None and not isinstance(colour_by, str):
        raise InvalidParameterError(f"colour_by must be a column name or None; got {colour_by!r:.80}")
    if colour_by is None or colour_by not in stores.columns:
        if colour_by not in (None, "merchant_id"):
            raise InvalidParameterError(f"colour_by names column {colour_by!r}; the stores have {stores.columns}")
        return [PALETTE[0]] * len(stores), {}
    values = stores[colour_by].tolist()
    counts = Counter(values)  # in first-seen order, so ties keep it
    ranked = sorted(counts, key=lambda v: -counts[v])
    kept = ranked[:MAX_LEGEND]
    colour_of = {v: GROUP_COLOURS[i] for i, v in enumerate(kept)}
    legend = {str(v): colour_of[v] for v in kept}
    folded = ranked[len(kept) :]
    if folded:
        names = ", ".join(map(str, folded[:3])) + (", ..." if len(folded) > 3 else "")
        legend[f"{len(folded)} others ({names}): {sum(counts[v] for v in folded):,} stores"] = OTHER_COLOUR
    return [colour_of.get(v, OTHER_COLOUR) for v in values], legend


def metres_per_degree_lon(lat: float) -> float:
    """Metres per degree of longitude at ``lat``, from a short WGS84 geodesic (never below 1)."""
    return max(float(geodesic_distance_m(lat, 0.0, lat, 0.001)) * 1000.0, 1.0)


def check_fence(fence_radius_m: Any) -> None:
    check_metres(fence_radius_m, "fence_radius_m", positive=True, allow_none=True)


def reference_lon(lon: FloatArray) -> float:
    """The circular mean longitude: the centre that unwrapping keeps a chain in one piece around."""
    if lon.size == 0:
        return 0.0
    rad = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


def unwrap(lon: Any, ref: float) -> FloatArray:
    """Longitudes moved by whole turns to within 180 degrees of ``ref``."""
    return ref + (np.asarray(lon, dtype=np.float64) - ref + 180.0) % 360.0 - 180.0


def geodesic_ring_lonlat(lat: Any, lon: Any, radius_m: Any, n_points: int = RING_POINTS) -> FloatArray:
    """Points of geodesic circles on WGS84: every point is ``radius_m`` from its centre.

    Parameters
    ----------
    lat, lon : float or array_like of shape (n,)
        Centres, degrees.
    radius_m : float or array_like of shape (n,)
        Radii, metres (>= 0).
    n_points : int, default 72
        Points per circle (the ring is closed: the last point repeats the first).

    Returns
    -------
    ndarray of shape (n, n_points + 1, 2)
        (lon, lat) degrees, longitudes in [-180, 180] (unwrap them to draw).

    Raises
    ------
    InvalidCoordinateError
        A centre out of range or not finite.
    InvalidParameterError
        A negative or non-finite radius, or fewer than 3 points.

    Examples
    --------
    >>> import numpy as np
    >>> from pyproj import Geod
    >>> from o2o_geo.viz import geodesic_ring_lonlat
    >>> ring = geodesic_ring_lonlat(31.23, 121.47, 500.0)
    >>> ring.shape
    (1, 73, 2)
    >>> _, _, d = Geod(ellps="WGS84").inv(np.full(73, 121.47), np.full(73, 31.23), ring[0, :, 0], ring[0, :, 1])
    >>> bool(np.allclose(d, 500.0, atol=1e-6))
    True
    """
    from pyproj import Geod

    la, lo, _ = as_latlon(lat, lon, what="centre ")
    la, lo = np.atleast_1d(la), np.atleast_1d(lo)
    try:
        r = np.broadcast_to(np.asarray(radius_m, dtype=np.float64), la.shape)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"radius_m must be metres, one or one per centre; got {radius_m!r:.80}") from exc
    if not np.all(np.isfinite(r) & (r >= 0)):
        raise InvalidParameterError(f"radius_m must be finite and >= 0 metres; got {np.asarray(radius_m)!r}")
    check_number(n_points, "n_points", low=3, high=100_000, integer=True)
    az = np.linspace(0.0, 360.0, n_points, endpoint=False)
    n = la.size
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(
        np.repeat(lo, n_points), np.repeat(la, n_points), np.tile(az, n), np.repeat(r, n_points)
    )
    ring = np.stack([np.asarray(lon2).reshape(n, n_points), np.asarray(lat2).reshape(n, n_points)], axis=-1)
    return np.concatenate([ring, ring[:, :1]], axis=1)


def ring_xy(ring: FloatArray, x_centre: float) -> FloatArray:
    """A closed (lon, lat) ring as drawable (x, y), beside ``x_centre``.

    Longitudes are made continuous and the ring is moved as a whole next to
    ``x_centre``; a ring around a pole (its longitudes turn a full circle) is
    closed along the pole's latitude.
    """
    lon, lat = ring[:, 0], ring[:, 1]
    x = np.degrees(np.unwrap(np.radians(lon)))
    x = x - 360.0 * np.round((x.mean() - x_centre) / 360.0)
    if abs(x[-1] - x[0]) > 180.0:  # it encloses a pole: go along the pole's latitude back to the start
        pole = 90.0 if lat.mean() > 0 else -90.0
        return np.column_stack([np.concatenate([x, [x[-1], x[0], x[0]]]), np.concatenate([lat, [pole, pole, lat[0]]])])
    return np.column_stack([x, lat])


def polygon_rings(geom: Any) -> list[FloatArray]:
    """Exterior rings (lon, lat) of a Polygon or MultiPolygon."""
    parts = getattr(geom, "geoms", [geom])
    return [np.asarray(p.exterior.coords, dtype=np.float64)[:, :2] for p in parts]


def area_rings(stores: StoreSet, x: FloatArray) -> list[FloatArray]:
    """Every store's service area as (x, y) rings beside the store's x: polygons as given, radii as geodesic circles."""
    rings: list[FloatArray] = []
    radius = stores.service_radius_m
    has_r = np.isfinite(radius)
    if has_r.any():
        circles = geodesic_ring_lonlat(stores.lat[has_r], stores.lon[has_r], radius[has_r])
        rings += [ring_xy(ring, xc) for ring, xc in zip(circles, x[has_r], strict=True)]
    for i, geom in enumerate(stores.service_area_geometry):
        if geom is None or has_r[i]:
            continue
        rings += [ring_xy(ring, float(x[i])) for ring in polygon_rings(geom)]
    return rings


def fence_rings(stores: StoreSet, x: FloatArray, fence_radius_m: float) -> list[FloatArray]:
    """Each store's geofence, a geodesic circle, as an (x, y) ring beside the store's x."""
    rings = geodesic_ring_lonlat(stores.lat, stores.lon, fence_radius_m)
    return [ring_xy(ring, xc) for ring, xc in zip(rings, x, strict=True)]
