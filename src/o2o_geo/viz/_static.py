"""Static pictures (matplotlib, headless through Agg): the store map and the funnel chart."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._geodesy import geodesic_distance_m
from .._index import StoreIndex
from .._stores import StoreSet
from .._validate import as_items, check_count, import_optional
from ..errors import InvalidParameterError, InvalidRecordError
from ._shared import (
    area_rings,
    check_fence,
    fence_rings,
    merchant_colours,
    metres_per_degree_lon,
    pings_of,
    push_counts,
    reference_lon,
    stores_of,
    unwrap,
)

__all__ = ["FUNNEL_STAGES", "plot_funnel", "plot_map"]

FUNNEL_STAGES = ("pushed", "delivered", "opened", "redeemed")


def _nice_length_m(target_m: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest below ``target_m``."""
    power = 10.0 ** math.floor(math.log10(max(target_m, 1e-3)))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= max(target_m, power))


def _scale_bar(ax: Any, mid_lat: float) -> float:
    """A scale bar in the lower right corner (its length in metres), for the axes' final limits."""
    ax.apply_aspect()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    xr, yb = x1 - 0.05 * (x1 - x0), y0 + 0.05 * (y1 - y0)
    length_m = _nice_length_m((x1 - x0) * metres_per_degree_lon(mid_lat) / 5.0)
    dx = length_m / metres_per_degree_lon(yb)
    a, b = ((xr - dx + 180.0) % 360.0) - 180.0, ((xr + 180.0) % 360.0) - 180.0  # (an unwrapped map can pass 180)
    dx *= length_m / max(float(geodesic_distance_m(yb, a, yb, b)), 1e-9)  # exact at the bar's latitude
    ax.plot([xr - dx, xr], [yb, yb], color="black", linewidth=2.5, solid_capstyle="butt", zorder=6)
    text = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    ax.text(xr - dx / 2, yb + 0.012 * (y1 - y0), text, ha="center", va="bottom", fontsize=8, zorder=6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return length_m


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

    st = stores_of(stores)
    check_fence(fence_radius_m)
    colours, legend = merchant_colours(st, colour_by)
    treated, held = push_counts(decisions)
    ping_lat, ping_lon = pings_of(pings) if pings is not None else (np.empty(0), np.empty(0))

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 8))
    else:
        fig = ax.figure
    ref = reference_lon(st.lon if len(st) else ping_lon)
    x = unwrap(st.lon, ref)

    areas = area_rings(st, x)
    if areas:
        ax.add_collection(
            PolyCollection(areas, facecolors="#1f77b41a", edgecolors="#1f77b4", linewidths=0.6, label="service area")
        )
    if ping_lat.size:
        ax.scatter(unwrap(ping_lon, ref), ping_lat, s=3, c="#7f7f7f", alpha=0.5, linewidths=0, label="pings")
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
        px_per_m = width_px / max((x1 - x0) * metres_per_degree_lon(mid_lat), 1e-9)
        if 2.0 * fence_radius_m * px_per_m >= 2.0:
            fences = fence_rings(st, x, fence_radius_m)
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
    need = set(FUNNEL_STAGES) | {"conversion_treated", "conversion_holdout", "uplift_low", "uplift_high"}
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

    check_count(max_groups, "max_groups", low=1)
    key, rows = _report_rows(report)
    rows = sorted(rows, key=lambda r: -float(r["pushed"]))[:max_groups]
    fig, (ax_f, ax_c) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    n = max(len(rows), 1)
    width = 0.8 / n
    stages = np.arange(len(FUNNEL_STAGES))
    for j, row in enumerate(rows):
        heights = [float(row[s]) for s in FUNNEL_STAGES]
        bars = ax_f.bar(stages + (j - (n - 1) / 2) * width, heights, width, label=str(row[key]))
        if n == 1:
            ax_f.bar_label(bars, labels=[f"{h:,.0f}" for h in heights], fontsize=8)
    ax_f.set_xticks(stages, list(FUNNEL_STAGES))
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
