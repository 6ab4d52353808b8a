"""PushPolicy.from_dict / to_dict: a policy survives JSON, ids keep their types, bad settings name themselves."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo.errors import InvalidParameterError

OFFERS = [17, 18, "latte"]
MERCHANTS = ["m1", 2]
STORES = ["s1", 5]

budgets = st.builds(
    og.Budget,
    max_pushes=st.none() | st.integers(0, 10_000),
    max_cost=st.none() | st.floats(0, 1e6, allow_nan=False),
)
policies = st.builds(
    og.PushPolicy,
    triggers=st.lists(st.sampled_from(["enter", "dwell", "nearby", "exit", "lapsed"]), min_size=1, unique=True).map(
        tuple
    ),
    fence_radius_m=st.floats(0.5, 5_000),
    dwell_s=st.floats(0, 3_600),
    max_per_ping=st.integers(1, 5),
    min_score=st.floats(0, 1),
    max_per_day=st.none() | st.integers(0, 20),
    quiet_hours=st.none() | st.tuples(st.integers(0, 24), st.integers(0, 24)),
    offer_budgets=st.dictionaries(st.sampled_from(OFFERS), budgets, max_size=3),
    merchant_budgets=st.dictionaries(st.sampled_from(MERCHANTS), budgets, max_size=2),
    offer_cost=st.dictionaries(st.sampled_from(OFFERS), st.floats(0, 100), max_size=3),
    store_daily_capacity=st.none()
    | st.integers(0, 500)
    | st.dictionaries(st.sampled_from(STORES), st.integers(0, 50), max_size=2),
    holdout_fraction=st.floats(0, 0.99),
    holdout_salt=st.text(max_size=8),
    require_opt_in=st.booleans(),
)


def known() -> dict[str, list[object]]:
    return {"offer_ids": OFFERS, "merchant_ids": MERCHANTS, "store_ids": STORES}


@settings(max_examples=150, deadline=None)
@given(policies)
def test_a_policy_survives_json_with_its_id_types(policy):
    text = json.dumps(policy.to_dict())  # int keys become text here
    back = og.PushPolicy.from_dict(json.loads(text), **known())
    assert back == policy
    assert {type(k) for k in back.offer_budgets} == {type(k) for k in policy.offer_budgets}
    assert repr(back) == repr(policy)


def test_from_dict_builds_what_the_constructor_builds():
    data = {
        "triggers": ["enter", "nearby"],
        "quiet_hours": [23, 7],
        "max_per_day": 2,
        "offer_budgets": {"17": {"max_pushes": 100}, "latte": og.Budget(max_cost=20.0)},
        "merchant_budgets": {"2": {"max_cost": 5.5}},
        "store_daily_capacity": {"5": 40},
        "offer_cost": {"18": 1.25},
    }
    want = og.PushPolicy(
        triggers=("enter", "nearby"),
        quiet_hours=(23, 7),
        max_per_day=2,
        offer_budgets={17: og.Budget(max_pushes=100), "latte": og.Budget(max_cost=20.0)},
        merchant_budgets={2: og.Budget(max_cost=5.5)},
        store_daily_capacity={5: 40},
        offer_cost={18: 1.25},
    )
    assert og.PushPolicy.from_dict(data, **known()) == want
    assert og.PushPolicy.from_dict({}) == og.PushPolicy()
    # without the known ids the keys stay as given, and nothing is checked against them
    loose = og.PushPolicy.from_dict({"offer_budgets": {"17": {"max_pushes": 1}}})
    assert loose.offer_budgets == {"17": og.Budget(max_pushes=1)}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (["enter"], r"from_dict takes a mapping of arguments; got list"),
        ({"dwell": 60}, r"unknown PushPolicy argument 'dwell' \(did you mean 'dwell_s'\?\)"),
        (
            {"offer_budgets": {"lattee": {"max_pushes": 1}}},
            r"offer_budgets names offer 'lattee' \(did you mean 'latte'",
        ),
        ({"store_daily_capacity": {"s9": 1}}, r"store_daily_capacity names store 's9', which is not among the stores"),
        ({"merchant_budgets": {"m1": {"max_push": 1}}}, r"merchant_budgets\['m1'\] must be a Budget or an object"),
        ({"merchant_budgets": {"m1": 5}}, r"merchant_budgets\['m1'\] must be a Budget or an object"),
        ({"offer_budgets": {"17": {"max_pushes": -1}}}, r"Budget.max_pushes must be an int >= 0 or None; got -1"),
        ({"offer_budgets": ["17"]}, r"offer_budgets must be a mapping"),
        ({"fence_radius_m": [100]}, r"fence_radius_m must be a finite number of metres > 0; got \[100\]"),
        ({"fence_radius_m": 0}, r"fence_radius_m must be a finite number of metres > 0; got 0"),
        ({"dwell_s": float("inf")}, r"dwell_s must be a finite number of seconds >= 0; got inf"),
        ({"max_per_day": 2.0}, r"max_per_day must be an int >= 0 or None; got 2.0"),
        ({"max_per_ping": 0}, r"max_per_ping must be an int >= 1; got 0"),
        ({"offer_cost": {"18": "1"}}, r"offer_cost\[18\] must be a finite number >= 0; got '1'"),
        ({"store_daily_capacity": {"5": True}}, r"store_daily_capacity\[5\] must be an int >= 0; got True"),
        ({"store_daily_capacity": -3}, r"store_daily_capacity must be an int >= 0 or None; got -3"),
        ({"triggers": "enter"}, r"triggers must be a non-empty subset"),
    ],
)
def test_bad_settings_are_typed_errors_that_name_them(data, match):
    with pytest.raises(InvalidParameterError, match=match):
        og.PushPolicy.from_dict(data, **known())


def test_known_ids_must_be_a_collection():
    with pytest.raises(InvalidParameterError, match=r"offer_ids must be a list or an array of items; got 5"):
        og.PushPolicy.from_dict({"offer_cost": {"1": 1.0}}, offer_ids=5)


def test_known_ids_may_be_a_generator():
    """Each kind of id is read once, so a one-pass iterable serves every setting keyed by it."""
    data = {"offer_budgets": {"17": {"max_pushes": 1}}, "offer_cost": {"18": 2.0}}
    policy = og.PushPolicy.from_dict(data, offer_ids=(o for o in OFFERS))
    assert policy.offer_budgets == {17: og.Budget(max_pushes=1)}
    assert policy.offer_cost == {18: 2.0}
