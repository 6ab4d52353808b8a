"""Data interop: StoreSet to and from pandas, geopandas and GeoJSON; results as GeoDataFrames.

The expectations are independent of the code under test: plain Python records,
pyproj ``Transformer`` for reprojection, and a lookup of each store's position
by its id for result geometries.  pandas and geopandas are optional, so a
subprocess that cannot import them checks that the core still works and that
the methods needing them say which extra to install.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box

import o2o_geo as og
from o2o_geo.errors import (
    DuplicateStoreError,
    InvalidCoordinateError,
    InvalidGeometryError,
    InvalidParameterError,
    InvalidRecordError,
)

GEO_REASON = 'GeoDataFrame interop needs geopandas: pip install "o2o_geo[geo]"'
PANDAS_REASON = 'DataFrame interop needs pandas: pip install "o2o_geo[geo]"'

#: Crosses the antimeridian as a continuous ring (an edge jumps from 179 to -179).
ACROSS_180 = Polygon([(179.0, -1.0), (-179.0, -1.0), (-179.0, 1.0), (179.0, 1.0)])
#: Self-intersecting; valid only after repair.
BOWTIE = Polygon([(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])


@pytest.fixture
def gpd():
    return pytest.importorskip("geopandas", reason=GEO_REASON)


@pytest.fixture
def pd():
    return pytest.importorskip("pandas", reason=PANDAS_REASON)


def _records(ids):
    """Six stores: every kind of service area, and int, float, bool and text columns (text with a gap)."""
    lat = [31.2304, 0.5, -33.8688, 0.0, 89.9, -90.0]
    lon = [121.4737, 179.5, 151.2093, -0.5, -180.0, 180.0]
    areas = [1500.0, ACROSS_180, box(151.0, -34.0, 151.5, -33.5), None, 0.0, None]
    floors = [3, 1, 12, 0, -2, 7]
    rating = [4.5, 3.25, 5.0, 2.0, 0.125, 1e-300]
    is_open = [True, False, True, True, False, True]
    category = ["coffee", None, "tea", "ü bakery", "tea", None]
    return [
        {
            "store_id": sid,
            "lat": la,
            "lon": lo,
            "floors": f,
            "rating": r,
            "open": o,
            "category": c,
            "service_area": a,
        }
        for sid, la, lo, f, r, o, c, a in zip(ids, lat, lon, floors, rating, is_open, category, areas, strict=True)
    ]


INT_IDS = [101, 7, -3, 2**40, 0, 5]
STR_IDS = ["sh-01", "fiji", "syd", "null island", "ü-pole", "south"]


def _same(a, b):
    """Equal as stored values: NaN equals NaN, geometries equal coordinate for coordinate."""
    if isinstance(a, shapely.Geometry) or isinstance(b, shapely.Geometry):
        return isinstance(a, shapely.Geometry) and isinstance(b, shapely.Geometry) and a.equals_exact(b, 0.0)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _assert_same_stores(got, expected):
    """Same ids, positions, columns (values and dtypes) and service areas; the raw area column aside."""
    assert got.columns == expected.columns
    for name in expected.columns:
        if name == "service_area":
            continue
        assert got[name].dtype == expected[name].dtype, name
        a, b = got[name].tolist(), expected[name].tolist()
        assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True)), (name, a, b)
    np.testing.assert_array_equal(got.service_radius_m, expected.service_radius_m)
    for g, e in zip(got.service_area_geometry.tolist(), expected.service_area_geometry.tolist(), strict=True):
        assert (g is None and e is None) or g.equals_exact(e, 0.0)


def _plain_json(value):
    """Whether a value is made of JSON's own types only (no numpy scalars, no tuples, no NaN)."""
    if value is None or isinstance(value, (bool, int, str)):
        return not isinstance(value, np.generic)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    return False


# ------------------------------------------------------------------------- GeoJSON


@pytest.mark.parametrize("ids", [STR_IDS, INT_IDS], ids=["str ids", "int ids"])
def test_geojson_round_trips_through_json_text(ids):
    records = _records(ids)
    stores = og.StoreSet.from_records(records)
    fc = stores.to_geojson()
    assert _plain_json(fc)
    text = json.dumps(fc, allow_nan=False)
    back = og.StoreSet.from_geojson(text)
    _assert_same_stores(back, stores)
    # the features themselves, against the records
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(records)
    for feat, rec in zip(fc["features"], records, strict=True):
        assert feat["type"] == "Feature" and feat["id"] == rec["store_id"]
        assert type(feat["id"]) is type(rec["store_id"])
        assert feat["geometry"] == {"type": "Point", "coordinates": [rec["lon"], rec["lat"]]}
        assert list(feat["properties"]) == ["floors", "rating", "open", "category", "service_area"]
        for key in ("floors", "rating", "open", "category"):
            assert feat["properties"][key] == rec[key] and type(feat["properties"][key]) is type(rec[key])


def test_geojson_service_areas_are_written_as_normalised():
    stores = og.StoreSet.from_records(_records(STR_IDS))
    areas = [f["properties"]["service_area"] for f in stores.to_geojson()["features"]]
    assert areas[0] == 1500.0 and areas[3] is None and areas[4] == 0.0 and areas[5] is None
    assert areas[2] == {
        "type": "Polygon",
        "coordinates": [[list(xy) for xy in box(151.0, -34.0, 151.5, -33.5).exterior.coords]],
    }
    # the antimeridian polygon comes back split at 180 degrees (RFC 7946), the same area on the globe
    split = shapely.geometry.shape(areas[1])
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 2
    lons = shapely.get_coordinates(split)[:, 0]
    assert lons.min() == -180.0 or lons.max() == 180.0
    assert np.all(np.abs(lons) <= 180.0)
    assert split.area == pytest.approx(4.0)
    assert split.covers(Point(179.5, 0.5)) and split.covers(Point(-179.5, -0.5)) and not split.covers(Point(0, 0))


def test_geojson_round_trip_serves_the_same_points():
    """What queries see is unchanged: serving() before and after the round trip, on both sides of 180."""
    stores = og.StoreSet.from_records(_records(STR_IDS))
    back = og.StoreSet.from_geojson(json.dumps(stores.to_geojson()))
    rng = np.random.default_rng(7)
    lat = np.concatenate([rng.uniform(-1.5, 1.5, 300), rng.uniform(-34.2, -33.3, 100), rng.normal(31.23, 0.01, 100)])
    lon = np.concatenate(
        [rng.uniform(178.5, 181.5, 300), rng.uniform(150.8, 151.7, 100), rng.normal(121.47, 0.01, 100)]
    )
    lon = ((lon + 180.0) % 360.0) - 180.0
    a = og.StoreIndex(stores).serving(lat, lon)
    b = og.StoreIndex(back).serving(lat, lon)
    assert a.query.tolist() == b.query.tolist() and a.store_id.tolist() == b.store_id.tolist()
    assert len(a.query) > 50  # the sample does reach into the areas


def test_geojson_repaired_area_round_trips():
    stores = og.StoreSet.from_records(
        [{"store_id": "bow", "lat": 0.25, "lon": 0.5, "service_area": BOWTIE}], repair_service_areas=True
    )
    back = og.StoreSet.from_geojson(json.dumps(stores.to_geojson()))  # valid now: no repair needed
    _assert_same_stores(back, stores)


def test_geojson_values_become_plain_python():
    col = np.empty(4, dtype=object)
    col[:] = [np.float32(1.5), np.int64(7), np.bool_(True), np.str_("x")]
    when = np.array(["2024-05-01T08:30", "NaT", "2024-05-02T00:00", "2024-05-03T12:00"], dtype="datetime64[s]")
    nested = np.empty(4, dtype=object)
    nested[:] = [(1, 2), np.array([0.5, np.nan]), {"k": np.int32(3)}, Point(1.0, 2.0)]
    stores = og.StoreSet.from_columns(
        ["a", "b", "c", "d"],
        [0.0, 1.0, 2.0, 3.0],
        [0.0, 1.0, 2.0, 3.0],
        mixed=col,
        score=np.array([0.5, np.nan, np.inf, -np.inf]),
        when=when,
        day=np.array([dt.date(2024, 5, 1), None, dt.date(2024, 5, 2), dt.date(2024, 5, 3)], dtype=object),
        nested=nested,
    )
    fc = stores.to_geojson()
    assert _plain_json(fc)
    json.dumps(fc, allow_nan=False)
    props = [f["properties"] for f in fc["features"]]
    assert [p["mixed"] for p in props] == [1.5, 7, True, "x"]
    assert [type(p["mixed"]) for p in props] == [float, int, bool, str]
    assert [p["score"] for p in props] == [0.5, None, None, None]  # JSON has no NaN or infinity
    assert [p["when"] for p in props] == ["2024-05-01T08:30:00", None, "2024-05-02T00:00:00", "2024-05-03T12:00:00"]
    assert [p["day"] for p in props] == ["2024-05-01", None, "2024-05-02", "2024-05-03"]
    assert [p["nested"] for p in props] == [
        [1, 2],
        [0.5, None],
        {"k": 3},
        {"type": "Point", "coordinates": [1.0, 2.0]},
    ]


def test_geojson_nan_comes_back_as_none():
    """Documented: JSON has no NaN, so a float column with gaps comes back as an object column with None."""
    stores = og.StoreSet.from_columns(["a", "b"], [0.0, 1.0], [0.0, 1.0], rating=np.array([4.5, np.nan]))
    back = og.StoreSet.from_geojson(json.dumps(stores.to_geojson()))
    assert back["rating"].dtype == object and back["rating"].tolist() == [4.5, None]


def test_geojson_radius_column_with_gaps_round_trips():
    stores = og.StoreSet.from_columns(["a", "b"], [0.0, 1.0], [0.0, 1.0], service_area=np.array([250.0, np.nan]))
    fc = stores.to_geojson()
    assert [f["properties"]["service_area"] for f in fc["features"]] == [250.0, None]
    back = og.StoreSet.from_geojson(fc)
    np.testing.assert_array_equal(back.service_radius_m, [250.0, np.nan])


def test_geojson_rejects_values_without_a_json_form():
    col = np.empty(2, dtype=object)
    col[:] = ["fine", {1, 2}]
    stores = og.StoreSet.from_columns(["a", "b"], [0.0, 1.0], [0.0, 1.0], tags=col)
    with pytest.raises(InvalidRecordError, match=r"column 'tags' of store 'b' holds a set .*no JSON form"):
        stores.to_geojson()


def test_int_ids_beyond_int64_round_trip():
    """The store set takes any Python int id; exports keep them exact (as Python ints when int64 cannot hold them)."""
    s = og.StoreSet.from_records(
        [{"store_id": 2**64, "lat": 0.0, "lon": 0.0}, {"store_id": -1, "lat": 0.0, "lon": 1.0}]
    )
    back = og.StoreSet.from_geojson(json.dumps(s.to_geojson()))
    assert back.store_id.tolist() == [2**64, -1]
    pd = pytest.importorskip("pandas")
    frame = s.to_dataframe()
    assert frame["store_id"].tolist() == [2**64, -1]
    assert og.StoreSet.from_dataframe(frame).store_id.tolist() == [2**64, -1]
    small = og.StoreSet.from_records([{"store_id": 2**62, "lat": 0.0, "lon": 0.0}]).to_dataframe()
    assert small["store_id"].dtype == pd.Series([1]).dtype  # int64 when every id fits


def test_geojson_of_an_empty_store_set():
    stores = og.StoreSet.from_records([])
    assert stores.to_geojson() == {"type": "FeatureCollection", "features": []}


ids_st = st.one_of(
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True),
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=12, unique=True),
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), ids=ids_st)
def test_geojson_round_trip_property(data, ids):
    n = len(ids)
    lat = data.draw(st.lists(st.floats(-90, 90), min_size=n, max_size=n))
    lon = data.draw(st.lists(st.floats(-180, 180), min_size=n, max_size=n))
    score = data.draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n))
    label = data.draw(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=n, max_size=n))
    radius = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1e6)), min_size=n, max_size=n))
    records = [
        {"store_id": i, "lat": la, "lon": lo, "score": s, "label": t, "service_area": r}
        for i, la, lo, s, t, r in zip(ids, lat, lon, score, label, radius, strict=True)
    ]
    stores = og.StoreSet.from_records(records)
    back = og.StoreSet.from_geojson(json.dumps(stores.to_geojson(), allow_nan=False))
    _assert_same_stores(back, stores)


# ------------------------------------------------------------------------- pandas


@pytest.mark.parametrize("ids", [STR_IDS, INT_IDS], ids=["str ids", "int ids"])
def test_to_dataframe_columns_and_round_trip(pd, ids):
    records = _records(ids)
    stores = og.StoreSet.from_records(records)
    df = stores.to_dataframe()
    assert df.columns.tolist() == ["store_id", "lat", "lon", "floors", "rating", "open", "category", "service_area"]
    assert df["store_id"].tolist() == ids
    assert df["store_id"].dtype == (np.int64 if isinstance(ids[0], int) else object)
    assert df["lat"].tolist() == [r["lat"] for r in records] and df["lon"].tolist() == [r["lon"] for r in records]
    assert df["floors"].dtype == np.int64 and df["rating"].dtype == np.float64 and df["open"].dtype == bool
    assert df["category"].tolist() == [r["category"] for r in records]  # None stays None
    area = df["service_area"].tolist()
    assert area[0] == 1500.0 and area[3] is None and area[4] == 0.0 and area[5] is None
    assert isinstance(area[1], shapely.MultiPolygon)  # split at the antimeridian, as queries use it
    assert area[2].equals_exact(box(151.0, -34.0, 151.5, -33.5), 0.0)
    _assert_same_stores(og.StoreSet.from_dataframe(df), stores)


def test_to_dataframe_keeps_a_radius_column_as_numbers(pd):
    stores = og.StoreSet.from_columns([1, 2], [0.0, 1.0], [0.0, 1.0], service_area=np.array([250.0, np.nan]))
    col = stores.to_dataframe()["service_area"]
    assert col.dtype == np.float64
    np.testing.assert_array_equal(col.to_numpy(), [250.0, np.nan])


# ---------------------------------------------------------------------- geopandas


@pytest.mark.parametrize("ids", [STR_IDS, INT_IDS], ids=["str ids", "int ids"])
def test_geodataframe_round_trip(gpd, ids):
    records = _records(ids)
    stores = og.StoreSet.from_records(records)
    gdf = stores.to_geodataframe()
    assert isinstance(gdf, gpd.GeoDataFrame)
    assert gdf.crs.to_epsg() == 4326 and gdf.geometry.name == "geometry"
    assert gdf.columns.tolist() == stores.columns + ["geometry"]
    assert shapely.get_x(gdf.geometry.array).tolist() == [r["lon"] for r in records]
    assert shapely.get_y(gdf.geometry.array).tolist() == [r["lat"] for r in records]
    _assert_same_stores(og.StoreSet.from_geodataframe(gdf), stores)


def test_to_geodataframe_refuses_a_geometry_column(gpd):
    stores = og.StoreSet.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0, "geometry": "x"}])
    with pytest.raises(InvalidRecordError, match="column named 'geometry'"):
        stores.to_geodataframe()


@pytest.mark.parametrize("epsg", [3857, 32651, 3035], ids=["web mercator", "UTM 51N", "LAEA Europe"])
def test_from_geodataframe_reprojects(gpd, epsg):
    rng = np.random.default_rng(epsg)
    if epsg == 3035:
        lat, lon = rng.uniform(40.0, 60.0, 40), rng.uniform(-5.0, 25.0, 40)
    else:
        lat, lon = 31.23 + rng.normal(0, 0.3, 40), 121.47 + rng.normal(0, 0.3, 40)
    to_proj = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    x, y = to_proj.transform(lon, lat)
    ids = [f"s{i}" for i in range(40)]
    gdf = gpd.GeoDataFrame(
        {"store_id": ids, "rank": np.arange(40)}, geometry=gpd.points_from_xy(x, y), crs=f"EPSG:{epsg}"
    )
    stores = og.StoreSet.from_geodataframe(gdf)
    # the oracle: pyproj's inverse transformation, point by point
    from_proj = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    want = [from_proj.transform(xi, yi) for xi, yi in zip(x, y, strict=True)]
    np.testing.assert_allclose(stores.lon, [w[0] for w in want], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stores.lat, [w[1] for w in want], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stores.lat, lat, rtol=0, atol=1e-8)  # and where the stores really are
    np.testing.assert_allclose(stores.lon, lon, rtol=0, atol=1e-8)
    assert stores.store_id.tolist() == ids and stores["rank"].tolist() == list(range(40))


def test_from_geodataframe_reprojects_a_service_area_column(gpd):
    to_proj = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x, y = to_proj.transform([121.47, 121.50], [31.23, 31.30])
    area = Point(x[0], y[0]).buffer(800.0)
    gdf = gpd.GeoDataFrame({"store_id": ["a", "b"]}, geometry=gpd.points_from_xy(x, y), crs="EPSG:3857")
    gdf["service_area"] = gpd.GeoSeries([area, None], crs="EPSG:3857", index=gdf.index)
    stores = og.StoreSet.from_geodataframe(gdf)
    from_proj = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    want = shapely.transform(area, lambda xy: np.column_stack(from_proj.transform(xy[:, 0], xy[:, 1])))
    got = stores.service_area_geometry[0]
    np.testing.assert_allclose(shapely.get_coordinates(got), shapely.get_coordinates(want), rtol=0, atol=1e-12)
    assert stores.service_area_geometry[1] is None
    assert og.StoreIndex(stores).serving(31.23, 121.47).store_id.tolist() == ["a"]


def test_from_geodataframe_without_crs_is_lonlat_degrees(gpd):
    gdf = gpd.GeoDataFrame(
        {"id": [1, 2], "lat": [99.0, 99.0], "category": ["x", "y"], "service_area": [box(0, 0, 1, 1), 300.0]},
        geometry=[Point(0.5, 0.25), Point(-73.98, 40.75)],
    ).rename_geometry("where")
    assert gdf.crs is None
    stores = og.StoreSet.from_geodataframe(gdf, store_id="id")
    assert stores.store_id.tolist() == [1, 2]
    assert stores.lat.tolist() == [0.25, 40.75] and stores.lon.tolist() == [0.5, -73.98]  # the Points win over 'lat'
    assert stores.columns == ["store_id", "lat", "lon", "category", "service_area"]
    assert stores.service_radius_m[1] == 300.0 and stores.service_area_geometry[0].equals(box(0, 0, 1, 1))


@pytest.mark.parametrize(
    ("geom", "what"),
    [
        (None, "missing"),
        (Point(), "an empty Point"),
        (box(0, 0, 1, 1), "a Polygon"),
        (LineString([(0, 0), (1, 1)]), "a LineString"),
        (MultiPoint([(0, 0), (1, 1)]), "a MultiPoint"),
    ],
    ids=["missing", "empty", "polygon", "line", "multipoint"],
)
def test_from_geodataframe_bad_geometry(gpd, geom, what):
    gdf = gpd.GeoDataFrame({"store_id": ["a", "b", "c"]}, geometry=[Point(0, 0), geom, Point(1, 1)], crs="EPSG:4326")
    with pytest.raises(InvalidRecordError, match=rf"geometry of store 'b' \(row 1\) is {what}; every store must be a"):
        og.StoreSet.from_geodataframe(gdf)
    gdf["store_id"] = [10, 20, 30]  # int ids are named as plain ints; rows count from 0 whatever the index
    with pytest.raises(InvalidRecordError, match=rf"geometry of store 20 \(row 1\) is {what};"):
        og.StoreSet.from_geodataframe(gdf.set_index(gdf.index + 100))


def test_from_geodataframe_bad_input(gpd, pd):
    with pytest.raises(InvalidParameterError, match=r"takes a geopandas GeoDataFrame; got DataFrame .*from_dataframe"):
        og.StoreSet.from_geodataframe(pd.DataFrame({"store_id": ["a"], "lat": [0.0], "lon": [0.0]}))
    pts = [Point(0, 0), Point(1, 1)]
    with pytest.raises(InvalidRecordError, match=r"no column 'store_id'; columns are \['id', 'geometry'\]"):
        og.StoreSet.from_geodataframe(gpd.GeoDataFrame({"id": ["a", "b"]}, geometry=pts))
    with pytest.raises(InvalidRecordError, match="no active geometry column.*set_geometry"):
        og.StoreSet.from_geodataframe(gpd.GeoDataFrame({"store_id": ["a", "b"], "x": [1, 2]}))
    with pytest.raises(DuplicateStoreError, match=r"store_id 'a' appears twice \(rows 0 and 1\)"):
        og.StoreSet.from_geodataframe(gpd.GeoDataFrame({"store_id": ["a", "a"]}, geometry=pts))
    with pytest.raises(InvalidCoordinateError, match=r"lon\[1\] \(store_id 'b'\) = nan is not a finite number"):
        og.StoreSet.from_geodataframe(gpd.GeoDataFrame({"store_id": ["a", "b"]}, geometry=[pts[0], Point(np.nan, 1)]))
    with pytest.raises(InvalidCoordinateError, match=r"lat\[0\] \(store_id 'a'\) = 100.0 is outside \[-90, 90\]"):
        og.StoreSet.from_geodataframe(gpd.GeoDataFrame({"store_id": ["a"]}, geometry=[Point(10, 100)]))


def test_from_geodataframe_invalid_service_area(gpd):
    gdf = gpd.GeoDataFrame({"store_id": ["a"], "service_area": [BOWTIE]}, geometry=[Point(0.5, 0.2)], crs=4326)
    with pytest.raises(InvalidGeometryError, match="service_area of store 'a' is invalid.*repair_service_areas=True"):
        og.StoreSet.from_geodataframe(gdf)
    repaired = og.StoreSet.from_geodataframe(gdf, repair_service_areas=True)
    assert repaired.service_area_geometry[0].is_valid
    assert repaired.service_area_geometry[0].area == pytest.approx(0.5)


# ----------------------------------------------------------- results as GeoDataFrames


def _positions_by_id(records):
    return {r["store_id"]: (r["lon"], r["lat"]) for r in records}


def _assert_points_match(gdf, where):
    """Each row's Point is the position of the store named in that row (looked up by id, not by row)."""
    assert gdf.crs.to_epsg() == 4326
    want = [where[sid] for sid in gdf["store_id"].tolist()]
    assert shapely.get_x(gdf.geometry.array).tolist() == [w[0] for w in want]
    assert shapely.get_y(gdf.geometry.array).tolist() == [w[1] for w in want]


def test_nearest_to_geodataframe(gpd):
    rng = np.random.default_rng(3)
    lat, lon = 31.23 + rng.normal(0, 0.05, 200), 121.47 + rng.normal(0, 0.05, 200)
    records = [{"store_id": f"s{i}", "lat": la, "lon": lo} for i, (la, lo) in enumerate(zip(lat, lon, strict=True))]
    where = _positions_by_id(records)
    index = og.StoreIndex.from_records(records)
    q_lat, q_lon = 31.23 + rng.normal(0, 0.08, 50), 121.47 + rng.normal(0, 0.08, 50)
    nb = index.nearest(q_lat, q_lon, k=6, max_distance_m=1500.0)  # some rows have fewer than 6
    gdf = nb.to_geodataframe()
    df = nb.to_dataframe()
    assert int((nb.position >= 0).sum()) == len(gdf) < nb.position.size  # missing neighbours are left out
    assert gdf.drop(columns="geometry").equals(df)
    _assert_points_match(gdf, where)
    scalar = index.nearest(31.23, 121.47, k=3).to_geodataframe()  # the scalar fast path
    assert scalar["rank"].tolist() == [0, 1, 2]
    _assert_points_match(scalar, where)


def test_matches_to_geodataframe(gpd):
    records = [
        {"store_id": 10 + i, "lat": 0.0, "lon": i * 0.001, "service_area": 120.0 if i % 2 else None} for i in range(8)
    ]
    where = _positions_by_id(records)
    index = og.StoreIndex.from_records(records)
    m = index.within([0.0, 0.0, 50.0], [0.0015, 0.0055, 50.0], radius_m=300.0)
    gdf = m.to_geodataframe()
    assert gdf["query"].tolist() == m.query.tolist() and len(gdf) == len(m.query) > 0
    assert gdf["store_id"].tolist() == m.store_id.tolist()
    _assert_points_match(gdf, where)
    served = index.serving([0.0, 0.0], [0.001, 0.005]).to_geodataframe()
    assert served["store_id"].tolist() == [11, 15]
    _assert_points_match(served, where)
    _assert_points_match(m[1].to_geodataframe(), where)  # one query of a ragged result


def test_result_geometries_are_those_at_query_time(gpd):
    """Positions shift when stores are removed; a result keeps the positions it was computed with."""
    records = [{"store_id": i, "lat": 0.0, "lon": i * 0.01} for i in range(6)]
    where = _positions_by_id(records)
    index = og.StoreIndex.from_records(records)
    before = index.nearest([0.0, 0.0], [0.031, 0.049], k=2)
    index.remove([0, 3])
    index.add([{"store_id": 99, "lat": 0.0, "lon": 0.032}])
    where[99] = (0.032, 0.0)
    after = index.nearest([0.0, 0.0], [0.031, 0.049], k=2)
    _assert_points_match(before.to_geodataframe(), where)
    gdf = after.to_geodataframe()
    assert gdf["store_id"].tolist() == [99, 4, 5, 4]
    _assert_points_match(gdf, where)


def test_empty_result_to_geodataframe(gpd):
    index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
    gdf = index.within(10.0, 10.0, radius_m=100.0).to_geodataframe()
    assert len(gdf) == 0 and gdf.crs.to_epsg() == 4326 and "geometry" in gdf.columns


# ------------------------------------------------- the core works without pandas and geopandas

_BLOCK = """
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _run_without(blocked, body):
    code = f"BLOCKED = {set(blocked)!r}\n" + _BLOCK + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_core_imports_without_pandas_and_geopandas():
    out = _run_without(
        {"pandas", "geopandas"},
        """
        import json
        import o2o_geo as og

        assert "pandas" not in sys.modules and "geopandas" not in sys.modules
        stores = og.StoreSet.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0, "service_area": 500.0}])
        back = og.StoreSet.from_geojson(json.dumps(stores.to_geojson()))  # GeoJSON needs neither
        assert back.service_radius_m.tolist() == [500.0]
        nb = og.StoreIndex(stores).nearest(0.0, 0.001, k=1)
        for call in (stores.to_dataframe, stores.to_geodataframe, nb.to_dataframe, nb.to_geodataframe,
                     lambda: og.StoreSet.from_geodataframe(None)):
            try:
                call()
            except ImportError as exc:
                print(exc)
            else:
                raise AssertionError("no ImportError")
        """,
    )
    lines = out.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("StoreSet.to_dataframe needs pandas")
    assert lines[1].startswith("StoreSet.to_geodataframe needs geopandas")
    assert lines[2].startswith("Neighbors.to_dataframe needs pandas")
    assert lines[3].startswith("Neighbors.to_geodataframe needs geopandas")
    assert lines[4].startswith("StoreSet.from_geodataframe needs geopandas")
    assert all(line.endswith('install it with: pip install "o2o_geo[geo]"') for line in lines)


def test_pandas_without_geopandas(pd):
    out = _run_without(
        {"geopandas"},
        """
        import o2o_geo as og

        stores = og.StoreSet.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
        print(stores.to_dataframe().columns.tolist())
        m = og.StoreIndex(stores).within([0.0], [0.0], radius_m=10.0)
        print(m.to_dataframe().store_id.tolist())
        try:
            m.to_geodataframe()
        except ImportError as exc:
            print(exc)
        """,
    )
    lines = out.splitlines()
    assert lines[:2] == ["['store_id', 'lat', 'lon']", "['a']"]
    assert lines[2].startswith("Matches.to_geodataframe needs geopandas")
    assert lines[2].endswith('pip install "o2o_geo[geo]"')
