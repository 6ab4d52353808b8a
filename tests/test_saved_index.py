"""StoreIndex.save / load: round trips, and every kind of bad file gets IndexFormatError."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import random_stores
from shapely.geometry import Polygon, box

import o2o_geo as og
from o2o_geo.errors import IndexFormatError


@pytest.fixture
def index(rng):
    lat, lon = random_stores(rng, 300, "city")
    areas = np.empty(300, dtype=object)
    areas[:] = [None] * 300
    areas[0] = box(121.4, 31.1, 121.6, 31.3)
    areas[1] = 2500.0
    areas[2] = Polygon([(179.0, -1.0), (-179.0, -1.0), (-179.0, 1.0), (179.0, 1.0)])  # crosses the antimeridian
    mixed = np.empty(300, dtype=object)
    mixed[:] = [None if i % 3 == 0 else f"x{i}" for i in range(300)]
    return og.StoreIndex(
        og.StoreSet.from_columns(
            [f"s{i}" for i in range(300)],
            lat,
            lon,
            service_area=areas,
            category=np.where(np.arange(300) % 2, "a", "b"),
            rating=rng.uniform(1, 5, 300),
            floors=np.arange(300),
            open24=np.arange(300) % 5 == 0,
            note=mixed,
        )
    )


def test_round_trip_gives_identical_answers(index, tmp_path, rng):
    path = tmp_path / "stores.o2oidx"
    index.save(path)
    back = og.StoreIndex.load(path)
    a, b = index.stores, back.stores
    assert b.store_id.tolist() == a.store_id.tolist()
    np.testing.assert_array_equal(b.lat, a.lat)
    np.testing.assert_array_equal(b.lon, a.lon)
    for col in ("category", "rating", "floors", "open24", "note"):
        assert b[col].tolist() == a[col].tolist(), col
        assert b[col].dtype == a[col].dtype, col
    qlat, qlon = random_stores(rng, 200, "city")
    for q in (index, back):
        assert q.nearest(qlat, qlon, k=4).store_id.tolist() == index.nearest(qlat, qlon, k=4).store_id.tolist()
        assert q.within(qlat, qlon, 2000).store_id.tolist() == index.within(qlat, qlon, 2000).store_id.tolist()
        assert q.serving(qlat, qlon).store_id.tolist() == index.serving(qlat, qlon).store_id.tolist()
    assert back.serving(0.0, -179.5).store_id.tolist() == ["s2"]
    assert back.serving(0.0, 179.5).store_id.tolist() == ["s2"]


def test_int_ids_and_live_stores_only(tmp_path):
    index = og.StoreIndex(og.StoreSet.from_columns([10, 20, 30], [0.0, 0.1, 0.2], [0.0, 0.1, 0.2]))
    index.remove(20)
    index.add([{"store_id": 40, "lat": 0.3, "lon": 0.3}])
    index.save(tmp_path / "i.o2oidx")
    back = og.StoreIndex.load(tmp_path / "i.o2oidx")
    assert back.stores.store_id.tolist() == [10, 30, 40]
    assert all(type(v) is int for v in back.stores.store_id)


def _forge(path, header, **arrays):
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_bad_files_raise_index_format_error(index, tmp_path):
    good = tmp_path / "good.o2oidx"
    index.save(good)
    raw = good.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "flipped": raw[:2000] + bytes(b ^ 0xFF for b in raw[2000:2400]) + raw[2400:],
        "random": np.random.default_rng(0).bytes(5000),
        "empty": b"",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.o2oidx"
        p.write_bytes(data)
        with pytest.raises(IndexFormatError, match="not a readable o2o_geo index|damaged|unreadable header"):
            og.StoreIndex.load(p)
    np.save(tmp_path / "array.npy", np.arange(3))
    with pytest.raises(IndexFormatError, match="single numpy array"):
        og.StoreIndex.load(tmp_path / "array.npy")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.arange(3))
    with pytest.raises(IndexFormatError, match="not an o2o_geo index \\(no header\\)"):
        og.StoreIndex.load(plain)
    _forge(tmp_path / "v999.o2oidx", {"format": "o2o_geo.StoreIndex", "version": 999, "n_stores": 0})
    with pytest.raises(IndexFormatError, match="format version 999; .* upgrade o2o_geo"):
        og.StoreIndex.load(tmp_path / "v999.o2oidx")
    _forge(tmp_path / "other.o2oidx", {"format": "someone.else", "version": 1})
    with pytest.raises(IndexFormatError, match="not an o2o_geo index \\(format 'someone.else'\\)"):
        og.StoreIndex.load(tmp_path / "other.o2oidx")
    _forge(
        tmp_path / "short.o2oidx",
        {"format": "o2o_geo.StoreIndex", "version": 1, "n_stores": 5, "id_kind": "int", "columns": []},
        store_id=np.arange(5),
        lat=np.zeros(4),
        lon=np.zeros(5),
        service_radius_m=np.full(5, np.nan),
        **{"service_area.utf8": np.zeros(0, np.uint8), "service_area.offsets": np.zeros(6, np.int64)},
    )
    with pytest.raises(IndexFormatError, match="column 'lat' has shape \\(4,\\), expected \\(5,\\)"):
        og.StoreIndex.load(tmp_path / "short.o2oidx")
    _forge(
        tmp_path / "badlat.o2oidx",
        {"format": "o2o_geo.StoreIndex", "version": 1, "n_stores": 1, "id_kind": "int", "columns": []},
        store_id=np.arange(1),
        lat=np.array([95.0]),
        lon=np.zeros(1),
        service_radius_m=np.full(1, np.nan),
        **{"service_area.utf8": np.zeros(0, np.uint8), "service_area.offsets": np.zeros(2, np.int64)},
    )
    with pytest.raises(IndexFormatError, match="invalid stores: .*lat.* = 95.0"):
        og.StoreIndex.load(tmp_path / "badlat.o2oidx")
    with pytest.raises(FileNotFoundError):
        og.StoreIndex.load(tmp_path / "missing.o2oidx")


def test_failed_save_keeps_the_previous_file(index, tmp_path):
    path = tmp_path / "stores.o2oidx"
    index.save(path)
    before = path.read_bytes()
    bad = og.StoreIndex(og.StoreSet.from_columns(["a"], [0.0], [0.0], tags=[{1, 2}]))  # a set cannot be saved
    with pytest.raises(IndexFormatError, match="column 'tags' holds values that cannot be saved"):
        bad.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["stores.o2oidx"]
    assert len(og.StoreIndex.load(path)) == 300
