"""Reprs show content: what a notebook user sees when they evaluate a result or an engine."""

from __future__ import annotations

import o2o_geo as og


def test_result_reprs_show_the_stores_found():
    index = og.StoreIndex(og.sample_stores())
    one = index.nearest(31.2304, 121.4737, k=3)
    text = repr(one)
    assert text.startswith("Neighbors(k=3: ") and all(repr(s) in text for s in one.store_id.tolist())
    assert f"{one.distance_m[0]:,.1f} m" in text
    far = repr(index.nearest(0.0, 0.0, k=2, max_distance_m=1_000.0))
    assert far == "Neighbors(k=2: None, None)"
    batch = index.nearest([31.23, 31.24, 31.25, 31.26, 31.27], [121.47] * 5, k=2)
    text = repr(batch)
    assert text.startswith("Neighbors(n=5, k=2: [0] ") and "(2 more)" in text and "[3]" not in text
    m = index.within([31.2304, 0.0], [121.4737, 0.0], radius_m=900)
    assert repr(m).startswith("Matches(2 queries, 2 matches, 0 to 2 each; [0]: 'lucky-09' 652.3 m")


def test_engine_reprs_show_sizes_and_settings():
    index = og.StoreIndex(og.sample_stores())
    assert repr(index).startswith("StoreIndex(50 stores, columns ['merchant_id', 'name', 'category'")
    index.remove(["lucky-01", "lucky-02"])
    assert repr(index).endswith("0 added and 2 removed since the last compaction)")
    offers = og.OfferSet.from_records(
        [
            {"offer_id": "o1", "merchant_id": "m-lucky", "category": "coffee", "discount_rate": 0.8},
            {"offer_id": "o2", "merchant_id": "m-lucky", "category": "beans", "discount_rate": 0.9},
            {"offer_id": "o3", "merchant_id": "m-teagarden", "category": "tea", "discount_rate": 0.7},
        ]
    )
    assert repr(offers) == "OfferSet(3 offers of 2 merchants, 3 categories)"
    assert repr(og.PushPolicy()) == "PushPolicy()"
    policy = og.PushPolicy(fence_radius_m=50.0, triggers=("enter",))
    assert repr(policy) == "PushPolicy(triggers=('enter',), fence_radius_m=50.0)"
    engine = og.Dispatcher(index, offers, policy=policy)
    assert repr(engine) == f"Dispatcher(48 stores, 3 offers, MemoryState, {policy!r})"


def test_result_types_do_not_depend_on_what_is_installed(monkeypatch):
    import sys

    import numpy as np
    import pytest

    index = og.StoreIndex(og.sample_stores())
    offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
    engine = og.Dispatcher(index, offers)
    engine.on_location("u1", 31.2325, 121.4801, 1767258000)
    scorer = og.OfferScorer(index, offers)
    args = (["u1", "u2"], [31.2304, 31.2243], [121.4737, 121.4768])
    frame = scorer.rank_many(*args, now=1767225600, k=1)
    arrays = scorer.rank_many(*args, now=1767225600, k=1, as_frame=False)
    assert type(frame).__name__ == "DataFrame" and isinstance(arrays, dict)
    assert frame["offer_id"].tolist() == arrays["offer_id"].tolist() and np.array_equal(frame["score"], arrays["score"])
    rows = engine.report(by="all", as_frame=False)
    assert isinstance(rows, list) and engine.report(by="all")["pushed"].tolist() == [rows[0]["pushed"]]
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match=r"Dispatcher.report\(as_frame=True\) needs pandas .*o2o_geo\[geo\]"):
        engine.report(by="all")
    with pytest.raises(ImportError, match=r"OfferScorer.rank_many\(as_frame=True\) needs pandas"):
        scorer.rank_many(*args, now=1767225600, k=1)
    again = engine.report(by="all", as_frame=False)  # the explicit records still work
    assert again[0].keys() == rows[0].keys() and again[0]["pushed"] == rows[0]["pushed"] == 1
    assert isinstance(scorer.rank_many(*args, now=1767225600, k=1, as_frame=False), dict)
