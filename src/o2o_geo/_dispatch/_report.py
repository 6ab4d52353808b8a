"""The report: the loop's funnel per offer, merchant or store, and the uplift over the holdout group.

The funnel's stages are monotone by construction: ``pushed >= delivered >=
opened >= redeemed`` (a redemption counts as an open: the push was seen).
Visits are not a stage (a user may walk in without opening anything), so
they are columns of their own: ``visited`` (visits the integrator
recorded: check-ins, scans) and ``visited_inferred`` (the engine's dwell
visits).  The uplift compares the share of users who converted, treated
against held out, on the conversion the caller picks (``metric``), with
Newcombe's hybrid score interval, named in the ``interval`` column.

Retention (the ``visitors_*``, ``repeat_*`` and ``retention_*`` columns): do
pushed users come back more often than held-out ones?

A push's *anchor visit* is the visit it is about: for an ``exit`` push, the
user's latest visit at the push's store at most a day before it (the stay
just left); for any other push, the first visit attributed to it (recorded
or inferred).  A *repeat* is a later visit by the user to any store of the
push's merchant, more than :data:`MIN_GAP_S` after the anchor (so a check-in
and the engine's inferred visit of one stay are not a repeat) and at most
7 (30) days after it.  Per group, users are the unit: a user counts as
retained when any of their anchors in the group was followed by a repeat.
Only complete windows count: an anchor enters the 7-day (30-day) columns
once the report's ``as_of`` (by default the ledger's latest push or event
time) is 7 (30) days after it, so a report made on day 5 does not read "no
repeat yet" as "never came back".  The uplift is the difference of the two shares with
Newcombe's hybrid score 95 % interval, as for conversions.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._state import keys
from .._time import to_epoch_s
from .._validate import check_choice, check_flag, import_optional
from ..errors import InvalidParameterError, RetentionWarning
from ._parts import EngineParts

__all__ = [
    "METRICS",
    "MIN_GAP_S",
    "REPEAT_COLUMNS",
    "REPORT_COLUMNS",
    "WINDOWS_DAYS",
    "ReportMethods",
    "diff_interval",
    "funnel_rows",
    "repeat_columns",
    "wilson_interval",
]

#: Visits closer than this to the anchor are the same stay, not a repeat.
MIN_GAP_S = 3600.0
#: The repeat-visit windows of the report, days.
WINDOWS_DAYS = (7, 30)
#: The report's retention columns, in order.
REPEAT_COLUMNS = tuple(
    f"{name}_{w}d{side}"
    for w in WINDOWS_DAYS
    for name, sides in (("visitors", ("_treated", "_holdout")), ("repeat", ("_treated", "_holdout")),
                        ("retention", ("_uplift", "_low", "_high")))
    for side in sides
)  # fmt: skip

#: Columns of :meth:`Dispatcher.report` after the group column (named by ``by``, or ``group``).
REPORT_COLUMNS = (
    "pushed",
    "holdout",
    "failed",
    "delivered",
    "opened",
    "redeemed",
    "visited",
    "visited_inferred",
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
    "metric",
    "interval",
    *REPEAT_COLUMNS,
)

#: What converts a user, per ``metric``: the attributed event kinds (``visit`` recorded or inferred).
METRICS: dict[str, frozenset[str]] = {
    "redeem": frozenset({"redeem"}),
    "redeem_or_visit": frozenset({"redeem", "visit", "visit_inferred"}),
}
INTERVAL = "Newcombe hybrid score 95%, users"
_Z95 = 1.959963984540054


def wilson_interval(x: float, n: float, z: float = _Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``x / n`` (NaNs for ``n == 0``).

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(0, 20)]     # no successes: not the zero-width [0, 0]
    [0.0, 0.1611]
    """
    if n <= 0:
        return math.nan, math.nan
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if x <= 0 else max(0.0, centre - half)  # (exact at the ends, not off by a rounding)
    hi = 1.0 if x >= n else min(1.0, centre + half)
    return lo, hi


def diff_interval(x1: float, n1: float, x0: float, n0: float) -> tuple[float, float, float]:
    """``p1 - p0`` and its 95 % interval by Newcombe's hybrid score method (his method 10, 1998).

    Built from each arm's Wilson interval, so it stays inside [-1, 1] and
    keeps its width when an arm has no (or only) conversions, where the
    normal approximation collapses to a zero-width interval.

    Examples
    --------
    >>> [round(v, 4) for v in diff_interval(56, 70, 48, 80)]    # Newcombe's (1998) example (e)
    [0.2, 0.0524, 0.3339]
    """
    if n1 <= 0 or n0 <= 0:
        return math.nan, math.nan, math.nan
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1)
    l0, u0 = wilson_interval(x0, n0)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def funnel_rows(
    pushes: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    lo: float,
    hi: float,
    by: str,
    metric: str = "redeem",
    *,
    as_of: float | None = None,
    store_merchant: Callable[[Any], Any] = lambda store_id: None,
) -> list[dict[str, Any]]:
    """The rows of :meth:`Dispatcher.report` from push and event records (see its docstring for the columns).

    ``as_of``: the time up to which outcomes are complete (None: the latest
    record's); ``store_merchant`` gives the merchant of a visit recorded with a store only.
    """
    converts = METRICS[metric]
    pushes = list(pushes)
    events = list(events)
    if as_of is None:
        as_of = max([p["ts"] for p in pushes] + [e["ts"] for e in events], default=-math.inf)
    pushes = [p for p in pushes if lo <= p["ts"] < hi]
    outcome: dict[Any, set[str]] = {}
    revenue: dict[Any, float] = {}
    for e in events:
        if e["push_id"] is not None:
            kind = "visit_inferred" if e["kind"] == "visit" and e.get("inferred") else e["kind"]
            outcome.setdefault(e["push_id"], set()).add(kind)
            if kind == "redeem" and e["amount"] is not None:
                revenue[e["push_id"]] = revenue.get(e["push_id"], 0.0) + e["amount"]
    groups: dict[Any, dict[str, Any]] = {}
    for p in pushes:
        key = "all" if by == "all" else p[f"{by}_id"]
        g = groups.setdefault(key, {"pushes": [], "treated": {}, "held": {}})
        kinds = outcome.get(p["push_id"], set())
        converted = bool(kinds & converts)
        users = g["held"] if p["holdout"] else g["treated"]
        users[p["user_id"]] = users.get(p["user_id"], False) or converted
        g["pushes"].append((p, kinds))
    retention = repeat_columns(
        {key: [p for p, _ in g["pushes"]] for key, g in groups.items()}, events, as_of, store_merchant
    )
    rows = []
    for key, g in groups.items():
        treated = [(p, k) for p, k in g["pushes"] if not p["holdout"]]
        pushed = len(treated)
        failed = sum("failed" in k for _, k in treated)
        delivered = pushed - failed
        opened = sum(bool(k & {"open", "click", "redeem"}) for p, k in treated if "failed" not in k)
        redeemed = sum("redeem" in k for p, k in treated if "failed" not in k)
        visited = sum("visit" in k for _, k in treated)
        inferred = sum("visit_inferred" in k for _, k in treated)
        n1, n0 = len(g["treated"]), len(g["held"])
        x1, x0 = sum(g["treated"].values()), sum(g["held"].values())
        up, up_lo, up_hi = diff_interval(x1, n1, x0, n0)
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
                "visited_inferred": inferred,
                "revenue": float(sum(revenue.get(p["push_id"], 0.0) for p, _ in treated)),
                "open_rate": opened / delivered if delivered else math.nan,
                "redeem_rate": redeemed / delivered if delivered else math.nan,
                "visit_rate": sum(bool(k & {"visit", "visit_inferred"}) for _, k in treated) / delivered
                if delivered
                else math.nan,
                "users_treated": n1,
                "users_holdout": n0,
                "conversion_treated": x1 / n1 if n1 else math.nan,
                "conversion_holdout": x0 / n0 if n0 else math.nan,
                "uplift": up,
                "uplift_low": up_lo,
                "uplift_high": up_hi,
                "metric": metric,
                "interval": INTERVAL,
                **retention[key],
            }
        )
    rows.sort(key=lambda r: (-int(r["pushed"]), str(r[by if by != "all" else "group"])))
    return rows


def repeat_columns(
    groups: Mapping[Any, list[Mapping[str, Any]]],
    events: Iterable[Mapping[str, Any]],
    horizon_ts: float,
    store_merchant: Callable[[Any], Any],
) -> dict[Any, dict[str, Any]]:
    """Per group key, the :data:`REPEAT_COLUMNS` of its pushes (treated and held out).

    ``groups`` maps a group to its push records; ``horizon_ts`` is the time
    up to which the ledger is complete; ``store_merchant`` gives a visit's
    merchant when the record has none.

    Examples
    --------
    >>> push = {"push_id": "p1", "user_id": "u", "store_id": "s", "merchant_id": "m", "ts": 0.0,
    ...         "holdout": False, "trigger": "exit"}
    >>> visits = [{"kind": "visit", "user_id": "u", "store_id": "s", "merchant_id": "m", "ts": t, "push_id": None}
    ...           for t in (-600.0, 3 * 86400.0)]
    >>> row = repeat_columns({"all": [push]}, visits, 40 * 86400.0, lambda s: "m")["all"]
    >>> row["visitors_7d_treated"], row["repeat_7d_treated"], row["visitors_7d_holdout"]
    (1, 1.0, 0)
    """
    visits: dict[tuple[Any, Any], list[float]] = {}  # (user, merchant) -> visit times, sorted
    at_store: dict[tuple[Any, Any], list[float]] = {}  # (user, store) -> visit times, sorted
    first_attributed: dict[Any, float] = {}  # push id -> its first attributed visit
    for e in events:
        if e["kind"] != "visit":
            continue
        m = e.get("merchant_id")
        if m is None and e.get("store_id") is not None:
            m = store_merchant(e["store_id"])
        if m is not None:
            visits.setdefault((e["user_id"], m), []).append(e["ts"])
        if e.get("store_id") is not None:
            at_store.setdefault((e["user_id"], e["store_id"]), []).append(e["ts"])
        pid = e.get("push_id")
        if pid is not None and e["ts"] < first_attributed.get(pid, math.inf):
            first_attributed[pid] = e["ts"]
    for times in (*visits.values(), *at_store.values()):
        times.sort()

    def anchor(p: Mapping[str, Any]) -> float | None:
        if p.get("trigger") == "exit":
            times = at_store.get((p["user_id"], p["store_id"]), [])
            i = bisect.bisect_right(times, p["ts"])
            return times[i - 1] if i and p["ts"] - times[i - 1] <= keys.DAY_S else None
        return first_attributed.get(p["push_id"])

    out: dict[Any, dict[str, Any]] = {}
    for key, pushes in groups.items():
        anchors = [(p, a) for p in pushes if (a := anchor(p)) is not None]
        row: dict[str, Any] = {}
        for w in WINDOWS_DAYS:
            window_s = w * keys.DAY_S
            arms: dict[bool, dict[Any, bool]] = {False: {}, True: {}}
            for p, a in anchors:
                if a + window_s > horizon_ts:
                    continue  # the window is not complete yet
                times = visits.get((p["user_id"], p["merchant_id"]), [])
                i = bisect.bisect_right(times, a + MIN_GAP_S)
                back = i < len(times) and times[i] <= a + window_s
                users = arms[bool(p["holdout"])]
                users[p["user_id"]] = users.get(p["user_id"], False) or back
            n1, n0 = len(arms[False]), len(arms[True])
            x1, x0 = sum(arms[False].values()), sum(arms[True].values())
            up, lo, hi = diff_interval(x1, n1, x0, n0)
            row |= {
                f"visitors_{w}d_treated": n1,
                f"visitors_{w}d_holdout": n0,
                f"repeat_{w}d_treated": x1 / n1 if n1 else math.nan,
                f"repeat_{w}d_holdout": x0 / n0 if n0 else math.nan,
                f"retention_{w}d_uplift": up,
                f"retention_{w}d_low": lo,
                f"retention_{w}d_high": hi,
            }
        out[key] = row
    return out


class ReportMethods(EngineParts):
    """:meth:`report`: the loop measured."""

    def report(
        self,
        since: Any = None,
        until: Any = None,
        by: str = "offer",
        as_frame: bool = True,
        metric: str = "redeem",
        as_of: Any = None,
    ) -> Any:
        """The funnel of pushes made in ``[since, until)``, grouped, with the uplift over the holdout.

        Parameters
        ----------
        since, until : float or datetime, optional
            Window of the push times.
        by : {"offer", "merchant", "store", "all"}
        as_frame : bool, default True
            A pandas DataFrame, or (False) a list of dicts; the type never
            depends on what is installed.
        metric : {"redeem", "redeem_or_visit"}, default "redeem"
            What converts a user in the uplift: an attributed redemption, or
            (``"redeem_or_visit"``) a redemption or any attributed visit,
            recorded or inferred.  Walk-ins make the second high in both
            groups (most users who enter a store's fence visit it anyway), so
            its uplift is a small difference of two large shares.
        as_of : float or datetime, optional
            The time up to which outcomes are complete, for the retention
            columns' windows (default: the latest push or event stored).

        Returns
        -------
        DataFrame or list of dict
            Per group, the funnel (monotone: ``pushed >= delivered >= opened
            >= redeemed``): ``pushed`` (treated decisions), ``holdout``,
            ``failed``, ``delivered``, ``opened`` (delivered pushes with an
            attributed open, click or redeem), ``redeemed``; beside it, as a
            visit needs no open, ``visited`` (pushes with an attributed visit
            the integrator recorded) and ``visited_inferred`` (with a visit the
            engine inferred from a dwell); ``revenue`` (attributed redeem
            amounts), ``open_rate``, ``redeem_rate``, ``visit_rate`` (any
            visit; per delivered push), ``users_treated``, ``users_holdout``,
            ``conversion_treated``, ``conversion_holdout`` (share of users who
            converted by ``metric``), ``uplift`` and its 95 % interval
            ``uplift_low``, ``uplift_high`` (Newcombe's hybrid score interval
            for a difference of proportions, users as the unit of
            randomisation: it keeps its width when an arm has no conversions,
            where the normal approximation collapses), and ``metric`` and
            ``interval`` (the method) to say so.  Then retention, per window
            ``w`` of 7 and 30 days (the rules: module ``_dispatch/_report.py``
            and the README): ``visitors_{w}d_treated`` and ``_holdout`` (users
            with an anchor visit: the visit an ``exit`` push followed, or the
            first visit attributed to any other push, ``w`` days before
            ``as_of`` or earlier), ``repeat_{w}d_treated`` and ``_holdout`` (the
            share of them who visited the merchant again, more than an hour
            and at most ``w`` days later), and ``retention_{w}d_uplift``,
            ``_low``, ``_high`` (the difference and its 95 % interval, as for
            conversions): the retention uplift.

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
        if not isinstance(by, str) or by not in ("offer", "merchant", "store", "all"):
            raise InvalidParameterError(f"by must be 'offer', 'merchant', 'store' or 'all'; got {by!r}")
        check_choice(metric, "metric", tuple(METRICS))
        lo = -math.inf if since is None else to_epoch_s(since, "since")
        hi = math.inf if until is None else to_epoch_s(until, "until")
        since_kept = self.state.retained_since()
        if lo < since_kept:
            warnings.warn(
                f"the report's window starts at {lo} but the state keeps pushes and events only since "
                f"{since_kept:.0f} (retention_days={self.state.lifetimes.retention_days}): earlier ones are missing",
                RetentionWarning,
                stacklevel=2,
            )
        facts = self._stores.get()
        rows = funnel_rows(
            self.state.pushes(),
            self.state.events(),
            lo,
            hi,
            by,
            metric,
            as_of=None if as_of is None else to_epoch_s(as_of, "as_of"),
            store_merchant=lambda sid: facts.merchant[p] if (p := facts.position.get(sid)) is not None else None,
        )
        if check_flag(as_frame, "as_frame"):
            pd = import_optional("pandas", needed_by="Dispatcher.report(as_frame=True)", extra="geo")
            return pd.DataFrame(rows, columns=[by if by != "all" else "group", *REPORT_COLUMNS])
        return rows
