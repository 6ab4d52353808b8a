"""o2o_geo.dask on a real 2-process LocalCluster: every result equals the in-process batch API row for row."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask.dataframe", reason="o2o_geo.dask needs dask[dataframe]: pip install 'o2o_geo[dask]'")
pytest.importorskip("distributed", reason="the cluster tests need distributed: pip install 'o2o_geo[dask]'")

import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402
import pandas.testing as pdt  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from shapely.geometry import box  # noqa: E402

import o2o_geo as og  # noqa: E402
import o2o_geo.dask as ogd  # noqa: E402
from o2o_geo import simulate  # noqa: E402
from o2o_geo.errors import InvalidCoordinateError, InvalidParameterError  # noqa: E402

STR = pd.Series(["x"]).dtype  # pandas' string dtype: the layout's dtype of str ids
N_PARTS = 8


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster, set_as_default=False)  # tests opt in with client.as_current()
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def world():
    return simulate.World.generate(seed=7, n_users=300, n_stores=200, n_offers=30, n_merchants=12)


@pytest.fixture(scope="module")
def index(world):
    """The world's stores with a time zone column (no per-dispatcher lookups) and mixed service areas."""
    s = world.stores
    n = len(s)
    areas = np.full(n, None, dtype=object)
    areas[::3] = 800.0  # radius service areas
    for i in range(1, n, 7):  # and polygons around some stores
        areas[i] = box(s.lon[i] - 0.01, s.lat[i] - 0.01, s.lon[i] + 0.01, s.lat[i] + 0.01)
    stores = og.StoreSet.from_columns(
        s.store_id,
        s.lat,
        s.lon,
        merchant_id=s["merchant_id"],
        category=s["category"],
        service_area=areas,
        tz=np.full(n, "Asia/Shanghai", dtype=object),
    )
    return og.StoreIndex(stores)


@pytest.fixture(scope="module")
def pings(world):
    """About 3,000 simulated pings as a pandas frame with a labelled index and a carried text column."""
    log = world.pings(n_days=1.0, pings_per_user_per_day=10.0, seed=3)
    n = len(log)
    df = pd.DataFrame(
        {
            "user_id": log.user.astype(np.int64),
            "lat": log.lat,
            "lon": log.lon,
            "ts": log.ts,
            "accuracy_m": log.accuracy_m,
            "device": np.where(np.arange(n) % 2 == 0, "ios", "android"),
        },
        index=pd.Index(100_000 + np.arange(n), name="ping_id"),
    )
    return df


@pytest.fixture(scope="module")
def ddf(pings):
    return dd.from_pandas(pings, npartitions=N_PARTS)


@pytest.fixture(scope="module")
def pdf(ddf):
    """The pings as the Dask frame holds them (dask may convert text columns): the in-process input."""
    return ddf.compute(scheduler="sync")


@pytest.fixture(scope="module")
def scorer(world, index):
    history = og.UserHistory.from_events(world.events(world.push_log(n_days=7, seed=5)))
    return og.OfferScorer(index, world.offers, history)


# ---------------------------------------------------------------- oracles
def _attach(df, query, columns):
    """Independent of the module: the input rows at ``query`` followed by the result columns."""
    out = df.iloc[np.asarray(query, dtype=np.int64)].copy()
    for name, values in columns.items():
        out[name] = values
    return out


def _attach_nearest(df, nb):
    """The input rows followed by the long layout of ``Neighbors.to_dataframe`` (string ids as STR)."""
    exp = nb.to_dataframe()
    columns = {"rank": exp["rank"].to_numpy(), "store_id": exp["store_id"].astype(STR).to_numpy()}
    return _attach(df, exp["query"], columns | {c: exp[c].to_numpy() for c in ("position", "distance_m")})


def _sorted(df, *keys):
    name = df.index.name or "index"
    return df.reset_index().sort_values([name, *keys], kind="stable").reset_index(drop=True)


def _decisions(decisions, prefix=""):
    """Independent of the module: PushDecision.to_dict() rows as a frame, push ids prefixed."""
    rows = [{**d.to_dict(), "push_id": prefix + d.push_id} for d in decisions]
    cols = ["push_id", "user_id", "offer_id", "store_id", "merchant_id", "score", "distance_m", "trigger", "holdout"]
    frame = pd.DataFrame(rows, columns=[*cols, "ts", "explanation"])
    return frame.astype(
        {
            "push_id": STR,
            "user_id": np.int64,
            "offer_id": STR,
            "store_id": STR,
            "merchant_id": STR,
            "score": np.float64,
            "distance_m": np.float64,
            "trigger": STR,
            "holdout": bool,
            "ts": np.float64,
        }
    )


# ---------------------------------------------------------------- nearest and serving
def test_nearest_equals_in_process_row_for_row(client, ddf, pdf, index):
    with client.as_current():
        got = ogd.nearest(ddf, index, k=3).compute()
    nb = index.nearest(pdf["lat"].to_numpy(), pdf["lon"].to_numpy(), k=3)
    want = _attach_nearest(pdf, nb)
    assert len(got) == 3 * len(pdf)
    pdt.assert_frame_equal(_sorted(got, "rank"), _sorted(want, "rank"))
    # the in-process frame of the module has the same layout, in input order
    pdt.assert_frame_equal(ogd.nearest(pdf, index, k=3), want)


def test_nearest_filters_and_max_distance(client, ddf, pdf, index):
    kw = {"k": 2, "max_distance_m": 900.0, "where": {"category": ["coffee", "tea", "bakery"]}}
    with client.as_current():
        got = ogd.nearest(ddf, index, **kw).compute()
    nb = index.nearest(pdf["lat"].to_numpy(), pdf["lon"].to_numpy(), **kw)
    want = _attach_nearest(pdf, nb)
    assert 0 < len(got) < 2 * len(pdf)  # some pings have no such store within 900 m: no row
    assert got["distance_m"].max() <= 900.0
    pdt.assert_frame_equal(_sorted(got, "rank"), _sorted(want, "rank"))


def test_serving_equals_in_process_row_for_row(client, ddf, pdf, index):
    with client.as_current():
        got = ogd.serving(ddf, index).compute()
    m = index.serving(pdf["lat"].to_numpy(), pdf["lon"].to_numpy())
    want = _attach(
        pdf,
        m.query,
        {"store_id": pd.array(m.store_id, dtype=STR), "position": m.position, "distance_m": m.distance_m},
    )
    assert len(got) > len(pdf) // 4 and (m.counts == 0).any()  # served and unserved pings both occur
    pdt.assert_frame_equal(_sorted(got, "distance_m", "position"), _sorted(want, "distance_m", "position"))
    pdt.assert_frame_equal(ogd.serving(pdf, index), want)


def test_int_store_ids_are_int64(client):
    index = og.StoreIndex(og.StoreSet.from_columns([10, 20], [0.0, 0.0], [0.0, 0.01]))
    df = pd.DataFrame({"lat": [0.0, 0.0, 0.0], "lon": [0.001, 0.009, 0.02]})
    with client.as_current():
        got = ogd.nearest(dd.from_pandas(df, npartitions=2), index, k=1).compute()
    assert got["store_id"].dtype == np.int64
    assert got["store_id"].tolist() == [10, 20, 20]


def test_empty_partitions_keep_the_layout(client, index):
    df = pd.DataFrame({"lat": [31.23, 31.24], "lon": [121.47, 121.48]})
    ddf = dd.from_pandas(df, npartitions=2).map_partitions(lambda p: p[p.index != 0])
    with client.as_current():
        got = ogd.nearest(ddf, index, k=2).compute()
    assert got.index.tolist() == [1, 1]
    assert got.dtypes.to_dict() == ogd.nearest(df, index, k=2).dtypes.to_dict()


# ---------------------------------------------------------------- offers
def test_rank_offers_equals_rank_many_row_for_row(client, world, scorer):
    users = pd.DataFrame(
        {"user_id": np.arange(world.n_users), "lat": world.home_lat, "lon": world.home_lon, "segment": "a"},
        index=pd.Index(np.arange(world.n_users) * 10, name="row"),
    )
    now = world.start_ts + 8 * 86_400
    udf = dd.from_pandas(users, npartitions=6)
    users = udf.compute(scheduler="sync")
    with client.as_current():
        got = ogd.rank_offers(udf, scorer, k=5, now=now).compute()
    exp = scorer.rank_many(users["user_id"].to_numpy(), users["lat"].to_numpy(), users["lon"].to_numpy(), now=now, k=5)
    want = _attach(
        users,
        exp["query"],
        {
            "rank": exp["rank"].to_numpy(),
            "offer_id": exp["offer_id"].astype(STR).to_numpy(),
            "store_id": exp["store_id"].astype(STR).to_numpy(),
            "score": exp["score"].to_numpy(),
            "distance_m": exp["distance_m"].to_numpy(),
        },
    )
    assert len(got) > 3 * world.n_users
    pdt.assert_frame_equal(_sorted(got, "rank"), _sorted(want, "rank"))
    pdt.assert_frame_equal(ogd.rank_offers(users, scorer, k=5, now=now), want)


# ---------------------------------------------------------------- replay
def _per_user_oracle(pdf, index, offers, policy, make_scorer):
    """Each user's pings alone, in ts order (ties in input order), through a fresh Dispatcher(MemoryState)."""
    decisions = []
    for _, rows in pdf.sort_values("ts", kind="stable").groupby("user_id", sort=True):
        engine = og.Dispatcher(index, offers, scorer=make_scorer(), policy=policy, state=og.MemoryState())
        decisions += engine.on_locations(rows)
    return _decisions(decisions)


#: the features learnt across users, off: each user's scores then depend on that user alone
SOLO = {name: 0.0 for name in og.OfferScorer.CROSS_USER_FEATURES}


def test_replay_equals_per_user_dispatchers(client, ddf, pdf, index, world, scorer):
    """Without global limits, and with the features learnt across users off, every user's
    decisions equal a Dispatcher replaying that user's pings alone."""
    policy = og.PushPolicy(holdout_fraction=0.2, max_per_day=2, min_gap_s=600)
    solo = og.OfferScorer(index, world.offers, scorer.history, weights=SOLO)
    with client.as_current():
        got = ogd.replay(ddf, index, world.offers, policy, scorer=solo, npartitions=4, explanation="json").compute()
    assert got["push_id"].is_unique
    assert set(got["push_id"].str.split(":").str[0]) <= {"0", "1", "2", "3"}
    want = _per_user_oracle(
        pdf,
        index,
        world.offers,
        policy,
        lambda: og.OfferScorer(index, world.offers, copy.deepcopy(scorer.history), weights=SOLO),
    )
    assert len(want) >= 50 and want["holdout"].any() and not want["holdout"].all()
    key = ["user_id", "ts", "offer_id"]
    got = got.sort_values(key, kind="stable").reset_index(drop=True)
    want = want.sort_values(key, kind="stable").reset_index(drop=True)
    assert [json.loads(e) for e in got["explanation"]] == want["explanation"].tolist()
    pdt.assert_frame_equal(got.drop(columns=["push_id", "explanation"]), want.drop(columns=["push_id", "explanation"]))
    assert solo.history.n_events(0, "push") == scorer.history.n_events(0, "push")  # the caller's history is untouched


def test_replay_by_partition_budgets_are_per_partition(client, ddf, index, world):
    """With global budgets and feedback, each partition equals one Dispatcher over its pings.

    Per-user caps stay exact."""
    busy = world.offers.offer_id[0]
    policy = og.PushPolicy(
        holdout_fraction=0.1, max_per_day=2, min_gap_s=600, offer_budgets={busy: og.Budget(max_pushes=2)}
    )
    by_user = ddf.set_index("user_id")  # known divisions: replay does not shuffle again
    with client.as_current():
        got = ogd.replay(by_user, index, world.offers, policy).compute().reset_index(drop=True)
    frames = []
    for i in range(by_user.npartitions):
        part = by_user.partitions[i].compute(scheduler="sync").reset_index().sort_values("ts", kind="stable")
        engine = og.Dispatcher(index, world.offers, policy=policy, state=og.MemoryState())
        frames.append(_decisions(engine.on_locations(part), prefix=f"{i}:"))
    want = pd.concat([f for f in frames if len(f)], ignore_index=True).drop(columns="explanation")
    pdt.assert_frame_equal(got, want)  # row for row, partitions in order
    treated = got[~got["holdout"]]
    n_busy = int((treated["offer_id"] == busy).sum())
    assert 2 < n_busy <= 2 * by_user.npartitions  # the budget of 2 holds per partition, not across them
    day = pd.to_datetime(got["ts"], unit="s", utc=True).dt.tz_convert("Asia/Shanghai").dt.date
    assert got.groupby([got["user_id"], day]).size().max() <= 2  # per-user day cap: exact


def test_replay_pandas_is_one_dispatcher(pdf, index, world):
    policy = og.PushPolicy(holdout_fraction=0.1, offer_budgets={world.offers.offer_id[0]: og.Budget(max_pushes=2)})
    got = ogd.replay(pdf, index, world.offers, policy)
    engine = og.Dispatcher(index, world.offers, policy=policy, state=og.MemoryState())
    want = _decisions(engine.on_locations(pdf.sort_values("ts", kind="stable"))).drop(columns="explanation")
    assert len(want) > 50
    pdt.assert_frame_equal(got, want)


def test_replay_datetime_ts_and_string_users(client, index, world):
    log = world.pings(n_days=0.5, pings_per_user_per_day=10.0, seed=11)
    df = pd.DataFrame(
        {
            "uid": [f"user-{u}" for u in log.user],
            "lat": log.lat,
            "lon": log.lon,
            "when": pd.to_datetime(log.ts, unit="s", utc=True),
        }
    )
    policy = og.PushPolicy(holdout_fraction=0.0)
    solo = og.OfferScorer(index, world.offers, weights=SOLO)  # users independent: see above
    kw = {"scorer": solo, "user": "uid", "ts": "when"}
    with client.as_current():
        got = ogd.replay(dd.from_pandas(df, npartitions=4), index, world.offers, policy, **kw).compute()
    want = ogd.replay(df, index, world.offers, policy, **kw)
    key = ["user_id", "ts"]
    assert len(want) > 20 and got["user_id"].str.startswith("user-").all()
    pdt.assert_frame_equal(
        got.drop(columns="push_id").sort_values(key).reset_index(drop=True),
        want.drop(columns="push_id").sort_values(key).reset_index(drop=True),
    )


# ---------------------------------------------------------------- shipped once
def test_index_is_sent_to_each_worker_once(client, index, pings):
    def count_loads(dask_worker):  # on each worker: count the StoreIndex copies it unpickles
        from o2o_geo._index import StoreIndex

        original = StoreIndex.__dict__["__setstate__"]

        def counting(self, state):
            original(self, state)
            dask_worker.o2o_geo_index_loads += 1

        dask_worker.o2o_geo_index_loads = 0
        dask_worker.o2o_geo_setstate = original
        StoreIndex.__setstate__ = counting

    def restore(dask_worker):
        from o2o_geo._index import StoreIndex

        StoreIndex.__setstate__ = dask_worker.o2o_geo_setstate
        return dask_worker.o2o_geo_index_loads

    many = dd.from_pandas(pings[["lat", "lon"]], npartitions=16)
    client.run(count_loads)
    try:
        with client.as_current():
            out = ogd.nearest(many, index, k=1)
            graph = dict(out.__dask_graph__())
            with get_task_stream(client) as stream:
                n = len(out.compute())
        ran_on = {t["worker"] for t in stream.data if "nearest_rows" in str(t["key"])}
    finally:
        loads = client.run(restore)
    assert n == len(pings) and len(ran_on) == 2  # the 16 partitions ran on both workers
    assert sorted(loads.values()) == [1, 1]  # one copy per worker for 16 partitions
    # the graph names the scattered key; no task holds the index
    tasks = [t for k, t in graph.items() if isinstance(k, tuple) and k[0].startswith("nearest_rows")]
    assert len(tasks) == 16
    shared = set.intersection(*(set(t.dependencies) for t in tasks))
    assert len(shared) == 1 and not any(isinstance(getattr(t, "value", None), ogd._Shared) for t in graph.values())


def test_without_a_client_the_index_is_one_task(index, pings):
    out = ogd.nearest(dd.from_pandas(pings[["lat", "lon"]], npartitions=8), index, k=1)
    graph = dict(out.__dask_graph__())
    holders = [k for k, t in graph.items() if isinstance(getattr(t, "value", None), ogd._Shared)]
    assert len(holders) == 1 and graph[holders[0]].value.items[0] is index
    tasks = [t for k, t in graph.items() if isinstance(k, tuple) and k[0].startswith("nearest_rows")]
    assert len(tasks) == 8 and all(holders[0] in t.dependencies for t in tasks)
    assert len(out.compute(scheduler="threads")) == len(pings)


# ---------------------------------------------------------------- errors and the optional import
def test_errors_name_the_problem(client, ddf, pdf, index, world, scorer):
    with pytest.raises(InvalidParameterError, match="pandas or a Dask DataFrame; got list"):
        ogd.nearest([1, 2], index)
    with pytest.raises(InvalidParameterError, match="index must be a StoreIndex; got dict"):
        ogd.nearest(ddf, {})
    with pytest.raises(
        InvalidParameterError, match=r"the frame has no column 'latitude' \(lat\); its columns .*pass lat='your_column'"
    ):
        ogd.nearest(ddf, index, lat="latitude")
    with pytest.raises(InvalidParameterError, match=r"column 'device' \(lon\) has dtype .*must hold numbers"):
        ogd.serving(pdf, index, lon="device")
    with pytest.raises(InvalidParameterError, match="k must be a positive integer"):
        ogd.nearest(ddf, index, k=0)
    with pytest.raises(InvalidParameterError, match="where= names column 'colour'"):
        ogd.nearest(ddf, index, where={"colour": "red"})
    with pytest.raises(InvalidParameterError, match=r"already has column\(s\) \['store_id'\]"):
        ogd.nearest(pdf.assign(store_id="x"), index)
    with pytest.raises(InvalidParameterError, match="now = .* has no timezone"):
        from datetime import datetime

        ogd.rank_offers(ddf, scorer, now=datetime(2026, 1, 1))
    with pytest.raises(InvalidParameterError, match="scorer must be an OfferScorer"):
        ogd.rank_offers(ddf, index)
    with pytest.raises(
        InvalidParameterError, match=r"column 'lat' \(user\) has dtype float64; user ids are str or int"
    ):
        ogd.replay(ddf, index, world.offers, user="lat")
    with pytest.raises(InvalidParameterError, match=r"the frame has no column 'time' \(ts\)"):
        ogd.replay(ddf, index, world.offers, ts="time")
    with pytest.raises(InvalidParameterError, match="explanation must be one of 'drop', 'json'"):
        ogd.replay(ddf, index, world.offers, explanation="xml")
    with pytest.raises(InvalidParameterError, match=r"npartitions must be an int >= 1 or None; got"):
        ogd.replay(ddf, index, world.offers, npartitions=0)
    other = og.OfferScorer(og.StoreIndex(world.stores), world.offers)
    with pytest.raises(InvalidParameterError, match="same index and offers"):
        ogd.replay(ddf, index, world.offers, scorer=other)
    bad = dd.from_pandas(pdf.assign(lat=np.where(pdf.index == 100_017, 91.5, pdf["lat"])), npartitions=4)
    with (
        client.as_current(),
        pytest.raises(InvalidCoordinateError, match=r"the frame's row 100017: latitude \(lat\) = 91\.5 is outside"),
    ):
        ogd.nearest(bad, index).compute()


def test_import_o2o_geo_does_not_import_dask():
    code = "import sys, o2o_geo; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_dask_is_an_import_error_with_the_install_hint():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "try:\n    import o2o_geo.dask\nexcept ImportError as exc:\n    print(exc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    assert "pip install 'o2o_geo[dask]'" in res.stdout


def test_every_public_function_has_examples():
    assert ogd.__all__ == sorted(ogd.__all__)
    for name in ogd.__all__:
        assert "Examples" in (getattr(ogd, name).__doc__ or ""), name
