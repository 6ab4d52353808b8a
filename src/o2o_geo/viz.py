"""Pictures of stores, service areas, geofences, pushes and the funnel (the ``viz`` extra).

``pip install "o2o_geo[viz]"`` brings matplotlib (static PNG maps and the
funnel chart, headless through the Agg backend) and folium (an interactive
Leaflet map for notebooks).  ``import o2o_geo`` never imports this module;
this module imports matplotlib or folium only inside the function that draws
with it.

Every circle on these maps (a radius service area, a geofence) is a geodesic
circle on WGS84 (:func:`geodesic_ring_lonlat`), the same distance the index
and the dispatcher use, not a circle in the map's projection.  Longitudes are
unwrapped around the stores' mean longitude, so a chain that straddles the
antimeridian is drawn in one piece (x values may then pass 180).

Folium maps load Leaflet from a CDN by default.  Where there is no network
(CI, an air-gapped notebook server), pass ``leaflet_dir``: the folder of a
Leaflet build (``leaflet.js``, ``leaflet.css`` and ``images/``, e.g. npm's
``leaflet/dist`` or Debian's ``libjs-leaflet`` package); its files are inlined
into the HTML, which then works with no network and no other file.
:func:`find_leaflet` looks for one.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import o2o_geo as og
>>> from o2o_geo import viz
>>> fig = viz.plot_map(og.sample_stores(), fence_radius_m=100)
>>> len(fig.axes[0].collections) >= 2       # stores, service areas, fences
True
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import pathlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._geodesy import geodesic_distance_m
from ._index import StoreIndex
from ._stores import StoreSet
from ._types import FloatArray
from ._validate import as_items, as_latlon, check_choice, check_number, check_path, import_optional
from .errors import BrowserError, InvalidParameterError, InvalidRecordError

__all__ = [
    "find_chromium",
    "find_leaflet",
    "folium_map",
    "geodesic_ring_lonlat",
    "html_to_png",
    "plot_funnel",
    "plot_map",
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
_RING_POINTS = 72
#: Environment variable naming a Leaflet folder for :func:`find_leaflet`.
LEAFLET_ENV = "O2O_LEAFLET_DIR"
_LEAFLET_PLACES = (
    os.path.join(os.sep, "usr", "share", "javascript", "leaflet"),  # Debian/Ubuntu libjs-leaflet
)
_FUNNEL_STAGES = ("pushed", "delivered", "opened", "redeemed")
_PIN_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="30" viewBox="0 0 20 30">'
    '<path d="M10 1C5 1 1 5 1 10c0 7 9 19 9 19s9-12 9-19c0-5-4-9-9-9z" fill="{colour}" stroke="#000" '
    'stroke-width="1"/><circle cx="10" cy="10" r="3.5" fill="#fff"/></svg>'
)


# ------------------------------------------------------------------ inputs
def _stores_of(stores: StoreSet | StoreIndex) -> StoreSet:
    if isinstance(stores, StoreIndex):
        return stores.stores
    if isinstance(stores, StoreSet):
        return stores
    raise InvalidParameterError(f"stores must be a StoreSet or a StoreIndex; got {type(stores).__name__}")


def _push_counts(decisions: Any) -> tuple[Counter[Any], Counter[Any]]:
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


def _pings_of(pings: Any) -> tuple[FloatArray, FloatArray]:
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
_GROUP_COLOURS = tuple(c for c in PALETTE if c != "#7f7f7f")


def _colours(stores: StoreSet, colour_by: str | None) -> tuple[list[str], dict[str, str]]:
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
    colour_of = {v: _GROUP_COLOURS[i] for i, v in enumerate(kept)}
    legend = {str(v): colour_of[v] for v in kept}
    folded = ranked[len(kept) :]
    if folded:
        names = ", ".join(map(str, folded[:3])) + (", ..." if len(folded) > 3 else "")
        legend[f"{len(folded)} others ({names}): {sum(counts[v] for v in folded):,} stores"] = OTHER_COLOUR
    return [colour_of.get(v, OTHER_COLOUR) for v in values], legend


def _metres_per_degree_lon(lat: float) -> float:
    """Metres per degree of longitude at ``lat``, from a short WGS84 geodesic (never below 1)."""
    return max(float(geodesic_distance_m(lat, 0.0, lat, 0.001)) * 1000.0, 1.0)


def _nice_length_m(target_m: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest below ``target_m``."""
    power = 10.0 ** math.floor(math.log10(max(target_m, 1e-3)))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= max(target_m, power))


def _scale_bar(ax: Any, mid_lat: float) -> float:
    """A scale bar in the lower right corner (its length in metres), for the axes' final limits."""
    ax.apply_aspect()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    xr, yb = x1 - 0.05 * (x1 - x0), y0 + 0.05 * (y1 - y0)
    length_m = _nice_length_m((x1 - x0) * _metres_per_degree_lon(mid_lat) / 5.0)
    dx = length_m / _metres_per_degree_lon(yb)
    a, b = ((xr - dx + 180.0) % 360.0) - 180.0, ((xr + 180.0) % 360.0) - 180.0  # (an unwrapped map can pass 180)
    dx *= length_m / max(float(geodesic_distance_m(yb, a, yb, b)), 1e-9)  # exact at the bar's latitude
    ax.plot([xr - dx, xr], [yb, yb], color="black", linewidth=2.5, solid_capstyle="butt", zorder=6)
    text = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    ax.text(xr - dx / 2, yb + 0.012 * (y1 - y0), text, ha="center", va="bottom", fontsize=8, zorder=6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return length_m


def _check_fence(fence_radius_m: Any) -> None:
    if fence_radius_m is not None and not (
        isinstance(fence_radius_m, (int, float)) and math.isfinite(fence_radius_m) and fence_radius_m > 0
    ):
        raise InvalidParameterError(f"fence_radius_m must be a positive number of metres; got {fence_radius_m!r}")


def _reference_lon(lon: FloatArray) -> float:
    """The circular mean longitude: the centre that unwrapping keeps a chain in one piece around."""
    if lon.size == 0:
        return 0.0
    rad = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


def _unwrap(lon: Any, ref: float) -> FloatArray:
    """Longitudes moved by whole turns to within 180 degrees of ``ref``."""
    return ref + (np.asarray(lon, dtype=np.float64) - ref + 180.0) % 360.0 - 180.0


def geodesic_ring_lonlat(lat: Any, lon: Any, radius_m: Any, n_points: int = _RING_POINTS) -> FloatArray:
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


def _ring_xy(ring: FloatArray, x_centre: float) -> FloatArray:
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


def _polygon_rings(geom: Any) -> list[FloatArray]:
    """Exterior rings (lon, lat) of a Polygon or MultiPolygon."""
    parts = getattr(geom, "geoms", [geom])
    return [np.asarray(p.exterior.coords, dtype=np.float64)[:, :2] for p in parts]


def _area_rings(stores: StoreSet, x: FloatArray) -> list[FloatArray]:
    """Every store's service area as (x, y) rings beside the store's x: polygons as given, radii as geodesic circles."""
    rings: list[FloatArray] = []
    radius = stores.service_radius_m
    has_r = np.isfinite(radius)
    if has_r.any():
        circles = geodesic_ring_lonlat(stores.lat[has_r], stores.lon[has_r], radius[has_r])
        rings += [_ring_xy(ring, xc) for ring, xc in zip(circles, x[has_r], strict=True)]
    for i, geom in enumerate(stores.service_area_geometry):
        if geom is None or has_r[i]:
            continue
        rings += [_ring_xy(ring, float(x[i])) for ring in _polygon_rings(geom)]
    return rings


def _fence_rings(stores: StoreSet, x: FloatArray, fence_radius_m: float) -> list[FloatArray]:
    """Each store's geofence, a geodesic circle, as an (x, y) ring beside the store's x."""
    rings = geodesic_ring_lonlat(stores.lat, stores.lon, fence_radius_m)
    return [_ring_xy(ring, xc) for ring, xc in zip(rings, x, strict=True)]


# ------------------------------------------------------------------ matplotlib
def plot_map(
    stores: StoreSet | StoreIndex,
    *,
    decisions: Any = None,
    pings: Any = None,
    fence_radius_m: float | None = None,
    colour_by: str | None = "merchant_id",
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """A static map: stores, their service areas, geofences, pings and pushes (matplotlib).

    Works headless (choose the Agg backend, ``matplotlib.use("Agg")``, before
    drawing); save it with ``fig.savefig("map.png", dpi=150)``.

    Parameters
    ----------
    stores : StoreSet or StoreIndex
        The stores (an index's live stores).
    decisions : sequence of PushDecision, of dicts, or a DataFrame, optional
        Pushes (``store_id`` and ``holdout``), drawn as rings around their store
        (whose colour stays visible), the ring's area growing with the count;
        treated pushes gold, holdout ones dashed grey.
    pings : DataFrame/mapping with ``lat`` and ``lon``, or a (lat, lon) pair, optional
        User positions, drawn as small grey dots.
    fence_radius_m : float, optional
        Draw each store's geofence, a geodesic circle of this radius (the
        dispatcher's ``PushPolicy.fence_radius_m``), where it is at least two
        pixels across at the map's scale (else neither drawn nor listed).
    colour_by : str or None, default "merchant_id"
        Store column that picks the colour (with a legend); ``None``: one
        colour.  Past :data:`MAX_LEGEND` values, the smallest share grey under
        one legend entry that names them.
    ax : matplotlib Axes, optional
        Draw into it; default a new figure of 8 x 8 inches.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidParameterError
        Not a store set, an unknown ``colour_by`` column, a bad radius or bad pings.
    InvalidRecordError
        A decision without a store id.
    UnknownStoreError
        A decision naming a store that ``stores`` does not hold.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import o2o_geo as og
    >>> from o2o_geo import viz
    >>> fig = viz.plot_map(og.sample_stores(), fence_radius_m=100,
    ...                    decisions=[{"store_id": "lucky-09", "holdout": False}])
    >>> fig.axes[0].get_xlabel()
    'longitude (degrees)'
    """
    plt = import_optional("matplotlib.pyplot", needed_by="viz.plot_map", extra="viz")
    PolyCollection = import_optional("matplotlib.collections", needed_by="viz.plot_map", extra="viz").PolyCollection

    st = _stores_of(stores)
    _check_fence(fence_radius_m)
    colours, legend = _colours(st, colour_by)
    treated, held = _push_counts(decisions)
    ping_lat, ping_lon = _pings_of(pings) if pings is not None else (np.empty(0), np.empty(0))

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 8))
    else:
        fig = ax.figure
    ref = _reference_lon(st.lon if len(st) else ping_lon)
    x = _unwrap(st.lon, ref)

    areas = _area_rings(st, x)
    if areas:
        ax.add_collection(
            PolyCollection(areas, facecolors="#1f77b41a", edgecolors="#1f77b4", linewidths=0.6, label="service area")
        )
    if ping_lat.size:
        ax.scatter(_unwrap(ping_lon, ref), ping_lat, s=3, c="#7f7f7f", alpha=0.5, linewidths=0, label="pings")
    # pushes first, as rings around the store, so the store's colour stays visible on top of them
    for count, hollow, label in ((treated, False, "pushes"), (held, True, "holdout")):
        if not count:
            continue
        pos = st.position_of(list(count))
        n = np.array(list(count.values()), dtype=np.float64)
        ax.scatter(
            x[pos],
            st.lat[pos],
            s=60.0 + 60.0 * np.sqrt(n),
            marker="o",
            facecolors="none",
            edgecolors="#b8860b" if not hollow else "#555555",
            linewidths=1.6 if not hollow else 1.0,
            linestyles="solid" if not hollow else "dashed",
            zorder=3,
            label=f"{label} ({int(n.sum()):,})",
        )
    ax.scatter(x, st.lat, s=18, c=colours, edgecolors="black", linewidths=0.4, zorder=4)
    for value, colour in legend.items():
        ax.scatter([], [], s=18, c=colour, edgecolors="black", linewidths=0.4, label=value)
    ax.autoscale_view()
    mid_lat = float(np.mean(ax.get_ylim()))
    ax.set_aspect(1.0 / max(math.cos(math.radians(mid_lat)), 0.05), adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")  # degrees as they are, never "+1.2145e2"
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if title is not None:
        ax.set_title(title)
    _scale_bar(ax, mid_lat)
    if fence_radius_m is not None and len(st):
        # drawn (and listed) only where a fence is at least 2 pixels across at the map's final scale
        (x0, x1) = ax.get_xlim()
        width_px = ax.get_window_extent().width
        px_per_m = width_px / max((x1 - x0) * _metres_per_degree_lon(mid_lat), 1e-9)
        if 2.0 * fence_radius_m * px_per_m >= 2.0:
            fences = _fence_rings(st, x, fence_radius_m)
            ax.add_collection(
                PolyCollection(
                    fences, facecolors="none", edgecolors="#d62728", linewidths=0.6, linestyles="--",
                    label=f"geofence ({fence_radius_m:g} m)",
                )
            )  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    return fig


def _report_rows(report: Any) -> tuple[str, list[dict[str, Any]]]:
    """(group column, rows) of a Dispatcher.report, a DataFrame or a list of dicts."""
    if hasattr(report, "to_dict") and hasattr(report, "columns"):
        rows = report.to_dict("records")
        key = str(report.columns[0]) if len(report.columns) else "group"
    else:
        items = as_items(report, "report")
        if not all(isinstance(r, Mapping) for r in items):
            raise InvalidParameterError("report must be Dispatcher.report()'s DataFrame or list of dicts")
        rows = [dict(r) for r in items]
        key = next(iter(rows[0])) if rows else "group"
    need = set(_FUNNEL_STAGES) | {"conversion_treated", "conversion_holdout", "uplift_low", "uplift_high"}
    for i, row in enumerate(rows):
        missing = sorted(need - set(row))
        if missing:
            raise InvalidRecordError(f"report row {i} lacks {missing}: pass Dispatcher.report(...) as it is")
    return key, rows


def plot_funnel(report: Any, *, max_groups: int = 8, title: str | None = None) -> Any:
    """The funnel chart: pushed -> delivered -> opened -> redeemed, and treated vs holdout.

    Left, the treated pushes at each stage (one bar series per group); right,
    each group's conversion (share of users converted by the report's ``metric``)
    in the treated and the holdout group, the treated bar carrying the 95 %
    interval of the uplift, so the push's effect reads at a glance.

    Parameters
    ----------
    report : DataFrame or list of dict
        :meth:`Dispatcher.report` (any ``by=``); its first column names the groups.
    max_groups : int, default 8
        Draw the groups with the most pushes, at most this many.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the funnel and the conversion.

    Raises
    ------
    InvalidRecordError
        A row without the report's columns.
    InvalidParameterError
        ``max_groups`` < 1.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from o2o_geo import viz
    >>> row = {"group": "all", "pushed": 100, "delivered": 97, "opened": 40, "redeemed": 12, "visited": 15,
    ...        "conversion_treated": 0.15, "conversion_holdout": 0.05, "uplift_low": 0.04, "uplift_high": 0.16}
    >>> fig = viz.plot_funnel([row])
    >>> [round(p.get_height()) for p in fig.axes[0].patches]
    [100, 97, 40, 12]
    """
    plt = import_optional("matplotlib.pyplot", needed_by="viz.plot_funnel", extra="viz")

    if not isinstance(max_groups, int) or max_groups < 1:
        raise InvalidParameterError(f"max_groups must be an int >= 1; got {max_groups!r}")
    key, rows = _report_rows(report)
    rows = sorted(rows, key=lambda r: -float(r["pushed"]))[:max_groups]
    fig, (ax_f, ax_c) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    n = max(len(rows), 1)
    width = 0.8 / n
    stages = np.arange(len(_FUNNEL_STAGES))
    for j, row in enumerate(rows):
        heights = [float(row[s]) for s in _FUNNEL_STAGES]
        bars = ax_f.bar(stages + (j - (n - 1) / 2) * width, heights, width, label=str(row[key]))
        if n == 1:
            ax_f.bar_label(bars, labels=[f"{h:,.0f}" for h in heights], fontsize=8)
    ax_f.set_xticks(stages, list(_FUNNEL_STAGES))
    ax_f.set_ylabel("treated pushes")
    ax_f.set_title("funnel (treated)")
    groups = np.arange(len(rows))
    treated = np.array([float(r["conversion_treated"]) for r in rows]) * 100
    held = np.array([float(r["conversion_holdout"]) for r in rows]) * 100
    lo = np.array([float(r["uplift_low"]) for r in rows]) * 100
    hi = np.array([float(r["uplift_high"]) for r in rows]) * 100
    # the uplift's interval drawn around the treated bar: holdout + [low, high]
    err_lo = np.where(np.isfinite(lo), treated - (held + lo), 0.0)
    err_hi = np.where(np.isfinite(hi), (held + hi) - treated, 0.0)
    ax_c.bar(groups - 0.2, np.nan_to_num(treated), 0.4, label="treated", color="#ff7f0e")
    ax_c.errorbar(
        groups - 0.2,
        np.nan_to_num(treated),
        yerr=[np.maximum(err_lo, 0), np.maximum(err_hi, 0)],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=0.8,
    )
    ax_c.bar(groups + 0.2, np.nan_to_num(held), 0.4, label="holdout", color="#7f7f7f")
    ax_c.set_xticks(groups, [str(r[key]) for r in rows], rotation=30 if len(rows) > 3 else 0)
    ax_c.set_ylabel("users converted (%)")
    metric = rows[0].get("metric", "redeem or visit") if rows else ""  # (a report from before the metric column)
    ax_c.set_title(f"users converted ({metric}), treated vs holdout\n(bar: 95 % interval of the uplift)", fontsize=10)
    ax_c.legend(fontsize=8)
    if n > 1:
        ax_f.legend(fontsize=8, title=key)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ folium
def find_leaflet() -> str | None:
    """A local Leaflet folder for offline folium maps, or None.

    Looks at the ``O2O_LEAFLET_DIR`` environment variable, then at Debian's
    and Ubuntu's ``libjs-leaflet`` package.  A folder qualifies when it holds
    ``leaflet.js`` and ``leaflet.css``.

    Returns
    -------
    str or None

    Examples
    --------
    >>> from o2o_geo.viz import find_leaflet
    >>> found = find_leaflet()
    >>> found is None or found.endswith("leaflet")
    True
    """
    places = [os.environ.get(LEAFLET_ENV, ""), *_LEAFLET_PLACES]
    for place in places:
        if place and all(os.path.isfile(os.path.join(place, f)) for f in ("leaflet.js", "leaflet.css")):
            return place
    return None


def _inline_leaflet(leaflet_dir: str) -> str:
    """Leaflet's script and stylesheet as inline HTML, its images as data: URLs."""
    files = {f: os.path.join(leaflet_dir, f) for f in ("leaflet.js", "leaflet.css")}
    for path in files.values():
        if not os.path.isfile(path):
            raise InvalidParameterError(
                f"leaflet_dir {leaflet_dir!r} has no {os.path.basename(path)}: give the folder of a Leaflet build"
            )
    with open(files["leaflet.js"], encoding="utf-8") as fh:
        script = fh.read()
    with open(files["leaflet.css"], encoding="utf-8") as fh:
        css = fh.read()

    def data_url(match: re.Match[str]) -> str:
        rel = match.group(1).strip("'\"")
        path = os.path.join(leaflet_dir, rel)
        if not os.path.isfile(path):
            return match.group(0)
        with open(path, "rb") as img:
            payload = base64.b64encode(img.read()).decode("ascii")
        return f"url(data:image/png;base64,{payload})"

    css = re.sub(r"url\(([^)]*images/[^)]*\.png[^)]*)\)", data_url, css)
    script = script.replace("</script", "<\\/script")
    # folium builds popups with jQuery's $(html)[0], and jQuery is one of the CDN scripts dropped here:
    # a two-line stand-in for that one use
    shim = (
        "if (typeof window.$ === 'undefined') { window.$ = function (h) { var t = document.createElement('template');"
        " t.innerHTML = String(h).trim(); return [t.content.firstElementChild]; }; }"
    )
    # Leaflet finds its marker images through the stylesheet's URL, which a data: URL defeats: name them directly
    icons = {}
    for name, fname in (("icon", "marker-icon.png"), ("shadow", "marker-shadow.png")):
        path = os.path.join(leaflet_dir, "images", fname)
        if os.path.isfile(path):
            with open(path, "rb") as img:
                icons[name] = "data:image/png;base64," + base64.b64encode(img.read()).decode("ascii")
    if icons:
        shim += (
            f" (function (u) {{ L.Icon.Default.prototype._getIconUrl = function (name) {{ return u[name]; }}; }})"
            f"({json.dumps(icons)});"
        )
    return f"<style>{css}</style>\n<script>{script}</script>\n<script>{shim}</script>"


def folium_map(
    stores: StoreSet | StoreIndex,
    *,
    decisions: Any = None,
    pings: Any = None,
    fence_radius_m: float | None = None,
    colour_by: str | None = "merchant_id",
    store_marker: str = "pin",
    tiles: str | None = "OpenStreetMap",
    leaflet_dir: str | None = None,
    zoom_start: int | None = None,
) -> Any:
    """An interactive Leaflet map (folium) of stores, service areas, geofences, pings and pushes.

    Shows inline in a notebook; ``m.save("map.html")`` writes one HTML file.
    Each store is a marker in its ``colour_by`` colour (``store_marker="pin"``:
    a pin drawn inline, no icon files to fetch; ``"dot"``: a circle marker,
    lighter for thousands of stores) with its id and columns in the popup,
    and a legend box names the colours; pushes are rings around their store
    (area grows with the count; gold, holdout ones dashed grey), with the
    counts in the tooltip.

    Parameters
    ----------
    stores : StoreSet or StoreIndex
    decisions, pings, fence_radius_m, colour_by
        As in :func:`plot_map`.
    store_marker : {"pin", "dot"}, default "pin"
    tiles : str or None, default "OpenStreetMap"
        folium's base layer; ``None`` for none (no network needed).
    leaflet_dir : str, optional
        A local Leaflet folder (see :func:`find_leaflet`): inline it and drop
        folium's CDN scripts, so the HTML works offline.
    zoom_start : int, optional
        Default: fit the view to the stores.

    Returns
    -------
    folium.Map

    Raises
    ------
    InvalidParameterError
        As :func:`plot_map`; an unknown ``store_marker``; a ``leaflet_dir``
        without ``leaflet.js`` and ``leaflet.css``.

    Examples
    --------
    >>> import o2o_geo as og
    >>> from o2o_geo import viz
    >>> m = viz.folium_map(og.sample_stores(), fence_radius_m=100, tiles=None)
    >>> m.get_root().render().count("= L.marker(")   # Leaflet loads from its CDN here: not in the page
    50
    """
    folium = import_optional("folium", needed_by="viz.folium_map", extra="viz")
    Element = import_optional("branca.element", needed_by="viz.folium_map", extra="viz").Element

    st = _stores_of(stores)
    check_choice(store_marker, "store_marker", ("pin", "dot"))
    check_number(zoom_start, "zoom_start", low=0, high=24, integer=True, allow_none=True)
    if tiles is not None and not isinstance(tiles, str):
        raise InvalidParameterError(f"tiles must be a folium tile name or URL template, or None; got {tiles!r:.80}")
    _check_fence(fence_radius_m)
    colours, legend = _colours(st, colour_by)
    treated, held = _push_counts(decisions)
    ping_lat, ping_lon = _pings_of(pings) if pings is not None else (np.empty(0), np.empty(0))
    inline = _inline_leaflet(leaflet_dir) if leaflet_dir is not None else None

    ref = _reference_lon(st.lon if len(st) else ping_lon)
    x = _unwrap(st.lon, ref)
    if len(st):
        centre = [float(np.mean(st.lat)), float(np.mean(x))]
    elif ping_lat.size:
        centre = [float(np.mean(ping_lat)), float(np.mean(_unwrap(ping_lon, ref)))]
    else:
        centre = [0.0, 0.0]
    try:
        m = folium.Map(location=centre, zoom_start=zoom_start or 14, tiles=tiles, control_scale=True)
    except ValueError as exc:  # folium refuses the tiles (a URL template needs an attribution)
        raise InvalidParameterError(f"folium refused tiles={tiles!r}: {exc}") from None
    if zoom_start is None and len(st) > 1:
        m.fit_bounds([[float(st.lat.min()), float(x.min())], [float(st.lat.max()), float(x.max())]])
    if inline is not None:
        m.default_js = []
        m.default_css = []
        root: Any = m.get_root()
        root.header.add_child(Element(inline), name="o2o_geo_leaflet")

    for ring in _area_rings(st, x):
        folium.Polygon(
            [[float(b), float(a)] for a, b in ring], color="#1f77b4", weight=1, fill=True, fill_opacity=0.06
        ).add_to(m)
    if fence_radius_m is not None and len(st):
        for ring in _fence_rings(st, x, fence_radius_m):
            folium.Polygon(
                [[float(b), float(a)] for a, b in ring],
                color="#d62728",
                weight=1,
                dash_array="4",
                fill=False,
            ).add_to(m)
    for la, lo in zip(ping_lat.tolist(), _unwrap(ping_lon, ref).tolist(), strict=True):
        folium.CircleMarker([la, lo], radius=2, color="#7f7f7f", weight=0, fill=True, fill_opacity=0.6).add_to(m)
    extra = [c for c in st.columns if c not in ("store_id", "lat", "lon", "service_area")]
    for i in range(len(st)):
        sid = st.store_id[i]
        fields = "".join(
            f"<br>{html.escape(str(c))}: {html.escape(str(st[c][i]))}" for c in extra if st[c][i] is not None
        )
        popup = folium.Popup(f"<b>{html.escape(str(sid))}</b>{fields}", max_width=300)
        where = [float(st.lat[i]), float(x[i])]
        if store_marker == "pin":  # a pin drawn inline (no icon files to fetch), in the store's colour
            icon = folium.DivIcon(html=_PIN_SVG.format(colour=colours[i]), icon_size=(20, 30), icon_anchor=(10, 30))
            folium.Marker(where, tooltip=str(sid), popup=popup, icon=icon).add_to(m)
        else:
            folium.CircleMarker(
                where, radius=5, color="black", weight=1, fill=True, fill_color=colours[i], fill_opacity=0.9,
                tooltip=str(sid), popup=popup,
            ).add_to(m)  # fmt: skip
    for sid in sorted(set(treated) | set(held), key=str):
        i = int(st.position_of([sid])[0])
        n1, n0 = treated.get(sid, 0), held.get(sid, 0)
        folium.CircleMarker(
            [float(st.lat[i]), float(x[i])],
            radius=6 + 3 * math.sqrt(n1 + n0),
            color="#b8860b" if n1 else "#555555",
            weight=2,
            dash_array=None if n1 else "4",
            fill=False,  # a ring: the store's colour stays visible inside it
            tooltip=f"{sid}: {n1:,} pushed, {n0:,} held out",
        ).add_to(m)
    if legend:
        rows = "".join(
            f'<div><span style="display:inline-block;width:10px;height:10px;border:1px solid #000;'
            f'background:{c};margin-right:4px"></span>{html.escape(label)}</div>'
            for label, c in legend.items()
        )
        box = (f'<div class="o2o-legend" style="position:fixed;top:10px;right:10px;z-index:1000;background:#fffd;'
               f'padding:6px 8px;font:12px sans-serif;border:1px solid #999">{rows}</div>')  # fmt: skip
        m.get_root().html.add_child(Element(box))
    return m


# ------------------------------------------------------------------ headless browser
def find_chromium() -> str | None:
    """A Chromium or Chrome executable on ``PATH`` (for :func:`html_to_png`), or None.

    Returns
    -------
    str or None

    Examples
    --------
    >>> from o2o_geo.viz import find_chromium
    >>> found = find_chromium()
    >>> found is None or "chrom" in found.lower()
    True
    """
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium_command(browser: str | None) -> list[str]:
    exe = browser or find_chromium()
    if exe is None:
        raise InvalidParameterError("no Chromium found: install one (e.g. Debian's chromium) or pass browser=")
    # --no-sandbox: Chromium refuses to start as root otherwise (containers, CI)
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]


def html_to_png(
    html_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    *,
    width_px: int = 1200,
    height_px: int = 800,
    browser: str | None = None,
    timeout_s: float = 60.0,
) -> str:
    """A screenshot of an HTML file (a saved folium map) taken by headless Chromium.

    The page runs its scripts for up to 5 s of virtual time first, so a map has
    drawn its markers.  A map that loads Leaflet from a CDN needs the network;
    one made with ``leaflet_dir`` does not.

    Parameters
    ----------
    html_path, png_path : str or path-like
    width_px, height_px : int, default 1200 x 800
        The window, in CSS pixels.
    browser : str, optional
        The Chromium executable; default :func:`find_chromium`.
    timeout_s : float, default 60

    Returns
    -------
    str
        ``png_path``.

    Raises
    ------
    InvalidParameterError
        No Chromium, a missing HTML file, or a window size below 1 pixel.
    BrowserError
        Chromium failed, took longer than ``timeout_s`` or wrote no image (its last output lines in the
        message); a ``RuntimeError`` too.

    Examples
    --------
    >>> import os, tempfile
    >>> import o2o_geo as og
    >>> from o2o_geo import viz
    >>> folder = tempfile.mkdtemp()
    >>> page = os.path.join(folder, "map.html")
    >>> viz.folium_map(og.sample_stores(), tiles=None, leaflet_dir=viz.find_leaflet()).save(page)
    >>> if viz.find_chromium() and viz.find_leaflet():   # offline, so Leaflet must be local
    ...     png = viz.html_to_png(page, os.path.join(folder, "map.png"), width_px=640, height_px=480)
    ...     with open(png, "rb") as fh:
    ...         print(fh.read(4)[1:])
    ... else:
    ...     print(b"PNG")
    b'PNG'
    """
    import subprocess

    src = os.path.abspath(check_path(html_path, "html_path"))
    out = os.path.abspath(check_path(png_path, "png_path"))
    if not os.path.isfile(src):
        raise InvalidParameterError(f"html_path {os.fspath(html_path)!r}: no such file")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16_384 for v in (width_px, height_px)):
        raise InvalidParameterError(f"the window must be 1 to 16,384 pixels a side; got {width_px!r} x {height_px!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
        raise InvalidParameterError(f"timeout_s must be a positive number of seconds; got {timeout_s!r}")
    if os.path.exists(out):
        os.remove(out)
    cmd = [*_chromium_command(browser), f"--window-size={width_px},{height_px}", f"--screenshot={out}"]
    page = pathlib.Path(src).as_uri()  # percent-encoded: a '#' or a space in the path stays part of it
    try:
        res = subprocess.run([*cmd, page], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise BrowserError(f"Chromium took longer than timeout_s={timeout_s:g} s to render {src!r}") from None
    if res.returncode != 0 or not os.path.isfile(out) or os.path.getsize(out) == 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise BrowserError(f"Chromium wrote no screenshot (exit {res.returncode}): {tail}")
    return os.fspath(png_path)
