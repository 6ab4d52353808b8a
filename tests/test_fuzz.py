"""Odd values at every public entry point: only o2o_geo.errors types escape, and a failed call changes nothing.

Each entry point is called with valid arguments except one, which hypothesis
draws from odd values users actually pass (None, bools, NaN, inf, 1e308,
2**70, bytes, lists, dicts, empty and 2-D arrays, numpy scalars, naive and
aware datetimes, objects, ...).  The call may succeed (an odd value can be
valid, e.g. a str id) or raise an :class:`o2o_geo.errors.O2OGeoError`; any
other exception fails the test with the call that raised it.  Where the
entry point writes (index updates, dispatcher state, histories), the
stored state is compared before and after every failed call: byte for byte
for a SQLite file, as a deep copy for MemoryState.

Run with ``-s`` to print how many entry points and cases were fuzzed.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import pickle
import sqlite3
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import o2o_geo as og
import o2o_geo.dask
import o2o_geo.viz
from o2o_geo import simulate

T0 = 1_767_258_000.0
UTC = dt.UTC
AT = (31.2325, 121.4801)  # inside lucky-09's fence in the sample stores


class _Thing:
    """An object of no type the library knows."""


ODD_FIXED: list[Any] = [
    None,
    True,
    False,
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    2**70,
    -(2**70),
    2**63,
    2**31 - 1,
    -1,
    0,
    0.5,
    b"x",
    b"",
    "",
    "x",
    " ",
    "\x00",
    "2026-01-01",
    "2026-01-01T09:00:00",
    [],
    [1, 2],
    [None],
    ["a"],
    {},
    {"a": 1},
    set(),
    (),
    (1,),
    np.array([]),
    np.zeros((2, 2)),
    np.array(["a"]),
    np.array([np.nan]),
    np.float64("nan"),
    np.int64(7),
    np.float32(1.5),
    np.bool_(True),
    np.datetime64("NaT"),
    np.datetime64("2026-01-01"),
    dt.datetime(2026, 1, 1),
    dt.datetime(2026, 1, 1, tzinfo=UTC),
    dt.date(2026, 1, 1),
    dt.timedelta(seconds=5),
    complex(1, 2),
    _Thing(),
    object,
    print,
    range(3),
    slice(1),
    Ellipsis,
]
ODD = st.one_of(
    st.sampled_from(ODD_FIXED),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.lists(st.one_of(st.floats(), st.integers(), st.none(), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


# ---------------------------------------------------------------- the world the calls run in
def _world() -> dict[str, Any]:
    stores = og.sample_stores()
    index = og.StoreIndex(stores)
    offers = og.OfferSet(
        [
            og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
            og.Offer("bun", "m-lucky", category="bakery", spend_amount=30, off_amount=5),
        ]
    )
    scorer = og.OfferScorer(index, offers)
    return {"stores": stores, "index": index, "offers": offers, "scorer": scorer}


W = _world()


@dataclass
class Entry:
    """One entry point: ``call(**kwargs)`` with valid ``kwargs``; ``snapshot()`` of what it may write."""

    name: str
    call: Callable[..., Any]
    kwargs: dict[str, Any]
    snapshot: Callable[[], Any] | None = None
    cases: int = 60
    setup: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None
    counts: Counter[str] = field(default_factory=Counter)


def _memory_snapshot(state: og.MemoryState) -> Any:
    return copy.deepcopy({k: v for k, v in vars(state).items() if k != "_lock"})


def _sqlite_snapshot(state: og.SQLiteState) -> Any:
    con = sqlite3.connect(state.path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def _engine(state: og.DispatchState) -> og.Dispatcher:
    engine = og.Dispatcher(
        W["index"], W["offers"], policy=og.PushPolicy(holdout_fraction=0.0, quiet_hours=None), state=state
    )
    (d,) = engine.on_location("u1", *AT, T0, event_id="first")
    engine.record(og.Event("open", "u1", T0 + 60, push_id=d.push_id))
    return engine


def _entries(tmp: Any) -> list[Entry]:
    index, offers, scorer, stores = W["index"], W["offers"], W["scorer"], W["stores"]
    live = og.StoreIndex(og.sample_stores())  # one that add/remove change
    mem = _engine(og.MemoryState())
    sql = _engine(og.SQLiteState(tmp / "fuzz.db"))
    history = og.UserHistory.from_events([og.Event("redeem", "u1", T0, merchant_id="m-lucky", category="coffee")])
    fences = og.Geofences(index)
    saved = tmp / "index.o2oidx"
    index.save(saved)

    def engine_snapshot(engine: og.Dispatcher) -> Callable[[], Any]:
        st_ = engine.state
        take = _memory_snapshot if isinstance(st_, og.MemoryState) else _sqlite_snapshot
        return lambda: (take(st_), dict(engine.stats), pickle.dumps(engine.scorer.history))

    def index_snapshot() -> Any:
        return live.version, len(live), sorted(map(str, live.stores.store_id))

    record = {"store_id": "new-1", "lat": 31.2, "lon": 121.4, "merchant_id": "m-new"}
    out = [
        # ---- geodesy and stores
        Entry(
            "geodesic_distance_m", og.geodesic_distance_m, {"lat1": 31.0, "lon1": 121.0, "lat2": 31.1, "lon2": 121.1}
        ),
        Entry("latlon_to_ecef_m", og.latlon_to_ecef_m, {"lat": 31.0, "lon": 121.0}),
        Entry("sample_stores", og.sample_stores, {"seed": 3}),
        Entry("StoreSet.from_records", og.StoreSet.from_records, {"records": [record], "repair_service_areas": False}),
        Entry(
            "StoreSet.from_columns",
            og.StoreSet.from_columns,
            {"store_id": ["a"], "lat": [31.0], "lon": [121.0], "repair_service_areas": False},
        ),
        Entry("StoreSet.from_geojson", og.StoreSet.from_geojson, {"obj": stores.to_geojson()}),
        Entry("StoreSet.from_csv", og.StoreSet.from_csv, {"path": tmp / "missing.csv", "store_id": "store_id"}),
        Entry(
            "StoreSet.from_dataframe",
            og.StoreSet.from_dataframe,
            {"df": stores.to_dataframe(), "store_id": "store_id", "lat": "lat", "lon": "lon"},
        ),
        Entry("StoreSet.position_of", stores.position_of, {"store_ids": ["lucky-09"]}),
        # ---- the index
        Entry("StoreIndex", og.StoreIndex, {"stores": stores, "workers": 1, "compact_fraction": 0.05}),
        Entry("StoreIndex.from_records", og.StoreIndex.from_records, {"records": [record]}),
        Entry("StoreIndex.load", og.StoreIndex.load, {"path": saved}),
        Entry("StoreIndex.save", index.save, {"path": tmp / "again.o2oidx"}),
        Entry(
            "StoreIndex.nearest",
            index.nearest,
            {"lat": 31.2, "lon": 121.4, "k": 3, "max_distance_m": 5000.0, "where": {"category": "coffee"}},
        ),
        Entry("StoreIndex.within", index.within, {"lat": 31.2, "lon": 121.4, "radius_m": 2000.0, "where": None}),
        Entry("StoreIndex.pairs_within", index.pairs_within, {"lat": [31.2], "lon": [121.4], "radius_m": 2000.0}),
        Entry("StoreIndex.serving", index.serving, {"lat": 31.2, "lon": 121.4}),
        Entry("StoreIndex.store_radii", index.store_radii, {"radius_m": 100.0}),
        Entry(
            "StoreIndex.join_nearest",
            index.join_nearest,
            {"df": _frame(), "k": 1, "lat": "lat", "lon": "lon", "max_distance_m": None, "distance_col": "distance_m"},
        ),
        Entry("StoreIndex.join_within", index.join_within, {"df": _frame(), "radius_m": 500.0, "columns": None}),
        Entry("StoreIndex.join_serving", index.join_serving, {"df": _frame(), "columns": ["category"]}),
        Entry(
            "StoreIndex.add",
            live.add,
            {"records": [record]},
            snapshot=index_snapshot,
            setup=lambda: "new-1" in live and live.remove(["new-1"]),
        ),
        Entry(
            "StoreIndex.remove",
            live.remove,
            {"store_ids": ["lucky-09"]},
            snapshot=index_snapshot,
            setup=lambda: "lucky-09" in live or live.add([{**record, "store_id": "lucky-09"}]),
        ),
        Entry("Geofences", og.Geofences, {"index": index, "radius_m": 100.0, "buffer_m": 30.0, "nearby_m": 0.0}),
        Entry("Geofences.hits_at", fences.hits_at, {"lat": AT[0], "lon": AT[1]}),
        Entry("Geofences.hits", fences.hits, {"lat": [AT[0]], "lon": [AT[1]]}),
        # ---- offers, events, history, scoring
        Entry(
            "Offer",
            og.Offer,
            {
                "offer_id": "o",
                "merchant_id": "m",
                "category": "c",
                "discount_rate": 0.8,
                "valid_from": T0,
                "valid_until": T0 + 86400,
                "store_ids": None,
                "max_distance_m": None,
                "audience": "all",
            },
        ),
        Entry("OfferSet", og.OfferSet, {"offers": list(offers)}),
        Entry(
            "OfferSet.from_records",
            og.OfferSet.from_records,
            {"records": [{"offer_id": "o", "merchant_id": "m", "discount_rate": 0.9}]},
        ),
        Entry("OfferSet.valid_at", offers.valid_at, {"now": T0}),
        Entry("OfferSet.position_of", offers.position_of, {"offer_ids": [offers.offer_id[0]]}),
        Entry("OfferSet.from_dataframe", og.OfferSet.from_dataframe, {"df": _frame(offers=True)}),
        Entry("OfferScorer.record", og.OfferScorer(index, offers).record, {"event": og.Event("visit", "u", T0)}),
        Entry(
            "Event",
            og.Event,
            {
                "kind": "redeem",
                "user_id": "u",
                "ts": T0,
                "offer_id": "latte",
                "amount": 3.0,
                "discount_depth": 0.2,
                "distance_m": 10.0,
                "event_id": "e",
            },
        ),
        Entry(
            "Event.from_record",
            og.Event.from_record,
            {"record": {"kind": "visit", "user_id": 7, "ts": T0, "store_id": "s1"}, "where": "events.csv line 2"},
        ),
        Entry(
            "UserHistory",
            og.UserHistory,
            {
                "half_life_days": 30.0,
                "kind_weights": None,
                "prior_pushes": 50.0,
                "prior_rate": 0.05,
                "max_places_per_user": 128,
                "max_idle_days": 365.0,
            },
        ),
        Entry("UserHistory.from_events", og.UserHistory.from_events, {"events": [og.Event("visit", "u", T0)]}),
        Entry(
            "UserHistory.add",
            history.add,
            {"event": og.Event("visit", "u2", T0)},
            snapshot=lambda: pickle.dumps(history),
        ),
        Entry(
            "UserHistory.category_affinity",
            history.category_affinity,
            {"user_id": "u1", "category": "coffee", "now": T0},
        ),
        Entry("UserHistory.activity", history.activity, {"user_id": "u1", "now": T0}),
        Entry("UserHistory.usual_distance_m", history.usual_distance_m, {"user_id": "u1", "default_m": 1000.0}),
        Entry("UserHistory.n_events", history.n_events, {"user_id": "u1", "kind": "redeem"}),
        Entry(
            "UserHistory.forget_user",
            history.forget_user,
            {"user_id": "nobody"},
            snapshot=lambda: pickle.dumps(history),
        ),
        Entry(
            "UserHistory.set_tier",
            history.set_tier,
            {"user_id": "u1", "tier": "gold"},
            snapshot=lambda: pickle.dumps(history),
        ),
        Entry("UserHistory.tier", history.tier, {"user_id": "u1"}),
        Entry(
            "OfferScorer",
            og.OfferScorer,
            {
                "index": index,
                "offers": offers,
                "history": None,
                "decay": "power",
                "distance_scale_m": 1000.0,
                "search_radius_m": 5000.0,
                "weights": None,
                "max_per_merchant": None,
            },
        ),
        Entry("OfferScorer.rank", scorer.rank, {"user_id": "u1", "lat": 31.2, "lon": 121.4, "now": T0, "k": 5}),
        Entry(
            "OfferScorer.rank_many",
            scorer.rank_many,
            {"user_ids": ["u1"], "lats": [31.2], "lons": [121.4], "now": T0, "k": 5, "as_frame": False},
        ),
        Entry(
            "OfferScorer.score_candidates",
            scorer.score_candidates,
            {"user_id": ["u1"], "position": [0], "distance_m": [10.0], "now": T0},
        ),
        Entry(
            "OfferScorer.fit",
            og.OfferScorer(index, offers).fit,
            {
                "events": [og.Event("redeem", "u1", T0, store_id="lucky-09", offer_id="latte")],
                "target": "redeem",
                "window_days": 7.0,
                "l2": 1.0,
                "n_negatives": 20,
                "random_state": 0,
            },
            cases=25,
        ),
        # ---- policy and dispatch
        Entry("Budget", og.Budget, {"max_pushes": 10, "max_cost": 5.0}),
        Entry(
            "PushPolicy.from_dict",
            og.PushPolicy.from_dict,
            {
                "data": {"triggers": ["enter"], "offer_budgets": {"latte": {"max_pushes": 3}}, "offer_cost": {}},
                "offer_ids": ["latte", "cake"],
                "merchant_ids": None,
                "store_ids": ["lucky-01"],
            },
        ),
        Entry(
            "PushPolicy", og.PushPolicy, {name: getattr(og.PushPolicy(), name) for name in _policy_fields()}, cases=25
        ),  # every field, a few values each
        Entry(
            "MemoryState", og.MemoryState, {"idempotency_ttl_s": 3600.0, "user_ttl_s": 86400.0, "retention_days": None}
        ),
        Entry(
            "SQLiteState",
            og.SQLiteState,
            {
                "path": tmp / "other.db",
                "timeout_s": 1.0,
                "synchronous": "NORMAL",
                "retention_days": 30,
                "checkpoint_pages": 1000,
            },
        ),
        Entry(
            "RedisState",
            og.RedisState,
            {
                "url_or_client": "redis://127.0.0.1:1/0",
                "namespace": "n",
                "idempotency_ttl_s": 60.0,
                "socket_timeout_s": 0.2,
            },
            cases=20,
        ),
        Entry(
            "Dispatcher",
            og.Dispatcher,
            {
                "index": index,
                "offers": offers,
                "scorer": None,
                "policy": None,
                "state": None,
                "deliver": None,
                "feedback_interval_s": 60.0,
            },
        ),
    ]
    for engine, kind in ((mem, "Memory"), (sql, "SQLite")):
        snap = engine_snapshot(engine)
        out += [
            Entry(
                f"Dispatcher.on_location[{kind}]",
                engine.on_location,
                {
                    "user_id": "u2",
                    "lat": AT[0],
                    "lon": AT[1],
                    "ts": T0 + 100,
                    "event_id": "ping-x",
                    "accuracy_m": 5.0,
                    "tz": None,
                },
                snapshot=snap,
                cases=30,
            ),
            Entry(
                f"Dispatcher.explain_ping[{kind}]",
                engine.explain_ping,
                {"user_id": "u2", "lat": AT[0], "lon": AT[1], "ts": T0 + 100, "accuracy_m": 5.0, "tz": None},
                snapshot=snap,
                cases=30,
            ),
            Entry(
                f"Dispatcher.on_locations[{kind}]",
                engine.on_locations,
                {
                    "user_id": ["u3"],
                    "lat": [AT[0]],
                    "lon": [AT[1]],
                    "ts": [T0 + 100],
                    "accuracy_m": [5.0],
                    "event_id": ["ping-y"],
                },
                snapshot=snap,
                cases=30,
            ),
            Entry(
                f"Dispatcher.record[{kind}]",
                engine.record,
                {"event": og.Event("visit", "u1", T0 + 200)},
                snapshot=snap,
                cases=20,
            ),
            Entry(
                f"Event+record[{kind}]",
                lambda engine=engine, **kw: engine.record(og.Event(**kw)),
                {
                    "kind": "redeem",
                    "user_id": "u1",
                    "ts": T0 + 300,
                    "push_id": "p1",
                    "offer_id": "latte",
                    "store_id": "lucky-09",
                    "amount": 3.0,
                    "event_id": "ev-x",
                },
                snapshot=snap,
                cases=30,
            ),
            Entry(
                f"Dispatcher.report[{kind}]",
                engine.report,
                {"since": T0, "until": T0 + 86400, "by": "offer", "as_frame": False, "as_of": T0 + 86400},
            ),
            Entry(f"Dispatcher.forget_user[{kind}]", engine.forget_user, {"user_id": "nobody"}, snapshot=snap),
            Entry(
                f"Dispatcher.set_user[{kind}]",
                engine.set_user,
                {"user_id": "u1", "opt_in": True, "tier": "gold", "city": "Shanghai"},
                snapshot=snap,
            ),
            Entry(f"Dispatcher.user[{kind}]", engine.user, {"user_id": "u1"}),
        ]
    out += [
        # ---- dask and viz (the entry points' own checks; the work itself is tested elsewhere)
        Entry(
            "dask.nearest",
            o2o_geo.dask.nearest,
            {"df": _frame(), "index": index, "k": 1, "lat": "lat", "lon": "lon", "max_distance_m": None},
            cases=20,
        ),
        Entry("dask.serving", o2o_geo.dask.serving, {"df": _frame(), "index": index, "lat": "lat"}, cases=15),
        Entry(
            "viz.geodesic_ring_lonlat",
            o2o_geo.viz.geodesic_ring_lonlat,
            {"lat": 31.2, "lon": 121.4, "radius_m": 100.0, "n_points": 12},
        ),
        Entry(
            "viz.html_to_png",
            o2o_geo.viz.html_to_png,
            {
                "html_path": tmp / "missing.html",
                "png_path": tmp / "out.png",
                "width_px": 100,
                "height_px": 100,
                "timeout_s": 2.0,
            },
            cases=20,
        ),
        Entry(
            "simulate.World.generate",
            simulate.World.generate,
            {"seed": 1, "n_users": 20, "n_stores": 10, "n_offers": 3, "n_merchants": 2, "city_radius_m": 3000.0},
            cases=25,
        ),
        Entry(
            "dask.rank_offers",
            o2o_geo.dask.rank_offers,
            {"df": _frame(user=True), "scorer": scorer, "k": 2, "now": T0, "user": "user_id"},
            cases=15,
        ),
        Entry(
            "dask.replay",
            o2o_geo.dask.replay,
            {
                "df": _frame(user=True, ts=True),
                "index": index,
                "offers": offers,
                "policy": None,
                "scorer": None,
                "ts": "ts",
                "npartitions": 1,
                "explanation": "drop",
            },
            cases=10,
        ),
        Entry(
            "viz.plot_map",
            o2o_geo.viz.plot_map,
            {
                "stores": stores,
                "decisions": None,
                "pings": None,
                "fence_radius_m": 100.0,
                "colour_by": "merchant_id",
                "title": "t",
            },
            cases=10,
            cleanup=_close_figures,
        ),
        Entry(
            "viz.folium_map",
            o2o_geo.viz.folium_map,
            {
                "stores": stores,
                "decisions": None,
                "pings": None,
                "fence_radius_m": None,
                "colour_by": None,
                "store_marker": "pin",
                "tiles": None,
                "zoom_start": 12,
            },
            cases=10,
        ),
        Entry(
            "viz.plot_funnel",
            o2o_geo.viz.plot_funnel,
            {"report": mem.report(as_frame=False), "max_groups": 8, "title": None},
            cases=10,
            cleanup=_close_figures,
        ),
        Entry(
            "simulate.World.pings",
            WORLD.pings,
            {
                "n_days": 0.2,
                "pings_per_user_per_day": 4.0,
                "visit_share": 0.3,
                "seed": 1,
                "roam_m": 1000.0,
                "pings_per_visit": 3,
                "visit_gap_s": 240.0,
            },
            cases=20,
        ),
        Entry(
            "simulate.World.push_log",
            WORLD.push_log,
            {"n_days": 1, "pushes_per_user_per_day": 0.5, "seed": 1, "roam_m": 1000.0},
            cases=20,
        ),
    ]
    return out


WORLD = simulate.World.generate(seed=1, n_users=20, n_stores=10, n_offers=3, n_merchants=2)


def _frame(*, user: bool = False, ts: bool = False, offers: bool = False) -> Any:
    pd = pytest.importorskip("pandas")
    if offers:
        return pd.DataFrame({"offer_id": ["o1"], "merchant_id": ["m1"], "discount_rate": [0.8]})
    df = pd.DataFrame({"lat": [31.2, 31.25], "lon": [121.4, 121.45]})
    if user:
        df["user_id"] = ["u1", "u2"]
    if ts:
        df["ts"] = [T0, T0 + 60]
    return df


def _close_figures() -> None:
    import matplotlib.pyplot as plt

    plt.close("all")


def _policy_fields() -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(og.PushPolicy)]


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    here = os.getcwd()
    os.chdir(tmp)  # an odd str that is a valid file name is written here, not into the checkout
    made = _entries(tmp)
    try:
        yield {e.name: e for e in made}
    finally:
        os.chdir(here)
    counts = Counter({e.name: sum(e.counts.values()) for e in made})
    escapes = sum(e.counts["untyped"] for e in made)
    print(
        f"\nfuzzed {len(made)} entry points, {sum(len(e.kwargs) for e in made)} parameters, "
        f"{sum(counts.values())} calls "
        f"(median {int(np.median(list(counts.values())))} per entry point, "
        f"{sum(e.counts['typed'] for e in made)} typed errors, {escapes} untyped escapes)"
    )


def _names() -> list[str]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return [e.name for e in _entries(Path(d))]


@pytest.mark.parametrize("name", _names())
def test_only_typed_errors_escape_and_a_failed_call_changes_nothing(entries, name):
    """Every fixed odd value at every parameter, then hypothesis's own draws (floats, ints, text, bytes, ...)."""
    entry = entries[name]
    params = list(entry.kwargs)

    def check(param: str, value: Any) -> None:
        if entry.setup is not None:
            entry.setup()
        kwargs = {**entry.kwargs, param: value}
        before = entry.snapshot() if entry.snapshot is not None else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", og.errors.O2OGeoWarning)
                warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)  # a title of odd text
                entry.call(**kwargs)
        except og.errors.O2OGeoError:
            entry.counts["typed"] += 1
            if before is not None:
                assert entry.snapshot() == before, f"{name}({param}={value!r}) failed but changed the state"
            return
        except Exception as exc:  # noqa: BLE001 - what this test is for
            entry.counts["untyped"] += 1
            pytest.fail(f"{name}({param}={value!r}) raised {type(exc).__name__}: {exc}")
        finally:
            if entry.cleanup is not None:
                entry.cleanup()
        entry.counts["ok"] += 1

    for param in params:
        for value in ODD_FIXED:
            check(param, value)
    settings(
        max_examples=entry.cases * max(1, len(params) // 4),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )(given(param=st.sampled_from(params), value=ODD)(check))()
