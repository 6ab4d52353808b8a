"""Dispatcher: location pings in, push decisions out, and the offline outcome measured.

The O2O loop, end to end: a ping enters a store's geofence (drainage), the
engine pushes the best eligible offer under the policy; ``record`` takes the
open (conversion), the in-store redemption or visit (consumption), repeat
visits (retention), and feeds them to the scorer's history (feedback);
``report`` measures each stage, and the uplift against a held-out group.

Rules worth knowing (all tested):

* Time is event time: every ``ts`` is epoch seconds or an aware datetime
  (naive datetimes are refused).  A ping older than the last ping that
  changed the user's fence state is ignored as stale; events may arrive in
  any order (attribution uses their ``ts``).
* Attribution: a redeem, visit, open or click is attributed to the push it
  names (``push_id``), else to the user's latest push of the same offer (or,
  without an offer, of the store's merchant) at most
  ``policy.attribution_window_s`` before it; holdout decisions are attributed
  the same way, which is what makes the uplift measurable.
* Idempotency: a ping or an event with an ``event_id`` is processed once;
  the same id again returns the stored outcome and changes nothing.
* Holdout decisions count against the user's caps (so both groups see the
  same policy) but not against budgets or store capacity (nothing is sent).
* Atomicity: one ping or one event is one state transaction; an error
  leaves the state as it was.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree

from ._geodesy import (
    CHORD_SERIES_MAX_M,
    _ecef,
    _ecef_scalar,
    _normal_norm,
    chord_to_geodesic_scalar_m,
    geodesic_inverse_m,
)
from ._history import Event, to_epoch_s
from ._index import StoreIndex
from ._offers import OfferSet
from ._policy import PushPolicy, open_for, parse_hours, store_zones, tz_at, zone
from ._scoring import FEATURES, OfferScorer
from ._state import DispatchState, MemoryState, Transaction
from ._state._keys import id_text as _key
from ._types import FloatArray, IntArray
from ._validate import as_latlon, import_optional
from .errors import (
    InvalidGeometryError,
    InvalidParameterError,
    InvalidRecordError,
    ShapeMismatchError,
    UnknownOfferError,
    UnknownPushError,
    UnknownStoreError,
)

__all__ = ["Dispatcher", "PushDecision"]

RECORD_KINDS = ("open", "click", "redeem", "visit", "dismiss", "failed")
#: Columns of :meth:`Dispatcher.report` after the group column (named by ``by``, or ``group``).
REPORT_COLUMNS = (
    "pushed",
    "holdout",
    "failed",
    "delivered",
    "opened",
    "redeemed",
    "visited",
    "revenue",
    "open_rate",
    "redeem_rate",
    "visit_rate",
    "users_treated",
    "users_holdout",
    "conversion_treated",
    "conversion_holdout",
    "uplift",
    "uplift_low",
    "uplift_high",
)
_PRIORITY = {"enter": 0, "dwell": 1, "nearby": 2}
_Z95 = 1.959963984540054
_E = np.empty(0, dtype=np.int64)
_NO_HITS = (_E, _E, np.empty(0), np.empty(0, dtype=bool), np.empty(0, dtype=bool), np.empty(0, dtype=bool))


def _one(*values: float) -> list[FloatArray]:
    return [np.array([v], dtype=np.float64) for v in values]


@dataclass(frozen=True)
class PushDecision:
    """One push the dispatcher decided on.

    Attributes
    ----------
    push_id : str
        Unique id; quote it in later events (``record(Event(..., push_id=...))``).
    user_id, offer_id, store_id, merchant_id
        Who gets which offer, redeemable at which store.
    score : float
        The scorer's probability of redemption.
    distance_m : float
        WGS84 distance from the ping to the store, metres.
    trigger : {"enter", "dwell", "nearby"}
    holdout : bool
        ``True``: the user is in the holdout group; do **not** deliver.
    ts : float
        Epoch seconds of the ping.
    explanation : mapping of str to float
        Each feature's term of the score's logit (see :meth:`ScoredOffer.explain`).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> engine = og.Dispatcher(index, og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
    ...                        policy=og.PushPolicy(holdout_fraction=0.0))
    >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
    >>> d.push_id, d.store_id, d.trigger, round(d.distance_m), d.holdout
    ('p1', 'lucky-09', 'enter', 2, False)
    >>> import math; abs(sum(d.explain().values()) - math.log(d.score / (1 - d.score))) < 1e-9
    True
    """

    push_id: str
    user_id: Any
    offer_id: Any
    store_id: Any
    merchant_id: Any
    score: float
    distance_m: float
    trigger: str
    holdout: bool
    ts: float
    explanation: Mapping[str, float] = field(repr=False, compare=True)

    def explain(self) -> dict[str, float]:
        """Each feature's contribution to the logit, largest magnitude first.

        Returns
        -------
        dict of str to float
            Terms that add up to ``log(score / (1 - score))``.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> terms = d.explain()
        >>> "intercept" in terms, all(abs(a) >= abs(b) for a, b in zip(list(terms.values()), list(terms.values())[1:]))
        (True, True)
        """
        return dict(sorted(self.explanation.items(), key=lambda kv: -abs(kv[1])))

    def to_dict(self) -> dict[str, Any]:
        """The decision as a JSON-able dict.

        Returns
        -------
        dict
            Every field, ``explanation`` as a dict of floats; write it to a log or a queue.

        Examples
        --------
        >>> import json
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> (d,) = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> record = json.loads(json.dumps(d.to_dict()))
        >>> record["push_id"], record["store_id"], record["trigger"], record["holdout"]
        ('p1', 'lucky-09', 'enter', False)
        """
        return {
            "push_id": self.push_id,
            "user_id": self.user_id,
            "offer_id": self.offer_id,
            "store_id": self.store_id,
            "merchant_id": self.merchant_id,
            "score": self.score,
            "distance_m": self.distance_m,
            "trigger": self.trigger,
            "holdout": self.holdout,
            "ts": self.ts,
            "explanation": dict(self.explanation),
        }


class _Geo:
    """Per index version: geofences (inner and hysteresis-outer), store time zones and opening hours."""

    def __init__(self, index: StoreIndex, policy: PushPolicy) -> None:
        stores = index.stores
        n = len(stores)
        self.version = index._version
        self.ids = stores.store_id
        self.merchant = stores["merchant_id"]
        self.r_in = np.full(n, float(policy.fence_radius_m))
        self.polys: dict[int, tuple[Any, Any]] = {}
        buf = float(policy.exit_buffer_m)
        if policy.fence_column in stores.columns:
            for i, v in enumerate(stores[policy.fence_column].tolist()):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    if not (v > 0 and math.isfinite(v)):
                        raise InvalidGeometryError(f"store {self.ids[i]!r}: geofence radius {v!r} must be > 0 metres")
                    self.r_in[i] = float(v)
                elif isinstance(v, (shapely.Polygon, shapely.MultiPolygon)):
                    self.polys[i] = self._polygon(v, float(stores.lat[i]), float(stores.lon[i]), buf, self.ids[i])
                    self.r_in[i] = math.nan
                else:
                    raise InvalidGeometryError(
                        f"store {self.ids[i]!r}: geofence must be a radius in metres or a shapely polygon; got {v!r}"
                    )
        self.r_out = self.r_in + buf
        reach = np.where(np.isnan(self.r_out), 0.0, self.r_out)
        for i, (poly, _) in self.polys.items():
            x, y = np.asarray(
                poly.exterior.coords if isinstance(poly, shapely.Polygon) else shapely.get_coordinates(poly)
            ).T[:2]
            far = float(
                np.max(geodesic_inverse_m(np.full(x.shape, stores.lat[i]), np.full(x.shape, stores.lon[i]), y, x))
            )
            reach[i] = far + buf
        self.reach_m = float(reach.max(initial=0.0))
        self.nearby_m = float(policy.nearby_radius_m) if "nearby" in policy.triggers else 0.0
        self.query_m = max(self.reach_m, self.nearby_m)
        # local time of stores
        self.tz = store_zones(stores, policy.tz_column)
        # the single-ping path: a tree over the live stores (tree index = position)
        xyz = _ecef(stores.lat, stores.lon)
        self._tree = cKDTree(xyz, leafsize=32) if n else None
        self._xyz = xyz.tolist()
        self._gn = _normal_norm(xyz).tolist()
        self._lat, self._lon = stores.lat, stores.lon
        self._r_in_l, self._r_out_l = self.r_in.tolist(), self.r_out.tolist()
        self._lat_l, self._lon_l = stores.lat.tolist(), stores.lon.tolist()
        if policy.hours_column in stores.columns:
            self.hours = [
                parse_hours(h, s) for h, s in zip(stores[policy.hours_column].tolist(), self.ids.tolist(), strict=True)
            ]
        else:
            self.hours = [None] * n

    @staticmethod
    def _polygon(poly: Any, lat0: float, lon0: float, buf_m: float, sid: Any) -> tuple[Any, Any]:
        if not poly.is_valid or poly.is_empty:
            raise InvalidGeometryError(f"store {sid!r}: geofence polygon is invalid or empty")
        x0, _, x1, _ = poly.bounds
        if x1 - x0 > 180.0:
            raise InvalidGeometryError(
                f"store {sid!r}: geofence polygons must not cross the antimeridian; use a radius"
            )
        # the hysteresis buffer in a local equirectangular frame at the store (metres, exact enough for tens of metres)
        kx = 111_320.0 * math.cos(math.radians(lat0))
        ky = 110_574.0
        local = shapely.transform(poly, lambda c: np.column_stack([(c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * ky]))
        outer = shapely.transform(
            local.buffer(buf_m), lambda c: np.column_stack([c[:, 0] / kx + lon0, c[:, 1] / ky + lat0])
        )
        shapely.prepare(poly)
        shapely.prepare(outer)
        return poly, outer

    def hits_one(
        self, lat: float, lon: float
    ) -> tuple[IntArray, IntArray, FloatArray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`hits` for one ping, in plain floats (the same exact decisions)."""
        if self.query_m <= 0.0 or self._tree is None:
            return _NO_HITS
        x, y, z, gn = _ecef_scalar(lat, lon)
        cand = self._tree.query_ball_point((x, y, z), self.query_m + 1.0)
        if not cand:
            return _NO_HITS
        cand.sort()
        pos_l, dist_l = [], []
        xyz, gns, r_in_l, r_out_l = self._xyz, self._gn, self._r_in_l, self._r_out_l
        near_m, query_m = self.nearby_m, self.query_m
        for p in cand:
            sx, sy, sz = xyz[p]
            dx, dy, dz = sx - x, sy - y, sz - z
            c = math.sqrt(dx * dx + dy * dy + dz * dz)
            if c > CHORD_SERIES_MAX_M:
                d = self._exact(lat, lon, p)
            else:
                d = chord_to_geodesic_scalar_m(c, dz, 0.5 * (gn + gns[p]))
                e = 2e-8 + 1e-31 * c**5  # chord_error_bound_m, inlined
                r_in, r_out = r_in_l[p], r_out_l[p]
                if abs(d - r_in) <= e or abs(d - r_out) <= e or abs(d - near_m) <= e or abs(d - query_m) <= e:
                    d = self._exact(lat, lon, p)
            if d <= query_m:
                pos_l.append(p)
                dist_l.append(d)
        if not pos_l:
            return _NO_HITS
        pos = np.array(pos_l, dtype=np.int64)
        dist = np.array(dist_l)
        inner = dist <= self.r_in[pos]
        outer = dist <= self.r_out[pos]
        if self.polys:
            self._polygon_hits(pos, np.full(pos.shape, lat), np.full(pos.shape, lon), inner, outer)
        return np.zeros(pos.shape[0], dtype=np.int64), pos, dist, inner, outer, dist <= self.nearby_m

    def _exact(self, lat: float, lon: float, p: int) -> float:
        """GeographicLib's distance from a point to store position ``p``."""
        return float(geodesic_inverse_m(*_one(lat, lon, self._lat_l[p], self._lon_l[p]))[0])

    def _polygon_hits(
        self, pos: IntArray, lat: FloatArray, lon: FloatArray, inner: np.ndarray, outer: np.ndarray
    ) -> None:
        """Overwrite ``inner``/``outer`` for pairs whose store has a polygon fence (lat/lon per pair)."""
        for j in np.flatnonzero(np.isnan(self.r_in[pos])).tolist():
            poly, out_poly = self.polys[int(pos[j])]
            inner[j] = shapely.contains_xy(poly, lon[j], lat[j])
            outer[j] = inner[j] or shapely.contains_xy(out_poly, lon[j], lat[j])

    def hits(
        self, index: StoreIndex, lat: FloatArray, lon: FloatArray
    ) -> tuple[IntArray, IntArray, FloatArray, np.ndarray, np.ndarray, np.ndarray]:
        """(ping, store position, distance m, in fence, in outer fence, in nearby radius) of every store in reach."""
        if self.query_m <= 0.0:
            return _NO_HITS
        with index._lock:
            q, slot, dist, err = index._within_pairs(lat, lon, self.query_m)
            pos = index._slot_to_pos()[slot]
        r_in, r_out = self.r_in[pos], self.r_out[pos]
        near = (np.abs(dist - r_in) <= err) | (np.abs(dist - r_out) <= err) | (np.abs(dist - self.nearby_m) <= err)
        if near.any():
            dist[near] = geodesic_inverse_m(lat[q[near]], lon[q[near]], index._lat[slot[near]], index._lon[slot[near]])
        inner = dist <= r_in
        outer = dist <= r_out
        if self.polys:
            self._polygon_hits(pos, lat[q], lon[q], inner, outer)
        nearby = dist <= self.nearby_m
        return q, pos, dist, inner, outer, nearby


class Dispatcher:
    """Decide which offers to push on location pings, and measure what they did offline.

    Parameters
    ----------
    index : StoreIndex
        The stores (with a ``merchant_id`` column; optional ``geofence``,
        ``opening_hours`` and ``tz`` columns, see :class:`PushPolicy`).
    offers : OfferSet
        The offers.
    scorer : OfferScorer, optional
        Ranks the offers; default: an :class:`OfferScorer` over the same index
        and offers whose history the dispatcher feeds from its own event log
        (rebuilt from ``state`` at start-up, so learning survives restarts).
    policy : PushPolicy, optional
        Triggers, caps, budgets, holdout; default ``PushPolicy()``.
    state : DispatchState, optional
        :class:`MemoryState` (default) or :class:`SQLiteState`.
    deliver : callable, optional
        Called with each non-holdout :class:`PushDecision` after it is stored;
        if it raises, a ``failed`` event is recorded for the push (the
        decision still counts against caps and budgets).

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
    >>> engine = og.Dispatcher(index, offers, policy=og.PushPolicy(quiet_hours=None, holdout_fraction=0.0))
    >>> store = index.stores.position_of("lucky-09")[0]
    >>> lat, lon = float(index.stores.lat[store]), float(index.stores.lon[store])
    >>> t0 = 1767229200  # 2026-01-01 09:00 in Shanghai
    >>> engine.on_location("u1", lat + 0.01, lon, t0)        # 1.1 km away: nothing
    []
    >>> [(d.offer_id, d.store_id, d.trigger) for d in engine.on_location("u1", lat, lon, t0 + 60)]
    [('latte', 'lucky-09', 'enter')]
    >>> push = engine.state.pushes()[0]["push_id"]
    >>> engine.record(og.Event("redeem", "u1", t0 + 900, push_id=push, amount=28.0))
    'p1'
    >>> row = engine.report(by="offer", as_frame=False)[0]
    >>> row["pushed"], row["redeemed"], row["revenue"]
    (1, 1, 28.0)
    """

    def __init__(
        self,
        index: StoreIndex,
        offers: OfferSet,
        scorer: OfferScorer | None = None,
        policy: PushPolicy | None = None,
        state: DispatchState | None = None,
        *,
        deliver: Callable[[PushDecision], Any] | None = None,
    ) -> None:
        if not isinstance(index, StoreIndex) or not isinstance(offers, OfferSet):
            raise InvalidParameterError("Dispatcher takes a StoreIndex and an OfferSet")
        if policy is not None and not isinstance(policy, PushPolicy):
            raise InvalidParameterError(f"policy must be a PushPolicy; got {type(policy).__name__}")
        if state is not None and not isinstance(state, DispatchState):
            raise InvalidParameterError("state must be a MemoryState, SQLiteState or another DispatchState")
        if scorer is not None and (scorer.index is not index or scorer.offers is not offers):
            raise InvalidParameterError("the scorer must rank the same index and offers as the dispatcher")
        if deliver is not None and not callable(deliver):
            raise InvalidParameterError("deliver must be callable")
        self.index = index
        self.offers = offers
        self.policy = policy if policy is not None else PushPolicy()
        self.state = state if state is not None else MemoryState()
        self.deliver = deliver
        self.scorer = scorer if scorer is not None else OfferScorer(index, offers)
        self.stats: Counter[str] = Counter()
        self._geo_cache: _Geo | None = None
        self._geo_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        if scorer is None:
            self._feed(
                [self._history_event(p, "push") for p in self.state.pushes() if not p["holdout"]]
                + [self._history_event(e, e["kind"]) for e in self.state.events()]
            )

    def __repr__(self) -> str:
        return (
            f"Dispatcher({len(self.index):,} stores, {len(self.offers):,} offers, "
            f"{type(self.state).__name__}, {self.policy!r})"
        )

    def close(self) -> None:
        """Close the state backend's connections (the stored data stays).

        A dispatcher is also a context manager that closes on exit.

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> path = os.path.join(tempfile.mkdtemp(), "o2o.db")
        >>> index = og.StoreIndex(og.sample_stores())
        >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)])
        >>> policy = og.PushPolicy(holdout_fraction=0.0)
        >>> with og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path)) as engine:
        ...     pushed = engine.on_location("u1", 31.2325, 121.4801, 1767258000)
        >>> again = og.Dispatcher(index, offers, policy=policy, state=og.SQLiteState(path))
        >>> [p["push_id"] for p in again.state.pushes()]     # the push outlived the closed engine
        ['p1']
        >>> again.close()
        """
        self.state.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ helpers
    def _geo(self) -> _Geo:
        g = self._geo_cache
        if g is None or g.version != self.index._version:
            with self._geo_lock:
                g = self._geo_cache
                if g is None or g.version != self.index._version:
                    g = self._geo_cache = _Geo(self.index, self.policy)
        return g

    def _history_event(self, rec: Mapping[str, Any], kind: str) -> Event:
        o = self.offers._lookup.get(rec["offer_id"])
        return Event(
            kind,  # type: ignore[arg-type]
            rec["user_id"],
            rec["ts"],
            offer_id=rec["offer_id"],
            store_id=rec["store_id"],
            merchant_id=rec["merchant_id"],
            category=None if o is None else self.offers.category[o],
            amount=rec.get("amount"),
            discount_depth=None if o is None else float(self.offers.discount_depth[o]),
            distance_m=rec.get("distance_m"),
        )

    def _feed(self, events: list[Event]) -> None:
        """Feed the scorer's history (the feedback stage of the loop)."""
        if not events:
            return
        with self._feed_lock:
            for e in events:
                self.scorer.record(e)

    @staticmethod
    def _check_user(user_id: Any) -> Any:
        """The user id as a plain str or int (numpy's integers and strings, as read from arrays, are converted)."""
        if isinstance(user_id, np.integer):
            return int(user_id)
        if isinstance(user_id, np.str_):
            return str(user_id)
        if user_id is None or isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
            raise InvalidRecordError(f"user_id must be a str or an int; got {user_id!r}")
        return user_id

    # ------------------------------------------------------------ pings
    def on_location(
        self,
        user_id: Any,
        lat: float,
        lon: float,
        ts: Any,
        event_id: Any = None,
        accuracy_m: float | None = None,
        tz: str | None = None,
    ) -> list[PushDecision]:
        """Process one location ping; returns the pushes decided (usually none).

        Parameters
        ----------
        user_id : str or int
        lat, lon : float
            Degrees (WGS84).
        ts : float or datetime
            Epoch seconds or an aware datetime.
        event_id : str or int, optional
            The ping's unique id: a redelivered ping returns the same decisions and pushes nothing new.
        accuracy_m : float, optional
            The fix's accuracy radius; pings less accurate than ``policy.max_accuracy_m`` are ignored.
        tz : str, optional
            The user's IANA time zone; default: looked up offline from the position.

        Returns
        -------
        list of PushDecision
            Best score first; at most ``policy.max_per_ping``.

        Raises
        ------
        InvalidCoordinateError, InvalidParameterError, InvalidRecordError
            Bad position, time, accuracy, time zone or user id (nothing is changed).
        StateError
            The state store failed (nothing is changed; no push).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> engine.on_location("u1", 31.2400, 121.4500, 1767258000)          # far from every store
        []
        >>> [(d.store_id, d.trigger) for d in engine.on_location("u1", 31.2325, 121.4801, 1767258060)]
        [('lucky-09', 'enter')]
        >>> engine.on_location("u1", 31.2325, 121.4801, 1767258120)          # still inside: no second push
        []
        """
        user_id = self._check_user(user_id)
        lat_a, lon_a, _ = as_latlon(lat, lon)
        t = to_epoch_s(ts, "ts")
        acc = _accuracy(accuracy_m)
        if tz is not None:
            zone(tz)
        if acc > self.policy.max_accuracy_m:
            self.stats["ignored_inaccurate"] += 1
            return []
        geo = self._geo()
        q, pos, dist, inner, outer, nearby = geo.hits_one(float(lat_a[0]), float(lon_a[0]))
        return self._process(
            geo, user_id, float(lat_a[0]), float(lon_a[0]), t, event_id, tz, pos, dist, inner, outer, nearby
        )

    def on_locations(self, pings: Any = None, **columns: Any) -> list[PushDecision]:
        """Replay a ping log: the same decisions as calling :meth:`on_location` row by row, faster.

        Parameters
        ----------
        pings : DataFrame or mapping of arrays, optional
            Columns ``user_id``, ``lat``, ``lon``, ``ts`` (epoch seconds or a
            timezone-aware datetime64 column) and optionally ``event_id``,
            ``accuracy_m``, ``tz``; or pass the columns as keyword arrays.
            Rows are processed in the given order (sort by ``ts`` for a replay).

        Returns
        -------
        list of PushDecision
            Every decision, in ping order.

        Raises
        ------
        InvalidCoordinateError, InvalidParameterError, InvalidRecordError, ShapeMismatchError
            A bad row (named in the message); raised before any row is processed.

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.0))
        >>> log = {"user_id": ["u1", "u2", "u1"], "lat": [31.2400, 31.2325, 31.2325],
        ...        "lon": [121.4500, 121.4801, 121.4801], "ts": [1767258000, 1767258030, 1767258060]}
        >>> [(d.user_id, d.store_id) for d in engine.on_locations(log)]
        [('u2', 'lucky-09'), ('u1', 'lucky-09')]
        """
        cols = _columns(pings, columns)
        users = cols["user_id"]
        n = len(users)
        for name, v in cols.items():
            if len(v) != n:
                raise ShapeMismatchError(f"column {name!r} has {len(v)} rows but user_id has {n}")
        for i, u in enumerate(users):
            if u is None or isinstance(u, bool) or not isinstance(u, (str, int)):
                raise InvalidRecordError(f"user_id of row {i} must be a str or an int; got {u!r}")
        lat_a, lon_a, _ = as_latlon(cols["lat"], cols["lon"])
        ts = _times(cols["ts"])
        acc = np.zeros(n) if cols.get("accuracy_m") is None else _accuracies(cols["accuracy_m"])
        eids = cols.get("event_id")
        tzs = cols.get("tz")
        if tzs is not None:
            for name in {t for t in tzs if t is not None}:
                zone(name)
        ok = acc <= self.policy.max_accuracy_m
        self.stats["ignored_inaccurate"] += int(n - ok.sum())
        geo = self._geo()
        out: list[PushDecision] = []
        chunk = 65_536
        read_user = self.state.read_user
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            q, pos, dist, inner, outer, nearby = geo.hits(self.index, lat_a[start:stop], lon_a[start:stop])
            offsets = np.zeros(stop - start + 1, dtype=np.int64)
            np.cumsum(np.bincount(q, minlength=stop - start), out=offsets[1:])
            for j in range(stop - start):
                i = start + j
                if not ok[i]:
                    continue
                a, b = offsets[j], offsets[j + 1]
                if a == b:
                    u = read_user(users[i])
                    if u is None or not u.get("in"):
                        continue
                out += self._process(
                    geo,
                    users[i],
                    float(lat_a[i]),
                    float(lon_a[i]),
                    float(ts[i]),
                    None if eids is None else eids[i],
                    None if tzs is None else tzs[i],
                    pos[a:b],
                    dist[a:b],
                    inner[a:b],
                    outer[a:b],
                    nearby[a:b],
                    idle_checked=True,
                )
        return out

    def _process(
        self,
        geo: _Geo,
        user_id: Any,
        lat: float,
        lon: float,
        t: float,
        event_id: Any,
        tz: str | None,
        pos: IntArray,
        dist: FloatArray,
        inner: np.ndarray,
        outer: np.ndarray,
        nearby: np.ndarray,
        *,
        idle_checked: bool = False,
    ) -> list[PushDecision]:
        if pos.shape[0] == 0 and not idle_checked:
            u0 = self.state.read_user(user_id)
            if u0 is None or not u0.get("in"):
                return []  # idle ping: nothing to change
        ids = geo.ids
        inside = {
            ids[p]: (int(p), float(d)) for p, d, f in zip(pos.tolist(), dist.tolist(), inner.tolist(), strict=True) if f
        }
        buffer = {ids[p] for p, f in zip(pos.tolist(), outer.tolist(), strict=True) if f}
        when = _LocalDay(user_id, lat, lon, t, tz)
        # a push may follow: the user's caps and the push sequence are read with the user (a lazy hint)
        caps: Any = when if inside or nearby.any() else ()

        def work(tx: Transaction) -> tuple[list[PushDecision], list[dict[str, Any] | None], Counter[str], bool]:
            stats: Counter[str] = Counter()  # merged only when the transaction commits (it may be retried)
            visits: list[Event] = []
            decisions: list[PushDecision] = []
            tx.prefetch(users=[user_id], idems=[] if event_id is None else ["p:" + _key(event_id)], counters=caps)
            if event_id is not None:
                hit = tx.idem("p:" + _key(event_id))
                if hit is not None:
                    stats["duplicate_pings"] += 1
                    return [_decision_from(d) for d in hit], [], stats, False  # already fed and delivered
            old = tx.get_user(user_id) or {}
            if t < old.get("last_ts", -math.inf):
                stats["stale_pings"] += 1
                return [], [], stats, False
            # fence state: [store_id, entered_ts, outside_since_ts or None, dwell_fired], one per fence the user is in
            fences: list[list[Any]] = []
            triggers: dict[int, tuple[str, float]] = {}
            known = set()
            for st in old.get("in", ()):
                sid = st[0]
                known.add(sid)
                if sid in inside:
                    p, d = inside[sid]
                    st = [sid, st[1], None, st[3]]
                    if not st[3] and t - st[1] >= self.policy.dwell_s:
                        st[3] = True
                        triggers[p] = ("dwell", d)
                        visits.append(Event("visit", user_id, t, store_id=sid, merchant_id=geo.merchant[p]))
                elif sid in buffer:
                    if st[2] is not None and t - st[2] >= self.policy.exit_after_s:
                        continue  # exit: outside the fence for long enough
                    st = [sid, st[1], t if st[2] is None else st[2], st[3]]
                else:
                    continue  # exit: beyond the hysteresis buffer
                fences.append(st)
            for sid, (p, d) in inside.items():
                if sid not in known:
                    fences.append([sid, t, None, False])
                    triggers[p] = ("enter", d)
            u = {**old, "in": fences, "last_ts": t}
            if "nearby" in self.policy.triggers:
                for p, d, f in zip(pos.tolist(), dist.tolist(), nearby.tolist(), strict=True):
                    if f and p not in triggers:
                        triggers[p] = ("nearby", d)
            stored = [self._record_tx(tx, v, stats, inferred=True)[0] for v in visits]
            wanted = {p: td for p, td in triggers.items() if td[0] in self.policy.triggers}
            if wanted:
                decisions = self._decide(tx, stats, geo, u, user_id, t, when, wanted)
            tx.put_user(user_id, u)
            if event_id is not None:
                tx.put_idem("p:" + _key(event_id), user_id, [d.to_dict() for d in decisions])
            return decisions, stored, stats, True

        decisions, stored, stats, fresh = self.state.run(work)
        self.stats.update(stats)
        if not fresh:
            return decisions
        self._feed(
            [self._history_event(r, "visit") for r in stored if r is not None]
            + [self._history_event(d.to_dict(), "push") for d in decisions if not d.holdout]
        )
        self._deliver(decisions)
        return decisions

    def _decide(
        self,
        tx: Transaction,
        stats: Counter[str],
        geo: _Geo,
        u: dict[str, Any],
        user_id: Any,
        t: float,
        when: _LocalDay,
        triggers: dict[int, tuple[str, float]],
    ) -> list[PushDecision]:
        pol = self.policy
        if t - u.get("last_push_ts", -math.inf) < pol.min_gap_s:
            stats["min_gap"] += 1
            return []
        if t - u.get("dismiss_ts", -math.inf) < pol.dismiss_cooldown_s:
            stats["dismiss_cooldown"] += 1
            return []
        if pol.is_quiet(when.local):
            stats["quiet_hours"] += 1
            return []
        uk, day = when.uk, when.day
        day_key, week_key = when.day_key, when.week_key
        tx.prefetch(counters=when)
        if _full(tx, day_key, pol.max_per_day) or _full(tx, week_key, pol.max_per_week):
            stats["user_cap"] += 1
            return []
        pos = np.fromiter(triggers, dtype=np.int64, count=len(triggers))
        dist = np.array([triggers[p][1] for p in pos.tolist()])
        offer, spos, sdist, logit, X = self.scorer._score_at(user_id, pos, dist, t)
        score = 0.5 * (1.0 + np.tanh(0.5 * logit))
        # best first; ties (to 1e-9 in the logit, below rounding noise of the batch and single paths) by offer, store
        order = np.lexsort((spos, offer, -np.round(logit, 9)))
        out: list[PushDecision] = []
        store_times: dict[int, datetime] = {}

        def limits(j: int) -> tuple[Any, Any, Any, int, datetime, bool, list[tuple[str, float, float]]]:
            """The candidate's ids, store, store-local time, holdout flag and its configured limits."""
            o, p = int(offer[j]), int(spos[j])
            oid, mid, sid = self.offers.offer_id[o], self.offers.merchant_id[o], geo.ids[p]
            store_local = store_times.get(p)
            if store_local is None:
                store_local = store_times[p] = datetime.fromtimestamp(t, zone(geo.tz[p]))
            holdout = pol.is_holdout(user_id, oid)
            keys: list[tuple[str, float | None, float]] = [
                (day_key, pol.max_per_day, 1.0),
                (week_key, pol.max_per_week, 1.0),
                (f"u|{uk}|o|{_key(oid)}", pol.max_per_offer, 1.0),
                (f"u|{uk}|m|{_key(mid)}|{day}", pol.max_per_merchant_per_day, 1.0),
            ]
            if not holdout:
                cost = float(pol.offer_cost.get(oid, self.offers[oid].off_amount or 0.0))
                ob, mb = pol.offer_budgets.get(oid), pol.merchant_budgets.get(mid)
                for prefix, b in ((f"ob|{_key(oid)}", ob), (f"mb|{_key(mid)}", mb)):
                    if b is not None:
                        keys.append((prefix + "|n", b.max_pushes, 1.0))
                        keys.append((prefix + "|c", b.max_cost, cost))
                keys.append((f"sc|{_key(sid)}|{store_local.date().isoformat()}", pol.capacity_of(sid), 1.0))
            # only configured limits are counted
            return oid, mid, sid, p, store_local, holdout, [(k, lim, inc) for k, lim, inc in keys if lim is not None]

        ranked = [j for j in order.tolist() if score[j] >= pol.min_score]
        first = {j: limits(j) for j in ranked[:8]}  # one read of every counter the likely pushes need
        tx.prefetch(counters=[k for c in first.values() for k, _, _ in c[6]])
        for j in ranked:
            if _full(tx, day_key, pol.max_per_day) or _full(tx, week_key, pol.max_per_week):
                stats["user_cap"] += 1
                break
            oid, mid, sid, p, store_local, holdout, keys = first[j] if j in first else limits(j)
            if not open_for(geo.hours[p], store_local, pol.closing_margin_min):
                stats["store_closed"] += 1
                continue
            if any(d.offer_id == oid for d in out):
                continue
            if any(tx.counter(k) + inc > lim + 1e-9 for k, lim, inc in keys):
                stats["capped"] += 1
                continue
            for k, _, inc in keys:
                tx.add_counter(k, inc)
            push_id = f"p{tx.next_seq()}"
            explanation = dict(zip(FEATURES, (X[j] * self.scorer.weights_).tolist(), strict=True))
            d = PushDecision(
                push_id=push_id,
                user_id=user_id,
                offer_id=oid,
                store_id=sid,
                merchant_id=mid,
                score=float(score[j]),
                distance_m=float(sdist[j]),
                trigger=triggers[p][0],
                holdout=holdout,
                ts=t,
                explanation=explanation,
            )
            rec = {k: v for k, v in d.to_dict().items() if k != "explanation"}
            tx.add_push(rec)
            out.append(d)
            stats["holdout" if holdout else "pushed"] += 1
            if len(out) >= pol.max_per_ping:
                break
        if out:
            u["last_push_ts"] = t
        return out

    def _deliver(self, decisions: list[PushDecision]) -> None:
        if self.deliver is None:
            return
        for d in decisions:
            if d.holdout:
                continue
            try:
                self.deliver(d)
            except Exception:  # noqa: BLE001 - any delivery failure is reported as an event
                self.stats["delivery_failed"] += 1
                self.record(
                    Event("failed", d.user_id, d.ts, offer_id=d.offer_id, store_id=d.store_id, push_id=d.push_id)
                )

    # ------------------------------------------------------------ events
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
        rec, push_id = self.state.run(lambda tx: self._record_tx(tx, event, stats, inferred=False))
        self.stats.update(stats)
        if rec is not None:
            self._feed([self._history_event(rec, rec["kind"])])
        return push_id

    def _record_tx(
        self, tx: Transaction, e: Event, stats: Counter[str], *, inferred: bool
    ) -> tuple[dict[str, Any] | None, Any]:
        """Store one event in a transaction; (the stored record or None for a duplicate, attributed push id)."""
        tx.prefetch(
            idems=() if e.event_id is None else ["e:" + _key(e.event_id)],
            pushes=() if e.push_id is None else [e.push_id],
            users=[e.user_id] if e.kind == "dismiss" else (),
        )
        if e.event_id is not None:
            hit = tx.idem("e:" + _key(e.event_id))
            if hit is not None:
                stats["duplicate_events"] += 1
                return None, hit["push_id"]
        merchant = e.merchant_id
        if merchant is None and e.offer_id is not None:
            merchant = self.offers.merchant_id[self.offers._lookup[e.offer_id]]
        if merchant is None and e.store_id is not None:
            geo = self._geo()
            merchant = geo.merchant[int(self.index.stores.position_of(e.store_id)[0])]
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
                e.user_id, e.ts - self.policy.attribution_window_s, e.ts, offer_id=e.offer_id, merchant_id=merchant
            )
        push_id = None if push is None else push["push_id"]
        rec = {
            "event_id": e.event_id,
            "user_id": e.user_id,
            "kind": e.kind,
            "ts": e.ts,
            "offer_id": e.offer_id if e.offer_id is not None else (None if push is None else push["offer_id"]),
            "store_id": e.store_id if e.store_id is not None else (None if push is None else push["store_id"]),
            "merchant_id": merchant if merchant is not None else (None if push is None else push["merchant_id"]),
            "push_id": push_id,
            "amount": e.amount,
            "distance_m": e.distance_m if e.distance_m is not None else (None if push is None else push["distance_m"]),
            "inferred": inferred,
        }
        tx.add_event(rec)
        if e.kind == "dismiss":
            old = tx.get_user(e.user_id) or {}
            tx.put_user(e.user_id, {**old, "dismiss_ts": max(old.get("dismiss_ts", -math.inf), e.ts)})
        if e.event_id is not None:
            tx.put_idem("e:" + _key(e.event_id), e.user_id, {"push_id": push_id})
        return rec, push_id

    def forget_user(self, user_id: Any) -> None:
        """Erase a user everywhere: fence state, caps, pushes, events, event ids and scorer history.

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
        user_id = self._check_user(user_id)
        self.state.forget_user(user_id)
        with self._feed_lock:
            self.scorer.history.forget_user(user_id)

    # ------------------------------------------------------------ measurement
    def report(self, since: Any = None, until: Any = None, by: str = "offer", as_frame: bool = True) -> Any:
        """The funnel of pushes made in ``[since, until)``, grouped, with the uplift over the holdout.

        Parameters
        ----------
        since, until : float or datetime, optional
            Window of the push times.
        by : {"offer", "merchant", "store", "all"}
        as_frame : bool, default True
            A pandas DataFrame, or (False) a list of dicts; the type never
            depends on what is installed.

        Returns
        -------
        DataFrame or list of dict
            Per group: ``pushed`` (treated decisions), ``holdout``, ``failed``,
            ``delivered``, ``opened`` (pushes with an attributed open, click or
            redeem), ``redeemed``, ``visited`` (pushes with at least one such
            attributed event), ``revenue`` (attributed redeem
            amounts), ``open_rate``, ``redeem_rate``, ``visit_rate`` (per
            delivered push), ``users_treated``, ``users_holdout``,
            ``conversion_treated``, ``conversion_holdout`` (share of users
            with an attributed redeem or visit), ``uplift`` and its 95 %
            interval ``uplift_low``, ``uplift_high`` (normal approximation,
            users as the unit of randomisation).

        Raises
        ------
        ImportError
            ``as_frame=True`` and pandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
        ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
        ...                        policy=og.PushPolicy(holdout_fraction=0.5))
        >>> decisions = [d for u in range(40) for d in engine.on_location(f"u{u}", 31.2325, 121.4801, 1767258000)]
        >>> for d in decisions[::2]:                    # half of the users come in and buy
        ...     _ = engine.record(og.Event("redeem", d.user_id, 1767259000, offer_id="latte", amount=28.0))
        >>> row = engine.report(by="all", as_frame=False)[0]
        >>> row["pushed"] + row["holdout"] == len(decisions), 0.0 <= row["conversion_treated"] <= 1.0
        (True, True)
        """
        if by not in ("offer", "merchant", "store", "all"):
            raise InvalidParameterError(f"by must be 'offer', 'merchant', 'store' or 'all'; got {by!r}")
        lo = -math.inf if since is None else to_epoch_s(since, "since")
        hi = math.inf if until is None else to_epoch_s(until, "until")
        pushes = [p for p in self.state.pushes() if lo <= p["ts"] < hi]
        outcome: dict[Any, set[str]] = {}
        revenue: dict[Any, float] = {}
        for e in self.state.events():
            if e["push_id"] is not None:
                outcome.setdefault(e["push_id"], set()).add(e["kind"])
                if e["kind"] == "redeem" and e["amount"] is not None:
                    revenue[e["push_id"]] = revenue.get(e["push_id"], 0.0) + e["amount"]
        groups: dict[Any, dict[str, Any]] = {}
        for p in pushes:
            key = "all" if by == "all" else p[f"{by}_id"]
            g = groups.setdefault(key, {"pushes": [], "treated": {}, "held": {}})
            kinds = outcome.get(p["push_id"], set())
            converted = bool(kinds & {"redeem", "visit"})
            users = g["held"] if p["holdout"] else g["treated"]
            users[p["user_id"]] = users.get(p["user_id"], False) or converted
            g["pushes"].append((p, kinds))
        rows = []
        for key, g in groups.items():
            treated = [(p, k) for p, k in g["pushes"] if not p["holdout"]]
            pushed = len(treated)
            failed = sum("failed" in k for _, k in treated)
            delivered = pushed - failed
            opened = sum(bool(k & {"open", "click", "redeem"}) for _, k in treated)
            redeemed = sum("redeem" in k for _, k in treated)
            visited = sum("visit" in k for _, k in treated)
            n1, n0 = len(g["treated"]), len(g["held"])
            c1 = sum(g["treated"].values()) / n1 if n1 else math.nan
            c0 = sum(g["held"].values()) / n0 if n0 else math.nan
            up = c1 - c0
            se = math.sqrt(c1 * (1 - c1) / n1 + c0 * (1 - c0) / n0) if n1 and n0 else math.nan
            rows.append(
                {
                    by if by != "all" else "group": key if by != "all" else "all",
                    "pushed": pushed,
                    "holdout": len(g["pushes"]) - pushed,
                    "failed": failed,
                    "delivered": delivered,
                    "opened": opened,
                    "redeemed": redeemed,
                    "visited": visited,
                    "revenue": float(sum(revenue.get(p["push_id"], 0.0) for p, _ in treated)),
                    "open_rate": opened / delivered if delivered else math.nan,
                    "redeem_rate": redeemed / delivered if delivered else math.nan,
                    "visit_rate": visited / delivered if delivered else math.nan,
                    "users_treated": n1,
                    "users_holdout": n0,
                    "conversion_treated": c1,
                    "conversion_holdout": c0,
                    "uplift": up,
                    "uplift_low": up - _Z95 * se,
                    "uplift_high": up + _Z95 * se,
                }
            )
        rows.sort(key=lambda r: (-int(r["pushed"]), str(r[by if by != "all" else "group"])))
        if as_frame:
            pd = import_optional("pandas", needed_by="Dispatcher.report(as_frame=True)", extra="geo")
            return pd.DataFrame(rows, columns=[by if by != "all" else "group", *REPORT_COLUMNS])
        return rows


class _LocalDay:
    """A ping's local time and the user's day and week cap keys, computed on first use.

    Iterating it yields the counters a push decision reads first, as a
    prefetch hint: a backend that ignores hints never looks up the time zone.
    """

    def __init__(self, user_id: Any, lat: float, lon: float, t: float, tz: str | None) -> None:
        self._where = (lat, lon, t, tz)
        self.uk = _key(user_id)

    @cached_property
    def local(self) -> datetime:
        lat, lon, t, tz = self._where
        return datetime.fromtimestamp(t, zone(tz or tz_at(lat, lon)))

    @cached_property
    def day(self) -> str:
        return self.local.date().isoformat()

    @cached_property
    def day_key(self) -> str:
        return f"u|{self.uk}|d|{self.day}"

    @cached_property
    def week_key(self) -> str:
        iso = self.local.isocalendar()
        return f"u|{self.uk}|w|{iso.year}-{iso.week}"

    def __iter__(self) -> Iterator[str]:
        return iter((self.day_key, self.week_key, "seq"))


# ------------------------------------------------------------ input helpers
def _decision_from(d: Mapping[str, Any]) -> PushDecision:
    return PushDecision(**d)


def _full(tx: Transaction, key: str, limit: int | None) -> bool:
    return limit is not None and tx.counter(key) >= limit


def _accuracy(a: Any) -> float:
    if a is None:
        return 0.0
    if isinstance(a, bool) or not isinstance(a, (int, float, np.number)) or not (math.isfinite(a) and a >= 0):
        raise InvalidParameterError(f"accuracy_m must be a finite number of metres >= 0; got {a!r}")
    return float(a)


def _accuracies(values: Any) -> FloatArray:
    arr = np.asarray(values, dtype=object)
    out = np.array(
        [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in arr.tolist()], dtype=object
    )
    try:
        res = out.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"accuracy_m must be numbers of metres: {exc}") from exc
    bad = ~np.isfinite(res) | (res < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidParameterError(f"accuracy_m of row {i} = {res[i]!r} must be a finite number >= 0")
    return res


def _times(values: Any) -> FloatArray:
    """Epoch seconds from numbers, aware datetimes or a tz-aware datetime64 column."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and str(dtype).startswith("datetime64"):
        if getattr(dtype, "tz", None) is None:
            raise InvalidParameterError("ts is a naive datetime64 column; localize it (e.g. .dt.tz_localize('UTC'))")
        return np.asarray(values.astype("int64"), dtype=np.float64) / _ticks_per_s(dtype)
    arr = values.tolist() if hasattr(values, "tolist") else list(values)
    out = np.empty(len(arr))
    for i, v in enumerate(arr):
        out[i] = to_epoch_s(v, f"ts of row {i}")
    return out


def _ticks_per_s(dtype: Any) -> float:
    unit = getattr(dtype, "unit", "ns")
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]


def _columns(pings: Any, columns: Mapping[str, Any]) -> dict[str, Any]:
    src: Mapping[str, Any]
    if pings is None:
        src = columns
    elif hasattr(pings, "columns") and hasattr(pings, "to_dict"):
        src = {c: pings[c] for c in pings.columns}
    elif isinstance(pings, Mapping):
        src = pings
    else:
        raise InvalidParameterError("on_locations takes a DataFrame, a mapping of columns, or keyword arrays")
    missing = [c for c in ("user_id", "lat", "lon", "ts") if c not in src]
    if missing:
        raise InvalidParameterError(f"ping columns {missing} are missing (need user_id, lat, lon, ts)")
    out: dict[str, Any] = {}
    for name in ("user_id", "lat", "lon", "ts", "event_id", "accuracy_m", "tz"):
        if name not in src:
            continue
        v = src[name]
        if name in ("user_id", "event_id", "tz"):
            v = [
                x.item() if isinstance(x, np.generic) else x for x in (v.tolist() if hasattr(v, "tolist") else list(v))
            ]
            if name != "user_id":  # a missing event id or time zone (None or NaN from pandas) is none
                v = [None if isinstance(x, float) and math.isnan(x) else x for x in v]
        elif name == "ts":
            v = v if getattr(v, "dtype", None) is not None else list(v)
        out[name] = v
    return out
