"""Interactive maps (folium, Leaflet inlined when offline) and their PNG through headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import pathlib
import re
from typing import Any

import numpy as np

from .._index import StoreIndex
from .._stores import StoreSet
from .._validate import check_choice, check_number, check_path, check_quantity, import_optional
from ..errors import BrowserError, InvalidParameterError
from ._shared import (
    area_rings,
    check_fence,
    fence_rings,
    merchant_colours,
    pings_of,
    push_counts,
    reference_lon,
    stores_of,
    unwrap,
)

__all__ = ["LEAFLET_ENV", "find_chromium", "find_leaflet", "folium_map", "html_to_png"]

#: Environment variable naming a Leaflet folder for :func:`find_leaflet`.
LEAFLET_ENV = "O2O_LEAFLET_DIR"
_LEAFLET_PLACES = (
    os.path.join(os.sep, "usr", "share", "javascript", "leaflet"),  # Debian/Ubuntu libjs-leaflet
)
_PIN_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="30" viewBox="0 0 20 30">'
    '<path d="M10 1C5 1 1 5 1 10c0 7 9 19 9 19s9-12 9-19c0-5-4-9-9-9z" fill="{colour}" stroke="#000" '
    'stroke-width="1"/><circle cx="10" cy="10" r="3.5" fill="#fff"/></svg>'
)


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

    st = stores_of(stores)
    check_choice(store_marker, "store_marker", ("pin", "dot"))
    check_number(zoom_start, "zoom_start", low=0, high=24, integer=True, allow_none=True)
    if tiles is not None and not isinstance(tiles, str):
        raise InvalidParameterError(f"tiles must be a folium tile name or URL template, or None; got {tiles!r:.80}")
    check_fence(fence_radius_m)
    colours, legend = merchant_colours(st, colour_by)
    treated, held = push_counts(decisions)
    ping_lat, ping_lon = pings_of(pings) if pings is not None else (np.empty(0), np.empty(0))
    inline = _inline_leaflet(leaflet_dir) if leaflet_dir is not None else None

    ref = reference_lon(st.lon if len(st) else ping_lon)
    x = unwrap(st.lon, ref)
    if len(st):
        centre = [float(np.mean(st.lat)), float(np.mean(x))]
    elif ping_lat.size:
        centre = [float(np.mean(ping_lat)), float(np.mean(unwrap(ping_lon, ref)))]
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

    for ring in area_rings(st, x):
        folium.Polygon(
            [[float(b), float(a)] for a, b in ring], color="#1f77b4", weight=1, fill=True, fill_opacity=0.06
        ).add_to(m)
    if fence_radius_m is not None and len(st):
        for ring in fence_rings(st, x, fence_radius_m):
            folium.Polygon(
                [[float(b), float(a)] for a, b in ring],
                color="#d62728",
                weight=1,
                dash_array="4",
                fill=False,
            ).add_to(m)
    for la, lo in zip(ping_lat.tolist(), unwrap(ping_lon, ref).tolist(), strict=True):
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
    check_quantity(timeout_s, "timeout_s", unit="seconds", positive=True)
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
