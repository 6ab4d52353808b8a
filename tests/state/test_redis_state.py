"""RedisState on a real redis-server: keys, TTLs, forgetting a user, failing closed, round trips.

The dispatcher's conformance suite (tests/dispatch/test_dispatch.py) and the fault tests
(tests/dispatch/test_dispatch_faults.py) also run on this backend.
"""

from __future__ import annotations

import json
import time

import pytest
from _worlds import RING_A, RING_B, T0, RedisServer, at, make_world, new_redis_state

import o2o_geo as og
from o2o_geo.errors import InvalidParameterError, StateError


def keys_of(st):
    return sorted(k.decode() for k in st.r.scan_iter(match=f"{st.ns}:*"))


def test_keys_are_namespaced_and_time_bounded_ones_expire(redis_server):
    st = new_redis_state(redis_server)
    index, offers, policy = make_world(max_per_day=3, offer_budgets={"o1": og.Budget(max_pushes=10)})
    engine = og.Dispatcher(index, offers, policy=policy, state=st)
    (d,) = engine.on_location("u1", *at(RING_A[0]), T0, event_id="ping-1")
    engine.record(og.Event("redeem", "u1", T0 + 60, push_id=d.push_id, event_id="r-1"))
    other = og.MemoryState()
    assert og.Dispatcher(index, offers, policy=policy, state=other).on_location("u1", *at(RING_A[0]), T0)
    ks = keys_of(st)
    assert ks and all(k.startswith(st.ns + ":") for k in ks)
    ttl = {k: st.r.ttl(k) for k in ks}
    day = [k for k in ks if k.startswith(f'{st.ns}:ctr:u|"u1"|d|')]
    week = [k for k in ks if k.startswith(f'{st.ns}:ctr:u|"u1"|w|')]
    idem = [k for k in ks if k.startswith(f"{st.ns}:idem:")]
    assert len(day) == 1 and 2 * 86400 < ttl[day[0]] <= 3 * 86400
    assert len(week) == 1 and 8 * 86400 < ttl[week[0]] <= 9 * 86400  # the week and two days' margin
    assert len(idem) == 2 and all(6 * 86400 < ttl[k] <= 7 * 86400 for k in idem)
    assert ttl[f"{st.ns}:user:" + '"u1"'] > 29 * 86400
    assert ttl[f'{st.ns}:ctr:ob|"o1"|n'] == -1  # budgets never expire
    assert ttl[f"{st.ns}:ctr:seq"] == -1
    st.close()


def test_the_users_key_index_keeps_only_live_keys_and_expires(redis_server):
    """A user pinging for months must not grow the index of their keys: expired entries go, and so does the index."""
    st = new_redis_state(redis_server, idempotency_ttl_s=1)
    index_key = f'{st.ns}:ukeys:"u"'
    for i in range(40):  # forty pings with ids, each remembered for 1 s
        with st.transaction() as tx:
            tx.put_idem(f"ping-{i}", "u", {"push_id": None})
    assert st.r.zcard(index_key) == 40 and 0 < st.r.ttl(index_key) <= 2
    time.sleep(2.1)
    with st.transaction() as tx:
        tx.put_idem("ping-late", "u", {"push_id": None})
        tx.add_counter('u|"u"|d|2026-01-01', 1.0)  # a day counter: 3 days
    members = {m.decode() for m in st.r.zrange(index_key, 0, -1)}
    assert members == {f"{st.ns}:idem:ping-late", f'{st.ns}:ctr:u|"u"|d|2026-01-01'}  # the expired 40 are gone
    assert 2 * 86400 < st.r.ttl(index_key) <= 3 * 86400 + 2  # it lives as long as its longest-lived key
    with st.transaction() as tx:
        tx.add_counter('u|"u"|o|"latte"', 1.0)  # a per-offer cap never expires: neither may the index
    assert st.r.ttl(index_key) == -1 and st.r.ttl(f'{st.ns}:ctr:u|"u"|o|"latte"') == -1
    st.forget_user("u")
    assert keys_of(st) == []
    st.close()


def test_forget_user_removes_every_key_of_the_user(redis_server):
    st = new_redis_state(redis_server)
    index, offers, policy = make_world(offer_budgets={"o1": og.Budget(max_pushes=10)})
    engine = og.Dispatcher(index, offers, policy=policy, state=st)
    for user in ("gone", "stays"):
        (d,) = engine.on_location(user, *at(RING_A[0]), T0, event_id=f"ping-{user}")
        engine.record(og.Event("redeem", user, T0 + 60, push_id=d.push_id, event_id=f"r-{user}"))
    before = keys_of(st)
    engine.forget_user("gone")
    after = keys_of(st)
    assert not any('"gone"' in k for k in after)
    assert [p["user_id"] for p in st.pushes()] == ["stays"] and [e["user_id"] for e in st.events()] == ["stays"]
    assert any('"stays"' in k for k in after)
    assert len(before) - len(after) >= 6  # user, day/week/offer counters, idem x2, push, event, sets
    assert float(st.r.get(f'{st.ns}:ctr:ob|"o1"|n')) == 2.0  # budget totals stay
    # the forgotten user's ping id is free again; the other user's is not
    assert len(engine.on_location("gone", *at(RING_A[0]), T0 + 120, event_id="ping-gone")) == 1
    assert engine.on_location("stays", *at(RING_A[0]), T0, event_id="ping-stays")[0].push_id == "p2"
    st.close()


def test_pushes_written_before_ordered_members_are_still_read_and_forgotten(redis_server):
    """Older data holds a user's pushes as plain push ids in ``upush``; new ones are ``<seq>|<push id>``."""
    st = new_redis_state(redis_server)
    rec = {"push_id": "p1", "user_id": "u", "offer_id": "o1", "store_id": "a0", "merchant_id": "m1", "ts": T0,
           "holdout": False, "score": 0.5, "distance_m": 3.0, "trigger": "enter"}  # fmt: skip
    st.r.set(f'{st.ns}:push:"p1"', json.dumps(rec))  # as an older version wrote it
    st.r.rpush(f"{st.ns}:pushes", '"p1"')
    st.r.zadd(f'{st.ns}:upush:"u"', {'"p1"': T0})
    with st.transaction() as tx:
        assert tx.latest_push("u", T0 - 1, T0 + 1, offer_id="o1") == rec
        tx.add_push(rec | {"push_id": "p2", "ts": T0 + 5})
    members = [m.decode() for m in st.r.zrange(f'{st.ns}:upush:"u"', 0, -1)]
    assert members[0] == '"p1"' and members[1].endswith('|"p2"') and members[1].split("|")[0].isdigit()
    with st.transaction() as tx:
        assert tx.latest_push("u", T0 - 1, T0 + 10, merchant_id="m1")["push_id"] == "p2"
    st.forget_user("u")
    assert st.pushes() == [] and keys_of(st) == [f"{st.ns}:ctr:push_seq"]
    st.close()


def test_connection_loss_fails_closed_and_recovers(tmp_path):
    server = RedisServer(tmp_path)
    try:
        st = og.RedisState(server.url, namespace="fc", socket_timeout_s=1.0)
        index, offers, policy = make_world()
        engine = og.Dispatcher(index, offers, policy=policy, state=st)
        assert len(engine.on_location("u", *at(RING_A[0]), T0)) == 1
        server.stop()  # mid-run
        with pytest.raises(StateError, match="unreachable"):
            engine.on_location("u", *at(RING_B[0]), T0 + 60)
        with pytest.raises(StateError, match="unreachable.*nothing was changed"):
            engine.record(og.Event("open", "u", T0 + 70, offer_id="o1"))
        assert engine.stats["pushed"] == 1  # no push was decided without the state
        server.start()  # an empty server (no persistence): the engine carries on
        assert len(engine.on_location("v", *at(RING_B[0]), T0 + 120)) == 1
        st.close()
    finally:
        server.stop()


def trips(st, call):
    """The round trips of ``call()`` (its result too)."""
    st.round_trips = 0
    out = call()
    return st.round_trips, out


def test_round_trips_per_ping(redis_server):
    st = new_redis_state(redis_server)
    index, offers, policy = make_world(min_gap_s=1800.0, dwell_s=300.0)  # caps: day and week only
    engine = og.Dispatcher(index, offers, policy=policy, state=st)
    n, _ = trips(st, lambda: engine.on_location("first", *at(RING_B[0]), T0))
    assert n == 3  # a push, and loading the scripts: one pipeline, once per state
    far = RING_A[0]["lat"] + 0.05, RING_A[0]["lon"]
    n, _ = trips(st, lambda: [engine.on_location(f"idle-{k}", *far, T0 + k) for k in range(100)])
    assert n == 100  # an idle ping (no fence near, no fence state): one GET
    n, (push,) = trips(st, lambda: engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1"))
    assert n == 2  # enter + push: one MGET (user, ping id, caps, push sequence), one commit
    n, again = trips(st, lambda: engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1"))
    assert (n, again) == (1, [push])  # a redelivered ping: the MGET answers it, nothing to commit
    # inside, nothing changes: the MGET answers it, nothing to commit
    assert trips(st, lambda: engine.on_location("u", *at(RING_A[0]), T0 + 60)) == (1, [])
    exit_ = trips(st, lambda: engine.on_location("u", *far, T0 + 120, event_id="ping-2"))
    assert exit_ == (2, [])  # exit: GET, commit (which checks that the ping id is new)
    n, out = trips(st, lambda: engine.on_location("u", *at(RING_A[1]), T0 + 180))
    assert (n, out, engine.stats["min_gap"]) == (2, [], 1)  # enter, no push (min gap): MGET, commit
    engine.on_location("u2", *at(RING_A[2]), T0)  # enter + push
    n, (dwell,) = trips(st, lambda: engine.on_location("u2", *at(RING_A[2]), T0 + 1900))
    assert (n, dwell.trigger) == (3, "dwell")  # a push after a visit: the visit's attribution is one script call
    redeem = og.Event("redeem", "u", T0 + 600, push_id=push.push_id, event_id="r1")
    assert trips(st, lambda: engine.record(redeem)) == (2, push.push_id)  # MGET (event id, push), commit
    opened = og.Event("open", "u", T0 + 660, offer_id="o1", event_id="o1")
    assert trips(st, lambda: engine.record(opened)) == (2, push.push_id)  # the attribution query, commit
    assert trips(st, lambda: engine.record(opened)) == (3, push.push_id)  # again: refused commit, MGET
    assert [e["event_id"] for e in st.events()] == [None, "r1", "o1"]  # the dwell's visit, the redeem, the open
    st.r.script_flush()  # a restarted server has lost the scripts: NOSCRIPT, loaded again, called again
    n, (push3,) = trips(st, lambda: engine.on_location("u3", *at(RING_A[3]), T0))
    assert n == 4 and st.pushes()[-1]["push_id"] == push3.push_id
    st.close()


def test_a_push_with_offer_limits_and_budgets_costs_two_round_trips(redis_server):
    st = new_redis_state(redis_server)
    limits = {"max_per_offer": 1, "max_per_merchant_per_day": 1, "store_daily_capacity": 50}
    budgets = {"offer_budgets": {"o1": og.Budget(max_pushes=10, max_cost=100.0)}}
    index, offers, policy = make_world(**limits, **budgets, merchant_budgets={"m1": og.Budget(max_pushes=10)})
    engine = og.Dispatcher(index, offers, policy=policy, state=st)
    engine.on_location("warm-up", *at(RING_B[0]), T0)
    n, (push,) = trips(st, lambda: engine.on_location("u", *at(RING_A[0]), T0, event_id="ping-1"))
    # one MGET (user, ping id, caps, sequence, and every limit a push at this store could charge), one commit
    assert n == 2
    n, out = trips(st, lambda: engine.on_location("u", *at(RING_A[1]), T0 + 60))
    assert (n, out, engine.stats["capped"]) == (2, [], 1)  # the same read, the offer cap holds: no push
    assert float(st.r.get(st._k("ctr", 'ob|"o1"|n'))) == 1.0
    st.close()


def test_a_commit_after_another_clients_write_is_rejected_and_retried(redis_server):
    a = new_redis_state(redis_server)
    b = og.RedisState(redis_server.url, namespace=a.ns)  # another replica
    a.run(lambda tx: tx.add_counter("budget", 1.0))
    seen = []

    def spend_if_below_two(tx):  # a check-and-increment, as the dispatcher's caps and budgets
        value = tx.counter("budget")
        seen.append(value)
        if len(seen) == 1:  # between this attempt's read and its commit, the other replica spends too
            b.run(lambda tx2: tx2.add_counter("budget", 1.0) if tx2.counter("budget") < 2 else None)
        if value < 2:
            tx.add_counter("budget", 1.0)
        return value

    assert a.run(spend_if_below_two) == 2.0
    assert seen == [1.0, 2.0]  # the first commit was refused; the retry read the other replica's write
    assert float(a.r.get(a._k("ctr", "budget"))) == 2.0  # not 3: the limit held
    # without retry (transaction()), the conflict is an error and nothing is written
    with pytest.raises(StateError, match="another client changed what this transaction read"):
        with a.transaction() as tx:
            tx.idem("e:1")  # absent
            b.run(lambda tx2: tx2.put_idem("e:1", "u", {"push_id": None}))
            tx.put_idem("e:1", "u", {"push_id": "p7"})
            tx.add_counter("budget", 1.0)
    assert float(a.r.get(a._k("ctr", "budget"))) == 2.0
    assert json.loads(a.r.get(a._k("idem", "e:1"))) == ["u", {"push_id": None}]
    a.close()
    b.close()


def test_a_transaction_after_read_user_sees_other_replicas_commits(redis_server):
    """read_user's cached value may seed the next run(), which checks it; a transaction() never retries, so no."""
    a = new_redis_state(redis_server)
    b = og.RedisState(redis_server.url, namespace=a.ns)
    with a.transaction() as tx:
        tx.put_user("u", {"v": 1})
    assert a.read_user("u") == {"v": 1}
    b.run(lambda tx: tx.put_user("u", {"v": 2}))
    with a.transaction() as tx:
        assert tx.get_user("u") == {"v": 2}
        tx.put_user("u", {"v": 12})
    assert a.read_user("u") == {"v": 12}
    a.read_user("u")
    b.run(lambda tx: tx.put_user("u", {"v": 3}))
    assert a.run(lambda tx: tx.get_user("u")) == {"v": 3}  # run() may guess from the cache, but checks it
    a.close()
    b.close()


def test_a_push_added_after_an_attribution_read_is_seen_by_the_retry(redis_server):
    a = new_redis_state(redis_server)
    b = og.RedisState(redis_server.url, namespace=a.ns)
    rec = dict.fromkeys(("store_id", "score", "distance_m", "trigger"))
    push = {**rec, "push_id": "p1", "user_id": "u", "offer_id": "o1", "merchant_id": "m1", "ts": T0, "holdout": False}
    attempts = []

    def attribute(tx):
        latest = tx.latest_push("u", T0 - 3600, T0 + 3600, offer_id="o1")
        attempts.append(latest)
        if len(attempts) == 1:
            b.run(lambda tx2: tx2.add_push(push))
        tx.add_counter("attributed", 1.0)
        return None if latest is None else latest["push_id"]

    assert a.run(attribute) == "p1"  # the range query is run again by the commit: its change was a conflict
    assert attempts == [None, push]
    assert float(a.r.get(a._k("ctr", "attributed"))) == 1.0
    a.close()
    b.close()


def test_a_read_only_unit_is_one_snapshot(redis_server):
    a = new_redis_state(redis_server)
    b = og.RedisState(redis_server.url, namespace=a.ns)
    a.run(lambda tx: (tx.add_counter("x", 1.0), tx.add_counter("y", 1.0)))

    def both(tx):
        tx.prefetch(counters=["x", "y"])
        return tx.counter("x"), tx.counter("y")

    assert trips(a, lambda: a.run(both)) == (1, (1.0, 1.0))  # one MGET, nothing to commit
    reads = []

    def one_by_one(tx):  # two reads, two batches: checked by the commit script, which writes nothing
        x = tx.counter("x")
        if not reads:
            b.run(lambda tx2: (tx2.add_counter("x", 1.0), tx2.add_counter("y", 1.0)))
        reads.append((x, tx.counter("y")))
        return reads[-1]

    assert a.run(one_by_one) == (2.0, 2.0)  # never (1.0, 2.0), which no moment of the server held
    assert reads == [(1.0, 2.0), (2.0, 2.0)]

    def torn(tx):  # an error is raised only if the reads it came from are still current
        x = tx.counter("x")
        if x == 2.0:
            b.run(lambda tx2: (tx2.add_counter("x", 1.0), tx2.add_counter("y", 1.0)))
        if x != tx.counter("y"):
            raise ValueError("a torn read")
        return x

    assert a.run(torn) == 3.0
    a.close()
    b.close()


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="namespace"):
        og.RedisState("redis://127.0.0.1:1/0", namespace="a:b")
    with pytest.raises(InvalidParameterError, match="retries"):
        og.RedisState("redis://127.0.0.1:1/0", retries=0)
    assert og.RedisState("redis://127.0.0.1:1/0", namespace="{o2o}")._k("user", "7") == "{o2o}:user:7"  # a hash tag
