"""Joins on pandas / geopandas frames: the index's answers, the input's rows, index and columns kept."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import brute_nearest, brute_within, make_index, random_stores

import o2o_geo as og
from o2o_geo.errors import InvalidCoordinateError, InvalidParameterError, InvalidRecordError

pd = pytest.importorskip("pandas")


@pytest.fixture
def city(rng):
    slat, slon = random_stores(rng, 400, "city")
    cats = rng.choice(["coffee", "tea", "grocery"], 400)
    seats = rng.integers(2, 60, 400)
    index = make_index(slat, slon, ids=[f"s{i}" for i in range(400)], category=cats, seats=seats)
    qlat, qlon = random_stores(rng, 60, "city")
    qlat[:3] += 3.0  # far from every store: no neighbour within max_distance_m
    users = pd.DataFrame(
        {"lat": qlat, "lon": qlon, "user": [f"u{i}" for i in range(60)]}, index=[f"row{i}" for i in range(60)][::-1]
    )
    return index, slat, slon, cats, seats, users


def test_join_nearest_long_layout_equals_brute_force(city):
    index, slat, slon, cats, seats, users = city
    out = index.join_nearest(users, k=3, max_distance_m=5_000, columns=["category", "seats"])
    expect_rows = []
    for label, row in users.iterrows():
        d, p = brute_nearest(slat, slon, row["lat"], row["lon"], 3, max_distance_m=5_000)
        found = [(r, pp, dd) for r, (pp, dd) in enumerate(zip(p, d, strict=True)) if pp >= 0] or [(0, -1, np.inf)]
        for r, pp, dd in found:
            expect_rows.append((label, r, pp, dd))
    assert out.index.tolist() == [e[0] for e in expect_rows]  # input order and labels, rank within
    assert out["rank"].tolist() == [e[1] for e in expect_rows]
    for (label, _, pp, dd), (_, got) in zip(expect_rows, out.iterrows(), strict=True):
        assert got["user"] == users.loc[label, "user"]  # the input's columns ride along
        if pp < 0:
            assert pd.isna(got["store_id"]) and np.isnan(got["distance_m"]) and np.isnan(got["seats"])
            assert pd.isna(got["category"])
        else:
            assert got["store_id"] == f"s{pp}" and got["category"] == cats[pp] and got["seats"] == seats[pp]
            assert got["distance_m"] == pytest.approx(dd, abs=1e-3)
    lonely = users.index[:3]
    assert out.loc[lonely, "store_id"].isna().all()


def test_join_nearest_k1_and_wide_layout(city):
    index, *_, users = city
    nb = index.nearest(users["lat"], users["lon"], k=2)
    one = index.join_nearest(users)
    assert one.index.equals(users.index) and "rank" not in one.columns
    assert one["store_id"].tolist() == nb.store_id[:, 0].tolist()
    wide = index.join_nearest(users, k=2, layout="wide", columns=["category"], distance_col="metres")
    assert wide.index.equals(users.index)
    assert wide["store_id_2"].tolist() == nb.store_id[:, 1].tolist()
    np.testing.assert_allclose(wide["metres_1"], nb.distance_m[:, 0])
    assert wide["category_2"].tolist() == nb.store("category")[:, 1].tolist()
    with pytest.raises(InvalidParameterError, match="layout must be 'long' or 'wide'"):
        index.join_nearest(users, layout="tall")


def test_join_nearest_takes_a_geodataframe_in_any_crs(city):
    gpd = pytest.importorskip("geopandas")
    index, *_, users = city
    gdf = gpd.GeoDataFrame(
        users[["user"]], geometry=gpd.points_from_xy(users["lon"], users["lat"]), crs="EPSG:4326"
    ).to_crs("EPSG:3857")
    out = index.join_nearest(gdf, where={"category": "tea"})
    ref = index.join_nearest(users, where={"category": "tea"})
    assert isinstance(out, gpd.GeoDataFrame) and out.crs.to_epsg() == 3857
    assert out["store_id"].tolist() == ref["store_id"].tolist()
    np.testing.assert_allclose(out["distance_m"], ref["distance_m"], atol=1e-6)
    bad = gdf.copy()
    bad.loc[bad.index[4], "geometry"] = None
    with pytest.raises(InvalidRecordError, match=r"geometry of row 'row55' is missing; every row must be a Point"):
        index.join_nearest(bad)


def test_join_within_and_join_serving_keep_every_row(city):
    index, slat, slon, *_, users = city
    out = index.join_within(users, radius_m=1_500, columns=["seats"])
    n_expected = 0
    for label, row in users.iterrows():
        d, p = brute_within(slat, slon, row["lat"], row["lon"], 1_500)
        got = out.loc[[label]]
        if p.size == 0:
            assert len(got) == 1 and got["store_id"].isna().all()
        else:
            assert got["store_id"].tolist() == [f"s{x}" for x in p]
            np.testing.assert_allclose(got["distance_m"], d, atol=1e-3)
        n_expected += max(1, p.size)
    assert len(out) == n_expected
    assert out.index.unique().tolist() == users.index.tolist()  # rows stay in the input's order
    areas = og.StoreIndex.from_records(
        [
            {"store_id": "wide", "lat": 31.23, "lon": 121.47, "service_area": 8_000.0},
            {"store_id": "small", "lat": 31.23, "lon": 121.47, "service_area": 3_000.0},
        ]
    )
    served = areas.join_serving(users)
    m = areas.serving(users["lat"].to_numpy(), users["lon"].to_numpy())
    assert len(served) == int(np.maximum(m.counts, 1).sum())
    for i, label in enumerate(users.index):
        got = served.loc[[label], "store_id"]
        assert got.dropna().tolist() == m[i].store_id.tolist()


def test_join_names_clashes_and_bad_input(city):
    index, *_, users = city
    clash = users.assign(category="mine", store_id="x")
    out = index.join_nearest(clash, columns=["category"])
    assert (out["category"] == "mine").all()
    assert out["category_store"].notna().all() and out["store_id_store"].notna().all()
    with pytest.raises(InvalidParameterError, match="takes a pandas DataFrame; got list"):
        index.join_nearest([(31.2, 121.4)])
    with pytest.raises(InvalidParameterError, match=r"no columns 'lat' and 'lon' .*lat= and lon="):
        index.join_nearest(users.rename(columns={"lat": "y"}))
    with pytest.raises(InvalidParameterError, match="columns= names 'colour'"):
        index.join_within(users, radius_m=100.0, columns=["colour"])
    bad = users.copy()
    bad.loc["row50", "lat"] = 95.0
    with pytest.raises(InvalidCoordinateError, match="row50"):
        index.join_nearest(bad)
    renamed = users.rename(columns={"lat": "y", "lon": "x"})
    assert (
        index.join_nearest(renamed, lat="y", lon="x")["store_id"].tolist()
        == index.join_nearest(users)["store_id"].tolist()
    )


def test_store_index_takes_a_dataframe_or_a_geodataframe(city):
    index, *_, users = city
    frame = index.stores.to_dataframe()
    from_frame = og.StoreIndex(frame)
    q = users["lat"].to_numpy(), users["lon"].to_numpy()
    np.testing.assert_array_equal(from_frame.nearest(*q, k=3).position, index.nearest(*q, k=3).position)
    pytest.importorskip("geopandas")
    gdf = index.stores.to_geodataframe().to_crs("EPSG:3857")
    from_gdf = og.StoreIndex(gdf)
    assert from_gdf.nearest(*q, k=3).store_id.tolist() == index.nearest(*q, k=3).store_id.tolist()
    with pytest.raises(InvalidParameterError, match="a pandas DataFrame or a geopandas GeoDataFrame; got list"):
        og.StoreIndex([{"store_id": 1, "lat": 0.0, "lon": 0.0}])
