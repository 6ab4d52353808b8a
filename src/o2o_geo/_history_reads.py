"""What a :class:`~o2o_geo.UserHistory` answers: affinities, usual distance, discount sensitivity, merchant rates.

The readers of the history, over the tables its ``_history`` module keeps
(declared on :class:`HistoryReads`, set by ``UserHistory.__init__``).  Each
reads one user's (or one merchant's) running sums at the time asked.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ._events import hashable
from ._time import to_epoch_s
from ._validate import check_id, check_number

if TYPE_CHECKING:
    from ._history import UserTables

__all__ = ["HistoryReads"]


class HistoryReads:
    """The readers of :class:`~o2o_geo.UserHistory` (its base: they read the tables its ``__init__`` sets)."""

    prior_pushes: float
    prior_rate: float
    _h: float  # the half-life, seconds
    _lock: threading.Lock
    _users: dict[Any, UserTables]
    _tiers: dict[Any, str]
    _merchant_code: dict[Any, int]
    _merchant_counts: np.ndarray
    _n_pushes: int
    _n_redeems: int

    def tier(self, user_id: Any) -> str | None:
        """The user's member tier (see :meth:`set_tier`), or None.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> _ = h.set_tier(7, "silver")
        >>> h.tier(7), h.tier(8)
        ('silver', None)
        """
        return self._tiers.get(check_id(user_id, "user_id"))

    # ------------------------------------------------------------ features
    def n_events(self, user_id: Any, kind: str) -> int:
        """How many events of this kind the user has (not decayed).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("push", "u1", 0), og.Event("push", "u1", 60),
        ...                                 og.Event("dismiss", "u1", 90)])
        >>> h.n_events("u1", "push"), h.n_events("u1", "dismiss"), h.n_events("u1", "redeem"), h.n_events("u2", "push")
        (2, 1, 0, 0)
        """
        st = self._users.get(check_id(user_id, "user_id"))
        return 0 if st is None else st.counts.get(hashable(kind, "kind"), 0)

    def category_affinity(self, user_id: Any, category: Any, now: Any) -> float:
        """Recency-weighted engagement of the user with a category at ``now`` (0 when none).

        Examples
        --------
        Each kind counts with its weight (redeem 1, visit 0.5, open 0.1 by default):

        >>> from datetime import datetime, timezone
        >>> import o2o_geo as og
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", t, category="coffee"),
        ...                                 og.Event("visit", "u1", t, category="coffee"),
        ...                                 og.Event("open", "u1", t, category="tea")])
        >>> for category in ("coffee", "tea", "cinema"):
        ...     print(f"{category:<7} {h.category_affinity('u1', category, now=t):.2f}")
        coffee  1.50
        tea     0.10
        cinema  0.00
        """
        st = self._users.get(check_id(user_id, "user_id"))
        d = None if st is None else st.category.get(hashable(category, "category"))
        return 0.0 if d is None else d.at(to_epoch_s(now, "now"), self._h)

    def merchant_affinity(self, user_id: Any, merchant_id: Any, now: Any) -> float:
        """Recency-weighted engagement of the user with a merchant at ``now`` (0 when none).

        Examples
        --------
        With the default half-life of 30 days:

        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky")])
        >>> [f"{h.merchant_affinity('u1', 'm-lucky', now=days * 86400):.2f}" for days in (0, 30, 60)]
        ['1.00', '0.50', '0.25']
        """
        st = self._users.get(check_id(user_id, "user_id"))
        d = None if st is None else st.merchant.get(hashable(merchant_id, "merchant_id"))
        return 0.0 if d is None else d.at(to_epoch_s(now, "now"), self._h)

    def category_sums(self, user_id: Any, now: float) -> list[tuple[Any, float]]:
        """Every (category, affinity at ``now``) of the user (``now`` in epoch seconds).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, category="coffee"),
        ...                                 og.Event("visit", "u1", 7 * 86400, category="tea")], half_life_days=7)
        >>> for category, affinity in h.category_sums("u1", 7 * 86400):
        ...     print(f"{category} {affinity:.2f}")
        coffee 0.50
        tea 0.50
        >>> h.category_sums("nobody", 0)
        []
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None:
            return []
        with self._lock:  # another thread may be adding an event to this user
            items = list(st.category.items())
        return [(c, d.at(now, self._h)) for c, d in items]

    def merchant_sums(self, user_id: Any, now: float) -> list[tuple[Any, float]]:
        """Every (merchant, affinity at ``now``) of the user (``now`` in epoch seconds).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky"),
        ...                                 og.Event("click", "u1", 0, merchant_id="m-tea")])
        >>> for merchant, affinity in h.merchant_sums("u1", 30 * 86400):
        ...     print(f"{merchant} {affinity:.2f}")
        m-lucky 0.50
        m-tea 0.10
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None:
            return []
        with self._lock:
            items = list(st.merchant.items())
        return [(m, d.at(now, self._h)) for m, d in items]

    def activity(self, user_id: Any, now: Any) -> float:
        """Recency-weighted count of the user's redemptions and visits at ``now``.

        Examples
        --------
        Pushes and opens are not activity; a redemption and a visit are:

        >>> import o2o_geo as og
        >>> h = og.UserHistory(half_life_days=7)
        >>> for kind in ("push", "open", "redeem", "visit"):
        ...     h.add(og.Event(kind, "u1", 0))
        >>> print(f"{h.activity('u1', now=0):.2f} {h.activity('u1', now=7 * 86400):.2f} {h.activity('u2', now=0):.2f}")
        2.00 1.00 0.00
        """
        st = self._users.get(check_id(user_id, "user_id"))
        return 0.0 if st is None else st.engaged.at(to_epoch_s(now, "now"), self._h)

    def usual_distance_m(self, user_id: Any, default_m: float = 1000.0) -> float:
        """Recency-weighted geometric mean distance of the user's past redemptions (``default_m`` when none).

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, distance_m=200.0),
        ...                                 og.Event("redeem", "u1", 0, distance_m=800.0)])
        >>> print(f"{h.usual_distance_m('u1'):.0f} {h.usual_distance_m('u2'):.0f} {h.usual_distance_m('u2', 500):.0f}")
        400 1000 500
        """
        default_m = check_number(default_m, "default_m", low=0.0)
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None or st.dist_w.t0 == -math.inf:
            return float(default_m)
        t = st.dist_w.t0 if st.dist_w.t0 >= st.dist_log.t0 else st.dist_log.t0
        w = st.dist_w.at(t, self._h)
        return math.exp(st.dist_log.at(t, self._h) / w) if w > 0 else float(default_m)

    def discount_sensitivity(self, user_id: Any, prior_n: float = 2.0) -> float:
        """How much deeper the user's redeemed discounts are than the pushed ones, shrunk to 0.

        Positive: the user redeems the deep discounts; 0 with no evidence.

        Examples
        --------
        Both users are pushed a 10 % and a 30 % discount; one redeems the deep one, the other the shallow one:

        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> for user, redeemed in (("hunter", 0.3), ("regular", 0.1)):
        ...     h.add(og.Event("push", user, 0, discount_depth=0.1))
        ...     h.add(og.Event("push", user, 0, discount_depth=0.3))
        ...     h.add(og.Event("redeem", user, 3600, discount_depth=redeemed))
        >>> for user in ("hunter", "regular", "new"):
        ...     print(f"{user:<7} {h.discount_sensitivity(user):+.3f}")
        hunter  +0.033
        regular -0.033
        new     +0.000
        """
        st = self._users.get(check_id(user_id, "user_id"))
        if st is None or st.redeem_n.t0 == -math.inf or st.push_n.t0 == -math.inf:
            return 0.0
        t = max(st.redeem_n.t0, st.push_n.t0)
        rn, pn = st.redeem_n.at(t, self._h), st.push_n.at(t, self._h)
        if rn <= 0 or pn <= 0:
            return 0.0
        gap = st.redeem_depth.at(t, self._h) / rn - st.push_depth.at(t, self._h) / pn
        return gap * rn / (rn + prior_n)

    def merchant_redemption_rate(self, merchant_id: Any) -> float:
        """Redemptions per push of a merchant, shrunk towards the global rate (see ``prior_pushes``).

        Examples
        --------
        Fifty pushes each; 20 redeemed at one merchant, 1 at the other:

        >>> import o2o_geo as og
        >>> h = og.UserHistory()
        >>> for i in range(100):
        ...     h.add(og.Event("push", f"u{i}", i, merchant_id="m-good" if i < 50 else "m-bad"))
        >>> for i in (*range(20), 60):
        ...     h.add(og.Event("redeem", f"u{i}", 1000 + i, merchant_id="m-good" if i < 50 else "m-bad"))
        >>> for m in ("m-good", "m-bad", "m-new"):  # raw rates 0.40, 0.02 and none
        ...     print(f"{m:<6} {h.merchant_redemption_rate(m):.3f}")
        m-good 0.278
        m-bad  0.088
        m-new  0.157
        """
        global_rate = self.global_redemption_rate()
        code = self._merchant_code.get(merchant_id)
        p, r = (0, 0) if code is None else self._merchant_counts[code].tolist()
        denom = p + self.prior_pushes
        return (r + self.prior_pushes * global_rate) / denom if denom > 0 else global_rate

    def global_redemption_rate(self) -> float:
        """Redemptions per push over all merchants, shrunk towards ``prior_rate``.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory(prior_pushes=50, prior_rate=0.05)
        >>> print(f"{h.global_redemption_rate():.3f}")
        0.050
        >>> for i in range(100):
        ...     h.add(og.Event("push", f"u{i}", i))
        >>> for i in range(20):
        ...     h.add(og.Event("redeem", f"u{i}", 1000 + i))
        >>> print(f"{h.global_redemption_rate():.3f}")  # (20 + 50 * 0.05) / (100 + 50)
        0.150
        """
        denom = self._n_pushes + self.prior_pushes
        r = (self._n_redeems + self.prior_pushes * self.prior_rate) / denom if denom > 0 else self.prior_rate
        return min(max(r, 1e-6), 1 - 1e-6)

    def merchant_popularity(self, merchant_id: Any) -> int:
        """Redemptions of a merchant, all users, not decayed.

        Examples
        --------
        >>> import o2o_geo as og
        >>> h = og.UserHistory.from_events([og.Event("redeem", "u1", 0, merchant_id="m-lucky"),
        ...                                 og.Event("redeem", "u2", 400 * 86400, merchant_id="m-lucky"),
        ...                                 og.Event("visit", "u3", 0, merchant_id="m-lucky")])
        >>> h.merchant_popularity("m-lucky"), h.merchant_popularity("m-tea")
        (2, 0)
        """
        code = self._merchant_code.get(merchant_id)
        return 0 if code is None else int(self._merchant_counts[code, 1])
