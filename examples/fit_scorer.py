"""Learn the scorer's weights from logged pushes and their outcomes, and check them on the next week.

python examples/fit_scorer.py   (all figures are SIMULATED)
"""

import numpy as np

import o2o_geo as og
from o2o_geo import simulate


def auc(score, label):
    """Area under the ROC curve (Mann-Whitney rank statistic, ties averaged)."""
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # ranks of tied scores: the mean of their positions
    ranks = (first + (counts + 1) / 2)[inv]
    pos = label.sum()
    return (ranks[label].sum() - pos * (pos + 1) / 2) / (pos * (len(label) - pos))


world = simulate.World.generate(seed=5, n_users=3000, n_stores=400, n_offers=60, n_merchants=15)
train = world.push_log(n_days=21, pushes_per_user_per_day=0.5, seed=6)
test = world.push_log(n_days=7, pushes_per_user_per_day=0.5, seed=7)

scorer = og.OfferScorer(world.index, world.offers)
scorer.fit(world.events(train, seed=8), record=True)  # replays the log in time order, then keeps it as history
baseline = og.OfferScorer(world.index, world.offers, history=scorer.history)  # same history, default weights
print(f"fitted on {scorer.n_fit_examples_:,} pushes; weights (default -> fitted):")
for name, w0, w1 in zip(og.OfferScorer.FEATURES, baseline.weights_, scorer.weights_, strict=True):
    print(f"  {name:24} {w0:+6.2f} -> {w1:+6.2f}")

# Score next week's pushes: every offer ranked for each push's user and place, then the pushed offer looked up.
now = float(test.ts[0])
offer_ids = world.offers.offer_id[test.offer]
result = {}
for name, sc in (("default", baseline), ("fitted", scorer)):
    table = sc.rank_many(test.user, test.lat, test.lon, now=now, k=len(world.offers))
    score = dict(zip(zip(table["query"], table["offer_id"], strict=True), table["score"], strict=True))
    result[name] = np.array([score.get((i, o), 0.0) for i, o in enumerate(offer_ids)])
label = test.redeemed
truth = world.true_logit(test.user, test.offer, test.distance_m)
print(
    f"pooled AUC on the next week ({len(test):,} pushes): default {auc(result['default'], label):.3f}, "
    f"fitted {auc(result['fitted'], label):.3f}, ground truth {auc(truth, label):.3f}"
)
print(
    f"calibration: fitted scorer predicts {result['fitted'].mean():.2%} redemptions per push, "
    f"{label.mean():.2%} observed"
)
