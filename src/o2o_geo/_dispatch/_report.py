"""The report: the loop's funnel per offer, merchant or store, and the uplift over the holdout group.

The funnel's stages are monotone by construction: ``pushed >= delivered >=
opened >= redeemed`` (a redemption counts as an open: the push was seen).
Visits are not a stage (a user may walk in without opening anything), so
they are columns of their own: ``visited`` (visits the integrator
recorded: check-ins, scans) and ``visited_inferred`` (the engine's dwell
visits).  The uplift compares the share of users who converted, treated
against held out, on the conversion the caller picks (``metric``), with
Newcombe's hybrid score interval, named in the ``interval`` column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["METRICS", "REPORT_COLUMNS", "diff_interval", "funnel_rows", "wilson_interval"]

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
) -> list[dict[str, Any]]:
    """The rows of :meth:`Dispatcher.report` from push and event records (see its docstring for the columns)."""
    converts = METRICS[metric]
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
            }
        )
    rows.sort(key=lambda r: (-int(r["pushed"]), str(r[by if by != "all" else "group"])))
    return rows
