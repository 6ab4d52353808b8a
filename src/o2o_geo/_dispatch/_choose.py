"""Which offers a ping pushes: the policy's gates, the scores, the limits, charged in the ping's transaction.

Gates first, cheapest first: the minimum gap since the user's last push, the
dismiss cooldown, quiet hours (the user's local time), the day and week
caps.  Then the offers of the triggered stores, best score first (ties to
1e-9 in the logit by offer, then store), each checked for opening hours
(store-local time, ``closing_margin_min`` before closing), one push per offer
per ping, and every configured limit (:mod:`._limits`); at most
``max_per_ping`` pushes.  ``stats`` counts why a ping did not push.

With a ``trace`` list, :meth:`PushChooser.choose` also says what stopped
each candidate (the dry run of :meth:`Dispatcher.explain_ping`): it goes on
past a ping-level gate and past ``max_per_ping`` to give every candidate
its reason, and decides nothing differently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from .._fences import FenceHit
from .._offers import OfferSet
from .._policy import PushPolicy
from .._scoring import OfferScorer, ScoredCandidates
from .._state import Transaction, keys
from .._time import open_for
from ._decision import PushDecision, ScoreTerms, push_record
from ._limits import Limit, LocalDay, candidate_limits, charge, first_exceeded, user_capped, user_limits
from ._profile import audience_reason, consent_gate, with_welcome
from ._stores import StoreFacts

__all__ = ["PushChooser", "Scored"]

_HOLDOUT_MEMO = 65_536


class Scored:
    """A ping's scored candidates: rows ``[lo, hi)`` of a (batch's) :class:`ScoredCandidates`, as lists.

    ``asked`` holds the store positions that were scored (a store without a valid offer has no row);
    ``rank`` is the logit rounded to 1e-9 and negated, the first key of the ranking.
    """

    __slots__ = ("sc", "lo", "hi", "asked", "offer", "pos", "dist", "logit", "score", "rank")

    def __init__(self, sc: ScoredCandidates, lists: tuple[list[Any], ...], lo: int, hi: int, asked: set[int]) -> None:
        self.sc, self.lo, self.hi, self.asked = sc, lo, hi, asked
        self.offer, self.pos, self.dist, self.logit, self.score, self.rank = lists

    @staticmethod
    def lists(sc: ScoredCandidates) -> tuple[list[Any], ...]:
        rank = (-np.round(sc.logit, 9)).tolist()
        return (
            sc.offer.tolist(),
            sc.position.tolist(),
            sc.distance_m.tolist(),
            sc.logit.tolist(),
            sc.score.tolist(),
            rank,
        )


class _Candidate(NamedTuple):
    """A scored offer at a store, with what the limits need."""

    offer_id: Any
    merchant_id: Any
    store_id: Any
    position: int
    store_local: datetime
    holdout: bool
    limits: list[Limit]


class PushChooser:
    """Chooses a ping's pushes (see the module docstring); one per dispatcher."""

    def __init__(self, policy: PushPolicy, offers: OfferSet, scorer: OfferScorer, *, prefetch_candidates: bool) -> None:
        self.policy = policy
        self.offers = offers
        self.scorer = scorer
        self.prefetch_candidates = prefetch_candidates  # read the likely pushes' counters in one round trip
        self._holdout: dict[Any, bool] = {}
        self._offer_rows = list(offers)  # the scorer's offer rows, in the offer set's order

    def choose(
        self,
        tx: Transaction,
        stats: Counter[str],
        facts: StoreFacts,
        u: dict[str, Any],
        user_id: Any,
        t: float,
        when: LocalDay,
        triggers: dict[int, tuple[str, float]],
        scored: Scored | None,
        trace: list[tuple[Scored, int, str, str | None]] | None = None,
        *,
        profile: dict[str, Any] | None = None,
    ) -> list[PushDecision]:
        """The pushes of one ping whose fences ``triggers`` (position -> (trigger, distance)); charged in ``tx``.

        ``u`` is the user's new state (``last_push_ts`` set here when a push is
        made); ``scored``, the candidates a batch scored ahead, is used when it
        covers every triggered store, else they are scored now.  ``trace``
        receives ``(scored, row, reason, limit kind or None)`` per candidate,
        best first (see the module docstring).  ``profile`` is the user's
        profile as the ping found it (consent, and the audiences' history).
        """
        pol = self.policy
        gate = consent_gate(profile, pol.require_opt_in)
        if gate is None:
            if t - u.get("last_push_ts", -math.inf) < pol.min_gap_s:
                gate = "min_gap"
            elif t - u.get("dismiss_ts", -math.inf) < pol.dismiss_cooldown_s:
                gate = "dismiss_cooldown"
            elif pol.is_quiet(when.local):
                gate = "quiet_hours"
            else:
                tx.prefetch(counters=when)
                if user_capped(tx, pol, when):
                    gate = "user_cap"
        if gate is not None:
            stats[gate] += 1
            if trace is None:
                return []
        if scored is None or not scored.asked >= triggers.keys():
            pos = sorted(triggers)
            sc = self.scorer.score_candidates(user_id, pos, [triggers[p][1] for p in pos], t)
            scored = Scored(sc, Scored.lists(sc), 0, len(sc), set(pos))
        offer_l, pos_l, logit_l, score_l, rank_l = scored.offer, scored.pos, scored.logit, scored.score, scored.rank
        # best first; ties (to 1e-9 in the logit, below rounding noise) by offer, then store
        rows = [j for j in range(scored.lo, scored.hi) if pos_l[j] in triggers]
        ranked = sorted(
            (j for j in rows if score_l[j] >= pol.min_score),
            key=lambda j: (rank_l[j], offer_l[j], pos_l[j]),
        )
        if rows and not ranked:
            stats["low_score"] += 1
        if trace is not None:
            low = sorted((j for j in rows if score_l[j] < pol.min_score), key=lambda j: (-logit_l[j], offer_l[j]))
            if gate is not None:
                trace += [(scored, j, gate, None) for j in ranked + low]
                return []
            trace += [(scored, j, "low_score", None) for j in low]
        local_at: dict[Any, datetime] = {}  # store-local time, once per zone
        rows_of, caps = self._offer_rows, user_limits(pol, when)
        lapsed_s = pol.lapsed_after_s

        def candidate(j: int) -> _Candidate:
            offer, p = rows_of[offer_l[j]], pos_l[j]
            sid, z = facts.ids[p], facts.zone[p]
            store_local = local_at.get(z)
            if store_local is None:
                store_local = local_at[z] = datetime.fromtimestamp(t, z)
            holdout = self.is_holdout(user_id, offer.offer_id)
            limits = candidate_limits(pol, when, caps, offer, sid, store_local, holdout=holdout)
            return _Candidate(offer.offer_id, offer.merchant_id, sid, p, store_local, holdout, limits)

        likely: dict[int, _Candidate] = {}
        if self.prefetch_candidates:  # one round trip for every counter the likely pushes need
            likely = {j: candidate(j) for j in ranked[:8]}
            tx.prefetch(counters=[lim.key for c in likely.values() for lim in c.limits])
        out: list[PushDecision] = []
        for k, j in enumerate(ranked):
            if trace is not None and len(out) >= pol.max_per_ping:  # (without a trace the loop stopped already)
                trace += [(scored, i, "max_per_ping", None) for i in ranked[k:]]
                break
            if out and user_capped(tx, pol, when):
                stats["user_cap"] += 1
                if trace is not None:
                    trace += [(scored, i, "user_cap", None) for i in ranked[k:]]
                break
            offer = rows_of[offer_l[j]]
            if offer.audience != "all" and audience_reason(offer.audience, profile, offer.merchant_id, t, lapsed_s):
                stats["audience"] += 1  # (before the candidate's limits are built: most are turned down here)
                if trace is not None:
                    trace.append((scored, j, "audience", None))
                continue
            c = likely[j] if j in likely else candidate(j)
            if not open_for(facts.hours[c.position], c.store_local, pol.closing_margin_min):
                stats["store_closed"] += 1
                if trace is not None:
                    trace.append((scored, j, "store_closed", None))
                continue
            if any(d.offer_id == c.offer_id for d in out):
                if trace is not None:
                    trace.append((scored, j, "same_offer", None))
                continue
            limit = first_exceeded(tx, c.limits)
            if limit is not None:
                stats["capped"] += 1
                if trace is not None:
                    trace.append((scored, j, "capped", limit.kind))
                continue
            charge(tx, c.limits)
            d = PushDecision(
                push_id=f"p{tx.next_seq()}",
                user_id=user_id,
                offer_id=c.offer_id,
                store_id=c.store_id,
                merchant_id=c.merchant_id,
                score=score_l[j],
                distance_m=scored.dist[j],
                trigger=triggers[c.position][0],
                holdout=c.holdout,
                ts=t,
                explanation=ScoreTerms(scored.sc, j),
            )
            tx.add_push(push_record(d))
            if offer.audience == "new":  # never a second one from the merchant (holdout too: groups stay comparable)
                profile = with_welcome(tx.get_profile(user_id), c.merchant_id)
                tx.put_profile(user_id, profile)
            out.append(d)
            stats["holdout" if c.holdout else "pushed"] += 1
            if trace is not None:
                trace.append((scored, j, "holdout" if c.holdout else "pushed", None))
            elif len(out) >= pol.max_per_ping:
                break
        if out:
            u["last_push_ts"] = t
        return out

    def likely_keys(self, facts: StoreFacts, when: LocalDay, hits: Sequence[FenceHit], t: float) -> Iterator[str]:
        """The counters a push at the stores a ping is inside (or near) could read: one prefetch for them all.

        The user's caps and the push sequence, then per store and offer the
        configured per-offer, per-merchant, budget and capacity counters.  A
        networked backend reads them with the user in one round trip, so a
        push with offer-level limits costs no extra read after scoring.
        """
        yield from when
        pol = self.policy
        uk, seen = when.user_key, set()
        for h in hits:
            if not (h.inside or h.nearby):
                continue
            p = h.position
            mid = facts.merchant[p]
            if pol.store_daily_capacity is not None:
                local_day = datetime.fromtimestamp(t, facts.zone[p]).date().isoformat()
                yield keys.store_day(facts.ids[p], local_day)
            if pol.max_per_merchant_per_day is not None and mid not in seen:
                seen.add(mid)
                yield keys.user_merchant_day(uk, mid, when.day)
            for oid in facts.offers[p]:
                if pol.max_per_offer is not None:
                    yield keys.user_offer(uk, oid)
                if oid in pol.offer_budgets:
                    yield keys.offer_budget(oid, "n")
                    yield keys.offer_budget(oid, "c")
            if mid in pol.merchant_budgets:
                yield keys.merchant_budget(mid, "n")
                yield keys.merchant_budget(mid, "c")

    def is_holdout(self, user_id: Any, offer_id: Any) -> bool:
        """The policy's holdout, remembered per user (unless it is per offer)."""
        pol = self.policy
        if pol.holdout_per_offer:
            return pol.is_holdout(user_id, offer_id)
        h = self._holdout.get(user_id)
        if h is None:
            if len(self._holdout) >= _HOLDOUT_MEMO:
                self._holdout.clear()
            h = self._holdout[user_id] = pol.is_holdout(user_id)
        return h
