"""Offer scoring: which offers, at which stores, a user is most likely to take up.

- ``_catalog``: offers matched to the stores they can be redeemed at;
- ``_views``: each user's history as arrays over a catalog's codes;
- ``_features``: the one feature extractor (rank, rank_many, fit and the dispatcher);
- ``_arrays``: the ranking's array kernels;
- ``_results``: :class:`ScoredOffer`, :class:`ScoredCandidates`;
- ``_model``: the likelihoods the weights are fitted by;
- ``_replay``: the replays that turn an event log into examples;
- ``_fit``: ``fit``, the replays and the solvers put together;
- ``_scorer``: :class:`OfferScorer`, the public facade (its ``fit`` is ``_fit``'s).

The history it reads is ``_history``'s :class:`~o2o_geo.UserHistory`, through
the bulk-read capability that module declares (``reading``).
"""

from ._features import DEFAULT_WEIGHTS, FEATURES
from ._results import ScoredCandidates, ScoredOffer, terms_of
from ._scorer import OfferScorer

__all__ = ["DEFAULT_WEIGHTS", "FEATURES", "OfferScorer", "ScoredCandidates", "ScoredOffer", "terms_of"]
