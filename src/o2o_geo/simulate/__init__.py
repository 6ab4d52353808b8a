"""A seeded synthetic O2O world with a known ground truth, for what-if studies and benchmarks.

Modules: ``_world`` (:class:`World` and how it is generated), ``_logs``
(what it does over time: push logs, pings, outcomes, returns, events),
``_common`` (constants, seeds).

No public labelled O2O data set ships with a package, so this module makes
one whose answers are known: stores of several merchants around real city
centres, users with latent tastes, homes, travel tolerance and discount
sensitivity, offers, and a ground-truth choice model that turns pushes into
redemptions.  Every figure measured on it is a *simulated* figure.

The ground truth: a push of offer ``o`` (merchant ``m``, category ``c``,
discount depth ``g``) at store ``s``, ``d`` metres from user ``u``, is
redeemed with probability ``sigmoid(b0 + taste[u, c] + quality[m]
- decay[u] * log1p(d / tolerance_m[u]) + sensitivity[u] * g)``.

Examples
--------
>>> from o2o_geo import simulate
>>> world = simulate.World.generate(seed=1, n_users=200, n_stores=60, n_offers=12)
>>> len(world.stores), len(world.offers), world.n_users
(60, 12, 200)
>>> log = world.push_log(n_days=7, pushes_per_user_per_day=1.0, seed=2)
>>> bool(0.0 < log.redeemed.mean() < 0.5)
True
"""

from ._common import CATEGORIES, CITIES
from ._logs import PingLog, PushLog
from ._world import World

__all__ = ["CATEGORIES", "CITIES", "PingLog", "PushLog", "World"]

for _c in (PingLog, PushLog, World):
    _c.__module__ = __name__  # documented, pickled and shown as o2o_geo.simulate.<name>
del _c
