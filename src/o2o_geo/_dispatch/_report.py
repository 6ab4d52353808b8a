"""The report: the loop's funnel per offer, merchant or store, and the uplift over the holdout group."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REPORT_COLUMNS", "funnel_rows"]

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
_Z95 = 1.959963984540054


def funnel_rows(
    pushes: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]], lo: float, hi: float, by: str
) -> list[dict[str, Any]]:
    """The rows of :meth:`Dispatcher.report` from push and event records (see its docstring for the columns)."""
    pushes = [p for p in pushes if lo <= p["ts"] < hi]
    outcome: dict[Any, set[str]] = {}
    revenue: dict[Any, float] = {}
    for e in events:
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
    return rows
