"""Store tables in and out: CSV, GeoJSON, pandas / geopandas frames, and the saved-index file.

Each format is a module of its own, with the reading and the writing side by side;
``StoreSet.from_*`` / ``to_*`` and ``StoreIndex.save`` / ``load`` hand off here.
"""

from ._csv import csv_to_stores, stores_to_csv
from ._geojson import geojson_to_stores, json_value, stores_to_geojson
from ._index_file import FORMAT_NAME, FORMAT_VERSION, load_stores, save_stores
from ._pandas import (
    dataframe_to_stores,
    geodataframe_to_stores,
    points_to_latlon,
    stores_to_dataframe,
    stores_to_geodataframe,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "csv_to_stores",
    "dataframe_to_stores",
    "geodataframe_to_stores",
    "geojson_to_stores",
    "json_value",
    "load_stores",
    "points_to_latlon",
    "save_stores",
    "stores_to_csv",
    "stores_to_dataframe",
    "stores_to_geodataframe",
    "stores_to_geojson",
]
