"""UserHistory's bounds: places per user and idle users, against a brute-force model of the same rules."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo._history import reading
from o2o_geo.errors import InvalidParameterError

DAY = 86_400.0
HALF_LIFE_DAYS = 10.0


def visits(rng, n, n_stores, n_users=1, span_days=120.0):
    """Visits in time order, stores drawn with a skew (a few favourites, a long tail)."""
    ts = np.sort(rng.uniform(0, span_days * DAY, n))
    weights = 1.0 / np.arange(1, n_stores + 1)
    stores = rng.choice(n_stores, size=n, p=weights / weights.sum())
    users = rng.integers(n_users, size=n)
    return [og.Event("visit", int(u), float(t), store_id=f"s{s}", merchant_id="m", category="c")
            for u, t, s in zip(users, ts, stores, strict=True)]  # fmt: skip


def brute_places(events, cap):
    """The rule, replayed on plain lists: a place's visits since it was last (re)learnt; the weakest go.

    When a new place takes the user past ``cap + cap // 8``, the places
    (other than this one and the previous one) with the smallest sum of
    ``2 ** (-(now - t) / h)`` over their visits go, ties to the oldest last
    visit, down to ``cap``.
    """
    h = HALF_LIFE_DAYS * DAY
    kept: dict[str, list[float]] = {}
    prev = None
    for e in events:
        if e.store_id not in kept:
            kept[e.store_id] = []
            if len(kept) > cap + cap // 8:
                others = [s for s in kept if s not in (e.store_id, prev)]
                score = {s: sum(2 ** (-(e.ts - t) / h) for t in kept[s]) for s in others}
                others.sort(key=lambda s: (score[s], max(kept[s])))
                for s in others[: len(kept) - cap]:
                    del kept[s]
        kept[e.store_id].append(e.ts)
        prev = e.store_id
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_places_per_user_stay_bounded_and_the_weakest_go(seed):
    rng = np.random.default_rng(seed)
    events = visits(rng, 1_500, n_stores=300)
    cap = 16
    h = og.UserHistory(half_life_days=HALF_LIFE_DAYS, max_places_per_user=cap)
    for e in events:
        h.add(e)
        with reading(h) as ht:
            st = ht.users[0]
        assert len(st.places) <= cap + cap // 8
        stores = set(st.places)
        assert all(set(p.next) <= stores for p in st.places.values())  # no move to a forgotten place
        assert {s for _, s in st.next_at_hour} <= stores
    expected = brute_places(events, cap)
    with reading(h) as ht:
        st = ht.users[0]
    assert set(st.places) == set(expected)
    for s, times in expected.items():
        assert st.places[s].n == len(times)
        assert st.places[s].last_ts == max(times)
    assert h.n_events(0, "visit") == len(events)  # the counts of the user are not bounded, only the places


def test_a_bound_no_user_reaches_changes_nothing():
    rng = np.random.default_rng(7)
    events = visits(rng, 2_000, n_stores=60, n_users=5)
    bounded = og.UserHistory(half_life_days=HALF_LIFE_DAYS, max_places_per_user=60)
    unbounded = og.UserHistory(half_life_days=HALF_LIFE_DAYS, max_places_per_user=None, max_idle_days=None)
    for e in events:
        bounded.add(e)
        unbounded.add(e)
    assert bounded._users == unbounded._users
    assert bounded._store_next == unbounded._store_next


def test_idle_users_are_dropped_a_few_per_event_never_early():
    idle_days = 10.0
    h = og.UserHistory(max_idle_days=idle_days)
    rng = np.random.default_rng(3)
    last: dict[int, float] = {}
    # 300 users active in the first 5 days (less than max_idle_days), then one user alone for 30 more days
    for _ in range(3_000):
        u, t = int(rng.integers(300)), float(rng.uniform(0, 5 * DAY))
        h.add(og.Event("open", u, t))
        last[u] = max(last.get(u, -math.inf), t)
    clock = max(last.values())
    for day in range(30):
        before, new = len(h), "regular" not in h
        t = clock + day * DAY
        h.add(og.Event("open", "regular", t))
        last["regular"] = t
        assert before + new - len(h) <= og.UserHistory.DROP_BATCH  # a few per event: no sweep
        assert all(u in h for u, lt in last.items() if lt > t - idle_days * DAY)  # never dropped early
    for _ in range(200):  # enough events to drain what fell due
        h.add(og.Event("open", "regular", t))
    assert set(h._users) == {u for u, lt in last.items() if lt > t - idle_days * DAY - DAY} == {"regular"}
    h.add(og.Event("visit", 5, t, store_id="s1", merchant_id="m", category="c"))  # back: a new profile
    assert h.n_events(5, "open") == 0 and h.n_events(5, "visit") == 1


def test_forgotten_users_leave_the_idle_wheel_and_old_pickles_load_unbounded():
    h = og.UserHistory(max_idle_days=1.0)
    h.add(og.Event("open", "a", 0.0))
    assert h.forget_user("a")
    h.add(og.Event("open", "b", 10 * DAY))  # "a" falls due meanwhile: nothing to drop, no error
    assert len(h) == 1 and len(h._idle) == 1
    state = pickle.loads(h.__getstate__())
    for k in ("_idle", "_clock", "max_places_per_user", "max_idle_days"):
        del state[k]  # what a history pickled before the bounds holds
    old = og.UserHistory.__new__(og.UserHistory)
    old.__setstate__(pickle.dumps(state))
    assert old.max_places_per_user is None and old.max_idle_days is None and "b" in old
    old.add(og.Event("open", "c", 11 * DAY))
    assert len(old) == 2


@pytest.mark.parametrize(
    "kw",
    [{"max_places_per_user": 0}, {"max_places_per_user": 1.5}, {"max_places_per_user": True},
     {"max_places_per_user": "8"}, {"max_idle_days": 0}, {"max_idle_days": float("nan")}, {"max_idle_days": "1"}],
)  # fmt: skip
def test_bad_bounds_are_typed_errors(kw):
    name = next(iter(kw))
    with pytest.raises(InvalidParameterError, match=name):
        og.UserHistory(**kw)
