"""A batch replay: the same decisions as ping-by-ping calls, with the work grouped.

``Dispatcher.on_locations`` checks the columns and hands the pings here:
the fences of 65,536 pings are found in one index call; then, one tick of
pings at a time (``feedback_interval_s``), the fence-state machine is run
ahead on the stored state to see which pings can change anything (most
cannot, and never open a transaction), the pings that would trigger a push
are scored in one call, and each ping is decided in order by the engine's
own per-ping path, in one state group (SQLite: one commit per tick, a
savepoint per ping).  Deliveries follow the group's commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._fences import FenceHit, FenceHits, Geofences
from .._scoring import OfferScorer
from .._state import DispatchState
from ._choose import Scored
from ._decision import PushDecision
from ._feedback import Feedback
from ._fence_state import FenceMachine, FenceStep
from ._inputs import Ping
from ._stores import StoreFactsCache

__all__ = ["Ahead", "BatchReplay"]

_CHUNK = 65_536  # pings per geometry call
_NOT_STORED = object()  # a snapshot no state read can return


class Ahead(NamedTuple):
    """What the look-ahead found for a ping that changes something: the user snapshot it stepped from, and the step."""

    user: Any
    step: FenceStep


class BatchReplay:
    """The batch path of one dispatcher; ``decide`` is its per-ping decision, ``deliver`` its delivery."""

    def __init__(
        self,
        *,
        fences: Geofences,
        stores: StoreFactsCache,
        machine: FenceMachine,
        state: DispatchState,
        scorer: OfferScorer,
        feedback: Feedback,
        decide: Callable[..., tuple[list[PushDecision], bool]],
        deliver: Callable[[list[PushDecision]], None],
    ) -> None:
        self.fences, self.stores, self.machine, self.state = fences, stores, machine, state
        self.scorer, self.feedback, self.decide, self.deliver = scorer, feedback, decide, deliver

    def replay(
        self,
        users: list[Any],
        lat_a: Any,
        lon_a: Any,
        ts: Any,
        ok: list[bool],
        eids: list[Any] | None,
        tzs: list[Any] | None,
    ) -> list[PushDecision]:
        """Every decision of the checked pings, in ping order (``ok``: accurate enough to be used)."""
        n = len(users)
        out: list[PushDecision] = []
        ts_l, lat_l, lon_l = ts.tolist(), lat_a.tolist(), lon_a.tolist()
        tick_of = self.feedback.tick_of
        ticks_on = self.feedback.interval_s > 0.0
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            hits = _per_ping(self.fences.hits(lat_a[start:stop], lon_a[start:stop]), stop - start)
            i = start
            while i < stop:  # one tick of pings at a time: scored together, committed together
                j = i + 1
                if ticks_on:
                    tick = tick_of(ts_l[i])
                    while j < stop and tick_of(ts_l[j]) == tick:
                        j += 1
                rows = [r for r in range(i, j) if ok[r]]
                pings = [Ping(users[r], lat_l[r], lon_l[r], ts_l[r], None if eids is None else eids[r],
                               None if tzs is None else tzs[r], hits[r - start]) for r in rows]  # fmt: skip
                out += self._tick(pings)
                i = j
        return out

    def _tick(self, pings: list[Ping]) -> list[PushDecision]:
        """One tick of a batch: predict which pings need scores, score them together, then decide in order."""
        if not pings:
            return []
        self.feedback.before_ping(pings[0].t)
        scored, ahead = self._look_ahead(pings)
        out: list[PushDecision] = []
        new: list[PushDecision] = []
        error: BaseException | None = None
        with self.state.group():  # commits what succeeded, also when a ping fails
            for k, g in enumerate(pings):
                if scored[k] is False:
                    continue  # predicted to change nothing
                try:
                    decisions, fresh = self.decide(g, scored[k], ahead=ahead[k])
                except BaseException as exc:  # noqa: BLE001 - raised again below, after the commit
                    error = exc
                    break
                out += decisions
                if fresh:
                    new += decisions
        self.deliver(new)  # what the group committed, before a failing ping's error is raised
        if error is not None:
            raise error
        return out

    def _look_ahead(self, pings: list[Ping]) -> tuple[list[Any], list[Ahead | None]]:
        """Per ping: False (changes nothing), None (no scores) or its :class:`Scored`; and its :class:`Ahead`.

        The fence-state machine is run ahead on the stored state (each user's
        later pings on what the earlier ones would leave); the pings that
        would trigger a push, and are not barred by the user's last push or
        dismissal, are scored in one call.  The decision itself re-runs it
        all in the ping's transaction and scores again where the state
        turned out different; its fence step is reused where the state it
        reads is the very snapshot the look-ahead stepped from (a pure
        function of the same input).  On a backend whose reads are round
        trips (Redis) nothing is looked ahead.
        """
        out: list[Any] = [None] * len(pings)
        changes: list[Ahead | None] = [None] * len(pings)
        if not self.state.cheap_reads:  # a read per ping would cost a round trip each: decide ping by ping
            return out, changes
        pol = self.machine.policy
        read_user = self.state.read_user
        seen: dict[Any, Any] = {}
        c_user: list[Any] = []
        c_pos: list[int] = []
        c_dist: list[float] = []
        c_t: list[float] = []
        c_ping: list[int] = []
        facts = self.stores.get()  # (the decision checks that the hits are of its version)
        for k, (user_id, lat, lon, t, eid, _, hits) in enumerate(pings):
            stored = user_id not in seen  # the snapshot is the state's own, not one this tick made
            snap = read_user(user_id) if stored else seen[user_id]
            stays = snap.get("in", ()) if snap else ()
            if not hits and not stays:
                if eid is None:
                    out[k] = False
                continue
            if snap is not None and t < snap.get("last_ts", -math.inf):
                continue  # stale: the decision counts it
            fs = self.machine.step(stays, hits, t)
            wanted = self.machine.wanted(fs, facts, lat, lon)
            if not fs.changed and not wanted:
                if eid is None:
                    out[k] = False
                continue
            changes[k] = Ahead(snap if stored else _NOT_STORED, fs)
            snap = {**(snap or {}), "in": fs.stays, "last_ts": t}
            seen[user_id] = snap
            if (
                wanted
                and t - snap.get("last_push_ts", -math.inf) >= pol.min_gap_s
                and (t - snap.get("dismiss_ts", -math.inf) >= pol.dismiss_cooldown_s)
            ):
                for p, (_, d) in sorted(wanted.items()):
                    c_user.append(user_id)
                    c_pos.append(p)
                    c_dist.append(d)
                    c_t.append(t)
                    c_ping.append(k)
        if not c_pos:
            return out, changes
        sc = self.scorer.score_candidates(c_user, c_pos, c_dist, np.array(c_t))
        lists = Scored.lists(sc)
        asked: dict[int, set[int]] = {}
        for k, p in zip(c_ping, c_pos, strict=True):
            asked.setdefault(k, set()).add(p)
        ping_of = np.asarray(c_ping)[sc.row].tolist()
        span: dict[int, list[int]] = {}
        for j, k in enumerate(ping_of):  # a ping's rows are contiguous (input order)
            if k in span:
                span[k][1] = j + 1
            else:
                span[k] = [j, j + 1]
        for k, ps in asked.items():
            a, b = span.get(k, (0, 0))  # no row: no valid offer at its stores
            out[k] = Scored(sc, lists, a, b, ps)
        return out, changes


def _per_ping(fh: FenceHits, n: int) -> list[list[FenceHit]]:
    """The batch's fence hits as one list per ping (empty for most); the hits come by ping."""
    cols = (
        fh.position.tolist(),
        fh.store_id.tolist(),
        fh.distance_m.tolist(),
        fh.inside.tolist(),
        fh.in_buffer.tolist(),
        fh.nearby.tolist(),
    )
    hits = list(map(FenceHit, *cols))
    bounds = fh.offsets(n).tolist()
    return [hits[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
