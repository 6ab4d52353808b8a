"""The command line: `demo`, and `nearest`, `rank`, `replay` on files, checked against independent oracles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from _worlds import brute_nearest, geographiclib_m

import o2o_geo as og
from o2o_geo._sample import LANDMARKS


def test_demo_runs_and_reports_true_nearest_stores():
    out = subprocess.run(
        [sys.executable, "-m", "o2o_geo", "demo"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    stores = og.sample_stores(7)
    for place, (lat, lon) in LANDMARKS.items():
        d, p = brute_nearest(stores.lat, stores.lon, lat, lon, 1)
        sid = stores.store_id[p[0]]
        row = re.search(rf"^{re.escape(place)}\s+1\s+(\S+)\s+.*?\s([\d,]+)\s*$", out, re.M)
        assert row is not None, place
        assert row.group(1) == sid
        assert int(row.group(2).replace(",", "")) == round(d[0])
    assert "Saved and loaded" in out


def test_sample_stores_are_deterministic():
    a, b = og.sample_stores(3), og.sample_stores(3)
    assert a.store_id.tolist() == b.store_id.tolist()
    np.testing.assert_array_equal(a.lat, b.lat)
    assert og.sample_stores(4).lat.tolist() != a.lat.tolist()


def test_cli_usage_error_is_one_line_and_nonzero():
    res = subprocess.run([sys.executable, "-m", "o2o_geo", "nosuch"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "invalid choice" in res.stderr


def test_demo_day_counts_agree_with_per_ping_replay():
    from o2o_geo import simulate

    out = subprocess.run(
        [sys.executable, "-m", "o2o_geo", "demo"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    m = re.search(r"-> ([\d,]+) pushes \(\+([\d,]+) held-out", out)
    assert m is not None and "uplift (95% CI)" in out
    # the demo replays the log in one batch call; replay it here ping by ping
    world = simulate.World.generate(seed=11, n_users=3000, n_stores=400, n_offers=60, n_merchants=20)
    log = world.pings(n_days=1, pings_per_user_per_day=12, seed=12)
    engine = og.Dispatcher(world.index, world.offers, policy=og.PushPolicy(holdout_fraction=0.2, max_per_day=2))
    decisions = []
    for i in range(len(log)):
        decisions += engine.on_location(
            int(log.user[i]),
            float(log.lat[i]),
            float(log.lon[i]),
            float(log.ts[i]),
            accuracy_m=float(log.accuracy_m[i]),
        )
    held = sum(d.holdout for d in decisions)
    assert (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) == (len(decisions) - held, held)


# ====================================================================== file commands
# The CLI runs in a subprocess on small files; every result is checked against an
# independent oracle: the brute-force nearest stores of conftest, or the in-process API.
SHANGHAI = timezone(timedelta(hours=8))


def cli(*args, env_path=None, timeout=120):
    """Run ``python -m o2o_geo ARGS``; ``env_path`` is put first on PYTHONPATH (to hide a package)."""
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(env_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "o2o_geo", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def ok(res):
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


def one_line_error(res, status, *fragments):
    """A user's mistake: exit status, exactly one line on stderr, no traceback."""
    assert res.returncode == status, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("o2o-geo: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def read_csv(path):
    """A CSV file with exact floats (pandas 2's default parser can be one ulp off)."""
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}  # pandas 3: default
    return pd.read_csv(path, **exact)


def need_pyarrow():
    pytest.importorskip("pyarrow", reason="Parquet files need pyarrow (the cli extra)")


@pytest.fixture
def city(tmp_path, rng):
    """60 stores (ids, category, an int floor) and 300 pings with columns of several kinds, as frames."""
    n = 60
    slat = 31.23 + rng.normal(0, 0.03, n)
    slon = 121.47 + rng.normal(0, 0.03, n)
    stores = pd.DataFrame(
        {
            "store_id": [f"s{i:02d}" for i in range(n)],
            "lat": slat,
            "lon": slon,
            "category": rng.choice(["coffee", "tea", "grocery"], n),
            "floor": rng.integers(1, 4, n),
        }
    )
    m = 300
    pings = pd.DataFrame(
        {
            "ping_id": np.arange(m) * 7,
            "user": [f"u{i % 37}" for i in range(m)],
            "lat": 31.23 + rng.normal(0, 0.04, m),
            "lon": 121.47 + rng.normal(0, 0.04, m),
            "speed": np.where(np.arange(m) % 5 == 0, np.nan, rng.uniform(0, 10, m)),
        }
    )
    return stores, pings


def expected_nearest(stores, pings, k, max_distance_m=None, mask=None):
    """The brute-force answer in the output layout: store_id_j / distance_m_j per ping."""
    ids, dists = [], []
    for la, lo in zip(pings["lat"], pings["lon"], strict=True):
        d, p = brute_nearest(stores["lat"].to_numpy(), stores["lon"].to_numpy(), la, lo, k, max_distance_m, mask)
        ids.append([stores["store_id"].iloc[q] if q >= 0 else None for q in p])
        dists.append(d)
    return ids, np.array(dists)


def plain(frame):
    """Values as Python objects, missing as None: compares across dtypes (int64/Int64, NaN/NA)."""
    return frame.astype(object).where(frame.notna(), None).reset_index(drop=True)


def check_nearest(out, stores, pings, k, **kw):
    """The output holds the pings' own columns, unchanged, then the brute-force neighbours."""
    assert list(out.columns) == list(pings.columns) + [
        f"{name}_{j}" for j in range(1, k + 1) for name in ("store_id", "distance_m")
    ]
    pd.testing.assert_frame_equal(plain(out[list(pings.columns)]), plain(pings), check_exact=True)
    ids, dists = expected_nearest(stores, pings, k, **kw)
    for j in range(k):
        got = [None if pd.isna(v) else v for v in out[f"store_id_{j + 1}"]]
        assert got == [row[j] for row in ids], j
        got_d = out[f"distance_m_{j + 1}"].astype(float).to_numpy()
        want_d = dists[:, j]
        assert np.array_equal(np.isinf(want_d), np.isnan(got_d))  # empty where no store
        np.testing.assert_allclose(got_d[np.isfinite(want_d)], want_d[np.isfinite(want_d)], rtol=0, atol=1e-3)
    return ids


# ---------------------------------------------------------------- help
@pytest.mark.parametrize("command", [[], ["demo"], ["nearest"], ["rank"], ["replay"]])
def test_help_on_every_command_exits_0_with_an_example(command):
    res = ok(cli(*command, "--help"))
    assert res.stdout.startswith("usage: o2o-geo")
    assert "example:" in res.stdout
    if command != ["demo"]:
        assert "exit status" in res.stdout
    if command == ["nearest"]:  # the output layout is documented
        assert "store_id_1, distance_m_1, store_id_2, distance_m_2, ..., store_id_k, distance_m_k" in res.stdout


@pytest.mark.parametrize("seed", [3, 8])
def test_demo_seed_picks_the_stores_its_tables_show(seed):
    """--seed draws another chain: section 1 is the brute-force nearest three of that chain's stores."""
    out = ok(cli("demo", "--seed", str(seed))).stdout
    stores = og.sample_stores(seed)
    section = out[out.index("1. The 3 nearest") : out.index("2. Coffee shops")]
    rows = re.findall(r"^(.{16})  ([123])     (\S+) .*?([\d,]+) *$", section, re.M)
    assert len(rows) == 3 * len(LANDMARKS), section
    ids = np.asarray(stores.store_id)
    for j, (place, (lat, lon)) in enumerate(LANDMARKS.items()):
        dist = np.array([geographiclib_m(lat, lon, a, b) for a, b in zip(stores.lat, stores.lon, strict=True)])
        order = np.argsort(dist, kind="stable")[:3]
        got = rows[3 * j : 3 * j + 3]
        assert got[0][0].strip() == place
        assert [g[2] for g in got] == ids[order].tolist(), place
        assert [int(g[3].replace(",", "")) for g in got] == [int(f"{d:.0f}") for d in dist[order]]


# ---------------------------------------------------------------- nearest
def test_nearest_csv_matches_brute_force_and_keeps_the_ping_columns(tmp_path, city):
    stores, pings = city
    stores.to_csv(tmp_path / "stores.csv", index=False)
    pings.to_csv(tmp_path / "pings.csv", index=False)
    res = ok(cli("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "-k", 3, "-o", tmp_path / "out.csv"))
    check_nearest(read_csv(tmp_path / "out.csv"), stores, pings, 3)
    summary = res.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"o2o-geo nearest: 300 rows in [\d.,]+ s \([\d,]+ rows/s\) -> .*out\.csv", summary), summary
    # without -o: the same CSV on stdout
    res = ok(cli("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "-k", 3))
    assert res.stdout == (tmp_path / "out.csv").read_text()


def test_nearest_where_and_max_distance_leave_missing_neighbours_empty(tmp_path, city):
    stores, pings = city
    stores.to_csv(tmp_path / "stores.csv", index=False)
    pings.to_csv(tmp_path / "pings.csv", index=False)
    res = ok(
        cli(
            "nearest",
            tmp_path / "stores.csv",
            tmp_path / "pings.csv",
            "-k",
            4,
            "--where",
            "category=coffee,tea",
            "--where",
            "floor=2",  # an int in a numeric column (read as 2.0 from the CSV)
            "--max-distance-m",
            4000,
            "-o",
            tmp_path / "out.csv",
        )
    )
    mask = stores["category"].isin(["coffee", "tea"]).to_numpy() & (stores["floor"] == 2).to_numpy()
    assert 4 < mask.sum() < len(stores)
    out = read_csv(tmp_path / "out.csv")
    ids = check_nearest(out, stores, pings, 4, max_distance_m=4000, mask=mask)
    assert any(None in row for row in ids) and any(None not in row for row in ids)  # both cases occur
    assert "300 rows" in res.stderr
    assert "warning" not in res.stderr  # every value exists


def test_nearest_where_value_no_store_has_warns_and_names_the_values(tmp_path, city):
    stores, pings = city
    stores.to_csv(tmp_path / "stores.csv", index=False)
    pings.to_csv(tmp_path / "pings.csv", index=False)
    res = ok(cli("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "--where", "category=Coffee"))
    warning = [line for line in res.stderr.splitlines() if line.startswith("o2o-geo: warning:")]
    assert len(warning) == 1, res.stderr
    assert "--where category=Coffee matches no store" in warning[0]
    assert "did you mean 'coffee'?" in warning[0] and "'tea'" in warning[0]
    lines = res.stdout.splitlines()  # the rows still come out, with no store
    assert "store_id_1" in lines[0] and len(lines) == len(pings) + 1


def test_nearest_custom_column_names(tmp_path, city):
    stores, pings = city
    stores.rename(columns={"store_id": "shop", "lat": "y", "lon": "x"}).to_csv(tmp_path / "stores.csv", index=False)
    renamed = pings.rename(columns={"lat": "latitude", "lon": "longitude"})
    renamed.to_csv(tmp_path / "pings.csv", index=False)
    ok(
        cli(
            "nearest",
            tmp_path / "stores.csv",
            tmp_path / "pings.csv",
            *("--store-id", "shop", "--store-lat", "y", "--store-lon", "x", "--lat", "latitude", "--lon", "longitude"),
            *("-k", 2, "-o", tmp_path / "out.csv"),
        )
    )
    out = read_csv(tmp_path / "out.csv").rename(columns={"latitude": "lat", "longitude": "lon"})
    check_nearest(out, stores, pings, 2)


def test_nearest_parquet_round_trip_streams_in_chunks(tmp_path, city):
    need_pyarrow()
    stores, pings = city
    pings = pings.assign(
        visits=pd.array([None if i % 4 == 0 else i for i in range(len(pings))], dtype="Int64"),  # ints with gaps
        note=[None] * 150 + ["x"] * 150,  # empty in the first chunks
    )
    stores.to_parquet(tmp_path / "stores.parquet")
    pings.to_parquet(tmp_path / "pings.pq")
    for chunk, name in ((70, "chunked.parquet"), (1000, "whole.parquet")):
        ok(
            cli(
                "nearest",
                tmp_path / "stores.parquet",
                tmp_path / "pings.pq",
                *("-k", 3, "--chunk-size", chunk, "-o", tmp_path / name),
            )
        )
    out = pd.read_parquet(tmp_path / "chunked.parquet")
    check_nearest(out, stores, pings, 3)
    assert str(out["visits"].dtype) == "Int64" and out["visits"].isna().sum() == 75  # ints stay ints
    assert out["store_id_1"].notna().all()
    pd.testing.assert_frame_equal(out, pd.read_parquet(tmp_path / "whole.parquet"))


def test_nearest_geojson_round_trip(tmp_path, city):
    stores, pings = city

    def points(frame, props, id_col=None):
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    **({"id": row[id_col]} if id_col else {}),
                    "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
                    "properties": {c: (None if pd.isna(row[c]) else row[c]) for c in props},
                }
                for row in frame.to_dict("records")
            ],
        }

    (tmp_path / "stores.geojson").write_text(json.dumps(points(stores, ["category"], id_col="store_id")))
    (tmp_path / "pings.json").write_text(json.dumps(points(pings, ["ping_id", "user", "speed"])))
    ok(cli("nearest", tmp_path / "stores.geojson", tmp_path / "pings.json", "-k", 2, "-o", tmp_path / "out.geojson"))
    fc = json.loads((tmp_path / "out.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(pings)
    coords = [f["geometry"]["coordinates"] for f in fc["features"]]
    assert coords == [[lo, la] for la, lo in zip(pings["lat"], pings["lon"], strict=True)]  # exact
    rows = [{"lat": c[1], "lon": c[0], **f["properties"]} for c, f in zip(coords, fc["features"], strict=True)]
    columns = ["ping_id", "user", "lat", "lon", "speed", "store_id_1", "distance_m_1", "store_id_2", "distance_m_2"]
    out = pd.DataFrame(rows)[columns]
    check_nearest(out, stores, pings[["ping_id", "user", "lat", "lon", "speed"]], 2)
    # and GeoJSON in, CSV out: the same neighbours
    ok(cli("nearest", tmp_path / "stores.geojson", tmp_path / "pings.json", "-k", 2, "-o", tmp_path / "out.csv"))
    csv_out = read_csv(tmp_path / "out.csv")
    assert csv_out["store_id_2"].tolist() == out["store_id_2"].tolist()


@pytest.mark.slow
def test_nearest_a_million_pings_with_a_progress_bar(tmp_path, rng):
    pytest.importorskip("tqdm", reason="the progress bar needs tqdm (the cli extra)")
    n_stores, n = 200, 1_000_000
    stores = pd.DataFrame(
        {
            "store_id": np.arange(n_stores),
            "lat": 31.23 + rng.normal(0, 0.05, n_stores),
            "lon": 121.47 + rng.normal(0, 0.05, n_stores),
        }
    )
    stores.to_csv(tmp_path / "stores.csv", index=False)
    lat = 31.23 + rng.normal(0, 0.06, n)
    lon = 121.47 + rng.normal(0, 0.06, n)
    pd.DataFrame({"ping": np.arange(n), "lat": lat, "lon": lon}).to_csv(
        tmp_path / "pings.csv", index=False, float_format="%.6f"
    )
    res = ok(cli("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "-o", tmp_path / "out.csv", "--progress"))
    assert re.search(r"100%\|", res.stderr), res.stderr[-500:]  # tqdm's bar, on stderr
    summary = res.stderr.strip().splitlines()[-1]
    m = re.fullmatch(r"o2o-geo nearest: ([\d,]+) rows in ([\d.,]+) s \(([\d,]+) rows/s\) -> .*out\.csv", summary)
    assert m is not None, summary
    assert m.group(1) == "1,000,000"
    out = read_csv(tmp_path / "out.csv")
    assert len(out) == n and out["ping"].tolist() == list(range(n))
    for i in rng.choice(n, 300, replace=False):  # a sample against brute force
        d, p = brute_nearest(stores["lat"].to_numpy(), stores["lon"].to_numpy(), out["lat"][i], out["lon"][i], 1)
        assert out["store_id_1"][i] == p[0]
        assert abs(out["distance_m_1"][i] - d[0]) < 1e-3


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, city):
    stores, pings = city
    stores.to_csv(tmp_path / "stores.csv", index=False)
    pings.to_csv(tmp_path / "pings.csv", index=False)
    base = ("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "-o", tmp_path / "out.csv")
    for extra in ((), ("--no-progress",)):  # stderr is a pipe here: no bar, just the summary
        res = ok(cli(*base, *extra))
        assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "nearest: 300 rows" in res.stderr
    # --progress without tqdm: a note, no bar, still done
    (tmp_path / "hide" / "tqdm").mkdir(parents=True)
    (tmp_path / "hide" / "tqdm" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    res = ok(cli(*base, "--progress", env_path=tmp_path / "hide"))
    assert "no progress bar without tqdm" in res.stderr and "300 rows" in res.stderr


# ---------------------------------------------------------------- rank
def sample_store_frame():
    s = og.sample_stores()
    return pd.DataFrame({c: s[c] for c in ("store_id", "lat", "lon", "merchant_id", "category", "rating")})


def test_rank_matches_the_in_process_scorer(tmp_path, rng):
    stores = sample_store_frame()
    stores.to_csv(tmp_path / "stores.csv", index=False)
    now_iso = "2026-03-01T12:00:00+08:00"
    now = datetime.fromisoformat(now_iso).timestamp()
    offers = [
        og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
        og.Offer("tea-50", "m-teagarden", category="tea", spend_amount=50.0, off_amount=10.0),
        og.Offer("old", "m-freshmart", discount_rate=0.5, valid_until=now - 3600),  # expired: never ranked
        og.Offer("two-shops", "m-lucky", discount_rate=0.9, store_ids=("lucky-01", "lucky-02"), max_distance_m=3000.0),
    ]
    records = []
    for o in offers:
        rec = {f: getattr(o, f) for f in ("offer_id", "merchant_id", "category", "discount_rate", "spend_amount")}
        rec.update(off_amount=o.off_amount, max_distance_m=o.max_distance_m)
        rec["valid_until"] = (
            None if o.valid_until is None else datetime.fromtimestamp(o.valid_until, SHANGHAI).isoformat()
        )
        rec["store_ids"] = None if o.store_ids is None else list(o.store_ids)
        records.append(rec)
    (tmp_path / "offers.json").write_text(json.dumps(records))
    csv_records = [{**r, "store_ids": None if r["store_ids"] is None else ";".join(r["store_ids"])} for r in records]
    pd.DataFrame(csv_records).to_csv(tmp_path / "offers.csv", index=False)
    n = 40
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "lat": 31.23 + rng.normal(0, 0.02, n),
            "lon": 121.47 + rng.normal(0, 0.02, n),
        }
    )
    users.to_csv(tmp_path / "users.csv", index=False)
    events = [
        og.Event("redeem", "u1", now - 86400, offer_id="latte", amount=30.0),
        og.Event("visit", "u1", now - 40000, offer_id="latte"),
        og.Event("redeem", "u2", now - 7200, offer_id="tea-50", amount=55.0),
        og.Event("open", "u3", now - 600, offer_id="two-shops"),
    ]
    pd.DataFrame(
        [{"kind": e.kind, "user_id": e.user_id, "ts": e.ts, "offer_id": e.offer_id, "amount": e.amount} for e in events]
    ).to_csv(tmp_path / "events.csv", index=False)

    index = og.StoreIndex(
        og.StoreSet.from_columns(
            stores["store_id"],
            stores["lat"],
            stores["lon"],
            merchant_id=stores["merchant_id"],
            category=stores["category"],
        )
    )
    scorer = og.OfferScorer(index, og.OfferSet(offers))
    cold = scorer.rank_many(users["user_id"], users["lat"], users["lon"], now=now, k=3)
    for e in events:
        scorer.record(e)
    want = scorer.rank_many(users["user_id"], users["lat"], users["lon"], now=now, k=3)
    assert not np.allclose(want["score"], cold["score"])  # the events matter
    assert "old" not in set(want["offer_id"])

    for offers_file, out_name, epoch in (("offers.json", "ranked.csv", False), ("offers.csv", "ranked.json", True)):
        res = ok(
            cli(
                "rank",
                tmp_path / "stores.csv",
                tmp_path / offers_file,
                tmp_path / "users.csv",
                *("-k", 3, "--events", tmp_path / "events.csv", "--now", repr(now) if epoch else now_iso),
                *("-o", tmp_path / out_name),
            )
        )
        if out_name.endswith(".csv"):
            got = read_csv(tmp_path / out_name)
        else:
            got = pd.DataFrame(json.loads((tmp_path / out_name).read_text()))
        assert list(got.columns) == ["query", "user_id", "rank", "offer_id", "store_id", "score", "distance_m"]
        for col in ("query", "user_id", "rank", "offer_id", "store_id"):
            assert got[col].tolist() == want[col].tolist(), col
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-12)
        np.testing.assert_allclose(got["distance_m"], want["distance_m"], rtol=1e-12)
        assert f"40 users -> {len(want)} rows" in res.stderr


# ---------------------------------------------------------------- replay
@pytest.fixture
def replay_world(tmp_path):
    """A simulated day (files for the CLI) and its in-process inputs."""
    from o2o_geo import simulate

    world = simulate.World.generate(seed=3, n_users=150, n_stores=120, n_offers=20, n_merchants=8)
    log = world.pings(n_days=1, pings_per_user_per_day=12, seed=4)
    stores = pd.DataFrame({c: world.stores[c] for c in world.stores.columns})
    stores.to_csv(tmp_path / "stores.csv", index=False)
    offers = pd.DataFrame(
        [
            {
                "offer_id": o.offer_id,
                "merchant_id": o.merchant_id,
                "category": o.category,
                "discount_rate": o.discount_rate,
            }
            for o in world.offers
        ]
    )
    assert offers["discount_rate"].notna().all()
    offers.to_csv(tmp_path / "offers.csv", index=False)
    pings = pd.DataFrame(
        {
            "user_id": log.user,
            "lat": log.lat,
            "lon": log.lon,
            "ts": np.round(log.ts).astype(np.int64),
            "accuracy_m": log.accuracy_m,
            "event_id": [f"g{i}" for i in range(len(log))],
        }
    )
    pings = pings.iloc[np.random.default_rng(5).permutation(len(pings))].reset_index(drop=True)  # the CLI sorts by ts
    return world, stores, pings


def per_ping_replay(world, pings, policy, events):
    """The oracle: one on_location call per ping in (stable) ts order, each event after the pings at or before it."""
    engine = og.Dispatcher(world.index, world.offers, policy=policy)
    ordered = pings.sort_values("ts", kind="stable")
    events = sorted(events, key=lambda e: e.ts)
    decisions, j = [], 0
    for row in ordered.itertuples():
        while j < len(events) and events[j].ts < row.ts:
            engine.record(events[j])
            j += 1
        decisions += engine.on_location(
            int(row.user_id), float(row.lat), float(row.lon), float(row.ts), row.event_id, float(row.accuracy_m)
        )
    for e in events[j:]:
        engine.record(e)
    return engine, decisions


def test_replay_matches_per_ping_calls_with_events_policy_and_report(tmp_path, replay_world):
    world, stores, pings = replay_world
    base = dict(max_per_day=2, holdout_fraction=0.2, quiet_hours=(22, 8), triggers=("enter", "dwell", "nearby"))
    _, first = per_ping_replay(world, pings, og.PushPolicy(**base), [])
    top_offer = pd.Series([d.offer_id for d in first if not d.holdout]).value_counts().index[0]
    assert sum(d.offer_id == top_offer and not d.holdout for d in first) > 3  # so the budget below binds
    policy = og.PushPolicy(**base, offer_budgets={top_offer: og.Budget(max_pushes=3)})
    (tmp_path / "policy.json").write_text(
        json.dumps(
            {
                "max_per_day": 2,
                "holdout_fraction": 0.2,
                "quiet_hours": [22, 8],
                "triggers": ["enter", "dwell", "nearby"],
                "offer_budgets": {top_offer: {"max_pushes": 3}},
            }
        )
    )
    # outcome events: an open naming the first push, redemptions and a dismissal by offer
    p0 = first[0]
    events = [og.Event("open", p0.user_id, p0.ts + 30, push_id=p0.push_id, event_id="e0")]
    for i, d in enumerate(first[1:13]):
        kind = "dismiss" if i % 4 == 3 else "redeem"
        events.append(
            og.Event(
                kind,
                d.user_id,
                d.ts + (120 if kind == "dismiss" else 900),
                offer_id=None if kind == "dismiss" else d.offer_id,
                amount=None if kind == "dismiss" else 20.0 + i,
                event_id=f"e{i + 1}",
            )
        )
    pd.DataFrame(
        [
            {
                "kind": e.kind,
                "user_id": e.user_id,
                "ts": e.ts,
                "offer_id": e.offer_id,
                "push_id": e.push_id,
                "amount": e.amount,
                "event_id": e.event_id,
            }
            for e in events
        ]
    ).to_csv(tmp_path / "events.csv", index=False)
    # times as ISO-8601 with an offset in the ping file
    iso = pings.assign(ts=[datetime.fromtimestamp(t, SHANGHAI).isoformat() for t in pings["ts"]])
    iso.to_csv(tmp_path / "pings.csv", index=False)

    engine, want = per_ping_replay(world, pings, policy, events)
    assert sum(d.offer_id == top_offer and not d.holdout for d in want) == 3
    assert want != first and len(want) > 50

    args = ("replay", tmp_path / "stores.csv", tmp_path / "offers.csv", tmp_path / "pings.csv")
    args += ("--policy", tmp_path / "policy.json", "--events", tmp_path / "events.csv", "--by", "merchant")
    res = ok(cli(*args, "--explain", "-o", tmp_path / "decisions.csv", "--report", tmp_path / "report.csv"))
    got = read_csv(tmp_path / "decisions.csv")
    assert list(got.columns) == [*list(first[0].to_dict())[:-1], "explanation"]
    want_rows = [d.to_dict() for d in want]
    for col in ("push_id", "user_id", "offer_id", "store_id", "merchant_id", "trigger", "holdout", "ts"):
        assert got[col].tolist() == [r[col] for r in want_rows], col
    np.testing.assert_allclose(got["score"], [d.score for d in want], rtol=1e-9)
    np.testing.assert_allclose(got["distance_m"], [d.distance_m for d in want], rtol=1e-9)
    for text, d in zip(got["explanation"], want, strict=True):
        terms = json.loads(text)
        assert terms.keys() == d.explanation.keys()
        np.testing.assert_allclose(list(terms.values()), [d.explanation[k] for k in terms], rtol=1e-9, atol=1e-12)
    report = read_csv(tmp_path / "report.csv")
    pd.testing.assert_frame_equal(report, engine.report(by="merchant"), check_dtype=False, rtol=1e-9)
    assert f"{len(pings):,} pings, {len(events)} events -> {len(want)} decisions" in res.stderr
    # without --report the report is printed
    res = ok(cli(*args, "-o", tmp_path / "decisions.json"))
    assert "merchant" in res.stdout.splitlines()[0] and "uplift" in res.stdout.splitlines()[0]
    assert (
        pd.DataFrame(json.loads((tmp_path / "decisions.json").read_text()))["push_id"].tolist()
        == got["push_id"].tolist()
    )


def test_replay_with_a_sqlite_state_counts_a_rerun_once(tmp_path, replay_world):
    world, stores, pings = replay_world
    pings.to_csv(tmp_path / "pings.csv", index=False)
    args = ("replay", tmp_path / "stores.csv", tmp_path / "offers.csv", tmp_path / "pings.csv")
    args += ("--state", tmp_path / "state.db", "--by", "all")
    ok(cli(*args, "-o", tmp_path / "d1.csv", "--report", tmp_path / "r1.csv"))
    ok(cli(*args, "-o", tmp_path / "d2.csv", "--report", tmp_path / "r2.csv"))  # the same pings (event ids) again
    d1 = read_csv(tmp_path / "d1.csv")
    assert len(d1) > 20
    pd.testing.assert_frame_equal(read_csv(tmp_path / "d2.csv"), d1)  # redelivered pings: the stored decisions
    pd.testing.assert_frame_equal(read_csv(tmp_path / "r2.csv"), read_csv(tmp_path / "r1.csv"))
    state = og.SQLiteState(tmp_path / "state.db")
    assert sorted(p["push_id"] for p in state.pushes()) == sorted(d1["push_id"])
    state.close()


def test_a_failed_replay_leaves_the_state_file_as_it_was(tmp_path, replay_world):
    """A bad event after some pings: exit 1, no outputs, the --state file byte-identical; a fixed rerun works."""
    world, stores, pings = replay_world
    pings = pings.sort_values("ts", kind="stable").reset_index(drop=True)  # a replay runs in time order
    pings.to_csv(tmp_path / "pings.csv", index=False)
    first, rest = pings.iloc[: len(pings) // 2], pings.iloc[len(pings) // 2 :]
    first.to_csv(tmp_path / "first.csv", index=False)
    rest.to_csv(tmp_path / "rest.csv", index=False)
    base = ("replay", tmp_path / "stores.csv", tmp_path / "offers.csv")
    state = ("--state", tmp_path / "state.db")
    ok(cli(*base, tmp_path / "first.csv", *state, "-o", tmp_path / "d0.csv"))
    before = (tmp_path / "state.db").read_bytes()
    late = float(rest["ts"].max()) + 1
    user = rest["user_id"].iloc[-1]
    pd.DataFrame([{"kind": "open", "user_id": user, "ts": late, "push_id": "no-such-push"}]).to_csv(
        tmp_path / "bad_events.csv", index=False
    )
    res = cli(*base, tmp_path / "rest.csv", *state, "--events", tmp_path / "bad_events.csv", "-o", tmp_path / "d1.csv")
    assert res.returncode == 1 and "no-such-push" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "state.db").read_bytes() == before
    assert not (tmp_path / "d1.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".state.db")) == []  # no work copy left
    # the same pings without the bad event: the decisions a single replay of everything would make
    ok(cli(*base, tmp_path / "rest.csv", *state, "-o", tmp_path / "d1.csv"))
    ok(cli(*base, tmp_path / "pings.csv", "-o", tmp_path / "all.csv"))
    both = pd.concat([read_csv(tmp_path / "d0.csv"), read_csv(tmp_path / "d1.csv")], ignore_index=True)
    pd.testing.assert_frame_equal(both, read_csv(tmp_path / "all.csv"))


# ---------------------------------------------------------------- mistakes: one line, the right status
@pytest.fixture
def files(tmp_path):
    """Small valid files, and broken variants, by name."""
    stores = sample_store_frame()
    stores.to_csv(tmp_path / "stores.csv", index=False)
    (tmp_path / "stores.txt").write_text("store_id,lat,lon\n")
    pd.concat([stores, stores.iloc[[3]]]).to_csv(tmp_path / "dup_stores.csv", index=False)
    stores.drop(columns="merchant_id").to_csv(tmp_path / "no_merchant.csv", index=False)
    pings = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4],
            "lat": [31.23, 31.24, 31.25, 31.22],
            "lon": [121.47, 121.48, 121.46, 121.47],
            "ts": [1767258000, 1767258060, 1767258120, 1767258180],
        }
    )
    pings.to_csv(tmp_path / "pings.csv", index=False)
    pings.assign(lat=[31.23, 31.24, 91.5, 31.22]).to_csv(tmp_path / "bad_lat.csv", index=False)
    pings.assign(lon=["121.47", "east", "121.46", "121.47"]).to_csv(tmp_path / "text_lon.csv", index=False)
    pings.assign(ts=["2026-01-01T09:00:00+08:00", "2026-01-01T09:01:00", "x", "y"]).to_csv(
        tmp_path / "naive_ts.csv", index=False
    )
    pd.DataFrame([{"offer_id": "latte", "merchant_id": "m-lucky", "discount_rate": 0.8}]).to_csv(
        tmp_path / "offers.csv", index=False
    )
    (tmp_path / "bad_offers.json").write_text(json.dumps([{"offer_id": "a", "merchant_id": "m-lucky", "colour": 1}]))
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    (tmp_path / "polygon.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
                    }
                ],
            }
        )
    )
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad_policy.json").write_text('{"max_per_day": 2,')
    (tmp_path / "unknown_policy.json").write_text('{"max_per_dya": 2}')
    (tmp_path / "negative_policy.json").write_text('{"max_per_day": -1}')
    (tmp_path / "budget_policy.json").write_text('{"offer_budgets": {"nosuch": {"max_pushes": 1}}}')
    pd.DataFrame([{"kind": "redeem", "user_id": 1, "ts": 1767259000, "push_id": "p99"}]).to_csv(
        tmp_path / "bad_events.csv", index=False
    )
    pd.DataFrame([{"kind": "redeem", "user_id": 1, "ts": 1767259000, "colour": 1}]).to_csv(
        tmp_path / "odd_events.csv", index=False
    )
    (tmp_path / "odd_events.json").write_text(  # a field only the second record has
        json.dumps(
            [{"kind": "open", "user_id": 1, "ts": 1767259000}, {"kind": "open", "user_id": 2, "ts": 1, "colour": 1}]
        )
    )
    return tmp_path


ERROR_CASES = [
    # (args with {name} for a file of the fixture, exit status, fragments of the message)
    ("nearest {nosuch.csv} {pings.csv}", 2, ["no such file"]),
    ("nearest {stores.txt} {pings.csv}", 2, ["unknown file extension '.txt'"]),
    ("nearest {stores.csv} {pings.csv} -o {out.xlsx}", 2, ["unknown file extension '.xlsx'"]),
    ("nearest {stores.csv} {pings.csv} -o {nodir/out.csv}", 2, ["does not exist"]),
    ("nearest {stores.csv} {pings.csv} -k 0", 2, ["-k", "at least 1"]),
    ("nearest {stores.csv} {pings.csv} --max-distance-m -5", 2, ["--max-distance-m"]),
    ("nearest {stores.csv} {pings.csv} --where category", 2, ["COLUMN=VALUE"]),
    ("nearest {stores.csv} {pings.csv} --where colour=red", 1, ["--where names column 'colour'"]),
    ("nearest {stores.csv} {pings.csv} --lat latitude", 1, ["no column 'latitude'", "--lat"]),
    ("nearest {stores.csv} {bad_lat.csv}", 1, ["bad_lat.csv line 4", "91.5", "outside [-90, 90]"]),
    ("nearest {stores.csv} {text_lon.csv}", 1, ["text_lon.csv line 3", "'east'", "not a number"]),
    ("nearest {stores.csv} {broken.geojson}", 1, ["broken.geojson: not valid JSON"]),
    ("nearest {stores.csv} {polygon.geojson}", 1, ["'Polygon'", "only Points"]),
    ("nearest {stores.csv} {empty.csv}", 1, ["empty.csv is empty"]),
    ("nearest {dup_stores.csv} {pings.csv}", 1, ["dup_stores.csv", "appears twice"]),
    ("rank {stores.csv} {bad_offers.json} {pings.csv}", 1, ["unknown fields ['colour']"]),
    ("rank {no_merchant.csv} {offers.csv} {pings.csv}", 1, ["no_merchant.csv", "merchant_id"]),
    ("replay {no_merchant.csv} {offers.csv} {pings.csv} -o {d.csv}", 1, ["no_merchant.csv", "merchant_id"]),
    ("rank {stores.csv} {offers.csv} {pings.csv} --now 2026-01-01T09:00", 2, ["--now", "no UTC offset"]),
    ("rank {stores.csv} {offers.csv} {pings.csv} --events {odd_events.csv}", 1, ["line 2: unknown field 'colour'"]),
    ("rank {stores.csv} {offers.csv} {pings.csv} --events {odd_events.json}", 1, ["row 1: unknown field 'colour'"]),
    ("replay {stores.csv} {offers.csv} {pings.csv}", 2, ["-o/--output"]),
    ("replay {stores.csv} {offers.csv} {naive_ts.csv} -o {d.csv}", 1, ["naive_ts.csv line 3", "no UTC offset"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --policy {bad_policy.json}", 1, ["not valid JSON"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --policy {unknown_policy.json}", 1, ["'max_per_dya'"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --policy {negative_policy.json}", 1, ["max_per_day"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --policy {budget_policy.json}", 1, ["'nosuch'"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --events {bad_events.csv}", 1, ["'p99'", "line 2"]),
    ("replay {stores.csv} {offers.csv} {pings.csv} -o {d.csv} --state {nodir/s.db}", 2, ["--state"]),
]


@pytest.mark.parametrize(("template", "status", "fragments"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_mistakes_are_one_line_with_the_right_status(files, template, status, fragments):
    args = [re.sub(r"^\{(.+)\}$", lambda m: str(files / m.group(1)), word) for word in template.split()]
    res = cli(*args)
    one_line_error(res, status, *fragments)
    assert not (files / "d.csv").exists()


def test_missing_optional_packages_are_one_line_usage_errors(files, city):
    need_pyarrow()
    stores, pings = city
    pings.to_parquet(files / "pings.parquet")
    hide = files / "hide"
    for name in ("pyarrow", "pandas"):
        (hide / name).mkdir(parents=True)
        (hide / name / "__init__.py").write_text(f"raise ImportError('{name} is hidden by the test')\n")
    only_pyarrow = files / "hide_pyarrow"
    (only_pyarrow / "pyarrow").mkdir(parents=True)
    (only_pyarrow / "pyarrow" / "__init__.py").write_text("raise ImportError('pyarrow is hidden by the test')\n")
    res = cli("nearest", files / "stores.csv", files / "pings.parquet", env_path=only_pyarrow)
    one_line_error(res, 2, "pings.parquet", "pip install pyarrow")
    res = cli("nearest", files / "stores.csv", files / "pings.csv", "-o", files / "o.parquet", env_path=only_pyarrow)
    one_line_error(res, 2, "o.parquet", "pip install pyarrow")
    ok(cli("nearest", files / "stores.csv", files / "pings.csv", "-o", files / "o.csv", env_path=only_pyarrow))
    res = cli("nearest", files / "stores.csv", files / "pings.csv", env_path=hide)
    one_line_error(res, 2, "needs pandas", "o2o_geo[cli]")
    assert "o2o_geo demo" in ok(cli("demo", env_path=hide)).stdout  # the demo needs neither


def test_a_failed_run_leaves_no_partial_output(tmp_path, city):
    stores, pings = city
    stores.to_csv(tmp_path / "stores.csv", index=False)
    pings.loc[250, "lat"] = -95.0  # in the third chunk of 100
    pings.to_csv(tmp_path / "pings.csv", index=False)
    res = cli("nearest", tmp_path / "stores.csv", tmp_path / "pings.csv", "--chunk-size", 100, "-o", tmp_path / "o.csv")
    one_line_error(res, 1, "pings.csv line 252", "-95.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pings.csv", "stores.csv"]
