"""StoreIndex: exact WGS84 nearest, radius and service-area queries over stores.

How a query stays exact and fast
--------------------------------
Stores live as earth-centred (ECEF) points in a kd-tree.  A query asks the tree
for a few more candidates than it needs by chord (straight-line) distance and
turns each chord into its geodesic distance (:mod:`.._geodesy`: in closed form up
to 100 km, an Andoyer-Lambert estimate with an error bound beyond).  Then it
checks a certificate that holds at any distance: every store within geodesic
``D`` of the query lies within the chord :func:`~.._geodesy.chord_reach_m` of
``D`` (proof in :mod:`.._geodesy`), and every store the tree did not return is at
least as far by chord as the last one it did; so once that last chord is beyond
the reach of the k-th distance, no other store can enter the top k.  A row
whose certificate fails fetches every store within that reach in one ball
search.  Far candidates whose bounds overlap the k-th place are measured with
GeographicLib, the others are dropped without it; candidates whose distances
are closer than their error bounds are settled by GeographicLib.  The answer
is therefore the brute-force GeographicLib ranking, ties broken by store
position, and every distance returned is within 1e-6 m of GeographicLib's
(GeographicLib's own beyond 100 km).

Memory stays bounded whatever the geometry: batches run in chunks, candidate
blocks are cache-sized, and a ball search never holds more than
:data:`~._radius.PAIR_BUDGET` (query, store) pairs at once (:meth:`StoreIndex.within`
too, apart from its output).  A mapping ``where=`` filter that keeps less than
half the stores gets a kd-tree of its own, cached until the index changes.

Live updates
------------
``add`` puts new stores in a small delta tree and ``remove`` marks stores dead;
queries merge the main and delta trees and skip dead stores.  When the delta
or the dead outgrow :attr:`StoreIndex.compact_fraction` of the index, the next
update compacts it into one tree (an amortised cost, or call :meth:`compact`
yourself at a quiet moment).

Layout
------
Each module imports only the ones above it:
``_results``  what the queries return (Neighbors, Matches, Pairs, StoreRadii);
``_slots``  the stores by slot, the kd-trees, live updates and the one cache keyed on the version;
``_filters``  ``where=`` masks and the trees a filter searches;
``_radius``  ball searches, exact (query, store) pairs and their order: within, pairs_within, serving;
``_knn``  the k nearest, batch and one point;
``_store_index``  the public facade.
"""

from ._filters import missing_values_message
from ._results import Matches, Neighbors, Pairs, StoreRadii
from ._store_index import MAX_RESULT_CELLS, StoreIndex

__all__ = ["MAX_RESULT_CELLS", "Matches", "Neighbors", "Pairs", "StoreIndex", "StoreRadii", "missing_values_message"]
