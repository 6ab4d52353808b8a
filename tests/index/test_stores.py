"""StoreSet constructors, service areas and bad input.

Every constructor must build the same table for the same stores; ``serving``
is checked against an independent brute-force oracle (shapely ``covers`` on the
polygon unwrapped into a continuous longitude frame, pyproj ``Geod`` for radius
areas); bad input must raise the documented error with a message that names
the culprit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box
from shapely.geometry import mapping as to_geojson

import o2o_geo as og
from o2o_geo.errors import (
    DuplicateStoreError,
    InvalidCoordinateError,
    InvalidGeometryError,
    InvalidRecordError,
    O2OGeoError,
    ShapeMismatchError,
    UnknownStoreError,
)

WGS84 = Geod(ellps="WGS84")

# ----------------------------------------------------------------------------- helpers


def _records(ids):
    """Five stores around the world with a category, a float rating and an int floor count."""
    lat = [31.2304, -33.8688, 51.5074, 0.0, -89.5]
    lon = [121.4737, 151.2093, -0.1278, 179.75, -179.25]
    cat = ["coffee", "tea", "coffee", "bakery", "tea"]
    rating = [4.5, 3.25, 5.0, 2.0, 0.125]
    return [
        {"store_id": sid, "lat": la, "lon": lo, "category": c, "rating": r}
        for sid, la, lo, c, r in zip(ids, lat, lon, cat, rating, strict=True)
    ]


INT_IDS = [101, 7, -3, 2**40, 0]
STR_IDS = ["sh-01", "syd", "ldn", "fiji 1", "ü-pole"]


def _as_csv(records):
    fields = list(records[0])
    lines = [",".join(fields)]
    for r in records:
        lines.append(",".join(repr(r[f]) if isinstance(r[f], float) else str(r[f]) for f in fields))
    return "\n".join(lines) + "\n"


def _as_feature_collection(records, id_in_properties):
    feats = []
    for r in records:
        props = {k: v for k, v in r.items() if k not in ("store_id", "lat", "lon")}
        feat = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]}}
        if id_in_properties:
            props["store_id"] = r["store_id"]
        else:
            feat["id"] = r["store_id"]
        feat["properties"] = props
        feats.append(feat)
    return {"type": "FeatureCollection", "features": feats}


def _assert_same_table(got, expected_records):
    """Compare a StoreSet with plain Python records (the independent expectation)."""
    ids = [r["store_id"] for r in expected_records]
    assert got.store_id.tolist() == ids
    assert [type(v) for v in got.store_id.tolist()] == [type(v) for v in ids]
    assert got.lat.dtype == np.float64 and got.lon.dtype == np.float64
    assert got.lat.tolist() == [r["lat"] for r in expected_records]  # bit-exact
    assert got.lon.tolist() == [r["lon"] for r in expected_records]
    assert got.columns == ["store_id", "lat", "lon", "category", "rating"]
    assert got["category"].tolist() == [r["category"] for r in expected_records]
    assert all(type(v) is str for v in got["category"].tolist())
    assert got["rating"].dtype == np.float64
    assert got["rating"].tolist() == [r["rating"] for r in expected_records]
    assert len(got) == len(expected_records)
    for row, sid in enumerate(ids):
        assert sid in got
        assert got.position_of(sid).tolist() == [row]


def _all_constructors(records, tmp_path):
    pd = pytest.importorskip("pandas")
    cols = {k: [r[k] for r in records] for k in records[0]}
    out = {"records": og.StoreSet.from_records(records)}
    out["columns"] = og.StoreSet.from_columns(
        cols["store_id"], cols["lat"], cols["lon"], category=cols["category"], rating=cols["rating"]
    )
    out["columns-numpy"] = og.StoreSet.from_columns(
        np.asarray(cols["store_id"]),
        np.asarray(cols["lat"]),
        np.asarray(cols["lon"]),
        category=np.asarray(cols["category"]),
        rating=np.asarray(cols["rating"]),
    )
    out["dataframe"] = og.StoreSet.from_dataframe(pd.DataFrame(records))
    renamed = pd.DataFrame(records).rename(columns={"store_id": "id", "lat": "y", "lon": "x"})
    renamed = renamed[["x", "category", "id", "rating", "y"]]  # column order must not matter
    df_alt = og.StoreSet.from_dataframe(renamed, store_id="id", lat="y", lon="x")
    out["dataframe-renamed"] = df_alt
    csv_path = tmp_path / "stores.csv"
    csv_path.write_text(_as_csv(records), encoding="utf-8")
    out["csv"] = og.StoreSet.from_csv(csv_path)
    out["csv-str-path"] = og.StoreSet.from_csv(str(csv_path))
    for in_props in (False, True):
        fc = _as_feature_collection(records, in_props)
        out[f"geojson-dict-{in_props}"] = og.StoreSet.from_geojson(fc)
        out[f"geojson-text-{in_props}"] = og.StoreSet.from_geojson(json.dumps(fc))
        path = tmp_path / f"stores-{in_props}.geojson"
        path.write_text(json.dumps(fc), encoding="utf-8")
        out[f"geojson-path-{in_props}"] = og.StoreSet.from_geojson(path)
        out[f"geojson-strpath-{in_props}"] = og.StoreSet.from_geojson(str(path))
    return out


# ------------------------------------------------------------------ constructors agree


@pytest.mark.parametrize("ids", [INT_IDS, STR_IDS], ids=["int-ids", "str-ids"])
def test_every_constructor_builds_the_same_table(ids, tmp_path):
    records = _records(ids)
    built = _all_constructors(records, tmp_path)
    assert len(built) == 15
    for name, stores in built.items():
        try:
            _assert_same_table(stores, records)
        except AssertionError as exc:  # pragma: no cover - only to say which constructor
            raise AssertionError(f"{name}: {exc}") from exc


def test_dataframe_renamed_columns_are_not_attributes():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": ["a", "b"], "y": [1.0, 2.0], "x": [3.0, 4.0], "floors": [2, 3]})
    s = og.StoreSet.from_dataframe(df, store_id="id", lat="y", lon="x")
    assert s.columns == ["store_id", "lat", "lon", "floors"]
    assert s.lat.tolist() == [1.0, 2.0] and s.lon.tolist() == [3.0, 4.0]
    assert s["floors"].tolist() == [2, 3] and s["floors"].dtype.kind == "i"


def test_csv_ids_are_int_only_when_every_id_is_an_integer(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("store_id,lat,lon\n1,0,0\n-2,1,1\n")
    s = og.StoreSet.from_csv(p)
    assert s.store_id.tolist() == [1, -2] and all(type(v) is int for v in s.store_id.tolist())
    p.write_text("store_id,lat,lon\n1,0,0\nb2,1,1\n")
    s = og.StoreSet.from_csv(p)
    assert s.store_id.tolist() == ["1", "b2"] and all(type(v) is str for v in s.store_id.tolist())
    assert 1 not in s and "1" in s


def test_csv_service_area_cells(tmp_path):
    poly = {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]}
    p = tmp_path / "areas.csv"
    cell = '"' + json.dumps(poly).replace('"', '""') + '"'
    p.write_text(f"store_id,lat,lon,service_area\na,0.5,0.5,{cell}\nb,10,10,2500\nc,20,20,\n", encoding="utf-8")
    s = og.StoreSet.from_csv(p)
    geom = s.service_area_geometry
    assert geom[0].equals(box(0, 0, 1, 1)) and geom[1] is None and geom[2] is None
    np.testing.assert_array_equal(s.service_radius_m, [np.nan, 2500.0, np.nan])
    index = og.StoreIndex(s)
    assert index.serving(0.2, 0.9).store_id.tolist() == ["a"]
    assert index.serving(20.0, 20.0).store_id.tolist() == []  # empty cell: no area


def test_service_area_kinds_are_normalised():
    square = box(10.0, 10.0, 10.5, 10.5)
    col = np.empty(6, dtype=object)
    col[:] = [1500.0, 0, square, to_geojson(square), None, MultiPolygon([square, box(11.0, 11.0, 11.2, 11.2)])]
    s = og.StoreSet.from_columns(
        list("abcdef"), [0.0, 1.0, 10.2, 10.2, 5.0, 10.2], [0.0] * 2 + [10.2] * 2 + [5.0, 10.2], service_area=col
    )
    np.testing.assert_array_equal(s.service_radius_m, [1500.0, 0.0, np.nan, np.nan, np.nan, np.nan])
    g = s.service_area_geometry
    assert g[0] is None and g[1] is None and g[4] is None
    assert g[2].equals(square) and g[3].equals(square)
    assert g[5].geom_type == "MultiPolygon" and g[5].area == pytest.approx(0.25 + 0.04)
    # a column of plain numbers is the radius fast path, NaN meaning "no area"
    r = og.StoreSet.from_columns([1, 2], [0.0, 0.0], [0.0, 1.0], service_area=np.array([250.0, np.nan]))
    np.testing.assert_array_equal(r.service_radius_m, [250.0, np.nan])
    assert r.service_area_geometry.tolist() == [None, None]
    # and no service_area column at all means no store serves anywhere
    none = og.StoreIndex(og.StoreSet.from_columns([1], [0.0], [0.0]))
    with pytest.warns(og.errors.EmptyResultWarning, match="1 stores have no service_area"):
        assert none.serving(0.0, 0.0).store_id.tolist() == []


# ------------------------------------------------------------- antimeridian polygon


def test_antimeridian_crossing_polygon_is_split():
    ring = [(179.0, -2.0), (-179.0, -2.0), (-179.0, 2.0), (179.0, 2.0)]  # lons jump 179 -> -179
    s = og.StoreSet.from_records(
        [
            {"store_id": "fiji", "lat": 0.0, "lon": 179.9, "service_area": Polygon(ring)},
            {"store_id": "fiji-geojson", "lat": 0.0, "lon": -179.9, "service_area": to_geojson(Polygon(ring))},
        ]
    )
    for g in s.service_area_geometry:
        assert g.geom_type == "MultiPolygon" and len(g.geoms) == 2
        minx, miny, maxx, maxy = g.bounds
        assert (minx, miny, maxx, maxy) == (-180.0, -2.0, 180.0, 2.0)
        assert g.area == pytest.approx(8.0)  # 2 x 4 degrees, not the 358 x 4 the raw ring encloses
    index = og.StoreIndex(s)
    assert sorted(index.serving(0.0, 179.5).store_id.tolist()) == ["fiji", "fiji-geojson"]
    assert sorted(index.serving(1.5, -179.5).store_id.tolist()) == ["fiji", "fiji-geojson"]
    assert index.serving(0.0, 0.0).store_id.tolist() == []
    assert index.serving(0.0, 178.5).store_id.tolist() == []
    assert index.serving(0.0, -178.5).store_id.tolist() == []
    assert index.serving(2.5, 179.5).store_id.tolist() == []
    m = index.serving([0.0, 0.0, 0.0], [179.5, -179.5, 0.0])
    assert m.counts.tolist() == [2, 2, 0]


def _unwrapped(poly):
    """The polygon in a continuous longitude frame: if a ring edge jumps > 180 degrees, shift negative lons by 360."""
    xs = np.asarray(poly.exterior.coords)[:, 0]
    if not np.any(np.abs(np.diff(xs)) > 180.0):
        return poly

    def shift(coords):
        return [((x + 360.0) if x < 0 else x, y) for x, y in coords]

    return Polygon(shift(poly.exterior.coords), [shift(r.coords) for r in poly.interiors])


def _oracle_serving(areas, slat, slon, qlat, qlon):
    """served[i, j], ambiguous[i, j] by brute force over every (query, store) pair."""
    nq, ns = len(qlat), len(areas)
    served = np.zeros((nq, ns), dtype=bool)
    ambiguous = np.zeros((nq, ns), dtype=bool)
    for j, area in enumerate(areas):
        if area is None:
            continue
        if isinstance(area, (int, float)):
            _, _, d = WGS84.inv(np.full(nq, slon[j]), np.full(nq, slat[j]), qlon, qlat)
            served[:, j] = d <= area
            ambiguous[:, j] = np.abs(d - area) < 1e-3  # a millimetre from the edge: either answer is right
            continue
        poly = _unwrapped(area)
        hit = np.zeros(nq, dtype=bool)
        for shift in (-360.0, 0.0, 360.0):
            hit |= shapely.covers(poly, shapely.points(qlon + shift, qlat))
        served[:, j] = hit
    return served, ambiguous


def _star(rng, cx, cy, n_vertices, r_min, r_max, hole=False):
    """A simple star-shaped polygon around (cx, cy) in a continuous lon frame (may pass 180)."""
    ang = np.sort((np.arange(n_vertices) + rng.uniform(0.1, 0.9, n_vertices)) * 2 * np.pi / n_vertices)
    rad = rng.uniform(r_min, r_max, n_vertices)
    shell = list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True))
    holes = []
    if hole:
        t = np.array([0.0, 2.1, 4.2])
        holes = [list(zip(cx + 0.1 * np.cos(t), cy + 0.1 * np.sin(t), strict=True))]
    poly = Polygon(shell, holes)
    assert poly.is_valid  # a precondition of the fixture, not of the library
    return poly


def test_serving_matches_a_brute_force_oracle():
    rng = np.random.default_rng(7031)
    n = 72
    # stores straddling the antimeridian (lon 172..188 continuous) and around the prime meridian
    near_am = np.arange(n) < 54
    slat = np.where(near_am, rng.uniform(-6, 6, n), rng.uniform(-3, 3, n))
    slon_cont = np.where(near_am, rng.uniform(172, 188, n), rng.uniform(-3, 3, n))
    slon = np.where(slon_cont > 180, slon_cont - 360, slon_cont)
    oracle_areas, given = [], []
    for j in range(n):
        kind = j % 6
        if kind == 0:  # geodesic radius, float metres
            a = float(rng.uniform(2e4, 3e5))
            oracle_areas.append(a)
            given.append(a)
        elif kind == 1:  # shapely polygon, continuous frame (lons may exceed 180)
            p = _star(rng, slon_cont[j], slat[j], 9, 0.4, 2.5, hole=j % 12 == 1)
            oracle_areas.append(p)
            given.append(p)
        elif kind == 2:  # the same as a GeoJSON geometry mapping
            p = _star(rng, slon_cont[j], slat[j], 11, 0.4, 2.5)
            oracle_areas.append(p)
            given.append(to_geojson(p))
        elif kind == 3:  # a rectangle written wrapped across the antimeridian, as GeoJSON writers emit it
            w, e = rng.uniform(0.2, 3.0, 2)
            y0 = slat[j] - rng.uniform(0.5, 3)
            y1 = slat[j] + rng.uniform(0.5, 3)
            p = Polygon([(180 - w, y0), (-180 + e, y0), (-180 + e, y1), (180 - w, y1)])
            oracle_areas.append(p)
            given.append(p)
        elif kind == 4:
            oracle_areas.append(None)
            given.append(None)
        else:  # integer radius in metres
            a = int(rng.integers(1000, 150_000))
            oracle_areas.append(a)
            given.append(a)
    col = np.empty(n, dtype=object)
    col[:] = given
    stores = og.StoreSet.from_columns(np.arange(1000, 1000 + n), slat, slon, service_area=col)
    for g in stores.service_area_geometry:
        if g is not None:
            minx, _, maxx, _ = g.bounds
            assert -180.0 <= minx and maxx <= 180.0
    index = og.StoreIndex(stores)

    qlat = np.concatenate([rng.uniform(-9, 9, 320), rng.uniform(-4, 4, 80)])
    q_cont = np.concatenate([rng.uniform(169, 191, 320), rng.uniform(-4, 4, 80)])
    qlon = np.where(q_cont > 180, q_cont - 360, q_cont)
    # and points 1 cm inside and outside every radius area, where a sloppy distance would slip
    rad_rows = np.array([j for j, a in enumerate(oracle_areas) if isinstance(a, (int, float))])
    rows = np.repeat(rad_rows, 4)
    edge = np.array([oracle_areas[j] for j in rows], dtype=float) + np.tile([-0.01, 0.01, -0.01, 0.01], rad_rows.size)
    elon, elat, _ = WGS84.fwd(slon[rows], slat[rows], rng.uniform(-180, 180, rows.size), edge)
    qlat = np.concatenate([qlat, elat])
    qlon = np.concatenate([qlon, elon])
    nq = qlat.size
    served, ambiguous = _oracle_serving(oracle_areas, slat, slon, qlat, qlon)
    res = index.serving(qlat, qlon)
    assert len(res) == nq
    assert served.sum() > 300 and (~served).sum() > 300  # the oracle is not degenerate
    for i in range(nq):
        got = res[i].position
        decided = ~ambiguous[i]
        assert set(got[decided[got]].tolist()) == set(np.flatnonzero(served[i] & decided).tolist()), i
        # nearest first, with the geodesic distance to the store
        d = res[i].distance_m
        assert np.all(np.diff(d) >= 0), i
        if got.size:
            _, _, ref = WGS84.inv(slon[got], slat[got], np.full(got.size, qlon[i]), np.full(got.size, qlat[i]))
            np.testing.assert_allclose(d, ref, rtol=1e-9, atol=1e-6)
        assert res[i].store_id.tolist() == (got + 1000).tolist()
    # every area kind actually served somebody
    for kind in (0, 1, 2, 3, 5):
        assert served[:, kind::6].any(), kind
    # a scalar query gives the same stores as the batch
    for i in range(0, nq, 37):
        assert index.serving(float(qlat[i]), float(qlon[i])).position.tolist() == res[i].position.tolist()


def test_convex_antimeridian_polygon_is_accepted():
    # convex in the continuous frame: (179,-1) (182,-1) (182,1.5) (180.5,1) (179,0)
    continuous = Polygon([(179, -1), (182, -1), (182, 1.5), (180.5, 1), (179, 0)])
    assert continuous.is_valid and continuous.convex_hull.equals(continuous)
    wrapped = Polygon([(179, -1), (-178, -1), (-178, 1.5), (-179.5, 1), (179, 0)])
    s = og.StoreSet.from_records([{"store_id": "pent", "lat": 0.0, "lon": 179.9, "service_area": wrapped}])
    assert s.service_area_geometry[0].area == pytest.approx(continuous.area)
    index = og.StoreIndex(s)
    rng = np.random.default_rng(5)
    qlat = rng.uniform(-1.5, 2.0, 300)
    q_cont = rng.uniform(178.5, 182.5, 300)
    qlon = np.where(q_cont > 180, q_cont - 360, q_cont)
    served, _ = _oracle_serving([continuous], [0.0], [179.9], qlat, qlon)
    assert index.serving(qlat, qlon).counts.tolist() == served[:, 0].astype(int).tolist()


# ------------------------------------------------------------------ invalid polygons

BOWTIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting at (0.5, 0.5)


def test_bowtie_polygon_is_rejected_naming_the_store():
    assert not BOWTIE.is_valid
    recs = [
        {"store_id": "ok", "lat": 0.5, "lon": 0.5, "service_area": box(0, 0, 1, 1)},
        {"store_id": "bow-tie-7", "lat": 0.5, "lon": 0.2, "service_area": BOWTIE},
    ]
    with pytest.raises(
        InvalidGeometryError, match=r"store 'bow-tie-7' is invalid \(Self-intersection.*repair_service_areas"
    ):
        og.StoreSet.from_records(recs)
    with pytest.raises(InvalidGeometryError, match=r"store 42 is invalid"):
        og.StoreSet.from_columns([41, 42], [0.5, 0.5], [0.5, 0.2], service_area=[None, to_geojson(BOWTIE)])


def test_bowtie_polygon_is_repaired_on_request():
    recs = [{"store_id": "bow", "lat": 0.5, "lon": 0.2, "service_area": BOWTIE}]
    s = og.StoreSet.from_records(recs, repair_service_areas=True)
    g = s.service_area_geometry[0]
    assert g.is_valid
    # the two lobes of the bow-tie: triangles (0,0)-(0.5,0.5)-(0,1) and (1,0)-(0.5,0.5)-(1,1)
    assert g.area == pytest.approx(0.5)
    index = og.StoreIndex(s)
    assert index.serving(0.5, 0.2).store_id.tolist() == ["bow"]  # left lobe (lat, lon)
    assert index.serving(0.5, 0.8).store_id.tolist() == ["bow"]  # right lobe
    assert index.serving(0.2, 0.5).store_id.tolist() == []  # the bottom notch between the lobes
    assert index.serving(0.8, 0.5).store_id.tolist() == []


# ----------------------------------------------------------------------- bad input


def test_duplicate_ids_name_the_id_and_both_rows(tmp_path):
    with pytest.raises(DuplicateStoreError, match=r"store_id 'b' appears twice \(rows 1 and 3\)"):
        og.StoreSet.from_columns(["a", "b", "c", "b"], [0.0] * 4, [0.0] * 4)
    recs = [{"store_id": i % 3, "lat": 0.0, "lon": 0.0} for i in range(5)]
    with pytest.raises(DuplicateStoreError, match=r"store_id 0 appears twice \(rows 0 and 3\)"):
        og.StoreSet.from_records(recs)
    p = tmp_path / "dup.csv"
    p.write_text("store_id,lat,lon\n5,0,0\n6,0,0\n5,1,1\n")
    with pytest.raises(DuplicateStoreError, match=r"store_id 5 appears twice \('.*dup\.csv' lines 2 and 4\)"):
        og.StoreSet.from_csv(p)  # a file names its lines; a table (above) its 0-based rows
    # numpy ints and Python ints are the same id
    with pytest.raises(DuplicateStoreError, match=r"store_id 9 appears twice \(rows 0 and 1\)"):
        og.StoreSet.from_records([{"store_id": np.int64(9), "lat": 0, "lon": 0}, {"store_id": 9, "lat": 0, "lon": 0}])
    assert issubclass(DuplicateStoreError, ValueError) and issubclass(DuplicateStoreError, O2OGeoError)


def test_missing_position_fields():
    with pytest.raises(InvalidRecordError, match=r"record 1 has no 'lat' field; got fields \['lon', 'store_id'\]"):
        og.StoreSet.from_records([{"store_id": 1, "lat": 0.0, "lon": 0.0}, {"store_id": 2, "lon": 0.0}])
    with pytest.raises(InvalidRecordError, match=r"record 0 has no 'store_id' field"):
        og.StoreSet.from_records([{"lat": 0.0, "lon": 0.0}])
    with pytest.raises(InvalidRecordError, match=r"record 0 is a list, not a mapping"):
        og.StoreSet.from_records([[1, 0.0, 0.0]])
    with pytest.raises(InvalidRecordError, match=r"lon of store 'x' \(row 0\) = None is not a number"):
        og.StoreSet.from_records([{"store_id": "x", "lat": 0.0, "lon": None}])
    pd = pytest.importorskip("pandas")
    with pytest.raises(InvalidRecordError, match=r"no column 'lat'; columns are \['store_id', 'latitude', 'lon'\]"):
        og.StoreSet.from_dataframe(pd.DataFrame({"store_id": [1], "latitude": [0.0], "lon": [0.0]}))


def test_dataframe_positions_that_are_not_numbers():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"store_id": ["a", "b"], "lat": ["31.2", "x"], "lon": [121.0, 121.1]})
    with pytest.raises(InvalidCoordinateError, match=r"column 'lat' row 0: '31\.2' is not a number of degrees"):
        og.StoreSet.from_dataframe(frame)
    frame = pd.DataFrame({"store_id": ["a", "b"], "lat": [31.0, 31.1], "lon": [True, False]})
    with pytest.raises(InvalidCoordinateError, match=r"column 'lon' row 0: True is not"):
        og.StoreSet.from_dataframe(frame)
    # pandas' nullable floats: a value is kept exactly, a missing one is named like any NaN
    frame = pd.DataFrame(
        {"store_id": ["a", "b"], "lat": pd.array([31.0, None], dtype="Float64"), "lon": [121.0, 121.1]}
    )
    with pytest.raises(InvalidCoordinateError, match=r"lat\[1\] \(store_id 'b'\) = nan is not a finite number"):
        og.StoreSet.from_dataframe(frame)
    frame["lat"] = pd.array([31.0, 31.25], dtype="Float64")
    assert og.StoreSet.from_dataframe(frame).lat.tolist() == [31.0, 31.25]


def test_out_of_range_and_nan_coordinates_name_the_store(tmp_path):
    with pytest.raises(InvalidCoordinateError, match=r"lat\[2\] \(store_id 'c'\) = 95\.0 is outside \[-90, 90\]"):
        og.StoreSet.from_columns(["a", "b", "c"], [0.0, 10.0, 95.0], [0.0, 0.0, 0.0])
    with pytest.raises(InvalidCoordinateError, match=r"\(store_id 17\) = 95\.0 is outside"):
        og.StoreSet.from_records([{"store_id": 17, "lat": 95, "lon": 3.0}])
    with pytest.raises(InvalidCoordinateError, match=r"lon\[1\] \(store_id 'b'\) = nan is not a finite number"):
        og.StoreSet.from_columns(["a", "b"], [0.0, 0.0], [0.0, float("nan")])
    with pytest.raises(InvalidCoordinateError, match=r"\(store_id 'q'\) = nan is not a finite number"):
        og.StoreSet.from_records([{"store_id": "q", "lat": 1.0, "lon": float("nan")}])
    with pytest.raises(InvalidCoordinateError, match=r"lon\[0\] \(store_id 's'\) = 181\.0 is outside \[-180, 180\]"):
        og.StoreSet.from_columns(["s"], [0.0], [181.0])
    p = tmp_path / "bad.csv"
    p.write_text("store_id,lat,lon\nok,1,1\nfar,-95.5,1\n")
    with pytest.raises(InvalidCoordinateError, match=r"bad\.csv' line 3 \(store_id 'far'\): lat = -95\.5 is outside"):
        og.StoreSet.from_csv(p)
    # the boundaries themselves are fine
    s = og.StoreSet.from_columns(["n", "s"], [90.0, -90.0], [180.0, -180.0])
    assert s.lat.tolist() == [90.0, -90.0]


@pytest.mark.parametrize(
    "bad_ids",
    [
        np.array([True, False]),
        [1.5, 2.5],
        [1.0, 2.0],
        np.array(["a", True], dtype=object),
        np.array(["a", 1.5], dtype=object),
        np.array([3, None], dtype=object),
    ],
    ids=["bool-array", "floats", "integral-floats", "obj-bool", "obj-float", "obj-none"],
)
def test_bool_and_float_ids_are_rejected_by_from_columns(bad_ids):
    with pytest.raises(InvalidRecordError, match=r"store_id\[\d\] = .* a store id must be a str or an int"):
        og.StoreSet.from_columns(bad_ids, [0.0, 0.0], [0.0, 0.0])


@pytest.mark.parametrize("bad", [True, False, 1.5, 2.0, np.float64(3.0), np.True_, None], ids=repr)
def test_bool_and_float_ids_are_rejected_by_from_records(bad):
    recs = [{"store_id": "fine", "lat": 0.0, "lon": 0.0}, {"store_id": bad, "lat": 0.0, "lon": 0.0}]
    with pytest.raises(InvalidRecordError, match=r"store_id\[1\] = .* is a \w+; a store id must be a str or an int"):
        og.StoreSet.from_records(recs)


@pytest.mark.parametrize("bad", [True, 1.5], ids=["bool", "float"])
def test_bool_and_float_ids_in_a_plain_list_are_rejected(bad):
    with pytest.raises(InvalidRecordError, match="a store id must be a str or an int"):
        og.StoreSet.from_columns(["a", bad], [0.0, 0.0], [0.0, 0.0])


def test_mixed_id_list_is_rejected_by_every_constructor():
    recs = [{"store_id": 7, "lat": 0.0, "lon": 0.0}, {"store_id": "a", "lat": 1.0, "lon": 1.0}]
    with pytest.raises(og.errors.InvalidRecordError, match="mix ints and strings"):
        og.StoreSet.from_records(recs)
    with pytest.raises(og.errors.InvalidRecordError, match="mix ints and strings"):
        og.StoreSet.from_columns([7, "a"], [0.0, 1.0], [0.0, 1.0])


def test_mismatched_column_lengths():
    with pytest.raises(ShapeMismatchError, match=r"column 'category' has 2 values but there are 3 stores"):
        og.StoreSet.from_columns([1, 2, 3], [0.0] * 3, [0.0] * 3, category=["a", "b"])
    with pytest.raises(ShapeMismatchError, match=r"column 'service_area' has 4 values but there are 3 stores"):
        og.StoreSet.from_columns([1, 2, 3], [0.0] * 3, [0.0] * 3, service_area=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ShapeMismatchError, match=r"3 store ids but 2 positions"):
        og.StoreSet.from_columns([1, 2, 3], [0.0] * 2, [0.0] * 2)
    with pytest.raises(ShapeMismatchError, match=r"lat has 3 values but store lon has 2"):
        og.StoreSet.from_columns([1, 2, 3], [0.0] * 3, [0.0] * 2)
    assert issubclass(ShapeMismatchError, ValueError)


def test_bad_service_areas():
    with pytest.raises(InvalidGeometryError, match=r"radius of store 'r2' is -5\.0 m; it must be a finite number >= 0"):
        og.StoreSet.from_columns(["r1", "r2"], [0.0, 0.0], [0.0, 0.0], service_area=np.array([10.0, -5.0]))
    with pytest.raises(InvalidGeometryError, match=r"radius of store 'neg' is -1 m; it must be a finite number >= 0"):
        og.StoreSet.from_records(
            [
                {"store_id": "sq", "lat": 0.0, "lon": 0.0, "service_area": box(0, 0, 1, 1)},
                {"store_id": "neg", "lat": 0.0, "lon": 0.0, "service_area": -1},
            ]
        )
    with pytest.raises(InvalidGeometryError, match=r"store 'pt' is a Point; expected a Polygon"):
        og.StoreSet.from_records([{"store_id": "pt", "lat": 0.0, "lon": 0.0, "service_area": Point(0.0, 0.0)}])
    with pytest.raises(InvalidGeometryError, match=r"store 3 is a Point; expected a Polygon"):
        og.StoreSet.from_columns([3], [0.0], [0.0], service_area=[{"type": "Point", "coordinates": [0.0, 0.0]}])
    with pytest.raises(InvalidGeometryError, match=r"store 'js' is not a readable GeoJSON geometry"):
        og.StoreSet.from_columns(["js"], [0.0], [0.0], service_area=[{"type": "Polygon", "coordinates": "nope"}])
    with pytest.raises(InvalidGeometryError, match=r"store 'hi' has bounds .* latitudes must be in \[-90, 90\]"):
        og.StoreSet.from_columns(["hi"], [0.0], [0.0], service_area=[box(0, 80, 1, 91)])
    with pytest.raises(InvalidGeometryError, match=r"store 'e' is empty"):
        og.StoreSet.from_columns(["e"], [0.0], [0.0], service_area=[Polygon()])
    with pytest.raises(InvalidGeometryError, match=r"store 'b' is a bool"):
        og.StoreSet.from_columns(["b"], [0.0], [0.0], service_area=np.array([True], dtype=object))


def test_csv_errors_name_the_file_line_also_after_a_multi_line_cell(tmp_path):
    """File messages name the 1-based file line (the header is line 1); a quoted cell spanning lines counts them."""
    head = 'store_id,lat,lon,note\n1,31.2,121.4,"two\nlines"\n'  # the first record ends on line 3
    cases = [
        ("2,north,121.4,x\n", InvalidRecordError, r"line 4: column 'lat' = 'north' is not a number"),
        ("2,91.5,121.4,x\n", InvalidCoordinateError, r"line 4 \(store_id 2\): lat = 91\.5 is outside \[-90, 90\]"),
        ("2,31.2,nan,x\n", InvalidCoordinateError, r"line 4 \(store_id 2\): lon = nan is not a finite number"),
        ("3,31.2,121.4,x\n1,31.3,121.5,y\n", DuplicateStoreError, r"store_id 1 appears twice \('.*' lines 3 and 5\)"),
    ]
    for i, (tail, error, message) in enumerate(cases):
        p = tmp_path / f"s{i}.csv"
        p.write_text(head + tail)
        with pytest.raises(error, match=message):
            og.StoreSet.from_csv(p)
    p.write_text(head + "2,31.25,121.45,x\n")
    assert og.StoreSet.from_csv(p).store_id.tolist() == [1, 2]


def test_csv_without_lat_column(tmp_path):
    p = tmp_path / "nolat.csv"
    p.write_text("store_id,latitude,lon\n1,10.0,20.0\n")
    with pytest.raises(InvalidRecordError, match=r"has no column 'lat'; columns are \['store_id', 'latitude', 'lon'\]"):
        og.StoreSet.from_csv(p)
    s = og.StoreSet.from_csv(p, lat="latitude")
    assert s.lat.tolist() == [10.0] and s.lon.tolist() == [20.0] and s.columns == ["store_id", "lat", "lon"]
    p.write_text("store_id,lat,lon\n1,north,20.0\n")
    with pytest.raises(InvalidRecordError, match=r"nolat\.csv' line 2: column 'lat' = 'north' is not a number"):
        og.StoreSet.from_csv(p)
    p.write_text("")
    with pytest.raises(InvalidRecordError, match=r"is empty: no header row"):
        og.StoreSet.from_csv(p)


def test_geojson_feature_that_is_not_a_point(tmp_path):
    fc = _as_feature_collection(_records(STR_IDS)[:2], id_in_properties=False)
    fc["features"][1]["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    with pytest.raises(InvalidRecordError, match=r"feature 1 has geometry 'Polygon'; stores must be Points"):
        og.StoreSet.from_geojson(fc)
    with pytest.raises(InvalidRecordError, match=r"feature 1 has geometry 'Polygon'; stores must be Points"):
        og.StoreSet.from_geojson(json.dumps(fc))
    fc["features"][1]["geometry"] = None
    with pytest.raises(InvalidRecordError, match=r"feature 1 has geometry None; stores must be Points"):
        og.StoreSet.from_geojson(fc)
    fc["features"][1]["geometry"] = {"type": "Point", "coordinates": [1.0]}
    with pytest.raises(InvalidRecordError, match=r"feature 1 has point coordinates \[1\.0\]; expected \[lon, lat\]"):
        og.StoreSet.from_geojson(fc)
    del fc["features"][1]["id"]
    fc["features"][1]["geometry"] = {"type": "Point", "coordinates": [1.0, 2.0]}
    with pytest.raises(InvalidRecordError, match=r"feature 1 has neither an 'id' nor a 'store_id' property"):
        og.StoreSet.from_geojson(fc)
    with pytest.raises(InvalidRecordError, match=r"expected a GeoJSON FeatureCollection"):
        og.StoreSet.from_geojson({"type": "Feature"})
    with pytest.raises(InvalidRecordError, match=r"not valid GeoJSON text"):
        og.StoreSet.from_geojson('{"type": "FeatureCollection", ')


# ---------------------------------------------------------------------- position_of


def test_position_of():
    ids = ["k", "a", "z", "m"]
    s = og.StoreSet.from_columns(ids, [0.0, 1.0, 2.0, 3.0], [0.0] * 4)
    rng = np.random.default_rng(3)
    order = rng.permutation(4)
    query = [ids[i] for i in order]
    assert s.position_of(query).tolist() == order.tolist()
    assert s.position_of("z").tolist() == [2]
    assert s.position_of([]).tolist() == []
    assert s.position_of(np.asarray(ids)).tolist() == [0, 1, 2, 3]  # numpy str_ keys work too
    with pytest.raises(UnknownStoreError, match=r"store_id 'nope' \(item 1\) is not in this store set"):
        s.position_of(["a", "nope"])
    with pytest.raises(KeyError, match=r"store_id 'A' \(item 0\) is not in this store set"):  # it is a KeyError
        s.position_of("A")

    n = og.StoreSet.from_columns([30, 10, 20], [0.0] * 3, [0.0] * 3)
    assert n.position_of([10, np.int64(20), 30]).tolist() == [1, 2, 0]
    assert n.position_of(np.array([20, 30], dtype=np.int32)).tolist() == [2, 0]
    with pytest.raises(UnknownStoreError, match=r"store_id '10' \(item 0\)"):
        n.position_of("10")  # a str is not the int id
    with pytest.raises(UnknownStoreError, match=r"store_id 11 \(item 0\)"):
        n.position_of(11)


def test_to_csv_round_trips_service_areas_as_wkt_and_names_the_file_line_of_a_bad_one(tmp_path):
    import shapely

    ring = [(179.5, 1.0), (-179.5, 1.0), (-179.5, 2.0), (179.5, 2.0), (179.5, 1.0)]  # across the antimeridian
    recs = [
        {
            "store_id": "poly",
            "lat": 0.5,
            "lon": 0.5,
            "service_area": box(0, 0, 1, 1),
            "seats": 12.0,
            "note": 'says "hi"\nthen goes',
        },
        {"store_id": "am", "lat": 1.5, "lon": 179.9, "service_area": {"type": "Polygon", "coordinates": [ring]}},
        {"store_id": "ring", "lat": 10.0, "lon": 10.0, "service_area": 2500.0, "seats": float("nan")},
        {"store_id": "none", "lat": 20.0, "lon": 20.0, "note": "a, b"},
    ]
    s = og.StoreSet.from_records(recs)
    path = tmp_path / "stores.csv"
    s.to_csv(path)
    back = og.StoreSet.from_csv(path)
    assert back.store_id.tolist() == s.store_id.tolist() and back.columns == s.columns
    for a, b in zip(s.service_area_geometry, back.service_area_geometry, strict=True):
        assert (a is None and b is None) or shapely.equals_exact(a, b, tolerance=0.0)
    np.testing.assert_array_equal(back.service_radius_m, s.service_radius_m)
    np.testing.assert_array_equal(back["seats"], [12.0, np.nan, np.nan, np.nan])  # empty cells of numbers: NaN
    assert back["note"].tolist() == ['says "hi"\nthen goes', "", "", "a, b"]  # empty cells of text: empty text
    # the same WKT read through pandas (what the command line does) gives the same areas
    pd = pytest.importorskip("pandas")
    via = og.StoreSet.from_dataframe(pd.read_csv(path, keep_default_na=False, na_values={"seats": ["nan"]}))
    assert via.service_area_geometry[1].equals(s.service_area_geometry[1])
    np.testing.assert_array_equal(via.service_radius_m, s.service_radius_m)
    # a bad cell is named by its file line (a quoted cell spanning two lines comes first)
    text = path.read_text(encoding="utf-8").replace("2500.0", '"POLYGON ((0 0, 1 0))"')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
        InvalidGeometryError, match=r"service_area of '.*stores\.csv' line 5 is 'POLYGON \(\(0 0, 1 0\)\)'"
    ):
        og.StoreSet.from_csv(path)
