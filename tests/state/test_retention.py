"""Retention: what each state backend keeps, for how long, and that forgetting never changes an answer.

Oracles: a plain dict model of the expiry wheel, and the same dispatcher run
on a state that keeps everything (every decision must be the same).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import warnings

import numpy as np
import pytest
from _worlds import new_redis_state
from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo import simulate
from o2o_geo._state import keys
from o2o_geo._state._expiry import ExpiryWheel
from o2o_geo._state._memory import PRUNE_BATCH as MEMORY_BATCH
from o2o_geo._state._sqlite import PRUNE_EVERY

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01 UTC
KEEP_ALL = {"idempotency_ttl_s": 1e12, "user_ttl_s": 1e12, "retention_days": None}


@pytest.fixture(params=["memory", "sqlite"])
def backend(request, tmp_path):
    """A factory of fresh states of a backend that counts lifetimes on its clock: make(**lifetimes).

    (Redis counts them in wall-clock time with its own expiry: tested by the TTLs it sets.)
    """
    made = []

    def make(**kw):
        st_ = og.MemoryState(**kw) if request.param == "memory" else og.SQLiteState(tmp_path / f"s{len(made)}.db", **kw)
        made.append(st_)
        return st_

    yield make
    for s in made:
        s.close()


# ---------------------------------------------------------------- the wheel against a dict model
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["file", "forget", "due"]), st.integers(0, 7), st.floats(0, 50_000), st.integers(1, 4)
        ),
        max_size=60,
    )
)
def test_expiry_wheel_hands_out_exactly_the_expired_keys(ops):
    wheel, expires, clock = ExpiryWheel(bucket_s=3600.0), {}, 0.0
    for op, key, t, limit in ops:
        if op == "file":
            wheel.file(key, t)
            expires[key] = t
        elif op == "forget":
            wheel.forget(key)
            expires.pop(key, None)
        else:
            clock = max(clock, t)
            out = wheel.due(clock, limit)
            assert len(out) <= limit and len(set(out)) == len(out)
            for k in out:  # never before its life ended, and at most an hour (a bucket) late
                assert k in expires and expires[k] <= clock
                del expires[k]
            overdue = [k for k, e in expires.items() if math.ceil(e / 3600.0) * 3600.0 <= clock]
            assert len(out) == limit or not overdue  # short of the limit only when nothing else is due
    assert len(wheel) == len(expires)


# ---------------------------------------------------------------- per backend
def _touch(state, ts, n=1):
    """n transactions at event time ts (SQLite prunes every PRUNE_EVERY-th)."""
    for _ in range(n):
        with state.transaction() as tx:
            tx.advance_clock(ts)


def test_counters_user_state_and_event_ids_expire_on_the_state_clock(backend):
    state = backend(idempotency_ttl_s=2 * DAY, user_ttl_s=5 * DAY)
    uk = keys.id_text("u1")
    with state.transaction() as tx:
        tx.advance_clock(T0)
        tx.add_counter(keys.user_day(uk, "2026-01-01"), 1)  # 3 days
        tx.add_counter(keys.user_week(uk, 2026, 1), 1)  # 9 days
        tx.add_counter(keys.offer_budget("o1", "n"), 1)  # never
        tx.add_counter(keys.user_offer(uk, "o1"), 1, ttl_s=8 * DAY)  # its offer's end
        tx.put_user("u1", {"in": [], "last_ts": T0})
        tx.put_idem(keys.ping_key("e1"), "u1", [])

    def kept(at):
        _touch(state, at, PRUNE_EVERY)
        with state.transaction() as tx:
            return {
                "day": tx.counter(keys.user_day(uk, "2026-01-01")) > 0,
                "week": tx.counter(keys.user_week(uk, 2026, 1)) > 0,
                "budget": tx.counter(keys.offer_budget("o1", "n")) > 0,
                "offer": tx.counter(keys.user_offer(uk, "o1")) > 0,
                "user": tx.get_user("u1") is not None,
                "idem": tx.idem(keys.ping_key("e1")) is not None,
            }

    everything = dict.fromkeys(["day", "week", "budget", "offer", "user", "idem"], True)
    assert kept(T0 + 1.9 * DAY) == everything  # inside every lifetime: nothing goes
    assert kept(T0 + 2.1 * DAY + 3600) == {**everything, "idem": False}
    assert kept(T0 + 3.1 * DAY + 3600) == {**everything, "idem": False, "day": False}
    assert kept(T0 + 5.1 * DAY + 3600) == {**everything, "idem": False, "day": False, "user": False}
    gone = {"idem": False, "day": False, "user": False, "offer": False}
    assert kept(T0 + 8.9 * DAY) == {**everything, **gone}  # the week key lives 9 days
    assert kept(T0 + 9.1 * DAY + 3600)["week"] is False
    later = kept(T0 + 16 * DAY)
    assert later == {"day": False, "week": False, "budget": True, "offer": False, "user": False, "idem": False}
    assert state.sizes()["counters"] == 1


def test_the_clock_never_runs_backwards_and_keys_written_before_it_are_kept(backend):
    state = backend()
    with state.transaction() as tx:  # no clock yet: kept
        tx.add_counter(keys.user_day("1", "2026-01-01"), 1)
    _touch(state, T0 + 30 * DAY, PRUNE_EVERY)
    with state.transaction() as tx:
        tx.advance_clock(T0 + 30 * DAY)
        tx.add_counter(keys.user_day("2", "2026-01-31"), 1)
    _touch(state, T0, PRUNE_EVERY)  # an old time: the clock stays, nothing expires early or late
    with state.transaction() as tx:
        assert tx.counter(keys.user_day("1", "2026-01-01")) == 1
        assert tx.counter(keys.user_day("2", "2026-01-31")) == 1


def test_ledger_retention_drops_old_pushes_and_events_and_says_since_when(backend):
    state = backend(retention_days=10)
    engine = og.Dispatcher(
        og.StoreIndex(og.sample_stores()),
        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        policy=og.PushPolicy(holdout_fraction=0.0, quiet_hours=None, max_per_offer=None, min_gap_s=0),
        state=state,
    )
    for day in range(30):
        t = T0 + day * DAY
        (d,) = engine.on_location("u1", 31.2325, 121.4801, t)
        engine.record(og.Event("redeem", "u1", t + 60, push_id=d.push_id, amount=10.0))
        engine.on_location("u1", 0.0, 0.0, t + 3600)  # leaves
    _touch(state, T0 + 29 * DAY, PRUNE_EVERY)
    since = state.retained_since()
    assert T0 + 18 * DAY <= since <= T0 + 20 * DAY
    days = [int((p["ts"] - T0) // DAY) for p in state.pushes()]
    assert days == list(range(20, 30))  # day 19's push is older than the horizon (day 29 + 1 h - 10 days)
    assert all(e["ts"] >= since for e in state.events()) and len(state.events()) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.report(since=T0 + 25 * DAY, as_frame=False)  # inside what is kept: no warning
    with pytest.warns(og.errors.RetentionWarning, match="retention_days=10"):
        rows = engine.report(as_frame=False)
    assert rows[0]["pushed"] == len(state.pushes())
    before = (state.pushes(), state.events())  # a push id that retention dropped cannot be attributed, and says why
    with pytest.raises(og.errors.UnknownPushError, match="older than the pushes the state keeps"):
        engine.record(og.Event("open", "u1", T0 + 29 * DAY, push_id="p1"))
    assert (state.pushes(), state.events()) == before


def test_redis_sets_the_same_lifetimes_as_ttls(redis_server):
    state = new_redis_state(redis_server, retention_days=10, idempotency_ttl_s=2 * DAY, user_ttl_s=5 * DAY)
    try:
        ends = T0 + 20 * DAY
        engine = og.Dispatcher(
            og.StoreIndex(og.sample_stores()),
            og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8, valid_until=ends)]),
            policy=og.PushPolicy(holdout_fraction=0.0, quiet_hours=None, max_per_offer=2),
            state=state,
        )
        (d,) = engine.on_location("u1", 31.2325, 121.4801, T0, event_id="ping-1")
        engine.record(og.Event("open", "u1", T0 + 60, push_id=d.push_id, event_id="ev-1"))
        r, ns = state.r, state.ns

        def ttl_days(*parts):
            return r.ttl(":".join((ns, *parts))) / DAY

        uk = keys.id_text("u1")
        assert ttl_days("ctr", keys.user_day(uk, "2026-01-01")) == pytest.approx(3, abs=0.01)
        assert ttl_days("ctr", keys.user_offer(uk, "latte")) == pytest.approx(20 + 3, abs=0.01)
        assert ttl_days("user", uk) == pytest.approx(5, abs=0.01)
        assert ttl_days("idem", keys.ping_key("ping-1")) == pytest.approx(2, abs=0.01)
        assert ttl_days("push", keys.id_text(d.push_id)) == pytest.approx(10, abs=0.01)
        assert ttl_days("upush", uk) == pytest.approx(10, abs=0.01)
        assert ttl_days("event", "1") == pytest.approx(10, abs=0.01)
        r.delete(":".join((ns, "push", keys.id_text(d.push_id))))  # as if it expired: the list drops it
        engine.on_location("u1", 0.0, 0.0, T0 + DAY)  # leaves, and enters again a day later: a second push
        assert len(engine.on_location("u1", 31.2325, 121.4801, T0 + 2 * DAY)) == 1
        assert r.lrange(f"{ns}:pushes", 0, -1)[0] != keys.id_text(d.push_id).encode()
    finally:
        state.flush()
        state.close()


def test_memory_prunes_a_mass_expiry_a_batch_at_a_time():
    state = og.MemoryState(idempotency_ttl_s=DAY)
    with state.transaction() as tx:
        tx.advance_clock(T0)
        for i in range(5 * MEMORY_BATCH):
            tx.put_idem(keys.ping_key(i), "u", [])
    sizes = []
    for _ in range(7):
        _touch(state, T0 + 2 * DAY)
        sizes.append(state.sizes()["idempotency"])
    assert sizes == [max(0, 5 * MEMORY_BATCH - (i + 1) * MEMORY_BATCH) for i in range(7)]


def test_sqlite_opens_a_file_written_before_rows_expired(tmp_path):
    path = tmp_path / "old.db"
    c = sqlite3.connect(path)
    c.executescript(
        """
        CREATE TABLE users (uid TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE counters (key TEXT PRIMARY KEY, value REAL NOT NULL);
        CREATE TABLE idem (event_id TEXT PRIMARY KEY, uid TEXT NOT NULL, payload TEXT NOT NULL);
        INSERT INTO counters VALUES ('u|"a"|d|2026-01-01', 2.0);
        """
    )
    c.close()
    state = og.SQLiteState(path)
    _touch(state, T0 + 90 * DAY, PRUNE_EVERY)
    with state.transaction() as tx:
        assert tx.counter('u|"a"|d|2026-01-01') == 2.0  # written without an expiry: kept
        tx.add_counter('u|"a"|d|2026-01-01', 1.0)  # now it has one
    _touch(state, T0 + 94 * DAY, PRUNE_EVERY)
    assert state.sizes()["counters"] == 0
    state.vacuum()


def test_sqlite_checkpoints_the_log_at_checkpoint_pages(tmp_path):
    """The log is moved into the file when it holds checkpoint_pages pages: a short setting keeps it short."""
    sizes = {}
    for pages in (20, 5000):
        path = tmp_path / f"ck{pages}.db"
        state = og.SQLiteState(path, checkpoint_pages=pages)
        for i in range(400):
            with state.transaction() as tx:
                tx.put_user(i, {"in": ["x" * 600]})  # a row of its own page or so
        wal_b = os.path.getsize(f"{path}-wal")  # before close: closing the last connection removes the log
        state.close()
        c = sqlite3.connect(path)
        sizes[pages] = wal_b / c.execute("PRAGMA page_size").fetchone()[0]
        c.close()
    assert sizes[20] < 40 < 150 < sizes[5000]
    with pytest.raises(og.errors.InvalidParameterError, match="checkpoint_pages must be"):
        og.SQLiteState(tmp_path / "bad.db", checkpoint_pages=0)


def test_the_dispatcher_refuses_lifetimes_shorter_than_its_policy_windows():
    index, offers = og.StoreIndex(og.sample_stores()), og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
    with pytest.raises(og.errors.InvalidParameterError, match="dismiss_cooldown_s"):
        og.Dispatcher(index, offers, state=og.MemoryState(user_ttl_s=3600))
    with pytest.raises(og.errors.InvalidParameterError, match="attribution_window_s"):
        og.Dispatcher(index, offers, state=og.MemoryState(retention_days=3))
    for bad in (0, -1, math.nan, math.inf, "7", True, None):
        with pytest.raises(og.errors.InvalidParameterError, match="user_ttl_s"):
            og.MemoryState(user_ttl_s=bad)
    with pytest.raises(og.errors.InvalidParameterError, match="retention_days"):
        og.SQLiteState(":memory:", retention_days=0)


# ---------------------------------------------------------------- forgetting never changes an answer
def _decisions(engine, log):
    """Replay a day at a time, recording each day's simulated outcomes of that day's pushes."""
    out = []
    cols = log.columns()
    day_of = ((log.ts - T0) // DAY).astype(int)
    ids = np.array([f"ping-{i}" for i in range(len(log))], dtype=object)
    for day in range(int(day_of.max()) + 1):
        rows = day_of == day
        ds = engine.on_locations({k: np.asarray(v)[rows] for k, v in cols.items()}, event_id=ids[rows])
        again = np.flatnonzero(rows)[::7]  # some of the day's pings delivered twice: answered from their ids
        ds += engine.on_locations({k: np.asarray(v)[again] for k, v in cols.items()}, event_id=ids[again])
        out += [(d.user_id, d.offer_id, d.store_id, d.ts, d.trigger, d.holdout) for d in ds]
        for d in ds:
            if not d.holdout and (int(d.user_id) + int(d.ts)) % 3 == 0:
                engine.record(og.Event("redeem", d.user_id, d.ts + 1800, push_id=d.push_id, amount=12.0))
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_retention_never_changes_a_decision_inside_its_windows(kind, tmp_path):
    """Five weeks of a simulated city with offers that end: every decision equals the keep-everything run's."""
    world = simulate.World.generate(seed=3, n_users=150, n_stores=60, n_offers=12, n_merchants=8)
    offers = og.OfferSet(
        [dataclasses.replace(o, valid_until=T0 + (7 + 5 * i) * DAY) for i, o in enumerate(world.offers)]
    )
    log = world.pings(n_days=35, pings_per_user_per_day=5.0, seed=3)
    policy = og.PushPolicy(quiet_hours=None, max_per_day=1, max_per_week=3, attribution_window_s=3 * DAY)

    def run(**lifetimes):
        state = (
            og.MemoryState(**lifetimes)
            if kind == "memory"
            else og.SQLiteState(tmp_path / f"{len(lifetimes)}-{lifetimes.get('retention_days')}.db", **lifetimes)
        )
        engine = og.Dispatcher(world.index, offers, policy=policy, state=state)
        return _decisions(engine, log), state

    kept, all_state = run(**KEEP_ALL)
    pruned, small_state = run(idempotency_ttl_s=DAY, user_ttl_s=7 * DAY, retention_days=4)
    assert len(kept) > 200
    assert pruned == kept
    assert small_state is not None and len(set(kept)) < len(kept)  # the redelivered pings' answers repeat
    full, small = all_state.sizes(), small_state.sizes()
    assert small["pushes"] < full["pushes"] / 4 and small["events"] < full["events"] / 4
    assert 0 < small["idempotency"] < full["idempotency"] / 10
    # counter windows are the policy's, the same in both runs: no day counter of a day long gone is left
    if kind == "memory":
        names = list(small_state._counters)
    else:
        names = [r[0] for r in sqlite3.connect(small_state.path).execute("SELECT key FROM counters")]
    days = sorted({n.rsplit("|", 1)[1] for n in names if "|d|" in n or "|m|" in n})
    assert days and days[0] >= "2026-02-01"  # the log's last day is 2026-02-04


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_redelivered_ping_is_a_duplicate_inside_the_idempotency_window_and_new_after_it(kind, tmp_path):
    state = (
        og.MemoryState(idempotency_ttl_s=DAY)
        if kind == "memory"
        else og.SQLiteState(tmp_path / "s.db", idempotency_ttl_s=DAY)
    )
    engine = og.Dispatcher(
        og.StoreIndex(og.sample_stores()),
        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        policy=og.PushPolicy(holdout_fraction=0.0, quiet_hours=None),
        state=state,
    )
    (d,) = engine.on_location("u1", 31.2325, 121.4801, T0, event_id="ping-1")
    assert engine.on_location("u1", 31.2325, 121.4801, T0, event_id="ping-1") == [d]  # the stored answer
    for i in range(PRUNE_EVERY):  # other users' pings move the clock two days on
        engine.on_location(f"v{i}", 0.0, 0.0, T0 + 2 * DAY, event_id=f"other-{i}")
    assert engine.stats["duplicate_pings"] == 1
    # the id is forgotten: the copy is decided afresh, from the state (u1 is already inside: nothing new)
    assert engine.on_location("u1", 31.2325, 121.4801, T0, event_id="ping-1") == []
    assert engine.stats["duplicate_pings"] == 1
    assert [p["push_id"] for p in state.pushes()] == [d.push_id]  # never pushed twice


def test_a_wheel_of_keys_refiled_every_hour_keeps_the_memory_of_its_live_keys():
    """Keys moved on (re-filed later) leave their bucket: its set is dropped or compacted, not kept at its peak."""
    import sys

    def bytes_of(w):
        return sum(sys.getsizeof(m) for m in w._buckets.values()) + sys.getsizeof(w._bucket_of)

    n, life_h = 5_000, 100
    wheel = ExpiryWheel()
    for hour in range(300):  # every key written every hour: filed 100 h ahead each time
        for k in range(n):
            wheel.file(k, (hour + life_h) * 3600.0 - 1.0)
        assert wheel.due(hour * 3600.0, 10) == []  # none expires while it is rewritten
    fresh = ExpiryWheel()
    for k in range(n):
        fresh.file(k, (299 + life_h) * 3600.0 - 1.0)
    assert len(wheel) == n and bytes_of(wheel) <= 2 * bytes_of(fresh)  # (before: about 100 buckets of 5,000 slots)
    assert len(wheel._buckets) == 1
