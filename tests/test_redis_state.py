"""RedisState on a real redis-server: keys, TTLs, forgetting a user, failing closed, round trips.

The dispatcher's conformance suite (tests/test_dispatch.py) and the fault tests
(tests/test_dispatch_faults.py) also run on this backend.
"""

from __future__ import annotations

import pytest
from conftest import RedisServer, new_redis_state
from test_dispatch_faults import RING_A, RING_B, T0, at, make_world

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
    assert len(week) == 1 and 14 * 86400 < ttl[week[0]] <= 15 * 86400
    assert len(idem) == 2 and all(6 * 86400 < ttl[k] <= 7 * 86400 for k in idem)
    assert ttl[f"{st.ns}:user:" + '"u1"'] > 29 * 86400
    assert ttl[f'{st.ns}:ctr:ob|"o1"|n'] == -1  # budgets never expire
    assert ttl[f"{st.ns}:ctr:seq"] == -1
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
        with pytest.raises(StateError):
            engine.record(og.Event("open", "u", T0 + 70, offer_id="o1"))
        assert engine.stats["pushed"] == 1  # no push was decided without the state
        server.start()  # an empty server (no persistence): the engine carries on
        assert len(engine.on_location("v", *at(RING_B[0]), T0 + 120)) == 1
        st.close()
    finally:
        server.stop()


def test_round_trips_per_ping(redis_server):
    st = new_redis_state(redis_server)
    index, offers, policy = make_world()
    engine = og.Dispatcher(index, offers, policy=policy, state=st)
    far = RING_A[0]["lat"] + 0.05, RING_A[0]["lon"]
    st.round_trips = 0
    for k in range(100):
        engine.on_location(f"idle-{k}", *far, T0 + k)
    assert st.round_trips == 100  # an idle ping (no fence near, no fence state): one GET
    st.round_trips = 0
    engine.on_location("u", *at(RING_A[0]), T0)  # enter + push
    push_trips = st.round_trips
    assert 2 < push_trips <= 7  # WATCH+MGET of the user, of the caps, of the offer limits, then EXEC
    st.close()


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="namespace"):
        og.RedisState("redis://127.0.0.1:1/0", namespace="a:b")
    with pytest.raises(InvalidParameterError, match="retries"):
        og.RedisState("redis://127.0.0.1:1/0", retries=0)
