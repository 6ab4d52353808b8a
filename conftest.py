"""Collection rules for the whole repository (tests/ and the doctests in src/)."""

from __future__ import annotations

collect_ignore: list[str] = []
try:  # o2o_geo.dask is an optional integration: its doctests need the dask extra
    import dask.dataframe  # noqa: F401
except ImportError:  # tests/test_dask.py skips itself, with the reason, in the same case
    collect_ignore.append("src/o2o_geo/dask.py")
try:  # o2o_geo.viz is an optional integration: its doctests need the viz extra
    import folium  # noqa: F401
    import matplotlib
except ImportError:  # tests/test_viz.py skips itself, with the reason, in the same case
    collect_ignore.append("src/o2o_geo/viz.py")
else:
    matplotlib.use("Agg")  # headless: the doctests draw without a display
