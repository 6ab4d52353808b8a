"""The loop's conversion and consumption: what users did (``record``), and who they are (``set_user``).

An outcome is attributed to its push (``_attribution``), stored, and fed to
the scorer's history at once; a profile holds consent, tier and attributes.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .._events import Event
from .._state import Transaction
from .._validate import check_id
from ..errors import InvalidRecordError, UnknownOfferError, UnknownPushError, UnknownStoreError
from ._attribution import record_event
from ._parts import EngineParts
from ._profile import UNSET, UserProfile, profile_change, with_change

__all__ = ["RECORD_KINDS", "OutcomeMethods"]

#: The kinds of event :meth:`Dispatcher.record` takes.
RECORD_KINDS = ("open", "click", "redeem", "visit", "dismiss", "failed")


class OutcomeMethods(EngineParts):
    """:meth:`record`, and the user's profile: :meth:`set_user`, :meth:`user`, :meth:`forget_user`."""

    def record(self, event: Event) -> Any:
        """Record what a user did: ``open``, ``click``, ``redeem``, ``visit``, ``dismiss`` (or a ``failed`` delivery).

        The event is attributed (see the module rules), stored, and fed to the
        scorer's history.  A ``dismiss`` starts the user's cooldown.

        Parameters
        ----------
        event : Event
            With ``push_id`` when known; ``offer_id`` and ``store_id`` must be known ids.

        Returns
        -------
        str or None
            The push the event is attributed to.

        Raises
        ------
        InvalidRecordError
            A ``push`` event (pushes come from :meth:`on_location`), or an event
            before the push it names, or naming another offer than its push.
        UnknownOfferError, UnknownStoreError, UnknownPushError
            An id the dispatcher does not know (nothing is stored).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.record(og.Event("open", "u1", 1767258030, push_id=d.push_id))
        'p1'
        >>> engine.record(og.Event("redeem", "u1", 1767259000, offer_id="latte", amount=28.0))  # found by offer
        'p1'
        >>> engine.record(og.Event("visit", "u9", 1767259000, store_id="lucky-09")) is None    # never pushed
        True
        """
        if not isinstance(event, Event):
            raise InvalidRecordError(f"record takes an Event; got {type(event).__name__}")
        if event.kind not in RECORD_KINDS:
            raise InvalidRecordError(
                f"record takes kinds {RECORD_KINDS}; got {event.kind!r} (pushes come from on_location)"
            )
        if event.offer_id is not None and event.offer_id not in self.offers:
            raise UnknownOfferError(
                f"offer_id {event.offer_id!r} is not one of the dispatcher's offers; nothing stored"
            )
        if event.store_id is not None and event.store_id not in self.index:
            raise UnknownStoreError(f"store_id {event.store_id!r} is not in the index; nothing stored")
        stats: Counter[str] = Counter()

        def work(tx: Transaction) -> tuple[dict[str, Any] | None, Any]:
            tx.advance_clock(event.ts)
            return self._record_tx(tx, event, stats, inferred=False)

        try:
            rec, push_id = self.state.run(work)
        except UnknownPushError as exc:
            since = self.state.retained_since()
            if since == -math.inf:
                raise
            raise UnknownPushError(
                f"{exc.args[0]} (or it is older than the pushes the state keeps: every one since {since:.0f})"
            ) from None
        self.stats.update(stats)
        if rec is not None:
            self._feedback.now([(rec, rec["kind"])])
        return push_id

    def _record_tx(
        self, tx: Transaction, e: Event, stats: Counter[str], *, inferred: bool
    ) -> tuple[dict[str, Any] | None, Any]:
        facts = self._stores.get()
        return record_event(
            tx,
            e,
            offers=self.offers,
            store_merchant=lambda sid: facts.merchant[int(self.index.stores.position_of(sid)[0])],
            policy=self.policy,
            stats=stats,
            inferred=inferred,
        )

    def set_user(self, user_id: Any, *, opt_in: Any = UNSET, tier: Any = UNSET, **attributes: Any) -> UserProfile:
        """Store what the integrator knows of a user: push consent, member tier, other attributes.

        Only what is given changes; ``tier=None`` or ``name=None`` removes it.
        The profile lives in the state (every process on it sees it, in the
        transaction of each decision) and never expires; :meth:`forget_user`
        erases it.  ``opt_in=False``: the user is never pushed (the ping's gate
        ``opted_out``, counted in :attr:`stats`), in a replay too; with
        ``policy.require_opt_in`` only users set ``opt_in=True`` are pushed.
        Consent governs pushes: the fence state and the inferred visits
        (which the report measures) are kept as for any user.

        Parameters
        ----------
        user_id : str or int
        opt_in : bool, optional
        tier : str or None, optional
            The member tier (any non-empty name); a set tier makes the user a member
            (``Offer(audience="members")``) and sets the scorer's ``member``
            feature (which ``fit`` learns).  Another process on the same state
            sees the tier in its decisions at once, and its scorer from the
            tick after the user's next triggered ping there (a restarted
            dispatcher likewise; see Feedback in the README).
        **attributes : str, int, float, bool or None
            Anything else, stored with the profile (``None`` removes one).

        Returns
        -------
        UserProfile
            The profile as stored.

        Raises
        ------
        InvalidRecordError
            A bad user id.
        InvalidParameterError
            ``opt_in`` not a bool, a bad tier, an attribute of another type (nothing is stored).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> engine.set_user("u1", opt_in=False).opt_in
        False
        >>> engine.explain_ping("u1", 31.2325, 121.4801, 1767258000).reason
        'opted_out'
        >>> engine.on_location("u1", 31.2325, 121.4801, 1767258000), engine.stats["opted_out"]
        ([], 1)
        >>> engine.set_user("u1", opt_in=True, tier="gold", city="Shanghai")
        UserProfile(user_id='u1', opt_in=True, tier='gold', attributes={'city': 'Shanghai'}, last_seen_ts={})
        """
        user_id = check_id(user_id, "user_id")
        change = profile_change(opt_in, tier, attributes)

        def work(tx: Transaction) -> dict[str, Any]:
            new = with_change(tx.get_profile(user_id), change)
            tx.put_profile(user_id, new)
            return new

        stored = self.state.run(work)
        self.scorer.history.set_tier(user_id, stored.get("tier"))  # the scorer's member feature
        return UserProfile.of(user_id, stored)

    def user(self, user_id: Any) -> UserProfile:
        """The user's profile as the state holds it (defaults for a user never set or seen).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> _ = engine.record(og.Event("visit", "u1", 1767258000, store_id="lucky-09"))
        >>> engine.user("u1").last_seen_ts
        {'m-lucky': 1767258000.0}
        """
        user_id = check_id(user_id, "user_id")
        return UserProfile.of(user_id, self.state.read_profile(user_id))

    def forget_user(self, user_id: Any) -> None:
        """Erase a user everywhere: fence state, profile, caps, pushes, events, event ids and scorer history.

        Budgets and store capacity keep their totals (they are not personal
        data and must stay exact).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> engine.record(og.Event("redeem", "u1", 1767259000, push_id=d.push_id, amount=28.0))
        'p1'
        >>> engine.forget_user("u1")
        >>> engine.state.pushes(), engine.state.events(), engine.scorer.history.n_events("u1", "redeem")
        ([], [], 0)
        """
        user_id = check_id(user_id, "user_id")
        self._feedback.flush()
        self.state.forget_user(user_id)
        self.scorer.history.forget_user(user_id)
