"""Offer scoring: which offers, at which stores, a user is most likely to take up.

- ``_catalog``: offers matched to the stores they can be redeemed at;
- ``_features``: the one feature extractor (rank, rank_many, fit and the dispatcher);
- ``_model``: the likelihoods the weights are fitted by;
- ``_replay``: the replays that turn an event log into examples;
- ``_scorer``: :class:`OfferScorer`, the public facade.
"""

from ._scorer import DEFAULT_WEIGHTS, FEATURES, OfferScorer, ScoredCandidates, ScoredOffer, terms_of

__all__ = ["DEFAULT_WEIGHTS", "FEATURES", "OfferScorer", "ScoredCandidates", "ScoredOffer", "terms_of"]
