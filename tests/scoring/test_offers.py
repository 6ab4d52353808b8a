"""Offers and OfferSet: discount forms, validity windows, store resolution, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

import o2o_geo as og
from o2o_geo.errors import DuplicateOfferError, InvalidParameterError, InvalidRecordError, UnknownOfferError


def test_discount_forms_and_validity():
    a = og.Offer("a", "m", discount_rate=0.75)
    b = og.Offer("b", "m", spend_amount=80, off_amount=20)
    c = og.Offer("c", "m")
    assert (a.discount_depth, b.discount_depth, c.discount_depth) == (0.25, 0.25, 0.0)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    o = og.Offer("d", "m", valid_from=start, valid_until=start.timestamp() + 3600)
    assert not o.is_valid_at(start.timestamp() - 1)
    assert o.is_valid_at(start) and o.is_valid_at(start.timestamp() + 3600)
    assert not o.is_valid_at(start.timestamp() + 3601)


def test_offerset_columns_match_offers():
    rng = np.random.default_rng(2)
    recs = []
    for i in range(50):
        rec = {"offer_id": i, "merchant_id": f"m{i % 5}", "category": ["coffee", "tea"][i % 2]}
        if i % 3 == 0:
            rec["discount_rate"] = float(rng.uniform(0.5, 1.0))
        elif i % 3 == 1:
            rec.update(spend_amount=100.0, off_amount=float(rng.uniform(1, 50)))
        rec["valid_from"] = float(rng.uniform(0, 100))
        rec["valid_until"] = rec["valid_from"] + float(rng.uniform(0, 100))
        recs.append(rec)
    offers = og.OfferSet.from_records(recs)
    for t in (0.0, 50.0, 120.0, 250.0):
        want = [r["valid_from"] <= t <= r["valid_until"] for r in recs]
        assert offers.valid_at(t).tolist() == want
    for i, o in enumerate(offers):
        assert offers.discount_depth[i] == o.discount_depth and offers[i] is o
    pd = pytest.importorskip("pandas")
    again = og.OfferSet.from_dataframe(pd.DataFrame(recs))
    np.testing.assert_array_equal(again.discount_depth, offers.discount_depth)
    np.testing.assert_array_equal(again.valid_until_s, offers.valid_until_s)


def test_redeemable_positions_resolve_merchant_stores():
    stores = og.sample_stores(7)
    offers = og.OfferSet(
        [
            og.Offer("all-lucky", "m-lucky", discount_rate=0.9),
            og.Offer("two-tea", "m-teagarden", store_ids=["teagarden-03", "teagarden-01"]),
        ]
    )
    offsets, positions = offers.redeemable_positions(stores["merchant_id"], stores.store_id)
    lucky = positions[offsets[0] : offsets[1]]
    assert sorted(stores.store_id[lucky].tolist()) == sorted(s for s in stores.store_id if s.startswith("lucky"))
    assert stores.store_id[positions[offsets[1] : offsets[2]]].tolist() == ["teagarden-01", "teagarden-03"]
    with pytest.raises(InvalidRecordError, match="offer 'x' has no store in the index"):
        og.OfferSet([og.Offer("x", "m-nobody")]).redeemable_positions(stores["merchant_id"], stores.store_id)
    with pytest.raises(InvalidRecordError, match="names stores not in the index"):
        og.OfferSet([og.Offer("y", "m-lucky", store_ids=["nope"])]).redeemable_positions(
            stores["merchant_id"], stores.store_id
        )


def test_bad_offers():
    with pytest.raises(InvalidRecordError, match=r"discount_rate -0.2; it is the share of the price paid"):
        og.Offer("o", "m", discount_rate=-0.2)
    with pytest.raises(InvalidRecordError, match="discount_rate 1.5"):
        og.Offer("o", "m", discount_rate=1.5)
    with pytest.raises(InvalidRecordError, match="need 0 < off_amount <= spend_amount"):
        og.Offer("o", "m", spend_amount=10, off_amount=20)
    with pytest.raises(InvalidRecordError, match="not both"):
        og.Offer("o", "m", discount_rate=0.9, off_amount=1)
    with pytest.raises(InvalidRecordError, match="ends .* before it starts"):
        og.Offer("o", "m", valid_from=10, valid_until=5)
    with pytest.raises(InvalidParameterError, match="has no timezone"):
        og.Offer("o", "m", valid_from=datetime(2026, 1, 1))
    with pytest.raises(InvalidRecordError, match="offer_id must be a str or an int"):
        og.Offer(None, "m")
    with pytest.raises(
        InvalidRecordError, match=r"offer 'o' max_distance_m must be a number of metres >= 0 or None; got -1$"
    ):
        og.Offer("o", "m", max_distance_m=-1)
    with pytest.raises(DuplicateOfferError, match="offer_id 'o' appears twice"):
        og.OfferSet([og.Offer("o", "m"), og.Offer("o", "n")])
    with pytest.raises(InvalidRecordError, match="unknown fields \\['colour'\\]"):
        og.OfferSet.from_records([{"offer_id": "o", "merchant_id": "m", "colour": "red"}])
    with pytest.raises(UnknownOfferError, match="'zzz' is not in this offer set"):
        og.OfferSet([og.Offer("o", "m")])["zzz"]
