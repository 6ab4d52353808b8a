"""StoreIndex.save / StoreIndex.load: exact round trips, live stores only, bad files, atomic writes.

Forged files are built by hand with numpy from the format documented in the
module docstring of ``o2o_geo._io`` (a ``.npz`` zip with a JSON ``header``
member), not with the library's writer.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np
import pytest
import shapely
from _worlds import brute_nearest
from shapely.geometry import Polygon, box
from shapely.geometry import mapping as to_geojson

import o2o_geo as og
from o2o_geo.errors import IndexFormatError

N = 240


def _star(rng, cx, cy):
    ang = np.sort((np.arange(8) + rng.uniform(0.1, 0.9, 8)) * np.pi / 4)
    rad = rng.uniform(0.05, 0.3, 8)
    t = np.array([0.0, 2.1, 4.2])
    hole = list(zip(cx + 0.02 * np.cos(t), cy + 0.02 * np.sin(t), strict=True))
    return Polygon(list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True)), [hole])


def _columns(rng, n):
    """Store positions, service areas and one column of every kind the format knows."""
    lat = rng.uniform(-2.0, 2.0, n)
    lon = rng.uniform(-2.0, 2.0, n)
    lon[:12] = rng.uniform(179.0, 180.0, 12) * np.where(np.arange(12) % 2, 1, -1)  # a few by the antimeridian
    areas = np.empty(n, dtype=object)
    for i in range(n):
        kind = i % 7
        if kind == 0:
            areas[i] = float(rng.uniform(5e3, 8e4))
        elif kind == 1:
            areas[i] = int(rng.integers(0, 50_000))
        elif kind == 2:
            areas[i] = _star(rng, lon[i] if abs(lon[i]) < 179 else 0.0, lat[i])
        elif kind == 3:
            areas[i] = to_geojson(box(lon[i] - 0.2, lat[i] - 0.2, lon[i] + 0.2, lat[i] + 0.2))
        elif kind == 4:
            areas[i] = Polygon([(179.0, -1.5), (-179.0, -1.5), (-179.0, 1.5), (179.0, 1.5)])  # crosses 180
        else:
            areas[i] = None
    mixed = np.empty(n, dtype=object)
    pool = [None, "x", 3, -2.5, True, False, {"k": [1, "two", None]}, [1, 2.5], "", "ünï"]
    mixed[:] = [pool[i % len(pool)] for i in range(n)]
    category = np.empty(n, dtype=object)
    category[:] = [["coffee", "tea", "", "日本茶", 'a,b\n"c"'][i % 5] for i in range(n)]
    return {
        "lat": lat,
        "lon": lon,
        "service_area": areas,
        "rating": rng.uniform(0, 5, n),
        "floors": rng.integers(-(2**40), 2**40, n),
        "open24": rng.uniform(size=n) < 0.3,
        "category": category,
        "note": mixed,
    }


def _make_index(rng, ids):
    cols = _columns(rng, len(ids))
    lat, lon = cols.pop("lat"), cols.pop("lon")
    return og.StoreIndex(og.StoreSet.from_columns(ids, lat, lon, **cols))


INT_IDS = [int(v) for v in np.random.default_rng(11).permutation(10**6)[:N] - 5000]
STR_IDS = [f"store-{i:04d}-é" if i % 3 else str(i) for i in range(N)]  # some look like ints but are str


def _assert_same_stores(a, b):
    """Every column, bit for bit and type for type; service areas as geometries and radii."""
    assert len(a) == len(b)
    assert a.store_id.tolist() == b.store_id.tolist()
    assert [type(v) for v in a.store_id.tolist()] == [type(v) for v in b.store_id.tolist()]
    assert a.lat.dtype == b.lat.dtype == np.float64
    assert a.lat.tobytes() == b.lat.tobytes() and a.lon.tobytes() == b.lon.tobytes()
    assert a.columns == b.columns
    for name in a.columns:
        if name in ("store_id", "lat", "lon", "service_area"):
            continue
        assert a[name].dtype == b[name].dtype, name
        va, vb = a[name].tolist(), b[name].tolist()
        assert va == vb, name
        assert [type(v) for v in va] == [type(v) for v in vb], name
    np.testing.assert_array_equal(a.service_radius_m, b.service_radius_m)
    for ga, gb in zip(a.service_area_geometry.tolist(), b.service_area_geometry.tolist(), strict=True):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert shapely.to_wkb(ga) == shapely.to_wkb(gb)


def _assert_same_answers(a, b, rng, n=300):
    qlat = rng.uniform(-2.5, 2.5, n)
    qlon = rng.uniform(-2.5, 2.5, n)
    qlon[: n // 5] = rng.uniform(178.5, 181.5, n // 5)
    qlon = np.where(qlon > 180, qlon - 360, qlon)
    na, nb = a.nearest(qlat, qlon, k=5), b.nearest(qlat, qlon, k=5)
    assert na.store_id.tolist() == nb.store_id.tolist()
    assert np.array_equal(na.position, nb.position) and np.array_equal(na.distance_m, nb.distance_m)
    nf_a = a.nearest(qlat, qlon, k=3, where={"category": "tea"})
    nf_b = b.nearest(qlat, qlon, k=3, where={"category": "tea"})
    assert nf_a.store_id.tolist() == nf_b.store_id.tolist()
    for method, args in (("within", (60_000.0,)), ("serving", ())):
        ra, rb = getattr(a, method)(qlat, qlon, *args), getattr(b, method)(qlat, qlon, *args)
        assert np.array_equal(ra.offsets, rb.offsets), method
        assert ra.store_id.tolist() == rb.store_id.tolist(), method
        assert np.array_equal(ra.distance_m, rb.distance_m), method
        assert ra.counts.sum() > n // 2, method  # the comparison is not between two empty answers
    for i in range(0, n, 29):  # scalar queries too
        assert a.serving(qlat[i], qlon[i]).store_id.tolist() == b.serving(qlat[i], qlon[i]).store_id.tolist()
    return qlat, qlon


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("ids", [INT_IDS, STR_IDS], ids=["int-ids", "str-ids"])
def test_round_trip_is_exact(ids, tmp_path):
    rng = np.random.default_rng(2024)
    index = _make_index(rng, ids)
    path = tmp_path / "stores.o2oidx"
    index.save(path)
    back = og.StoreIndex.load(path)
    _assert_same_stores(index.stores, back.stores)
    kinds = {name: back.stores[name].dtype.kind for name in ("rating", "floors", "open24", "category", "note")}
    assert kinds == {"rating": "f", "floors": "i", "open24": "b", "category": "O", "note": "O"}
    assert back.stores["note"].tolist()[:10] == [
        None,
        "x",
        3,
        -2.5,
        True,
        False,
        {"k": [1, "two", None]},
        [1, 2.5],
        "",
        "ünï",
    ]
    # the antimeridian polygon is still split, a radius of 0 is still 0
    assert sum(g is not None and g.geom_type == "MultiPolygon" for g in back.stores.service_area_geometry) >= N // 7
    assert np.count_nonzero(np.isfinite(back.stores.service_radius_m)) == 2 * ((N + 6) // 7)
    qlat, qlon = _assert_same_answers(index, back, rng)
    # and the loaded index is right, not just equal: nearest against brute force on a sample
    s = back.stores
    nb = back.nearest(qlat[:40], qlon[:40], k=3)
    for i in range(40):
        d, p = brute_nearest(s.lat, s.lon, qlat[i], qlon[i], 3)
        assert nb.position[i].tolist() == p.tolist()
        np.testing.assert_allclose(nb.distance_m[i], d, rtol=1e-12, atol=1e-6)
    # a string path works as well as a Path, and saving again gives the same bytes
    index.save(str(tmp_path / "again.o2oidx"))
    back.save(tmp_path / "third.o2oidx")
    assert (tmp_path / "again.o2oidx").read_bytes() == path.read_bytes() == (tmp_path / "third.o2oidx").read_bytes()


def test_round_trip_of_the_service_area_boundary_cases(tmp_path):
    """A store that serves exactly at its own position (radius 0) and polygons with holes."""
    rng = np.random.default_rng(9)
    hole = _star(rng, 10.0, 10.0)
    s = og.StoreSet.from_columns(
        ["zero", "holed"], [5.0, 10.0], [5.0, 10.0], service_area=np.array([0.0, hole], dtype=object)
    )
    og.StoreIndex(s).save(tmp_path / "b.o2oidx")
    back = og.StoreIndex.load(tmp_path / "b.o2oidx")
    assert back.serving(5.0, 5.0).store_id.tolist() == ["zero"]
    assert back.serving(5.0, 5.000001).store_id.tolist() == []
    assert back.serving(10.0, 10.0).store_id.tolist() == []  # inside the hole
    assert back.serving(10.0, 10.04).store_id.tolist() == ["holed"]
    assert back.stores.service_area_geometry[1].equals(hole)


def test_empty_index_round_trips(tmp_path):
    og.StoreIndex(og.StoreSet.from_columns([], [], [])).save(tmp_path / "e.o2oidx")
    back = og.StoreIndex.load(tmp_path / "e.o2oidx")
    assert len(back) == 0 and back.stores.columns[:3] == ["store_id", "lat", "lon"]
    assert back.nearest(0.0, 0.0, k=2).store_id.tolist() == [None, None]
    assert back.serving([0.0], [0.0]).counts.tolist() == [0]


def test_round_trip_does_not_add_columns(tmp_path):
    index = og.StoreIndex(og.StoreSet.from_columns([1, 2], [0.0, 1.0], [0.0, 1.0], category=["a", "b"]))
    index.save(tmp_path / "c.o2oidx")
    back = og.StoreIndex.load(tmp_path / "c.o2oidx")
    assert back.stores.columns == index.stores.columns == ["store_id", "lat", "lon", "category"]
    assert sorted(back.stores.table()) == sorted(index.stores.table())


def test_saving_over_an_existing_file_replaces_it(tmp_path):
    path = tmp_path / "s.o2oidx"
    og.StoreIndex(og.StoreSet.from_columns(["old"], [1.0], [1.0])).save(path)
    og.StoreIndex(og.StoreSet.from_columns([1, 2], [2.0, 3.0], [2.0, 3.0])).save(path)
    assert og.StoreIndex.load(path).stores.store_id.tolist() == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["s.o2oidx"]


# ------------------------------------------------------------------- live stores only


@pytest.mark.parametrize("compact", [False, True], ids=["delta", "compacted"])
def test_save_after_add_and_remove_keeps_live_stores_only(compact, tmp_path):
    rng = np.random.default_rng(77)
    n0 = 80
    records = [
        {
            "store_id": f"s{i}",
            "lat": float(rng.uniform(-1, 1)),
            "lon": float(rng.uniform(-1, 1)),
            "category": ["tea", "coffee"][i % 2],
            "rating": float(rng.uniform(0, 5)),
            "legacy": float(i),  # only the first stores have this column
            "service_area": [None, 20_000.0, box(-0.5, -0.5, 0.5, 0.5)][i % 3],
        }
        for i in range(n0)
    ]
    index = og.StoreIndex.from_records(records)
    removed = {f"s{i}" for i in rng.choice(n0, 25, replace=False)}
    index.remove(sorted(removed))
    added = [
        {
            "store_id": f"n{i}",
            "lat": float(rng.uniform(-1, 1)),
            "lon": float(rng.uniform(-1, 1)),
            "category": "new",
            "rating": float(i),
            "service_area": [15_000.0, None][i % 2],
        }
        for i in range(20)
    ]
    index.add(added[:10])
    first_survivor = next(r["store_id"] for r in records if r["store_id"] not in removed)
    index.remove(["n3", first_survivor])  # one added store and one of the originals
    removed |= {"n3", first_survivor}
    index.add(added[10:])
    if compact:
        index.compact()
    live = [r for r in records + added if r["store_id"] not in removed]
    path = tmp_path / "live.o2oidx"
    index.save(path)
    back = og.StoreIndex.load(path)
    assert back.stores.store_id.tolist() == [r["store_id"] for r in live]
    assert len(back) == len(index) == len(live)
    for sid in removed:
        assert sid not in back
    assert back.stores.lat.tolist() == [r["lat"] for r in live]
    assert back.stores["rating"].tolist() == [r["rating"] for r in live]
    assert back.stores["legacy"].tolist() == [r.get("legacy") for r in live]  # None for the added stores
    _assert_same_stores(index.stores, back.stores)
    rng2 = np.random.default_rng(78)
    qlat, qlon = rng2.uniform(-1.2, 1.2, 300), rng2.uniform(-1.2, 1.2, 300)
    for method, args in (("nearest", (4,)), ("within", (30_000.0,)), ("serving", ())):
        ra, rb = getattr(index, method)(qlat, qlon, *args), getattr(back, method)(qlat, qlon, *args)
        assert ra.store_id.tolist() == rb.store_id.tolist(), method
        assert np.array_equal(ra.distance_m, rb.distance_m), method
    # no removed store can be served, found or listed by the loaded index
    found = set(back.within(qlat, qlon, 1e6).store_id.tolist())
    assert found and not found & removed


# ---------------------------------------------------------------- forging by the spec


def _text(values):
    blobs = [v.encode("utf-8") for v in values]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs], dtype=np.int64)]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _forge(path, header, ids, lat, lon, radius=None, areas_wkb=None, columns=()):
    """Write a saved-index archive by hand, following the documented layout."""
    n = len(ids)
    arrays = {"lat": np.asarray(lat, dtype=np.float64), "lon": np.asarray(lon, dtype=np.float64)}
    if all(isinstance(v, int) for v in ids):
        arrays["store_id"] = np.asarray(ids, dtype=np.int64)
    else:
        arrays["store_id.utf8"], arrays["store_id.offsets"] = _text(ids)
    arrays["service_radius_m"] = np.full(n, np.nan) if radius is None else np.asarray(radius, dtype=np.float64)
    arrays["service_area.utf8"], arrays["service_area.offsets"] = _text(areas_wkb or [""] * n)
    for name, kind, values in columns:
        if kind in ("float64", "int64", "bool"):
            arrays[f"col.{name}"] = np.asarray(values, dtype=kind)
        else:
            text = values if kind == "str" else [json.dumps(v) for v in values]
            arrays[f"col.{name}.utf8"], arrays[f"col.{name}.offsets"] = _text(text)
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _header(n, columns=(), **over):
    h = {
        "format": "o2o_geo.StoreIndex",
        "version": 1,
        "n_stores": n,
        "columns": [{"name": c[0], "kind": c[1]} for c in columns],
    }
    h.update(over)
    return h


FORGED_COLUMNS = (
    ("rating", "float64", [4.5, 1.25]),
    ("floors", "int64", [3, -1]),
    ("open", "bool", [True, False]),
    ("category", "str", ["tea", "日本"]),
    ("note", "json", [None, {"a": [1, 2]}]),
)


def _forge_good(path, **over):
    sq = box(0.0, 0.0, 1.0, 1.0)
    _forge(
        path,
        _header(2, FORGED_COLUMNS, **over),
        ["a", "b"],
        [0.5, -10.0],
        [0.5, 20.0],
        radius=[np.nan, 1500.0],
        areas_wkb=[shapely.to_wkb(sq, hex=True), ""],
        columns=FORGED_COLUMNS,
    )


def test_a_file_forged_from_the_documented_format_loads(tmp_path):
    path = tmp_path / "forged.o2oidx"
    _forge_good(path)
    back = og.StoreIndex.load(path)
    s = back.stores
    assert s.store_id.tolist() == ["a", "b"] and s.lat.tolist() == [0.5, -10.0] and s.lon.tolist() == [0.5, 20.0]
    for name, _, values in FORGED_COLUMNS:
        assert s[name].tolist() == values, name
    assert s.service_area_geometry[0].equals(box(0.0, 0.0, 1.0, 1.0)) and s.service_area_geometry[1] is None
    np.testing.assert_array_equal(s.service_radius_m, [np.nan, 1500.0])
    assert back.serving(0.9, 0.1).store_id.tolist() == ["a"]
    assert back.serving(-10.0, 20.01).store_id.tolist() == ["b"]


def test_a_documented_file_with_int_ids_loads(tmp_path):
    path = tmp_path / "forged-int.o2oidx"
    _forge(path, _header(3), [5, 6, 7], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    assert og.StoreIndex.load(path).stores.store_id.tolist() == [5, 6, 7]


# -------------------------------------------------------------------------- bad files


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.o2oidx"
    _make_index(np.random.default_rng(5), STR_IDS).save(path)
    return path


def _load_bytes(tmp_path, data, name="bad.o2oidx"):
    p = tmp_path / name
    p.write_bytes(data)
    return og.StoreIndex.load(p)


def test_truncated_file(saved, tmp_path):
    raw = saved.read_bytes()
    for keep in (0, 3, 40, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1):
        with pytest.raises(IndexFormatError, match=r"bad\.o2oidx' is not a readable o2o_geo index file \("):
            _load_bytes(tmp_path, raw[:keep])


def test_flipped_bytes_in_the_middle(saved, tmp_path):
    raw = saved.read_bytes()
    assert len(raw) > 20_000
    for mid in (len(raw) // 3, len(raw) // 2, 2 * len(raw) // 3):
        data = raw[:mid] + bytes(b ^ 0xA5 for b in raw[mid : mid + 64]) + raw[mid + 64 :]
        assert len(data) == len(raw) and data != raw
        with pytest.raises(IndexFormatError, match=r"is not a readable o2o_geo index file \(BadZipFile: Bad CRC-32"):
            _load_bytes(tmp_path, data)


def test_random_single_byte_flips_never_go_unnoticed(tmp_path):
    """Over the archive's members (not its central directory): a flip is caught, or changes nothing that loads."""
    path = tmp_path / "small.o2oidx"
    _forge_good(path)
    raw = path.read_bytes()
    ref = og.StoreIndex.load(path).stores
    central = raw.rfind(b"PK\x01\x02")
    first_central = raw.find(b"PK\x01\x02")
    assert 0 < first_central <= central
    rng = np.random.default_rng(4242)
    caught = 0
    for pos in rng.choice(first_central, 300, replace=False):
        data = bytearray(raw)
        data[pos] ^= int(rng.integers(1, 256))
        try:
            got = _load_bytes(tmp_path, bytes(data)).stores
        except IndexFormatError:
            caught += 1
            continue
        _assert_same_stores(ref, got)  # a flip in a field nobody reads is harmless
    assert caught > 200


@pytest.mark.parametrize(
    "offset,value",
    [(10, b"\x63\x00"), (10, b"\xff\xff"), (6, b"\xff\x00"), (8, b"\x01\x00")],
    ids=["compression-99", "compression-ffff", "version-needed", "encrypted-flag"],
)
def test_damaged_central_directory(tmp_path, offset, value):
    path = tmp_path / "small.o2oidx"
    _forge_good(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")  # the first central-directory entry
    raw[at + offset : at + offset + 2] = value
    with pytest.raises(
        IndexFormatError, match=r"is not a readable o2o_geo index file \((NotImplementedError|RuntimeError)"
    ):
        _load_bytes(tmp_path, bytes(raw))


def test_random_bytes_and_foreign_files(tmp_path):
    for seed in range(3):
        data = np.random.default_rng(seed).bytes(5000)
        with pytest.raises(IndexFormatError, match=r"is not a readable o2o_geo index file"):
            _load_bytes(tmp_path, data)
    with pytest.raises(IndexFormatError, match=r"is not a readable o2o_geo index file \(BadZipFile"):
        _load_bytes(tmp_path, b"PK\x03\x04" + np.random.default_rng(9).bytes(3000))
    with pytest.raises(IndexFormatError, match=r"is not a readable o2o_geo index file"):
        _load_bytes(tmp_path, b'{"type": "FeatureCollection", "features": []}')
    np.save(tmp_path / "one.npy", np.arange(4.0))
    with pytest.raises(IndexFormatError, match=r"is a single numpy array, not an o2o_geo index"):
        og.StoreIndex.load(tmp_path / "one.npy")
    with pytest.raises(FileNotFoundError, match="no o2o_geo index file at .*does-not-exist"):
        og.StoreIndex.load(tmp_path / "does-not-exist.o2oidx")


def test_plain_npz_without_header(tmp_path):
    p = tmp_path / "plain.npz"
    np.savez(p, store_id=np.arange(3), lat=np.zeros(3), lon=np.zeros(3))
    with pytest.raises(
        IndexFormatError, match=r"plain\.npz' is a numpy archive but not an o2o_geo index \(no header\)"
    ):
        og.StoreIndex.load(p)
    with zipfile.ZipFile(tmp_path / "notnpz.zip", "w") as zf:  # a zip that is not an npz at all
        zf.writestr("readme.txt", "hello")
    with pytest.raises(IndexFormatError, match=r"notnpz\.zip' is a numpy archive but not an o2o_geo index"):
        og.StoreIndex.load(tmp_path / "notnpz.zip")


@pytest.mark.parametrize("version", [999, 2, 0, -1, "1", 1.0, None])
def test_header_with_unknown_version(tmp_path, version):
    p = tmp_path / "v.o2oidx"
    _forge_good(p, version=version)
    expected = f"v.o2oidx' has index format version {version!r}; this o2o_geo reads versions 1 to 1: upgrade o2o_geo"
    with pytest.raises(IndexFormatError, match=re.escape(expected)):
        og.StoreIndex.load(p)
    assert og.FORMAT_VERSION == 1


@pytest.mark.parametrize("fmt", ["someone.else.Index", "o2o_geo.storeindex", "", None, 1])
def test_header_with_another_format_name(tmp_path, fmt):
    p = tmp_path / "f.o2oidx"
    _forge_good(p, format=fmt)
    with pytest.raises(IndexFormatError, match=rf"f\.o2oidx' is not an o2o_geo index \(format {fmt!r}\)"):
        og.StoreIndex.load(p)


def test_header_that_is_not_json_or_not_an_object(tmp_path):
    p = tmp_path / "h.o2oidx"
    with p.open("wb") as fh:
        np.savez(fh, header=np.frombuffer(b"\xff\xfe not json", dtype=np.uint8))
    with pytest.raises(IndexFormatError, match=r"has an unreadable header"):
        og.StoreIndex.load(p)
    with p.open("wb") as fh:
        np.savez(fh, header=np.frombuffer(b"[1, 2]", dtype=np.uint8))
    with pytest.raises(IndexFormatError, match=r"is not an o2o_geo index \(format None\)"):
        og.StoreIndex.load(p)


def test_inconsistent_members(tmp_path):
    p = tmp_path / "x.o2oidx"
    _forge(p, _header(3), ["a", "b", "c"], [0.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(IndexFormatError, match=r"column 'lat' has shape \(2,\), expected \(3,\)"):
        og.StoreIndex.load(p)
    _forge(p, _header(2), ["a", "a"], [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(IndexFormatError, match=r"holds invalid stores: store_id 'a' appears twice"):
        og.StoreIndex.load(p)
    _forge(p, _header(1), ["a"], [95.0], [0.0])
    with pytest.raises(IndexFormatError, match=r"holds invalid stores: .*lat.*95\.0 is outside"):
        og.StoreIndex.load(p)
    _forge(p, _header(1, [("c", "complex128", [1])]), ["a"], [0.0], [0.0], columns=[("c", "float64", [1.0])])
    with pytest.raises(IndexFormatError, match=r"column 'c' has unknown kind 'complex128'"):
        og.StoreIndex.load(p)
    _forge(p, _header(1, [("c", "int64", [1])]), ["a"], [0.0], [0.0], columns=[("c", "float64", [1.0])])
    with pytest.raises(IndexFormatError, match=r"column 'c' has float64 \(1,\), expected int64 \(1,\)"):
        og.StoreIndex.load(p)
    _forge(p, _header(1), ["a"], [0.0], [0.0], areas_wkb=["zz-not-wkb"])
    with pytest.raises(IndexFormatError, match=r"x\.o2oidx'"):
        og.StoreIndex.load(p)
    _forge(p, {k: v for k, v in _header(1).items() if k != "n_stores"}, ["a"], [0.0], [0.0])
    with pytest.raises(IndexFormatError, match=r"is damaged: KeyError"):
        og.StoreIndex.load(p)


# ------------------------------------------------------------------------- atomic save


def _previous(tmp_path):
    path = tmp_path / "stores.o2oidx"
    index = _make_index(np.random.default_rng(3), INT_IDS)
    index.save(path)
    return path, path.read_bytes(), index


def _unsaveable_index():
    tags = np.empty(2, dtype=object)
    tags[:] = [{"a", "b"}, None]  # a Python set: not JSON
    return og.StoreIndex(og.StoreSet.from_columns(["p", "q"], [0.0, 1.0], [0.0, 1.0], tags=tags))


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    path, before, index = _previous(tmp_path)
    with pytest.raises(IndexFormatError, match=r"column 'tags' holds values that cannot be saved"):
        _unsaveable_index().save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["stores.o2oidx"]
    _assert_same_stores(index.stores, og.StoreIndex.load(path).stores)
    # a failed first save leaves nothing behind at all
    with pytest.raises(IndexFormatError, match="column 'tags' holds values that cannot be saved"):
        _unsaveable_index().save(tmp_path / "new.o2oidx")
    assert os.listdir(tmp_path) == ["stores.o2oidx"]


def test_save_interrupted_while_writing_is_atomic(tmp_path, monkeypatch):
    path, before, index = _previous(tmp_path)
    real_savez = np.savez

    def dying_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(OSError, match="No space left on device"):
        _make_index(np.random.default_rng(4), STR_IDS).save(path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["stores.o2oidx"]
    _assert_same_stores(index.stores, og.StoreIndex.load(path).stores)


def test_save_failing_at_the_rename_is_atomic(tmp_path, monkeypatch):
    path, before, index = _previous(tmp_path)
    real_replace = os.replace
    seen = []

    def failing_replace(src, dst, *args, **kwargs):
        if os.fspath(dst) == os.fspath(path):
            seen.append(os.path.basename(src))
            assert os.path.dirname(os.path.abspath(src)) == str(tmp_path)  # the temp file is in the same folder
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(og.errors.FileAccessError, match="Permission denied") as caught:  # an OSError too
        _make_index(np.random.default_rng(4), STR_IDS).save(path)
    assert isinstance(caught.value, OSError) and isinstance(caught.value.__cause__, PermissionError)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(seen) == 1 and seen[0] != "stores.o2oidx"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["stores.o2oidx"]
    assert len(og.StoreIndex.load(path)) == len(index)


# -------------------------------------------------------------- what save writes, load reads


def test_infinite_radius_is_rejected_before_anything_is_saved():
    with pytest.raises(og.errors.InvalidGeometryError, match="radius of store 'everywhere' is inf m"):
        og.StoreSet.from_columns(["everywhere", "b"], [0.0, 1.0], [0.0, 1.0], service_area=np.array([np.inf, 10.0]))
    with pytest.raises(og.errors.InvalidGeometryError, match="radius of store 'x' is inf m"):
        og.StoreSet.from_records([{"store_id": "x", "lat": 0.0, "lon": 0.0, "service_area": float("inf")}])


def test_saved_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "mode.o2oidx"
        og.StoreIndex(og.StoreSet.from_columns([1], [0.0], [0.0])).save(path)
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o640


def test_uint64_column_is_not_silently_wrapped(tmp_path):
    big = np.array([2**63, 2**64 - 1, 5], dtype=np.uint64)
    index = og.StoreIndex(og.StoreSet.from_columns([1, 2, 3], [0.0] * 3, [0.0] * 3, code=big))
    try:
        index.save(tmp_path / "u.o2oidx")
    except IndexFormatError:
        return
    back = og.StoreIndex.load(tmp_path / "u.o2oidx")
    assert [int(v) for v in back.stores["code"].tolist()] == [2**63, 2**64 - 1, 5]


def test_mixed_int_and_str_ids_are_rejected_so_saved_ids_keep_their_type():
    with pytest.raises(og.errors.InvalidRecordError, match="mix ints and strings"):
        og.StoreIndex.from_records([{"store_id": 7, "lat": 0.0, "lon": 0.0}, {"store_id": "a", "lat": 1.0, "lon": 1.0}])


def test_int_id_beyond_int64(tmp_path):
    index = og.StoreIndex.from_records([{"store_id": 2**70, "lat": 0.0, "lon": 0.0}])
    assert index.nearest(0.0, 0.0, k=1).store_id.tolist() == [2**70]
    try:
        index.save(tmp_path / "big.o2oidx")
    except IndexFormatError:
        assert os.listdir(tmp_path) == []
        return
    assert og.StoreIndex.load(tmp_path / "big.o2oidx").stores.store_id.tolist() == [2**70]
