"""o2o_geo.viz: static maps and the funnel chart (headless matplotlib), folium maps, and Chromium."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter

import numpy as np
import pytest
from _worlds import geographiclib_m

import o2o_geo as og
from o2o_geo.errors import InvalidParameterError, InvalidRecordError, UnknownStoreError

matplotlib = pytest.importorskip("matplotlib", reason="o2o_geo.viz needs matplotlib (the viz extra)")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from o2o_geo import viz  # noqa: E402
from o2o_geo.viz._static import FUNNEL_STAGES  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def calls(html: str, fn: str) -> int:
    """Layers folium created with L.<fn>(...) (its generated names; Leaflet's own source does not match)."""
    return len(re.findall(rf"var \w+_[0-9a-f]{{32}} = L\.{fn}\(", html))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def campaign():
    """The sample chain, a dispatcher with a holdout, pings at the stores, and some outcomes."""
    stores = og.sample_stores(seed=7)
    index = og.StoreIndex(stores)
    offers = og.OfferSet(
        [
            og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
            og.Offer("tea-deal", "m-tea", category="tea", discount_rate=0.85),
        ]
    )
    merchants = set(stores["merchant_id"].tolist())
    offers = og.OfferSet([o for o in offers if o.merchant_id in merchants])
    engine = og.Dispatcher(index, offers, policy=og.PushPolicy(holdout_fraction=0.3, quiet_hours=None))
    rng = np.random.default_rng(3)
    decisions = []
    ts = 1767258000.0
    for u in range(300):
        i = int(rng.integers(len(stores)))
        decisions += engine.on_location(f"u{u}", float(stores.lat[i]), float(stores.lon[i]), ts + u)
    for d in decisions:
        if rng.random() < 0.5:
            engine.record(og.Event("redeem", d.user_id, d.ts + 600, push_id=None if d.holdout else d.push_id,
                                   offer_id=d.offer_id, store_id=d.store_id, amount=20.0))  # fmt: skip
    return stores, decisions, engine


def test_ring_points_are_at_the_radius_by_geographiclib():
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.uniform(-89, 89, 20), [89.99, -89.99, 0.0]])
    lon = np.concatenate([rng.uniform(-180, 180, 20), [10.0, -170.0, 179.9999]])
    radius = rng.uniform(1.0, 50_000.0, lat.size)
    rings = viz.geodesic_ring_lonlat(lat, lon, radius, n_points=16)
    assert rings.shape == (lat.size, 17, 2)
    for c in range(lat.size):
        assert np.array_equal(rings[c, 0], rings[c, -1])  # closed
        for x, y in rings[c, :-1]:
            assert -180.0 <= x <= 180.0
            assert abs(geographiclib_m(lat[c], lon[c], y, x) - radius[c]) < 1e-6
    with pytest.raises(InvalidParameterError, match="radius_m must be finite and >= 0"):
        viz.geodesic_ring_lonlat(0.0, 0.0, -1.0)
    with pytest.raises(og.errors.InvalidCoordinateError, match=r"centre lat = 91\.0 is outside \[-90, 90\]"):
        viz.geodesic_ring_lonlat(91.0, 0.0, 10.0)
    with pytest.raises(InvalidParameterError, match="n_points"):
        viz.geodesic_ring_lonlat(0.0, 0.0, 10.0, n_points=2)


def test_static_map_png_draws_every_store_area_fence_and_push(tmp_path, campaign):
    stores, decisions, _ = campaign
    pings = {"lat": stores.lat + 0.001, "lon": stores.lon - 0.001}
    fig = viz.plot_map(stores, decisions=decisions, pings=pings, fence_radius_m=100, title="sample chain")
    ax = fig.axes[0]
    # what was drawn, against what the stores and decisions hold
    polys = {c.get_label().split(" (")[0]: c for c in ax.collections
             if c.get_label().split(" (")[0] in ("service area", "geofence")}  # fmt: skip
    n_area_parts = int(np.isfinite(stores.service_radius_m).sum()) + sum(
        len(getattr(g, "geoms", [g]))
        for g, r in zip(stores.service_area_geometry, stores.service_radius_m, strict=True)
        if g is not None and not np.isfinite(r)
    )
    assert len(polys["service area"].get_paths()) == n_area_parts
    assert len(polys["geofence"].get_paths()) == len(stores)
    treated = {d.store_id for d in decisions if not d.holdout}
    held = {d.store_id for d in decisions if d.holdout}
    labels = [c.get_label() for c in ax.collections]
    star = {lab.split(" ")[0]: c for lab, c in zip(labels, ax.collections, strict=True) if "(" in lab}
    assert len(star["pushes"].get_offsets()) == len(treated)
    assert len(star["holdout"].get_offsets()) == len(held)
    assert f"pushes ({sum(not d.holdout for d in decisions):,})" in labels
    # the fence of store 0 passes 100 m from it (the geodesic ring, drawn as given)
    ring = polys["geofence"].get_paths()[0].vertices
    for x, y in ring[:-1:9]:
        assert abs(geographiclib_m(stores.lat[0], stores.lon[0], y, x) - 100.0) < 1e-6
    path = tmp_path / "map.png"
    fig.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    img = mpimg.imread(path)
    assert img.shape[0] == img.shape[1] == 640 and float(img[..., :3].std()) > 0.05  # not a blank canvas


def test_static_map_reads_at_a_glance(campaign):
    """Legend folding, store colours over push rings, fences only when visible, a true scale bar, plain degrees."""
    rng = np.random.default_rng(5)
    n = 140
    many = og.StoreSet.from_columns(  # 14 merchants: store counts 20, 18, ..., so the ranking is known
        store_id=[f"s{i}" for i in range(n)], lat=31.2 + rng.uniform(0, 0.02, n), lon=121.4 + rng.uniform(0, 0.02, n),
        merchant_id=[f"m{k}" for k in range(14) for _ in range(max(20 - 2 * k, 1))][:n]
        + ["m13"] * (n - sum(max(20 - 2 * k, 1) for k in range(14))),
    )  # fmt: skip
    sizes = Counter(many["merchant_id"].tolist())
    fig = viz.plot_map(many, decisions=[{"store_id": "s0", "holdout": False}], fence_radius_m=100)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    kept = [m for m, _ in sizes.most_common(viz.MAX_LEGEND)]
    assert [lab for lab in labels if lab in sizes] == kept
    folded = sorted(set(sizes) - set(kept))
    other = [lab for lab in labels if lab.startswith(f"{len(folded)} others")]
    assert other and other[0].endswith(f"{sum(sizes[m] for m in folded):,} stores")
    stores_dots = next(c for c in ax.collections if c.get_zorder() == 4)
    face = [matplotlib.colors.to_hex(c) for c in stores_dots.get_facecolors()]
    by_merchant = {}
    for m, c in zip(many["merchant_id"].tolist(), face, strict=True):
        by_merchant.setdefault(m, set()).add(c)
    assert all(len(c) == 1 for c in by_merchant.values())  # one colour per merchant
    assert len({next(iter(by_merchant[m])) for m in kept}) == len(kept)  # distinct among the kept
    assert {next(iter(by_merchant[m])) for m in folded} == {viz.OTHER_COLOUR}
    rings = next(c for c in ax.collections if c.get_label().startswith("pushes"))
    assert rings.get_zorder() < stores_dots.get_zorder() and len(rings.get_facecolors()) == 0  # hollow, below
    assert any(c.get_label() == "geofence (100 m)" for c in ax.collections)  # 2 km across: a fence is visible
    # the scale bar: its drawn length in metres (GeographicLib) is what its label says
    (bar,) = [line for line in ax.get_lines() if line.get_linewidth() == 2.5]
    (x0, x1), (y, _) = bar.get_xdata(), bar.get_ydata()
    label = next(t.get_text() for t in ax.texts if t.get_text().endswith("m"))
    metres = float(label.split()[0]) * (1000.0 if label.endswith("km") else 1.0)
    assert geographiclib_m(y, x0, y, x1) == pytest.approx(metres, rel=1e-6)
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+\.\d+", t.replace("\u2212", "-")) for t in ticks)  # plain degrees
    assert not ax.xaxis.get_major_formatter().get_offset()
    # a country-wide view: 100 m fences would be specks, so they are neither drawn nor listed
    wide = og.StoreSet.from_columns(store_id=["a", "b"], lat=[30.0, 40.0], lon=[110.0, 120.0])
    ax2 = viz.plot_map(wide, fence_radius_m=100).axes[0]
    assert not any(c.get_label().startswith("geofence") for c in ax2.collections)


def test_static_map_keeps_an_antimeridian_chain_in_one_piece():
    stores = og.StoreSet.from_records(
        [
            {"store_id": "fiji-e", "lat": -17.0, "lon": 179.95, "service_area": 5000.0},
            {"store_id": "fiji-w", "lat": -17.0, "lon": -179.95},
        ]
    )
    fig = viz.plot_map(stores, fence_radius_m=2000, colour_by=None)
    ax = fig.axes[0]
    xs = next(c for c in ax.collections if c.get_zorder() == 4).get_offsets()[:, 0]  # the store dots
    assert abs(xs[0] - xs[1]) == pytest.approx(0.1, abs=1e-9)  # 11 km apart, not 360 degrees
    fences = next(c for c in ax.collections if c.get_label().startswith("geofence"))
    fence_x = np.concatenate([p.vertices[:, 0] for p in fences.get_paths()])
    assert np.ptp(fence_x) < 1.0
    x0, x1 = ax.get_xlim()
    assert x1 - x0 < 5.0


def test_rings_near_the_seam_and_around_a_pole_are_drawn_whole():
    from matplotlib.path import Path

    stores = og.StoreSet.from_records(
        [
            {"store_id": "a", "lat": 0.0, "lon": 0.0},
            {"store_id": "b", "lat": 0.0, "lon": 1.0},
            {"store_id": "c", "lat": 0.0, "lon": -179.5, "service_area": 100_000.0},  # opposite the chain's middle
            {"store_id": "north", "lat": 89.99, "lon": 30.0, "service_area": 5_000.0},  # its area holds the pole
        ]
    )
    fig = viz.plot_map(stores, fence_radius_m=100_000, colour_by=None)
    ax = fig.axes[0]
    by_label = {c.get_label().split(" (")[0]: c for c in ax.collections}
    areas, fences = by_label["service area"].get_paths(), by_label["geofence"].get_paths()
    centres = _store_xy(ax, stores)
    for paths in (fences, areas):
        for path in paths:
            v = path.vertices
            assert np.ptp(v[:, 0]) < 5.0 or v[:, 1].max() == 90.0  # a ring spans a few degrees, unless polar
    for path, sid in zip(fences, stores.store_id.tolist(), strict=True):  # every fence contains its store
        assert Path(path.vertices).contains_point(centres[sid]), sid
    polar = next(p for p in areas if p.vertices[:, 1].max() == 90.0)
    assert Path(polar.vertices).contains_point(centres["north"])
    assert np.ptp(polar.vertices[:, 0]) == pytest.approx(360.0, abs=1e-6)


def _store_xy(ax, stores):
    """Where plot_map drew each store (its store dots, drawn on top of the push rings)."""
    offsets = next(c for c in ax.collections if c.get_zorder() == 4).get_offsets()
    return dict(zip(stores.store_id.tolist(), map(tuple, np.asarray(offsets)), strict=True))


def test_map_rejects_bad_input(campaign):
    stores, _, _ = campaign
    with pytest.raises(InvalidParameterError, match="StoreSet or a StoreIndex"):
        viz.plot_map([1, 2])
    with pytest.raises(InvalidParameterError, match="colour_by names column 'nope'"):
        viz.plot_map(stores, colour_by="nope")
    with pytest.raises(
        InvalidParameterError, match=r"fence_radius_m must be a finite number of metres > 0 or None; got -5$"
    ):
        viz.plot_map(stores, fence_radius_m=-5)
    with pytest.raises(UnknownStoreError, match="store_id 'no-such-store' .* is not in this store set"):
        viz.plot_map(stores, decisions=[{"store_id": "no-such-store", "holdout": False}])
    with pytest.raises(InvalidRecordError, match="decision 0 has no 'store_id'"):
        viz.folium_map(stores, decisions=[{"offer_id": "x"}])
    with pytest.raises(og.errors.InvalidCoordinateError, match=r"ping lat\[0\] = 95\.0 is outside"):
        viz.plot_map(stores, pings=([95.0], [0.0]))
    with pytest.raises(InvalidParameterError, match="store_marker"):
        viz.folium_map(stores, store_marker="star")


def test_funnel_chart_shows_the_report(tmp_path, campaign):
    _, _, engine = campaign
    for by in ("all", "offer"):
        report = engine.report(by=by, as_frame=False)
        fig = viz.plot_funnel(report, title=f"by {by}")
        funnel, conversion = fig.axes[:2]
        heights = [p.get_height() for p in funnel.patches]
        expected = [float(r[s]) for r in sorted(report, key=lambda r: -r["pushed"]) for s in FUNNEL_STAGES]
        assert heights == expected
        bars = [p.get_height() for p in conversion.patches]
        n = len(report)
        ordered = sorted(report, key=lambda r: -r["pushed"])
        assert bars[:n] == pytest.approx([100 * r["conversion_treated"] for r in ordered])
        assert bars[n:] == pytest.approx([100 * r["conversion_holdout"] for r in ordered])
        path = tmp_path / f"funnel-{by}.png"
        fig.savefig(path, dpi=70)
        assert path.read_bytes()[:8] == PNG_MAGIC and os.path.getsize(path) > 10_000
    assert report and sum(r["pushed"] for r in report) > 0  # the campaign pushed something
    with pytest.raises(InvalidRecordError, match=r"lacks \['conversion_holdout'"):
        viz.plot_funnel([{k: v for k, v in report[0].items() if k != "conversion_holdout"}])
    with pytest.raises(InvalidParameterError, match="max_groups"):
        viz.plot_funnel(report, max_groups=0)
    pd = pytest.importorskip("pandas")
    frame = engine.report(by="merchant")
    assert isinstance(frame, pd.DataFrame)
    fig = viz.plot_funnel(frame)
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == [
        str(v) for v in frame.sort_values("pushed", ascending=False, kind="stable")["merchant"]
    ]


folium = pytest.importorskip("folium", reason="folium maps need folium (the viz extra)")


def test_folium_map_has_a_marker_per_store_and_a_circle_per_pushed_store(tmp_path, campaign):
    stores, decisions, _ = campaign
    pushed = {d.store_id for d in decisions}
    m = viz.folium_map(stores, decisions=decisions, fence_radius_m=100, tiles=None)
    html = m.get_root().render()
    assert calls(html, "marker") == len(stores)
    assert calls(html, "circleMarker") == len(pushed)
    assert calls(html, "polygon") == len(stores) + sum(  # fences + service areas
        len(getattr(g, "geoms", [g])) if g is not None and not np.isfinite(r) else int(np.isfinite(r))
        for g, r in zip(stores.service_area_geometry, stores.service_radius_m, strict=True)
    )
    for sid in stores.store_id[:5]:
        assert f"<b>{sid}</b>" in html
    # every pin in its merchant's colour (the same as the static map's), and a legend box that names them
    pins = re.findall(r'path d=\\"M10 1C[^"\\]*\\" fill=\\"(#[0-9a-f]{6})\\"', html)  # (JSON-escaped in the script)
    assert len(pins) == len(stores)
    merchants = stores["merchant_id"].tolist()
    colour = {}
    for m_id, c in zip(merchants, pins, strict=True):
        assert colour.setdefault(m_id, c) == c
    assert len(set(colour.values())) == len(colour)  # (fewer merchants than MAX_LEGEND: all distinct)
    legend = re.search(r'<div class="o2o-legend"[^>]*>(.*?)</div></div>', html, re.S).group(1)
    for m_id, c in colour.items():
        assert f"background:{c}" in legend and m_id in legend
    # push rings are rings: the store's colour inside stays visible
    assert '"fill": false' in html.replace("'", '"') or '"fill":false' in html.replace(" ", "")
    dots = viz.folium_map(stores, decisions=decisions, store_marker="dot", pings=([31.23], [121.47]), tiles=None)
    html = dots.get_root().render()
    assert calls(html, "marker") == 0 and calls(html, "circleMarker") == len(stores) + len(pushed) + 1


leaflet_dir = viz.find_leaflet()
needs_leaflet = pytest.mark.skipif(
    leaflet_dir is None, reason="no local Leaflet build (Debian's libjs-leaflet, or set O2O_LEAFLET_DIR)"
)


@needs_leaflet
def test_offline_folium_map_has_no_network_reference(tmp_path, campaign):
    stores, _, _ = campaign
    m = viz.folium_map(stores, tiles=None, leaflet_dir=leaflet_dir)
    path = tmp_path / "map.html"
    m.save(str(path))
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", text)
    assert "L.Icon.Default" in text and calls(text, "marker") == len(stores)
    with pytest.raises(InvalidParameterError, match="has no leaflet.js"):
        viz.folium_map(stores, leaflet_dir=str(tmp_path))


def _require_browser() -> str:
    chromium = viz.find_chromium()
    if chromium is None or leaflet_dir is None:
        why = "no headless Chromium" if chromium is None else "no local Leaflet build"
        if os.environ.get("O2O_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why}, but O2O_REQUIRE_BROWSER=1 (CI installs chromium and libjs-leaflet)")
        pytest.skip(f"{why} (install Debian's chromium and libjs-leaflet)")
    return chromium


@pytest.mark.browser
def test_folium_map_markers_are_in_the_browser_dom(tmp_path, campaign):
    chromium = _require_browser()
    stores, decisions, _ = campaign
    pushed = {d.store_id for d in decisions}
    m = viz.folium_map(stores, decisions=decisions, fence_radius_m=100, tiles=None, leaflet_dir=leaflet_dir)
    page = tmp_path / "map.html"
    m.save(str(page))
    res = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not errors, errors
    dom = res.stdout
    # Leaflet turned every store pin into a <div class="leaflet-marker-icon ..."> (an inline SVG), the rest into paths
    assert len(re.findall(r'<div[^>]+class="leaflet-marker-icon', dom)) == len(stores)  # inline pins (DivIcons)
    paths = len(re.findall(r'<path class="leaflet-interactive', dom))
    assert paths == calls(m.get_root().render(), "polygon") + len(pushed)
    # in the rendered page: each pin filled with its merchant's colour, and the legend box naming them
    fills = re.findall(r'<path d="M10 1C[^"]*" fill="(#[0-9a-f]{6})"', dom)
    by_merchant = {}
    for m_id, c in zip(stores["merchant_id"].tolist(), fills, strict=True):
        by_merchant.setdefault(m_id, set()).add(c)
    assert all(len(c) == 1 for c in by_merchant.values())  # a merchant's pins share its colour
    colour = {m_id: c.pop() for m_id, c in by_merchant.items()}
    assert len(fills) == len(stores) and len(set(colour.values())) == len(colour)
    legend = re.search(r'class="o2o-legend".*?</div></div>', dom, re.S).group(0)
    assert all(m_id in legend and f"background:{c}" in legend.replace(" ", "") for m_id, c in colour.items())
    odd = tmp_path / "run #2"  # a '#' and a space in the path: part of the file's name, not a URL fragment
    odd.mkdir()
    (odd / "map.html").write_bytes(page.read_bytes())
    shot = viz.html_to_png(odd / "map.html", odd / "map.png", width_px=800, height_px=600)
    img = mpimg.imread(shot)
    assert img.shape[:2] == (600, 800) and float(img[..., :3].std()) > 0.02
