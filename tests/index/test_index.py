"""StoreIndex queries against brute-force GeographicLib."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import GEOD, brute_distances_m, brute_nearest, brute_within, make_index, random_stores
from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo.errors import (
    DuplicateStoreError,
    InvalidCoordinateError,
    InvalidParameterError,
    ShapeMismatchError,
    UnknownStoreError,
)


def assert_matches_brute(index, slat, slon, qlat, qlon, k, max_distance_m=None, mask=None):
    nb = index.nearest(qlat, qlon, k=k, max_distance_m=max_distance_m, where=mask)
    assert nb.shape == (len(qlat), k)
    for i in range(len(qlat)):
        d, p = brute_nearest(slat, slon, qlat[i], qlon[i], k, max_distance_m, mask)
        np.testing.assert_array_equal(nb.position[i], p, err_msg=f"query {i} ({qlat[i]}, {qlon[i]})")
        np.testing.assert_allclose(nb.distance_m[i], d, rtol=0, atol=1e-3)


@pytest.mark.parametrize("kind", ["globe", "city", "pole", "antimeridian"])
@pytest.mark.parametrize("k", [1, 5, 17])
def test_nearest_equals_brute_force(rng, kind, k):
    slat, slon = random_stores(rng, 3000, kind)
    qlat, qlon = random_stores(rng, 150, kind)
    assert_matches_brute(make_index(slat, slon), slat, slon, qlat, qlon, k)


def test_nearest_on_sparse_world_uses_long_geodesics(rng):
    # 40 stores on the whole globe: most neighbours are thousands of km away
    slat, slon = random_stores(rng, 40, "globe")
    qlat, qlon = random_stores(rng, 200, "globe")
    assert_matches_brute(make_index(slat, slon), slat, slon, qlat, qlon, 6)


def test_near_ties_and_duplicates_rank_like_geographiclib(rng):
    # stores on a ring of equal spherical radius around the query, plus exact duplicates:
    # the ellipsoid separates the ring by micrometres to metres, duplicates tie exactly
    qlat, qlon = 45.0, 10.0
    az = np.linspace(0, 360, 64, endpoint=False)
    lon2, lat2, _ = GEOD.fwd(np.full(64, qlon), np.full(64, qlat), az, np.full(64, 1234.5))
    slat = np.concatenate([lat2, lat2[:10], [qlat, qlat]])
    slon = np.concatenate([lon2, lon2[:10], [qlon, qlon]])
    index = make_index(slat, slon)
    for k in (1, 3, 12, 80):
        d, p = brute_nearest(slat, slon, qlat, qlon, k)
        nb = index.nearest(qlat, qlon, k=k)
        np.testing.assert_array_equal(nb.position, p)
        nb2 = index.nearest(np.array([qlat]), np.array([qlon]), k=k)
        np.testing.assert_array_equal(nb2.position[0], p)
    # the two exact duplicates at the query point come first, lower position first
    assert index.nearest(qlat, qlon, k=2).position.tolist() == [74, 75]


@settings(max_examples=60, deadline=None)
@given(
    qlat=st.floats(-90, 90),
    qlon=st.floats(-180, 180),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    k=st.integers(1, 70),
    spread=st.sampled_from([1e-4, 0.01, 1.0, 30.0]),
)
def test_nearest_property(qlat, qlon, seed, n, k, spread):
    r = np.random.default_rng(seed)
    slat = np.clip(qlat + r.normal(0, spread, n), -90, 90)
    slon = (qlon + r.normal(0, spread, n) + 180) % 360 - 180
    # some exact duplicates
    if n > 4:
        slat[:2], slon[:2] = slat[2], slon[2]
    index = make_index(slat, slon)
    d, p = brute_nearest(slat, slon, qlat, qlon, k)
    nb = index.nearest(qlat, qlon, k=k)
    np.testing.assert_array_equal(nb.position, p)
    np.testing.assert_allclose(nb.distance_m, d, rtol=0, atol=1e-3)
    assert [s for s in nb.store_id if s is not None] == [int(x) for x in p if x >= 0]


def test_k_larger_than_store_count_and_empty_index(rng):
    slat, slon = random_stores(rng, 3, "city")
    nb = make_index(slat, slon).nearest(31.2, 121.4, k=5)
    assert nb.position[3:].tolist() == [-1, -1]
    assert np.isinf(nb.distance_m[3:]).all() and nb.store_id[3:].tolist() == [None, None]
    empty = og.StoreIndex(og.StoreSet.from_records([]))
    nb = empty.nearest([1.0, 2.0], [3.0, 4.0], k=2)
    assert nb.position.tolist() == [[-1, -1], [-1, -1]] and np.isinf(nb.distance_m).all()
    assert len(empty.within(1.0, 2.0, 1e6)) == 0
    assert len(empty.serving(1.0, 2.0)) == 0


@pytest.mark.parametrize("max_d", [0.0, 500.0, 3000.0, 2e6])
def test_max_distance(rng, max_d):
    slat, slon = random_stores(rng, 2000, "city")
    qlat, qlon = random_stores(rng, 60, "city")
    assert_matches_brute(make_index(slat, slon), slat, slon, qlat, qlon, 4, max_distance_m=max_d)


def test_max_distance_boundary_is_inclusive():
    index = make_index(np.array([0.0]), np.array([0.01]))
    d = brute_distances_m([0.0], [0.01], 0.0, 0.0)[0]
    assert index.nearest(0.0, 0.0, k=1, max_distance_m=d).position.tolist() == [0]
    assert index.nearest(0.0, 0.0, k=1, max_distance_m=d - 1e-6).position.tolist() == [-1]


def test_scalar_and_batch_agree(rng):
    slat, slon = random_stores(rng, 5000, "city")
    qlat, qlon = random_stores(rng, 200, "city")
    index = make_index(slat, slon)
    batch = index.nearest(qlat, qlon, k=5)
    for i in range(len(qlat)):
        one = index.nearest(float(qlat[i]), float(qlon[i]), k=5)
        np.testing.assert_array_equal(one.position, batch.position[i])
        np.testing.assert_array_equal(one.distance_m, batch.distance_m[i])


def test_pandas_series_in():
    pd = pytest.importorskip("pandas")
    index = make_index(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    nb = index.nearest(pd.Series([0.1, 0.9]), pd.Series([0.1, 0.9]), k=1)
    assert nb.position[:, 0].tolist() == [0, 1]


def test_where_filters_match_brute_force(rng):
    slat, slon = random_stores(rng, 3000, "city")
    cats = rng.choice(["coffee", "tea", "grocery", "rare"], 3000, p=[0.5, 0.3, 0.19, 0.01])
    rating = rng.uniform(1, 5, 3000)
    index = make_index(slat, slon, category=cats, rating=rating)
    qlat, qlon = random_stores(rng, 40, "city")
    for where, mask in [
        ({"category": "coffee"}, cats == "coffee"),
        ({"category": "rare"}, cats == "rare"),
        ({"category": ["tea", "rare"]}, np.isin(cats, ["tea", "rare"])),
        (rating > 4.5, rating > 4.5),
        (lambda t: t["rating"] < 2.0, rating < 2.0),
        ({"category": "nothing"}, np.zeros(3000, bool)),
    ]:
        if isinstance(where, dict) and not mask.any():
            with pytest.warns(og.errors.EmptyResultWarning, match="no store has category 'nothing'"):
                nb = index.nearest(qlat, qlon, k=3, where=where)
        else:
            nb = index.nearest(qlat, qlon, k=3, where=where)
        for i in range(len(qlat)):
            _, p = brute_nearest(slat, slon, qlat[i], qlon[i], 3, mask=mask)
            np.testing.assert_array_equal(nb.position[i], p)
        one = index.nearest(float(qlat[0]), float(qlon[0]), k=3, where=where)
        np.testing.assert_array_equal(one.position, nb.position[0])


def test_within_equals_brute_force(rng):
    slat, slon = random_stores(rng, 3000, "city")
    qlat, qlon = random_stores(rng, 50, "city")
    index = make_index(slat, slon)
    res = index.within(qlat, qlon, radius_m=1500)
    assert len(res) == 50
    for i in range(50):
        d, p = brute_within(slat, slon, qlat[i], qlon[i], 1500)
        np.testing.assert_array_equal(res[i].position, p)
        np.testing.assert_allclose(res[i].distance_m, d, atol=1e-3, rtol=0)
    one = index.within(float(qlat[3]), float(qlon[3]), radius_m=1500)
    np.testing.assert_array_equal(one.position, res[3].position)
    cats = np.where(np.arange(3000) % 3 == 0, "a", "b")
    index = make_index(slat, slon, category=cats)
    res = index.within(qlat, qlon, radius_m=2500, where={"category": "a"})
    for i in range(0, 50, 7):
        _, p = brute_within(slat, slon, qlat[i], qlon[i], 2500, mask=cats == "a")
        np.testing.assert_array_equal(res[i].position, p)


def test_within_across_antimeridian_and_pole():
    slat = np.array([0.0, 0.0, 89.999, 89.999, 90.0])
    slon = np.array([179.9995, -179.9995, 0.0, 180.0, 0.0])
    index = make_index(slat, slon)
    assert sorted(index.within(0.0, 180.0, radius_m=100).position.tolist()) == [0, 1]
    near_pole = index.within(90.0, 0.0, radius_m=200)
    assert near_pole.position.tolist() == [4, 2, 3]
    d = brute_distances_m(slat, slon, 90.0, 0.0)[[4, 2, 3]]
    np.testing.assert_allclose(near_pole.distance_m, d, atol=1e-3, rtol=0)


def test_add_and_remove_equal_a_rebuilt_index(rng):
    slat, slon = random_stores(rng, 6000, "city")
    ids = [f"s{i}" for i in range(6000)]
    index = og.StoreIndex(og.StoreSet.from_columns(ids[:4000], slat[:4000], slon[:4000]))
    index.add([{"store_id": ids[i], "lat": slat[i], "lon": slon[i]} for i in range(4000, 4300)])
    removed = set(rng.choice(4300, 150, replace=False).tolist())
    index.remove([ids[i] for i in removed])
    keep = np.array([i for i in range(4300) if i not in removed])
    assert index.stores.store_id.tolist() == [ids[i] for i in keep]
    qlat, qlon = random_stores(rng, 80, "city")
    assert_matches_brute(index, slat[keep], slon[keep], qlat, qlon, 5)
    res = index.within(qlat, qlon, 800)
    for i in range(0, 80, 9):
        _, p = brute_within(slat[keep], slon[keep], qlat[i], qlon[i], 800)
        np.testing.assert_array_equal(res[i].position, p)
    # a removed id can come back; compaction keeps the same answers
    gone = ids[next(iter(removed))]
    index.add([{"store_id": gone, "lat": 31.0, "lon": 121.0}])
    before = index.nearest(qlat, qlon, k=5)
    index.compact()
    after = index.nearest(qlat, qlon, k=5)
    np.testing.assert_array_equal(before.store_id, after.store_id)
    np.testing.assert_array_equal(before.distance_m, after.distance_m)


def test_many_updates_trigger_compaction_and_stay_exact(rng):
    slat, slon = random_stores(rng, 12000, "city")
    index = og.StoreIndex(og.StoreSet.from_columns(np.arange(2000), slat[:2000], slon[:2000]))
    for start in range(2000, 12000, 1000):
        index.add(
            og.StoreSet.from_columns(
                np.arange(start, start + 1000), slat[start : start + 1000], slon[start : start + 1000]
            )
        )
    index.remove(np.arange(0, 12000, 2))
    keep = np.arange(1, 12000, 2)
    assert len(index) == 6000
    qlat, qlon = random_stores(rng, 50, "city")
    assert_matches_brute(index, slat[keep], slon[keep], qlat, qlon, 3)


def test_failed_add_and_remove_leave_index_unchanged(rng):
    slat, slon = random_stores(rng, 100, "city")
    index = make_index(slat, slon)
    qlat, qlon = random_stores(rng, 20, "city")
    before = index.nearest(qlat, qlon, k=4)
    bad_batches = [
        [{"store_id": 1000, "lat": 31.0, "lon": 121.0}, {"store_id": 5, "lat": 31.0, "lon": 121.0}],
        [{"store_id": 1000, "lat": 31.0, "lon": 121.0}, {"store_id": 1001, "lat": 95.0, "lon": 121.0}],
        [{"store_id": 1000, "lat": 31.0, "lon": 121.0}, {"store_id": 1000, "lat": 31.0, "lon": 121.0}],
        [{"store_id": 1000, "lat": 31.0, "lon": 121.0}, {"store_id": 1001, "lat": float("nan"), "lon": 1.0}],
    ]
    messages = (
        r"store_id 5 \(row 1\) is already in the index",
        r"store lat\[1\] \(store_id 1001\) = 95\.0 is outside \[-90, 90\]",
        r"store_id 1000 appears twice \(rows 0 and 1\)",
        r"store lat\[1\] \(store_id 1001\) = nan is not a finite number",
    )
    for batch, message in zip(bad_batches, messages, strict=True):
        with pytest.raises(og.errors.O2OGeoError, match=message):
            index.add(batch)
        assert len(index) == 100 and 1000 not in index
    with pytest.raises(UnknownStoreError, match="nothing was removed"):
        index.remove([3, 4, 99999])
    assert len(index) == 100 and 3 in index
    after = index.nearest(qlat, qlon, k=4)
    np.testing.assert_array_equal(before.position, after.position)
    np.testing.assert_array_equal(before.distance_m, after.distance_m)


def test_bad_query_input_errors():
    index = make_index(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(InvalidCoordinateError, match=r"lat\[1\] = 91.0 is outside \[-90, 90\]"):
        index.nearest([0.0, 91.0], [0.0, 0.0])
    with pytest.raises(InvalidCoordinateError, match="did you pass"):
        index.nearest(120.0, 30.0)
    with pytest.raises(InvalidCoordinateError, match=r"lon = 181.0 .*wrap it"):
        index.nearest(0.0, 181.0)
    with pytest.raises(InvalidCoordinateError, match="not a finite number"):
        index.within([0.0, float("nan")], [0.0, 0.0], 10)
    with pytest.raises(InvalidCoordinateError, match="not a finite number"):
        index.serving(0.0, float("inf"))
    with pytest.raises(ShapeMismatchError, match="lat has 2 values but lon has 3"):
        index.nearest([0.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(InvalidCoordinateError, match="must be numbers"):
        index.nearest("north", 0.0)
    with pytest.raises(InvalidParameterError, match="k must be a positive integer"):
        index.nearest(0.0, 0.0, k=0)
    with pytest.raises(InvalidParameterError, match="k must be a positive integer"):
        index.nearest(0.0, 0.0, k=2.5)
    with pytest.raises(InvalidParameterError, match=r"max_distance_m must be a number of metres >= 0 or None; got -1"):
        index.nearest(0.0, 0.0, max_distance_m=-1)
    with pytest.raises(InvalidParameterError, match=r"radius_m must be a number of metres >= 0; got nan"):
        index.within(0.0, 0.0, radius_m=float("nan"))
    with pytest.raises(InvalidParameterError, match="where= names column 'colour'"):
        index.nearest(0.0, 0.0, where={"colour": "red"})
    with pytest.raises(InvalidParameterError, match=r"boolean mask of shape \(2,\)"):
        index.nearest(0.0, 0.0, where=np.array([True]))
    with pytest.raises(DuplicateStoreError, match="store_id 0 .* already in the index"):
        index.add([{"store_id": 0, "lat": 0.0, "lon": 0.0}])


def test_large_batches_take_the_threaded_chunked_path_and_agree(rng):
    slat, slon = random_stores(rng, 20000, "globe")
    qlat, qlon = random_stores(rng, 70000, "globe")
    threaded = og.StoreIndex(og.StoreSet.from_columns(np.arange(20000), slat, slon), workers=2)
    serial = og.StoreIndex(og.StoreSet.from_columns(np.arange(20000), slat, slon), workers=1)
    a = threaded.nearest(qlat, qlon, k=4)
    b = serial.nearest(qlat, qlon, k=4)
    np.testing.assert_array_equal(a.position, b.position)
    np.testing.assert_array_equal(a.distance_m, b.distance_m)
    for i in rng.choice(70000, 25, replace=False):
        _, p = brute_nearest(slat, slon, qlat[i], qlon[i], 4)
        np.testing.assert_array_equal(a.position[i], p)


@settings(max_examples=40, deadline=None)
@given(
    qlat=st.floats(-90, 90),
    qlon=st.floats(-180, 180),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 80),
    radius=st.sampled_from([0.0, 10.0, 500.0, 5e4, 3e5]),
)
def test_within_property(qlat, qlon, seed, n, radius):
    r = np.random.default_rng(seed)
    slat = np.clip(qlat + r.normal(0, 0.5, n), -90, 90)
    slon = (qlon + r.normal(0, 0.5, n) + 180) % 360 - 180
    if n > 3:  # one store exactly at the radius, one exactly at the point
        lon2, lat2, _ = GEOD.fwd(qlon, qlat, 33.0, radius)
        slat[0], slon[0] = lat2, lon2
        slat[1], slon[1] = qlat, qlon
    index = make_index(slat, slon)
    d, p = brute_within(slat, slon, qlat, qlon, radius)
    res = index.within(qlat, qlon, radius_m=radius)
    np.testing.assert_array_equal(res.position, p)
    np.testing.assert_allclose(res.distance_m, d, atol=1e-3, rtol=0)


def test_queries_from_threads_during_updates_stay_consistent(rng):
    import threading

    slat, slon = random_stores(rng, 4000, "city")
    index = og.StoreIndex(og.StoreSet.from_columns(np.arange(2000), slat[:2000], slon[:2000]))
    qlat, qlon = random_stores(rng, 300, "city")
    errors = []

    def query():
        try:
            for _ in range(30):
                nb = index.nearest(qlat, qlon, k=3)
                ids = nb.store_id
                assert all(s is not None for s in ids.ravel())
                assert np.all(np.diff(nb.distance_m, axis=1) >= 0)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(2000, 4000, 100):
        index.add(
            og.StoreSet.from_columns(
                np.arange(start, start + 100), slat[start : start + 100], slon[start : start + 100]
            )
        )
        index.remove(np.arange(start - 2000, start - 1900))
    for t in threads:
        t.join()
    assert not errors
    keep = np.arange(2000, 4000)
    assert_matches_brute(index, slat[keep], slon[keep], qlat[:40], qlon[:40], 3)


def test_results_to_dataframe(rng):
    pd = pytest.importorskip("pandas")
    slat, slon = random_stores(rng, 50, "city")
    index = make_index(slat, slon, ids=[f"s{i}" for i in range(50)])
    qlat, qlon = random_stores(rng, 4, "city")
    nb = index.nearest(qlat, qlon, k=3, max_distance_m=4000)
    df = nb.to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == int((nb.position >= 0).sum())
    for row in df.itertuples():
        assert nb.store_id[row.query, row.rank] == row.store_id
        assert nb.distance_m[row.query, row.rank] == row.distance_m
    m = index.within(qlat, qlon, radius_m=3000)
    mdf = m.to_dataframe()
    assert mdf["query"].tolist() == m.query.tolist() and mdf["store_id"].tolist() == m.store_id.tolist()
    assert list(index.nearest(float(qlat[0]), float(qlon[0]), k=2).to_dataframe().columns) == [
        "rank",
        "store_id",
        "position",
        "distance_m",
    ]


def test_scalar_max_distance_when_chord_order_differs_from_geodesic_order():
    # At the equator a north-south chord curves less than an east-west one, so at ~95 km a store
    # due north can be nearer by chord yet farther by geodesic than a store due east.
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    lon_e, lat_e, _ = geod.fwd(10.0, 0.0, 90.0, 95_000.0)
    lon_n, lat_n, _ = geod.fwd(10.0, 0.0, 0.0, 95_000.005)
    lon_a, lat_a, _ = geod.fwd(10.0, 0.0, 45.0, 1_000.0)
    lon_f, lat_f, _ = geod.fwd(10.0, 0.0, 200.0, 200_000.0)
    slat, slon = np.array([lat_a, lat_n, lat_e, lat_f]), np.array([lon_a, lon_n, lon_e, lon_f])
    xyz = og.latlon_to_ecef_m(slat, slon)
    q = og.latlon_to_ecef_m(0.0, 10.0)
    chord = np.linalg.norm(xyz - q, axis=1)
    assert chord[1] < chord[2]  # the scenario: chord order is the reverse of geodesic order
    index = make_index(slat, slon)
    max_d = 95_000.003
    want_d, want_p = brute_nearest(slat, slon, 0.0, 10.0, 3, max_d)
    assert want_p.tolist() == [0, 2, -1]
    scalar = index.nearest(0.0, 10.0, k=3, max_distance_m=max_d)
    batch = index.nearest(np.array([0.0, 0.0]), np.array([10.0, 10.0]), k=3, max_distance_m=max_d)
    assert scalar.position.tolist() == [0, 2, -1]
    assert batch.position.tolist() == [[0, 2, -1]] * 2


def test_add_and_remove_reject_ids_of_the_wrong_kind():
    index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
    with pytest.raises(og.errors.InvalidRecordError, match="strings"):
        index.add([{"store_id": 7, "lat": 0.0, "lon": 0.1}])
    ints = og.StoreIndex.from_records([{"store_id": 1, "lat": 0.0, "lon": 0.0}, {"store_id": 2, "lat": 0, "lon": 1}])
    with pytest.raises(og.errors.InvalidRecordError, match="ints"):
        ints.add([{"store_id": "b", "lat": 0.0, "lon": 0.1}])
    for bad, message in (
        (True, r"store_id True \(item 0\) is a bool"),
        ([2.0], r"store_id 2\.0 \(item 0\) is a float"),
        ([1, None], r"store_id None \(item 1\) is a NoneType"),
        (2.5, "store_ids must be an id or an iterable of ids; got float"),
    ):
        with pytest.raises(og.errors.InvalidRecordError, match=message):
            ints.remove(bad)
    assert len(index) == 1 and len(ints) == 2 and 1 in ints and 2 in ints


def test_concurrent_adds_and_removes_never_duplicate_or_kill_the_wrong_store(rng):
    import threading

    slat, slon = random_stores(rng, 3000, "city")
    index = og.StoreIndex(og.StoreSet.from_columns(np.arange(1000), slat[:1000], slon[:1000]), compact_fraction=0.01)
    errors: list[Exception] = []
    added: list[int] = []
    barrier = threading.Barrier(4)

    def adder():
        barrier.wait()
        for sid in range(1000, 3000):
            try:
                index.add([{"store_id": sid, "lat": slat[sid], "lon": slon[sid]}])
                added.append(sid)
            except og.errors.DuplicateStoreError:
                pass
            except Exception as exc:
                errors.append(exc)

    def remover(ids):
        barrier.wait()
        try:
            for sid in ids:
                index.remove(int(sid))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=adder), threading.Thread(target=adder)]
    threads += [
        threading.Thread(target=remover, args=(range(0, 1000, 2),)),
        threading.Thread(target=remover, args=(range(1, 600, 2),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(added) == list(range(1000, 3000))  # each id added exactly once
    keep = np.array([i for i in range(3000) if not (i < 1000 and (i % 2 == 0 or i < 600))])
    assert sorted(index.stores.store_id.tolist()) == keep.tolist()
    qlat, qlon = random_stores(rng, 40, "city")
    assert_matches_brute(index, slat[keep], slon[keep], qlat, qlon, 3)


def test_pickled_index_answers_like_the_original_and_is_independent(rng):
    """Pickling (how o2o_geo.dask ships an index to workers) keeps live updates, filters and service areas."""
    import pickle

    slat, slon = random_stores(rng, 3000, "city")
    radius = np.where(np.arange(3000) % 3 == 0, 900.0, np.nan)
    cat = np.where(np.arange(3000) % 2 == 0, "coffee", "tea")
    index = make_index(slat[:2800], slon[:2800], category=cat[:2800], service_area=radius[:2800])
    index.add([{"store_id": i, "lat": slat[i], "lon": slon[i], "category": cat[i]} for i in range(2800, 3000)])
    index.remove(list(range(0, 300, 7)))
    copy = pickle.loads(pickle.dumps(index))
    keep = np.array([i for i in range(3000) if not (i < 300 and i % 7 == 0)])
    qlat, qlon = random_stores(rng, 60, "city")
    assert_matches_brute(copy, slat[keep], slon[keep], qlat, qlon, 4)
    for name, call in [
        ("nearest", lambda ix: ix.nearest(qlat, qlon, k=3, where={"category": "tea"})),
        ("within", lambda ix: ix.within(qlat, qlon, 700)),
        ("serving", lambda ix: ix.serving(qlat, qlon)),
    ]:
        a, b = call(index), call(copy)
        np.testing.assert_array_equal(a.position, b.position, err_msg=name)
        np.testing.assert_array_equal(a.distance_m, b.distance_m, err_msg=name)
    copy.add([{"store_id": 99_999, "lat": float(qlat[0]), "lon": float(qlon[0])}])
    assert 99_999 in copy and 99_999 not in index
