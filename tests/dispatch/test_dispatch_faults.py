"""Dispatcher under concurrency, crashes and faults, on both state backends.

Threads and processes race on one user's daily cap, on shared budgets and on
the same event ids; a writer process is SIGKILLed mid-stream and its file
reopened; faults are injected in the middle of a unit of work.  The oracle is
always the stored records (``state.pushes()``, ``state.events()``, the whole
database) counted by hand against the policy's limits, never the
dispatcher's own counters.

Worker processes import this module by name (``tests/`` and ``tests/dispatch/`` are
put on their ``sys.path``) and run :func:`mp_worker` or :func:`crash_worker`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from _worlds import GEOD, LAT0, LON0, RING_A, RING_B, T0, TESTS, at, make_world, new_redis_state, run_threads, snapshot

import o2o_geo as og
from o2o_geo._history import _Decayed
from o2o_geo.errors import InvalidCoordinateError, StateError, UnknownPushError

DAY0 = date(2026, 1, 1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
HERE = Path(__file__).resolve().parent


def local_day(ts):
    return datetime.fromtimestamp(ts, SHANGHAI).date()


def assert_push_ids_are_a_gapless_sequence(pushes):
    """Push ids come from a counter written in the push's own transaction: p1..pN, each once, nothing lost."""
    assert sorted(p["push_id"] for p in pushes) == sorted(f"p{i}" for i in range(1, len(pushes) + 1))


CHILD = "import sys; sys.path[:0] = sys.argv[1:3]; import test_dispatch_faults as t; t.{}(*sys.argv[3:])"


def spawn(function, *args, **popen):
    """A fresh interpreter running ``function(*args)`` of this module (arguments as strings)."""
    cmd = [sys.executable, "-c", CHILD.format(function), str(TESTS), str(HERE), *map(str, args)]
    return subprocess.Popen(cmd, **popen)


# ------------------------------------------------------------------ threads: caps and budgets
def test_threads_racing_one_user_never_pass_the_daily_cap(state):
    n_threads, rounds, cap = 8, 10, 5
    index, offers, policy = make_world(max_per_day=cap)
    engine = og.Dispatcher(index, offers, policy=policy, state=state)
    step = threading.Barrier(n_threads, timeout=60)

    def hammer(i):
        got = []
        for j in range(rounds):
            step.wait()  # round j starts once every ping of round j - 1 is processed
            # each round in the other half of the ring, each thread at its own store
            got += engine.on_location("u", *at(RING_A[8 * (j % 2) + i]), T0 + 60 * j + i)
        return got

    returned = [d.push_id for got in run_threads(n_threads, hammer) for d in got]
    # The first ping processed in a round is newer than every ping of earlier rounds (so never stale) and is
    # at a store of the other half of the ring (so it enters a fence): at least `rounds` > cap triggers.
    stored = [p for p in state.pushes() if p["user_id"] == "u" and local_day(p["ts"]) == DAY0]
    assert len(stored) == cap
    assert sorted(returned) == sorted(p["push_id"] for p in stored)  # each push went to exactly one caller
    assert_push_ids_are_a_gapless_sequence(state.pushes())


BUDGETS = {
    # policy, treated pushes of o1 expected (demand: every ping of every user enters a new fence)
    "push count": ({"offer_budgets": {"o1": og.Budget(max_pushes=12)}}, 12),
    "money": ({"offer_budgets": {"o1": og.Budget(max_cost=1.5)}, "offer_cost": {"o1": 0.1}}, 15),
    "merchant": (
        {"offer_budgets": {"o1": og.Budget(max_pushes=40)}, "merchant_budgets": {"m1": og.Budget(max_pushes=9)}},
        9,
    ),
    "store capacity": ({"store_daily_capacity": 2}, 2 * len(RING_A)),
}


@pytest.mark.parametrize("case", list(BUDGETS))
def test_threads_spend_a_budget_exactly_and_never_more(state, case):
    extra, expected = BUDGETS[case]
    n_threads, n_users = 8, 24
    index, offers, policy = make_world(max_per_day=None, max_per_week=None, holdout_fraction=0.25, **extra)
    engine = og.Dispatcher(index, offers, policy=policy, state=state)
    users = [f"user-{k}" for k in range(n_users)]

    def tour(i):  # thread i walks its users round ring A, one new fence per ping
        for step in range(len(RING_A)):
            for k in range(i, n_users, n_threads):
                engine.on_location(users[k], *at(RING_A[(step + k) % len(RING_A)]), T0 + 60 * step)

    run_threads(n_threads, tour)
    pushes = state.pushes()
    treated = [p for p in pushes if not p["holdout"]]
    held = [p for p in pushes if p["holdout"]]
    assert len(treated) == expected  # demand (18-ish treated users x 16 fences) far exceeds every limit
    if case == "money":
        assert math.fsum(0.1 for _ in treated) <= 1.5 + 1e-9 < math.fsum(0.1 for _ in range(expected + 1))
    if case == "store capacity":
        assert Counter(p["store_id"] for p in treated) == {s["store_id"]: 2 for s in RING_A}
    # held-out users get a (virtual) decision at every fence: budgets and capacity do not apply to them
    held_users = {p["user_id"] for p in held}
    assert held_users and not held_users & {p["user_id"] for p in treated}
    assert Counter(p["user_id"] for p in held) == {u: len(RING_A) for u in held_users}
    assert_push_ids_are_a_gapless_sequence(pushes)


# ------------------------------------------------------------------ threads: idempotency
def test_the_same_ping_and_event_from_many_threads_count_once(state):
    index, offers, policy = make_world()
    delivered = []
    engine = og.Dispatcher(index, offers, policy=policy, state=state, deliver=delivered.append)
    results = run_threads(8, lambda i: engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1"))
    (decision,) = results[0]
    assert all(r == results[0] for r in results)  # every caller: the same decision, field for field
    assert [p["push_id"] for p in state.pushes()] == [decision.push_id]
    assert delivered == [decision]  # delivered once
    event = og.Event("redeem", "u", T0 + 60, offer_id="o1", amount=18.0, event_id="redeem-1")
    assert run_threads(8, lambda i: engine.record(event)) == [decision.push_id] * 8
    assert [e["event_id"] for e in state.events()] == ["redeem-1"]
    assert engine.scorer.history.n_events("u", "redeem") == 1


def test_a_ping_stream_replayed_by_many_threads_gives_every_caller_the_same_answer(state):
    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=state)
    stream = [(f"ping-{k}", *at(RING_A[k % 16]), T0 + 10 * k) for k in range(24)]  # a new fence every ping

    def replay(i):
        return [engine.on_location("u", lat, lon, t, event_id=eid) for eid, lat, lon, t in stream]

    answers = run_threads(8, replay)
    for k in range(len(stream)):
        assert all(a[k] == answers[0][k] for a in answers), stream[k][0]
    # a ping overtaken by a newer one is stale for everyone; the others pushed once each
    returned = [d.push_id for got in answers[0] for d in got]
    assert sorted(returned) == sorted(p["push_id"] for p in state.pushes())
    # every thread passes the first ping before any other, so nothing can overtake it: it enters a fence and pushes
    assert len(answers[0][0]) == 1
    # the day's cap holds across the threads (a single-threaded replay pushes exactly this many)
    assert len(returned) <= policy.max_per_day
    sequential = og.Dispatcher(index, offers, policy=policy, state=og.MemoryState())
    assert (
        sum(len(sequential.on_location("u", lat, lon, t, event_id=e)) for e, lat, lon, t in stream)
        == policy.max_per_day
    )
    assert_push_ids_are_a_gapless_sequence(state.pushes())


# ------------------------------------------------------------------ processes
MP_PROCESSES, MP_THREADS, MP_ROUNDS = 4, 2, 4
MP_USERS_A = [f"a-user-{k}" for k in range(6)]  # ring A: o1, money budget 2.0 at 0.25 a push = 8 pushes
MP_USERS_B = [f"b-user-{k}" for k in range(3)]  # ring B: o2, no budget; the daily cap of 3 binds
MP_CAP, MP_O1_PUSHES = 3, 8


def mp_world():
    return make_world(max_per_day=MP_CAP, offer_budgets={"o1": og.Budget(max_cost=2.0)}, offer_cost={"o1": 0.25})


def mp_state(spec):
    """A state backend from a string a child process can be given: ``sqlite:<path>`` or ``redis:<url> <namespace>``."""
    kind, _, rest = spec.partition(":")
    if kind == "sqlite":
        return og.SQLiteState(rest)
    url, ns = rest.split(" ")
    return og.RedisState(url, namespace=ns)


def mp_worker(spec, proc, ready_dir, out, n_procs=MP_PROCESSES, n_threads=MP_THREADS):
    """One process of the multi-process tests: threads dispatching every user; logs every answer."""
    proc, n_procs, n_threads = int(proc), int(n_procs), int(n_threads)
    index, offers, policy = mp_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=mp_state(spec))
    (Path(ready_dir) / str(proc)).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(ready_dir)) < n_procs and time.monotonic() < deadline:
        time.sleep(0.002)  # start together

    def work(k):
        w = proc * n_threads + k  # worker w pings store w or 8 + w (mod 16), alternately
        log = {"pushes": [], "records": []}
        for j in range(MP_ROUNDS):
            for u in MP_USERS_A + MP_USERS_B:
                stores, offer = (RING_A, "o1") if u in MP_USERS_A else (RING_B, "o2")
                for d in engine.on_location(u, *at(stores[(8 * j + w) % 16]), T0 + 60 * j):
                    log["pushes"].append(d.push_id)
                    redeem = og.Event("redeem", u, d.ts + 5, push_id=d.push_id, amount=30.0, event_id=f"r:{d.push_id}")
                    for _ in range(2):  # the second is a redelivery
                        log["records"].append([redeem.event_id, engine.record(redeem)])
                opened = og.Event("open", u, T0 + 60 * j + 30, offer_id=offer, event_id=f"open:{u}:{j}")
                log["records"].append([opened.event_id, engine.record(opened)])  # sent by every worker
        return log

    with ThreadPoolExecutor(n_threads) as pool:
        logs = list(pool.map(work, range(n_threads)))
    engine.close()
    Path(out).write_text(json.dumps(logs))


def run_processes(tmp_path, spec, n_procs, n_threads):
    """``n_procs`` processes x ``n_threads`` threads of :func:`mp_worker` on one state; their logs."""
    ready = tmp_path / "ready"
    ready.mkdir()
    outs = [tmp_path / f"out-{i}.json" for i in range(n_procs)]
    procs = [  # a SQLite file is created by the racing workers themselves
        spawn(
            "mp_worker",
            spec,
            i,
            ready,
            outs[i],
            n_procs,
            n_threads,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(n_procs)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return [log for out in outs for log in json.loads(out.read_text())]


def check_processes(logs, pushes, events):
    assert_push_ids_are_a_gapless_sequence(pushes)
    # every push was returned to exactly one caller
    assert sorted(pid for log in logs for pid in log["pushes"]) == sorted(p["push_id"] for p in pushes)
    # caps and budgets. Rounds alternate halves of a ring and the first ping of a round is never stale, so each
    # user has >= MP_ROUNDS entries: every B user fills the cap, the A users together exhaust o1's money budget.
    per_day = Counter((p["user_id"], local_day(p["ts"])) for p in pushes)
    assert max(per_day.values()) <= MP_CAP
    assert all(per_day[(u, DAY0)] == MP_CAP for u in MP_USERS_B)
    o1 = [p for p in pushes if p["offer_id"] == "o1"]
    assert len(o1) == MP_O1_PUSHES and math.fsum(0.25 for _ in o1) <= 2.0
    # events: every id stored once, and every caller (redeliveries and racing processes) was told its push
    stored = Counter(e["event_id"] for e in events)
    assert max(stored.values()) == 1
    by_id = {e["event_id"]: e for e in events}
    for eid, answer in (r for log in logs for r in log["records"]):
        assert by_id[eid]["push_id"] == answer, eid
    assert {e for e in by_id if e.startswith("open:")} == {
        f"open:{u}:{j}" for u in MP_USERS_A + MP_USERS_B for j in range(MP_ROUNDS)
    }
    assert sorted(e["push_id"] for e in events if e["kind"] == "redeem") == sorted(p["push_id"] for p in pushes)


def test_processes_sharing_one_sqlite_file_keep_caps_budgets_and_event_ids(tmp_path):
    path = tmp_path / "state.db"
    logs = run_processes(tmp_path, f"sqlite:{path}", MP_PROCESSES, MP_THREADS)
    st = og.SQLiteState(path)
    try:
        check_processes(logs, st.pushes(), st.events())
    finally:
        st.close()


def test_eight_processes_by_four_threads_on_one_redis_keep_caps_budgets_and_event_ids(tmp_path, redis_server):
    st = new_redis_state(redis_server)
    logs = run_processes(tmp_path, f"redis:{redis_server.url} {st.ns}", 8, 4)
    check_processes(logs, st.pushes(), st.events())
    st.close()


# ------------------------------------------------------------------ crash and restart
CRASH_USERS = ["u0", "u1", "u2", "u3"]
CRASH_CAP, CRASH_O1_BUDGET = 4, 3
CRASH_LINES = 300


def crash_world():
    return make_world(max_per_day=CRASH_CAP, offer_budgets={"o1": og.Budget(max_pushes=CRASH_O1_BUDGET)})


def crash_worker(path):
    """Dispatch on ``path`` until killed, printing each event id once record() has returned."""
    index, offers, policy = crash_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path))
    for k in range(20_000):  # at most 40,000 s: all before 20:07 on 2026-01-01, local time
        user, step = CRASH_USERS[k % 4], k // 4
        store = (RING_A, RING_B)[step % 2][(step // 2) % 16]  # alternate rings: every ping enters a fence
        t = T0 + 2 * k
        decisions = engine.on_location(user, *at(store), t, event_id=f"ping-{k}")
        if decisions:
            e = og.Event("redeem", user, t + 1, push_id=decisions[0].push_id, amount=25.0, event_id=f"e{k}")
        else:
            e = og.Event("visit", user, t + 1, store_id=store["store_id"], event_id=f"e{k}")
        for _ in range(1 + (k % 7 == 6)):  # now and then a redelivery
            engine.record(e)
            print(e.event_id, flush=True)
    time.sleep(600)  # wait to be killed


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_sigkill_mid_stream_keeps_every_acknowledged_event_and_the_limits(tmp_path):
    path = tmp_path / "state.db"
    proc = spawn("crash_worker", path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a hung child must not hang the suite
    watchdog.start()
    try:
        acked = []
        while len(acked) < CRASH_LINES:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
    assert len(acked) == CRASH_LINES, err
    assert proc.returncode == -signal.SIGKILL
    acked += rest.split("\n")[:-1]  # lines printed before the kill; a torn last line is not an acknowledgement
    acked = set(acked)

    index, offers, policy = crash_world()
    with og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path)) as engine:
        pushes, events = engine.state.pushes(), engine.state.events()
        stored = Counter(e["event_id"] for e in events if e["event_id"] is not None)
        assert all(stored[eid] == 1 for eid in acked)
        assert max(stored.values()) == 1
        assert_push_ids_are_a_gapless_sequence(pushes)
        # the limits were reached within the first few dozen pings, long before the kill, and held
        per_day = Counter((p["user_id"], local_day(p["ts"])) for p in pushes)
        assert per_day == {(u, DAY0): CRASH_CAP for u in CRASH_USERS}
        assert sum(p["offer_id"] == "o1" for p in pushes) == CRASH_O1_BUDGET
        # the restarted scorer learnt from everything stored before the crash
        for u in CRASH_USERS:
            for kind in ("redeem", "visit"):
                assert engine.scorer.history.n_events(u, kind) == sum(
                    e["user_id"] == u and e["kind"] == kind for e in events
                )
            assert engine.scorer.history.n_events(u, "push") == sum(p["user_id"] == u for p in pushes)
        # a redelivered event is still recognised after the restart
        first = next(e for e in events if e["event_id"] == "e0")
        assert engine.record(og.Event("open", "u0", T0 + 45_000, offer_id="o1", event_id="e0")) == first["push_id"]
        assert len(engine.state.events()) == len(events)
        # and the limits keep holding: u0 leaves (the centre is outside every fence) and enters a ring-B store
        t = T0 + 50_000
        engine.on_location("u0", LAT0, LON0, t)
        assert engine.on_location("u0", *at(RING_B[5]), t + 1) == []  # daily cap, reached before the crash
        (fresh,) = engine.on_location("fresh-user", *at(RING_B[5]), t + 1)  # the same entry pushes for a new user
        assert (fresh.offer_id, fresh.push_id) == ("o2", f"p{len(pushes) + 1}")
        assert engine.on_location("fresh-user-2", *at(RING_A[5]), t + 2) == []  # o1's budget, spent before
        assert len(engine.state.pushes()) == len(pushes) + 1


# ------------------------------------------------------------------ faults leave the state unchanged
class FaultyState(og.DispatchState):
    """A backend whose transactions fail at one operation (``fail_at``), after the earlier writes of the unit."""

    def __init__(self, inner):
        self.inner = inner
        self.fail_at = None

    @contextmanager
    def transaction(self):
        with self.inner.transaction() as tx:
            yield _FaultyTx(tx, self.fail_at) if self.fail_at else tx

    def read_user(self, user_id):
        return self.inner.read_user(user_id)

    def pushes(self):
        return self.inner.pushes()

    def events(self):
        return self.inner.events()

    def forget_user(self, user_id):
        self.inner.forget_user(user_id)

    def group(self):
        return self.inner.group()


class _FaultyTx:
    def __init__(self, tx, fail_at):
        self._tx, self._fail_at = tx, fail_at

    def __getattr__(self, name):
        if name == self._fail_at:

            def fail(*args, **kwargs):
                raise StateError(f"injected: {name} failed")

            return fail
        return getattr(self._tx, name)


def test_a_fault_in_the_middle_of_a_ping_changes_nothing(state):
    index, offers, policy = make_world(dwell_s=300.0)
    faulty = FaultyState(state)
    engine = og.Dispatcher(index, offers, policy=policy, state=faulty)
    (enter,) = engine.on_location("u", *at(RING_A[0]), T0)
    before = snapshot(state)
    # 400 s later, still inside: a dwell, which records an inferred visit, then fails writing the push
    faulty.fail_at = "add_push"
    with pytest.raises(StateError, match="injected: add_push failed"):
        engine.on_location("u", *at(RING_A[0]), T0 + 400, event_id="ping-2")
    assert snapshot(state) == before
    engine.flush_feedback()  # the engine's own events reach the history a tick later
    assert engine.scorer.history.n_events("u", "visit") == 0
    faulty.fail_at = None
    (dwell,) = engine.on_location("u", *at(RING_A[0]), T0 + 400, event_id="ping-2")  # a retry, not a duplicate
    assert (enter.push_id, dwell.push_id, dwell.trigger) == ("p1", "p2", "dwell")
    assert [e["kind"] for e in state.events()] == ["visit"]
    engine.flush_feedback()
    assert engine.scorer.history.n_events("u", "visit") == 1


def test_a_batch_keeps_every_ping_before_a_failing_one_and_delivers_them(tmp_path):
    """On SQLite a tick's pings commit together; a ping that fails is undone alone, the ones before it stay."""
    index, offers, policy = make_world()
    path = tmp_path / "s.db"
    calls = {"n": 0}

    class ThirdPushFails(FaultyState):
        @contextmanager
        def transaction(self):
            with self.inner.transaction() as tx:
                calls["n"] += 1
                yield _FaultyTx(tx, "add_push") if calls["n"] == 3 else tx

    delivered = []
    engine = og.Dispatcher(index, offers, policy=policy, state=ThirdPushFails(og.SQLiteState(path)),
                           deliver=delivered.append)  # fmt: skip
    users = [f"u{i}" for i in range(5)]
    lat, lon = zip(*(at(RING_A[i]) for i in range(5)), strict=True)
    with pytest.raises(StateError, match="injected: add_push failed"):
        engine.on_locations(user_id=users, lat=list(lat), lon=list(lon), ts=[T0 + i for i in range(5)])
    other = og.SQLiteState(path)  # another connection: only what was committed
    assert [p["user_id"] for p in other.pushes()] == ["u0", "u1"]
    assert other.read_user("u2") is None and other.read_user("u1") is not None
    assert [d.user_id for d in delivered] == ["u0", "u1"]
    assert [d.user_id for d in engine.on_locations(user_id=users[2:], lat=list(lat[2:]), lon=list(lon[2:]),
                                                   ts=[T0 + 10 + i for i in range(3)])] == users[2:]  # fmt: skip
    other.close()


def test_a_fault_in_the_middle_of_a_record_changes_nothing(state):
    index, offers, policy = make_world()
    faulty = FaultyState(state)
    engine = og.Dispatcher(index, offers, policy=policy, state=faulty)
    (push,) = engine.on_location("u", *at(RING_A[0]), T0)
    before = snapshot(state)
    dismiss = og.Event("dismiss", "u", T0 + 30, push_id=push.push_id, event_id="dismiss-1")
    faulty.fail_at = "put_idem"  # after the event row and the user's cooldown were written
    with pytest.raises(StateError, match="injected: put_idem failed"):
        engine.record(dismiss)
    assert snapshot(state) == before
    assert engine.on_location("u", *at(RING_A[1]), T0 + 60) != []  # no dismiss cooldown was stored
    faulty.fail_at = None
    assert engine.record(dismiss) == push.push_id
    assert engine.record(dismiss) == push.push_id
    assert [e["event_id"] for e in state.events()] == ["dismiss-1"]
    assert engine.on_location("u", *at(RING_A[2]), T0 + 90) == []  # now the cooldown holds


def test_rejected_input_changes_nothing_and_does_not_burn_its_event_id(state):
    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=state)
    (push,) = engine.on_location("u", *at(RING_A[0]), T0)
    before = snapshot(state)
    with pytest.raises(UnknownPushError, match="'p99' was not issued to user 'u'"):
        engine.record(og.Event("redeem", "u", T0 + 60, push_id="p99", amount=20.0, event_id="redeem-1"))
    with pytest.raises(UnknownPushError, match="was not issued to user 'v'"):
        engine.record(og.Event("redeem", "v", T0 + 60, push_id=push.push_id, event_id="redeem-1"))
    with pytest.raises(InvalidCoordinateError, match="lat = nan is not a finite number"):
        engine.on_location("u", float("nan"), LON0, T0 + 90, event_id="ping-2")
    assert snapshot(state) == before
    # the ids of rejected calls are free: the corrected calls are processed, not answered as duplicates
    assert engine.record(og.Event("redeem", "u", T0 + 60, push_id=push.push_id, event_id="redeem-1")) == "p1"
    (second,) = engine.on_location("u", *at(RING_A[1]), T0 + 90, event_id="ping-2")
    assert [e["event_id"] for e in state.events()] == ["redeem-1"] and second.push_id == "p2"


def test_a_failing_deliver_hook_records_one_failed_event(state):
    calls = []

    def deliver(d):
        calls.append(d.push_id)
        if d.user_id == "u":
            raise ConnectionError("push gateway down")

    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=state, deliver=deliver)
    (lost,) = engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1")  # the hook's error is not raised
    assert engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1") == [lost]  # redelivered ping: no retry
    (ok,) = engine.on_location("v", *at(RING_A[0]), T0 + 1)
    assert calls == [lost.push_id, ok.push_id]
    failed = [e for e in state.events() if e["kind"] == "failed"]
    assert [(e["user_id"], e["push_id"], e["offer_id"]) for e in failed] == [("u", lost.push_id, "o1")]
    (row,) = engine.report(by="all", as_frame=False)
    assert (row["pushed"], row["failed"], row["delivered"]) == (2, 1, 1)


# ------------------------------------------------------------------ bugs
def test_a_ping_scored_while_another_thread_feeds_the_same_users_history(state, monkeypatch):
    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=state)
    (push,) = engine.on_location("u", *at(RING_A[0]), T0)
    engine.record(og.Event("redeem", "u", T0 + 60, push_id=push.push_id, amount=20.0))  # u now likes coffee
    coffee = engine.scorer.history._users["u"].category["coffee"]
    pinger = threading.get_ident()
    mid_scan, feeding, fed = threading.Event(), threading.Event(), threading.Event()
    # Force an interleaving the GIL can produce: the ping's scoring is between two items of the user's
    # categories exactly when the other thread's (already committed) record() feeds the history.
    real_at = _Decayed.at

    def at_pausing(self, t, half_life_s):
        if self is coffee and threading.get_ident() == pinger and not mid_scan.is_set():
            mid_scan.set()
            fed.wait(timeout=2)  # (a history that locks its readers makes the feed wait instead: no deadlock)
        return real_at(self, t, half_life_s)

    real_record = engine.scorer.record

    def record_when_mid_scan(event):
        feeding.set()
        mid_scan.wait(timeout=2)
        real_record(event)
        fed.set()

    monkeypatch.setattr(_Decayed, "at", at_pausing)
    monkeypatch.setattr(engine.scorer, "record", record_when_mid_scan)
    other = threading.Thread(target=engine.record, args=(og.Event("open", "u", T0 + 90, offer_id="o2"),))
    other.start()
    try:
        assert feeding.wait(timeout=10)  # the other record() has committed and is feeding the history
        got = engine.on_location("u", *at(RING_A[1]), T0 + 120)
    finally:
        other.join(timeout=10)
    assert [d.store_id for d in got] == ["a1"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc (Linux)")
def test_close_releases_the_connections_of_every_thread(tmp_path):
    path = tmp_path / "state.db"

    def open_files():
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(path)):
                out.append(target)
        return out

    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path))
    used, release = threading.Event(), threading.Event()

    def worker():  # a long-lived thread (a server's pool) that used the dispatcher
        engine.on_location("u", *at(RING_A[0]), T0)
        used.set()
        release.wait(timeout=30)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert used.wait(timeout=30)
        assert open_files()  # the oracle sees the file while it is in use
        engine.close()
        still_open = open_files()
    finally:
        release.set()
        thread.join(timeout=30)
    assert still_open == []


def test_stores_added_and_removed_while_pings_arrive_never_misname_a_store():
    """A thread changes the index while another pings: every push names a store whose fence holds the ping."""
    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy)
    stop = threading.Event()
    extra = [{"store_id": f"x{i}", "lat": LAT0 + 0.01 + i * 1e-4, "lon": LON0, "merchant_id": "m1"} for i in range(40)]

    def churn():
        k = 0
        while not stop.is_set():
            batch = extra[(k % 4) * 10 : (k % 4) * 10 + 10]
            index.add(batch)
            index.remove([r["store_id"] for r in batch])
            k += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        made = []
        for k in range(400):
            ring = RING_A if k % 2 else RING_B
            lat, lon = at(ring[k % len(ring)])
            for d in engine.on_location(f"u{k}", lat, lon, T0 + k):
                made.append((d, lat, lon))
    finally:
        stop.set()
        worker.join()
    assert len(made) > 100
    for d, lat, lon in made:
        p = int(index.stores.position_of(d.store_id)[0])
        dist = GEOD.inv(lon, lat, float(index.stores.lon[p]), float(index.stores.lat[p]))[2]
        assert dist <= policy.fence_radius_m + 1e-6 and abs(dist - d.distance_m) < 1e-6, d
