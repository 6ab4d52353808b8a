"""Pictures of stores, service areas, geofences, pushes and the funnel (the ``viz`` extra).

Modules: ``_shared`` (inputs, colours, geodesic rings), ``_static``
(matplotlib: :func:`plot_map`, :func:`plot_funnel`), ``_web`` (folium:
:func:`folium_map`; Chromium: :func:`html_to_png`).

``pip install "o2o_geo[viz]"`` brings matplotlib (static PNG maps and the
funnel chart, headless through the Agg backend) and folium (an interactive
Leaflet map for notebooks).  ``import o2o_geo`` never imports this module;
this module imports matplotlib or folium only inside the function that draws
with it.

Every circle on these maps (a radius service area, a geofence) is a geodesic
circle on WGS84 (:func:`geodesic_ring_lonlat`), the same distance the index
and the dispatcher use, not a circle in the map's projection.  Longitudes are
unwrapped around the stores' mean longitude, so a chain that straddles the
antimeridian is drawn in one piece (x values may then pass 180).

Folium maps load Leaflet from a CDN by default.  Where there is no network
(CI, an air-gapped notebook server), pass ``leaflet_dir``: the folder of a
Leaflet build (``leaflet.js``, ``leaflet.css`` and ``images/``, e.g. npm's
``leaflet/dist`` or Debian's ``libjs-leaflet`` package); its files are inlined
into the HTML, which then works with no network and no other file.
:func:`find_leaflet` looks for one.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import o2o_geo as og
>>> from o2o_geo import viz
>>> fig = viz.plot_map(og.sample_stores(), fence_radius_m=100)
>>> len(fig.axes[0].collections) >= 2       # stores, service areas, fences
True
"""

from ._shared import MAX_LEGEND as MAX_LEGEND  # merchants with a colour of their own; the rest share one
from ._shared import OTHER_COLOUR as OTHER_COLOUR
from ._shared import PALETTE as PALETTE  # the merchants' colours, on both kinds of map
from ._shared import geodesic_ring_lonlat
from ._static import plot_funnel, plot_map
from ._web import LEAFLET_ENV as LEAFLET_ENV  # the variable find_leaflet reads
from ._web import find_chromium, find_leaflet, folium_map, html_to_png

__all__ = [
    "find_chromium",
    "find_leaflet",
    "folium_map",
    "geodesic_ring_lonlat",
    "html_to_png",
    "plot_funnel",
    "plot_map",
]

for _f in (find_chromium, find_leaflet, folium_map, geodesic_ring_lonlat, html_to_png, plot_funnel, plot_map):
    _f.__module__ = __name__  # documented, pickled and shown as o2o_geo.viz.<name>
del _f
