"""Event.from_record: a record of any origin (JSON, CSV, DataFrame) is the Event built from its clean values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import o2o_geo as og
from o2o_geo._events import EVENT_KINDS, as_events
from o2o_geo.errors import InvalidRecordError

T0 = 1_767_225_600.0

MISSING = st.sampled_from([None, math.nan, np.float64("nan")])
ids = st.one_of(st.text(min_size=1, max_size=5), st.integers(0, 99), st.integers(0, 99).map(np.int64))
values = {
    "offer_id": ids,
    "store_id": ids,
    "merchant_id": ids,
    "category": st.sampled_from(["coffee", "tea"]),
    "push_id": ids,
    "amount": st.floats(0, 500).map(np.float64) | st.floats(0, 500),
    "discount_depth": st.floats(0, 0.95),
    "distance_m": st.floats(0, 5_000),
    "event_id": ids,
}


@st.composite
def records(draw):
    rec = {
        "kind": draw(st.sampled_from(sorted(EVENT_KINDS))),
        "user_id": draw(ids),
        "ts": draw(st.floats(0, 2e9) | st.floats(0, 2e9).map(np.float64)),
    }
    for name, strategy in values.items():
        choice = draw(st.sampled_from(["absent", "missing", "value"]))
        if choice == "missing":
            rec[name] = draw(MISSING)
        elif choice == "value":
            rec[name] = draw(strategy)
    return rec


def clean(rec):
    """The oracle: missing values dropped, numpy scalars as Python values, then the plain constructor."""
    out = {}
    for k, v in rec.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v.item() if isinstance(v, np.generic) else v
    return og.Event(**out)


@settings(max_examples=200, deadline=None)
@given(records())
def test_from_record_is_the_event_of_the_clean_values(rec):
    e = og.Event.from_record(rec)
    assert e == clean(rec)
    for name in ("user_id", "offer_id", "store_id", "event_id", "amount"):
        assert not isinstance(getattr(e, name), np.generic)


def test_a_dataframe_and_its_records_read_alike():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "kind": ["visit", "redeem"],
            "user_id": [7, 8],
            "ts": [T0, T0 + 60],
            "store_id": ["s1", None],
            "amount": [np.nan, 12.5],
        }
    )
    events = [og.Event.from_record(r) for r in df.to_dict("records")]
    assert events == [og.Event("visit", 7, T0, store_id="s1"), og.Event("redeem", 8, T0 + 60, amount=12.5)]
    assert as_events(df) == events


def test_iso_times_with_an_offset_are_read():
    e = og.Event.from_record({"kind": "visit", "user_id": "u", "ts": "2026-01-01T08:00:00+08:00"})
    assert e.ts == T0


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (["visit", "u", T0], r"^events.csv line 4: an event is an Event or a dict of its fields; got list$"),
        (
            {"kind": "visit", "user": "u", "ts": T0},
            r"^events.csv line 4: unknown field 'user' \(did you mean 'user_id'",
        ),
        ({"kind": "visit", "ts": T0, "user_id": None}, r"^events.csv line 4: no user_id \(every event needs"),
        ({"kind": "buy", "user_id": "u", "ts": T0}, r"^events.csv line 4: event kind 'buy' is not one of"),
        ({"kind": "visit", "user_id": "u", "ts": "2026-01-01T08:00:00"}, r"^events.csv line 4: .*has no UTC offset"),
        ({"kind": "redeem", "user_id": "u", "ts": T0, "amount": -1.0}, r"^events.csv line 4: event amount must be"),
        ({"kind": "visit", "user_id": [1], "ts": T0}, r"^events.csv line 4: event user_id must be a str or an int"),
    ],
)
def test_a_bad_record_is_named_by_where(record, match):
    with pytest.raises(InvalidRecordError, match=match):
        og.Event.from_record(record, where="events.csv line 4")
