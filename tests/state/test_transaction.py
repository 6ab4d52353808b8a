"""The Transaction protocol, driven directly on every backend and checked against a plain-dict model.

The dispatcher's suites test the backends through the engine; this one calls the
:class:`~o2o_geo._state.Transaction` operations themselves, in random sequences
of transactions (hypothesis), some of which fail half way.  The model is a few
dicts and lists written here from the protocol's docstrings: a committed unit
changes exactly what it wrote, a failed one changes nothing, a unit reads its
own writes, ``latest_push`` is the latest matching push (the last stored wins
a tie), and ``forget_user`` erases a user's records and counters but no one
else's.
"""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from o2o_geo._state import EVENT_FIELDS, PUSH_FIELDS, DispatchState, Transaction
from o2o_geo._state._keys import SEQ, event_key, id_text, ping_key, user_day

USERS = ["u1", "u2", 7]  # a string id and an int id that must not meet ("7" is not 7)
OFFERS = ["o1", "o2"]
MERCHANTS = ["m1", "m2"]
DAY = "2026-01-01"


def counter_keys():
    """A shared budget, the sequence, and one day counter per user (erased with the user)."""
    return ["ob|o1|n", SEQ, *(user_day(id_text(u), DAY) for u in USERS)]


class Failed(Exception):
    """Raised inside a unit of work to abort it."""


class Model:
    """What the state must hold: the protocol's semantics in plain Python."""

    def __init__(self):
        self.users, self.profiles, self.counters, self.idems = {}, {}, {}, {}
        self.pushes, self.events = [], []

    def latest_push(self, user_id, lo_ts, hi_ts, offer_id, merchant_id):
        field, want = ("offer_id", offer_id) if offer_id is not None else ("merchant_id", merchant_id)
        best = None
        for p in self.pushes:  # stored order: a later push of equal ts replaces the earlier one
            same_user = type(p["user_id"]) is type(user_id) and p["user_id"] == user_id
            if same_user and lo_ts <= p["ts"] <= hi_ts and p[field] == want and (best is None or p["ts"] >= best["ts"]):
                best = p
        return best

    def forget(self, user_id):
        def mine(v):
            return type(v) is type(user_id) and v == user_id

        self.users = {u: v for u, v in self.users.items() if not mine(u)}
        self.profiles = {u: v for u, v in self.profiles.items() if not mine(u)}
        prefix = f"u|{id_text(user_id)}|"
        self.counters = {k: v for k, v in self.counters.items() if not k.startswith(prefix)}
        self.idems = {e: v for e, v in self.idems.items() if not mine(v[0])}
        self.pushes = [p for p in self.pushes if not mine(p["user_id"])]
        self.events = [e for e in self.events if not mine(e["user_id"])]


# ------------------------------------------------------------------ random units of work
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
records = st.dictionaries(st.text(min_size=1, max_size=4), json_values, max_size=3)
times = st.integers(0, 20).map(lambda m: 1767225600.0 + 60.0 * m)  # few distinct times: ties happen


def op_strategy(push_ids, event_ids):
    user = st.sampled_from(USERS)
    push = st.fixed_dictionaries(
        {
            "user_id": user,
            "offer_id": st.sampled_from(OFFERS),
            "store_id": st.sampled_from(["s1", 2]),
            "merchant_id": st.sampled_from(MERCHANTS),
            "ts": times,
            "holdout": st.booleans(),
            "score": st.floats(0, 1),
            "distance_m": st.floats(0, 5000),
            "trigger": st.sampled_from(["enter", "dwell", "lapsed"]),
        }
    )
    event = st.fixed_dictionaries(
        {
            "event_id": st.none() | st.just("given"),
            "user_id": user,
            "kind": st.sampled_from(["open", "redeem", "visit"]),
            "ts": times,
            "offer_id": st.none() | st.sampled_from(OFFERS),
            "store_id": st.none() | st.just("s1"),
            "merchant_id": st.none() | st.sampled_from(MERCHANTS),
            "push_id": st.none() | st.sampled_from(push_ids),
            "amount": st.none() | st.floats(0, 500),
            "distance_m": st.none() | st.floats(0, 500),
            "inferred": st.booleans(),
        }
    )
    return st.one_of(
        st.tuples(st.just("put_user"), user, records),
        st.tuples(st.just("put_profile"), user, records),
        st.tuples(st.just("add_counter"), st.sampled_from(counter_keys()), st.integers(-3, 5).map(float)),
        st.tuples(st.just("next_seq")),
        st.tuples(st.just("put_idem"), st.sampled_from(event_ids), user, json_values.filter(lambda v: v is not None)),
        st.tuples(st.just("add_push"), push),
        st.tuples(st.just("add_event"), event),
        st.tuples(
            st.just("latest_push"), user, times, times, st.none() | st.sampled_from(OFFERS), st.sampled_from(MERCHANTS)
        ),  # fmt: skip
    )


PUSH_IDS = [f"p{i}" for i in range(60)]  # more than a plan can add: each push takes the next one
EVENT_IDS = [ping_key("e1"), ping_key(3), event_key("3"), event_key(3)]  # the idempotency keys of four ids
EXAMPLES = itertools.count()
units = st.lists(
    st.tuples(
        st.sampled_from(["commit", "fail", "forget"]),
        st.lists(op_strategy(PUSH_IDS, EVENT_IDS), max_size=6),
        st.sampled_from(USERS),
    ),
    min_size=1,
    max_size=8,
)


def apply(tx: Transaction, staged: Model, op, fresh_ids):
    """Run one operation on ``tx`` and on the staged model, checking every read against the model."""
    name, *args = op
    if name == "put_user":
        tx.put_user(*args)
        staged.users[args[0]] = copy.deepcopy(args[1])
        assert tx.get_user(args[0]) == args[1]  # a unit reads its own writes
    elif name == "put_profile":
        tx.put_profile(*args)
        staged.profiles[args[0]] = copy.deepcopy(args[1])
        assert tx.get_profile(args[0]) == args[1]
    elif name == "add_counter":
        key, delta = args
        assert tx.counter(key) == staged.counters.get(key, 0.0)
        tx.add_counter(key, delta)
        staged.counters[key] = staged.counters.get(key, 0.0) + delta
        assert tx.counter(key) == staged.counters[key]
    elif name == "next_seq":
        got = tx.next_seq()
        staged.counters[SEQ] = staged.counters.get(SEQ, 0.0) + 1.0
        assert got == int(staged.counters[SEQ])
    elif name == "put_idem":
        event_id, user_id, payload = args
        tx.put_idem(event_id, user_id, payload)
        staged.idems[event_id] = (user_id, copy.deepcopy(payload))
        assert tx.idem(event_id) == payload
    elif name == "add_push":
        rec = dict(args[0], push_id=next(fresh_ids))
        assert tx.push(rec["push_id"]) is None
        tx.add_push(rec)
        staged.pushes.append(rec)
        assert tx.push(rec["push_id"]) == rec
    elif name == "add_event":  # an event id is stored once (the dispatcher checks idem first): a fresh one
        rec = args[0] if args[0]["event_id"] is None else dict(args[0], event_id=next(fresh_ids))
        tx.add_event(rec)
        staged.events.append(dict(rec))
    elif name == "latest_push":
        user_id, a, b, offer_id, merchant_id = args
        lo, hi = min(a, b), max(a, b)
        assert tx.latest_push(user_id, lo, hi, offer_id, merchant_id) == staged.latest_push(
            user_id, lo, hi, offer_id, merchant_id
        )


def assert_holds(state: DispatchState, model: Model):
    """Everything the state returns, outside and inside a transaction, equals the model."""
    for u in USERS:
        assert state.read_user(u) == model.users.get(u)
        assert state.read_profile(u) == model.profiles.get(u)
    assert state.pushes() == model.pushes
    assert state.events() == model.events
    with state.transaction() as tx:
        for key in counter_keys():
            assert tx.counter(key) == model.counters.get(key, 0.0)
        for e in EVENT_IDS:
            assert tx.idem(e) == (model.idems[e][1] if e in model.idems else None)
        for p in PUSH_IDS:
            want = next((r for r in model.pushes if r["push_id"] == p), None)
            assert tx.push(p) == want
        for u, offer, merchant in itertools.product(USERS, [None, *OFFERS], MERCHANTS):
            assert tx.latest_push(u, -1e18, 1e18, offer, merchant) == model.latest_push(u, -1e18, 1e18, offer, merchant)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=units)
def test_random_units_of_work_match_the_model(state_factory, plan):
    state = state_factory(f"s{next(EXAMPLES)}.db")  # a fresh state (and SQLite file) per example
    model = Model()
    fresh_ids = iter(PUSH_IDS)  # push ids, and the ids of events that have one
    for outcome, ops, user in plan:
        if outcome == "forget":
            state.forget_user(user)
            model.forget(user)
        else:
            staged = copy.deepcopy(model)
            try:
                with state.transaction() as tx:
                    for op in ops:
                        apply(tx, staged, op, fresh_ids)
                    if outcome == "fail":
                        raise Failed
            except Failed:
                pass  # nothing of the unit may remain: the model stays as it was
            else:
                model = staged
        assert_holds(state, model)


def test_run_returns_what_the_work_decided_and_commits_it(state):
    def take(tx):
        if tx.counter("stock") >= 2:
            return False
        tx.add_counter("stock", 1.0)
        return True

    assert [state.run(take) for _ in range(3)] == [True, True, False]
    with state.transaction() as tx:
        assert tx.counter("stock") == 2.0


def test_a_failed_run_changes_nothing(state):
    with state.transaction() as tx:
        tx.put_user("u1", {"n": 1})

    def work(tx):
        tx.put_user("u1", {"n": 2})
        tx.add_counter("stock", 1.0)
        raise Failed

    with pytest.raises(Failed):
        state.run(work)
    assert state.read_user("u1") == {"n": 1}
    with state.transaction() as tx:
        assert tx.counter("stock") == 0.0


def test_a_group_keeps_the_units_before_a_failing_one(state):
    with pytest.raises(Failed), state.group():
        for i in range(3):
            with state.transaction() as tx:
                tx.add_counter("pings", 1.0)
                tx.put_user(f"u{i}", {"i": i})
                if i == 2:
                    raise Failed
    assert [state.read_user(f"u{i}") for i in range(3)] == [{"i": 0}, {"i": 1}, None]
    with state.transaction() as tx:
        assert tx.counter("pings") == 2.0


def test_the_record_fields_are_the_documented_ones(state):
    push = dict.fromkeys(PUSH_FIELDS, "x") | {"ts": 1.0, "holdout": False, "score": 0.5, "distance_m": 3.0}
    event = dict.fromkeys(EVENT_FIELDS) | {"user_id": "x", "kind": "open", "ts": 2.0, "inferred": False}
    with state.transaction() as tx:
        tx.add_push(push)
        tx.add_event(event)
    assert [set(p) for p in state.pushes()] == [set(PUSH_FIELDS)]
    assert [set(e) for e in state.events()] == [set(EVENT_FIELDS)]


@pytest.mark.parametrize("units", [1, 2], ids=["one unit", "two units"])
def test_of_pushes_at_one_time_the_last_stored_is_the_latest(state, units):
    """One ping pushing two offers of a merchant: an event naming only the merchant goes to the second push."""
    ids = [f"p{i}" for i in (9, 10, 2)]  # neither lexicographic nor numeric order is the order stored
    recs = [
        dict.fromkeys(PUSH_FIELDS, "x")
        | {
            "push_id": pid,
            "user_id": "u1",
            "offer_id": f"o{i}",
            "merchant_id": "m1",
            "ts": 5.0,
            "holdout": False,
            "score": 0.5,
            "distance_m": 1.0,
        }  # fmt: skip
        for i, pid in enumerate(ids)
    ]
    if units == 1:
        with state.transaction() as tx:
            for rec in recs:
                tx.add_push(rec)
            assert tx.latest_push("u1", 0.0, 10.0, merchant_id="m1")["push_id"] == "p2"
    else:
        for rec in recs:
            with state.transaction() as tx:
                tx.add_push(rec)
    with state.transaction() as tx:
        assert tx.latest_push("u1", 0.0, 10.0, merchant_id="m1")["push_id"] == "p2"
        assert tx.latest_push("u1", 0.0, 10.0, offer_id="o0")["push_id"] == "p9"
        assert tx.latest_push("u1", 0.0, 4.0, merchant_id="m1") is None
