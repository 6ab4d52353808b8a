"""Attribution: which push an outcome (open, click, redeem, visit, dismiss, failed delivery) belongs to.

An event names its push (``push_id``), or is attributed to the user's latest
push of the same offer (without an offer: of the store's merchant) at most
``policy.attribution_window_s`` before it.  Holdout decisions are attributed
the same way, which is what makes the uplift measurable.  A visit or
redemption also moves the user's last time at the merchant in the profile
(what the retention audiences and the ``lapsed`` trigger read).  An event with an
``event_id`` is stored once; the same id again returns the push it was
attributed to and changes nothing.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .._events import Event
from .._offers import OfferSet
from .._policy import PushPolicy
from .._state import Transaction, keys
from ..errors import InvalidRecordError, UnknownPushError
from ._profile import with_seen

__all__ = ["SEEN_KINDS", "record_event"]

#: The events that make a user a merchant's customer (the profile's ``seen``: new, returning, lapsed).
SEEN_KINDS = frozenset({"visit", "redeem"})


def record_event(
    tx: Transaction,
    e: Event,
    *,
    offers: OfferSet,
    store_merchant: Any,
    policy: PushPolicy,
    stats: Counter[str],
    inferred: bool,
) -> tuple[dict[str, Any] | None, Any]:
    """Attribute and store one event in ``tx``: (the stored record, or None for a duplicate id; the push id).

    ``store_merchant(store_id)`` gives a store's merchant.  Raises
    UnknownPushError for a push id not issued to the user, InvalidRecordError
    for an event before its push or naming another offer than its push.
    """
    idem_key = None if e.event_id is None else keys.event_key(e.event_id)
    tx.prefetch(
        idems=() if idem_key is None else [idem_key],
        pushes=() if e.push_id is None else [e.push_id],
        users=[e.user_id] if e.kind == "dismiss" else (),
        profiles=[e.user_id] if e.kind in SEEN_KINDS else (),
    )
    if idem_key is not None:
        hit = tx.idem(idem_key)
        if hit is not None:
            stats["duplicate_events"] += 1
            return None, hit["push_id"]
    merchant = e.merchant_id
    if merchant is None and e.offer_id is not None:
        merchant = offers[e.offer_id].merchant_id
    if merchant is None and e.store_id is not None:
        merchant = store_merchant(e.store_id)
    push = None
    if e.push_id is not None:
        push = tx.push(e.push_id)
        if push is None or push["user_id"] != e.user_id:
            raise UnknownPushError(f"push_id {e.push_id!r} was not issued to user {e.user_id!r}; nothing stored")
        if e.ts < push["ts"]:
            raise InvalidRecordError(f"{e.kind} at ts {e.ts} is before its push {e.push_id!r} at {push['ts']}")
        if e.offer_id is not None and e.offer_id != push["offer_id"]:
            raise InvalidRecordError(
                f"{e.kind} names offer {e.offer_id!r} but push {e.push_id!r} was {push['offer_id']!r}"
            )
    elif e.offer_id is not None or merchant is not None:
        push = tx.latest_push(
            e.user_id, e.ts - policy.attribution_window_s, e.ts, offer_id=e.offer_id, merchant_id=merchant
        )
    push_id = None if push is None else push["push_id"]

    def from_push(given: Any, name: str) -> Any:
        return given if given is not None else (None if push is None else push[name])

    rec = {
        "event_id": e.event_id,
        "user_id": e.user_id,
        "kind": e.kind,
        "ts": e.ts,
        "offer_id": from_push(e.offer_id, "offer_id"),
        "store_id": from_push(e.store_id, "store_id"),
        "merchant_id": from_push(merchant, "merchant_id"),
        "push_id": push_id,
        "amount": e.amount,
        "distance_m": from_push(e.distance_m, "distance_m"),
        "inferred": inferred,
    }
    tx.add_event(rec)
    if e.kind in SEEN_KINDS and rec["merchant_id"] is not None:  # the retention rules' history
        profile = with_seen(tx.get_profile(e.user_id), rec["merchant_id"], e.ts)
        if profile is not None:
            tx.put_profile(e.user_id, profile)
    if e.kind == "dismiss":
        old = tx.get_user(e.user_id) or {}
        tx.put_user(e.user_id, {**old, "dismiss_ts": max(old.get("dismiss_ts", -math.inf), e.ts)})
    if idem_key is not None:
        tx.put_idem(idem_key, e.user_id, {"push_id": push_id})
    return rec, push_id
