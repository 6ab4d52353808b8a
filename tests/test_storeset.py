"""StoreSet constructors agree with each other; service areas against an independent oracle; bad records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import GEOD
from shapely.geometry import Point, Polygon, box
from shapely.geometry import mapping as to_geojson

import o2o_geo as og
from o2o_geo.errors import (
    DuplicateStoreError,
    InvalidCoordinateError,
    InvalidGeometryError,
    InvalidRecordError,
    ShapeMismatchError,
    UnknownStoreError,
)

RECORDS = [
    {"store_id": 1, "lat": 31.23, "lon": 121.47, "category": "coffee", "rating": 4.5},
    {"store_id": 2, "lat": 31.24, "lon": 121.48, "category": "tea", "rating": 3.0},
    {"store_id": 3, "lat": -33.87, "lon": 151.21, "category": "coffee", "rating": 5.0},
]


def assert_same(a, b):
    assert a.store_id.tolist() == b.store_id.tolist()
    assert [type(v) for v in a.store_id] == [type(v) for v in b.store_id]
    np.testing.assert_array_equal(a.lat, b.lat)
    np.testing.assert_array_equal(a.lon, b.lon)
    assert a["category"].tolist() == b["category"].tolist()
    np.testing.assert_allclose(a["rating"].astype(float), b["rating"].astype(float))


def test_every_constructor_builds_the_same_table(tmp_path):
    pd = pytest.importorskip("pandas")
    ref = og.StoreSet.from_records(RECORDS)
    cols = {k: [r[k] for r in RECORDS] for k in RECORDS[0]}
    assert_same(ref, og.StoreSet.from_columns(cols.pop("store_id"), cols.pop("lat"), cols.pop("lon"), **cols))
    assert_same(ref, og.StoreSet.from_dataframe(pd.DataFrame(RECORDS)))
    csv = tmp_path / "s.csv"
    csv.write_text(
        "store_id,lat,lon,category,rating\n"
        + "\n".join(f"{r['store_id']},{r['lat']},{r['lon']},{r['category']},{r['rating']}" for r in RECORDS)
        + "\n"
    )
    assert_same(ref, og.StoreSet.from_csv(csv))
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": r["store_id"],
                "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                "properties": {"category": r["category"], "rating": r["rating"]},
            }
            for r in RECORDS
        ],
    }
    assert_same(ref, og.StoreSet.from_geojson(fc))
    assert_same(ref, og.StoreSet.from_geojson(json.dumps(fc)))
    (tmp_path / "s.geojson").write_text(json.dumps(fc))
    assert_same(ref, og.StoreSet.from_geojson(tmp_path / "s.geojson"))
    str_ids = og.StoreSet.from_records([{**r, "store_id": f"s{r['store_id']}"} for r in RECORDS])
    assert str_ids.store_id.tolist() == ["s1", "s2", "s3"] and str_ids.position_of(["s3", "s1"]).tolist() == [2, 0]
    with pytest.raises(UnknownStoreError, match="'s9'"):
        str_ids.position_of(["s1", "s9"])


def oracle_serving(areas, slat, slon, lat, lon):
    """Independent: shapely covers on polygons unwrapped to 0..360 where they cross; geodesic radius."""
    out = []
    for j, area in enumerate(areas):
        if area is None:
            continue
        if isinstance(area, float):
            _, _, d = GEOD.inv(slon[j], slat[j], lon, lat)
            if d <= area:
                out.append(j)
            continue
        xs = np.asarray(area.exterior.coords)[:, 0]
        if np.any(np.abs(np.diff(xs)) > 180):
            shifted = Polygon([((x + 360) % 360, y) for x, y in area.exterior.coords])
            if shifted.covers(Point((lon + 360) % 360, lat)):
                out.append(j)
        elif area.covers(Point(lon, lat)):
            out.append(j)
    return sorted(out)


def test_serving_against_an_independent_oracle(rng):
    n = 40
    slat = rng.uniform(-10, 10, n)
    slon = rng.uniform(170, 190, n)
    slon = np.where(slon > 180, slon - 360, slon)
    areas = []
    for j in range(n):
        kind = j % 4
        if kind == 0:
            areas.append(float(rng.uniform(1e4, 3e5)))
        elif kind == 1:
            areas.append(box(slon[j] - 1.0, slat[j] - 1.0, min(slon[j] + 1.0, 180.0), slat[j] + 1.0))
        elif kind == 2:  # crosses the antimeridian, written as GeoJSON does without splitting
            areas.append(
                Polygon([(178.5, slat[j] - 2), (-178.5, slat[j] - 2), (-178.5, slat[j] + 2), (178.5, slat[j] + 2)])
            )
        else:
            areas.append(None)
    col = np.empty(n, dtype=object)
    col[:] = [to_geojson(a) if (isinstance(a, Polygon) and j % 8 == 1) else a for j, a in enumerate(areas)]
    index = og.StoreIndex(og.StoreSet.from_columns(np.arange(n), slat, slon, service_area=col))
    qlat = rng.uniform(-12, 12, 400)
    qlon = rng.uniform(168, 192, 400)
    qlon = np.where(qlon > 180, qlon - 360, qlon)
    res = index.serving(qlat, qlon)
    for i in range(400):
        assert sorted(res[i].position.tolist()) == oracle_serving(areas, slat, slon, qlat[i], qlon[i]), i
    # served stores come nearest first
    for i in range(400):
        assert np.all(np.diff(res[i].distance_m) >= 0)


def test_antimeridian_polygon_is_split():
    s = og.StoreSet.from_records(
        [
            {
                "store_id": "fiji",
                "lat": -17.0,
                "lon": 179.9,
                "service_area": Polygon([(179, -18), (-179, -18), (-179, -16), (179, -16)]),
            }
        ]
    )
    index = og.StoreIndex(s)
    assert index.serving(-17.0, 179.5).store_id.tolist() == ["fiji"]
    assert index.serving(-17.0, -179.5).store_id.tolist() == ["fiji"]
    assert index.serving(-17.0, 0.0).store_id.tolist() == []
    assert s.service_area_geometry[0].geom_type == "MultiPolygon"


def test_invalid_polygons_and_repair():
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(InvalidGeometryError, match="service_area of store 'bad' is invalid .*repair_service_areas"):
        og.StoreSet.from_records([{"store_id": "bad", "lat": 0.5, "lon": 0.2, "service_area": bowtie}])
    fixed = og.StoreSet.from_records(
        [{"store_id": "bad", "lat": 0.5, "lon": 0.2, "service_area": bowtie}], repair_service_areas=True
    )
    assert fixed.service_area_geometry[0].is_valid
    assert og.StoreIndex(fixed).serving(0.5, 0.2).store_id.tolist() == ["bad"]
    with pytest.raises(InvalidGeometryError, match="store 'p' is a Point"):
        og.StoreSet.from_records([{"store_id": "p", "lat": 0, "lon": 0, "service_area": Point(0, 0)}])
    with pytest.raises(InvalidGeometryError, match="radius of store 'r' is -5"):
        og.StoreSet.from_records([{"store_id": "r", "lat": 0, "lon": 0, "service_area": -5}])
    with pytest.raises(InvalidGeometryError, match="latitudes must be in \\[-90, 90\\]"):
        og.StoreSet.from_records([{"store_id": "z", "lat": 0, "lon": 0, "service_area": box(0, 80, 1, 95)}])


def test_bad_records():
    with pytest.raises(DuplicateStoreError, match="store_id 7 appears twice \\(rows 0 and 2\\)"):
        og.StoreSet.from_columns([7, 8, 7], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    with pytest.raises(InvalidRecordError, match="record 1 has no 'lat' field"):
        og.StoreSet.from_records([RECORDS[0], {"store_id": 9, "lon": 0.0}])
    with pytest.raises(InvalidCoordinateError, match="store lat\\[1\\] \\(store_id 'b'\\) = 95.0"):
        og.StoreSet.from_columns(["a", "b"], [0.0, 95.0], [0.0, 0.0])
    with pytest.raises(InvalidCoordinateError, match="store lon\\[0\\] \\(store_id 'a'\\) = nan is not a finite"):
        og.StoreSet.from_columns(["a"], [0.0], [float("nan")])
    for bad_id in (True, 1.5, None):
        with pytest.raises(InvalidRecordError, match="a store id must be a str or an int"):
            og.StoreSet.from_columns(np.array(["a", bad_id], dtype=object), [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ShapeMismatchError, match="column 'category' has 1 values but there are 2 stores"):
        og.StoreSet.from_columns(["a", "b"], [0.0, 0.0], [0.0, 0.0], category=["x"])
    with pytest.raises(InvalidRecordError, match="lat of store 'q' \\(row 0\\) = 'north' is not a number"):
        og.StoreSet.from_records([{"store_id": "q", "lat": "north", "lon": 0.0}])
    with pytest.raises(InvalidRecordError, match="stores must be Points"):
        og.StoreSet.from_geojson(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": 1,
                        "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                        "properties": {},
                    }
                ],
            }
        )


def test_csv_without_lat_column(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("store_id,latitude,lon\n1,0,0\n")
    with pytest.raises(InvalidRecordError, match="has no column 'lat'"):
        og.StoreSet.from_csv(p)
    assert og.StoreSet.from_csv(p, lat="latitude").lat.tolist() == [0.0]
