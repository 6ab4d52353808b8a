"""StoreSet's files and frames: ``from_*`` and ``to_*``, each handing off to ``o2o_geo._io``.

``_io`` sits above the table (it builds StoreSets), so each method imports
it when called; these methods are :class:`StoreSet`'s through its base
:class:`StoreSetFormats`, so the table module holds the table alone.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._table import StoreSet

__all__ = ["StoreSetFormats"]


class StoreSetFormats:
    """The readers and writers of :class:`~o2o_geo.StoreSet` (CSV, GeoJSON, pandas, geopandas)."""

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        *,
        store_id: str = "store_id",
        lat: str = "lat",
        lon: str = "lon",
        repair_service_areas: bool = False,
    ) -> StoreSet:
        """Build from a pandas DataFrame (or any mapping of column name to array).

        Parameters
        ----------
        df : pandas.DataFrame or mapping
            One row per store.
        store_id, lat, lon : str
            Names of the id and position columns.
        repair_service_areas : bool, default False
            See :meth:`from_columns`.

        Returns
        -------
        StoreSet

        Examples
        --------
        >>> import pandas as pd, o2o_geo as og
        >>> df = pd.DataFrame({"id": ["a", "b"], "y": [1.0, 2.0], "x": [3.0, 4.0]})
        >>> og.StoreSet.from_dataframe(df, store_id="id", lat="y", lon="x").store_id.tolist()
        ['a', 'b']
        """
        from .._io import dataframe_to_stores

        return dataframe_to_stores(df, store_id=store_id, lat=lat, lon=lon, repair_service_areas=repair_service_areas)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        store_id: str = "store_id",
        lat: str = "lat",
        lon: str = "lon",
        repair_service_areas: bool = False,
    ) -> StoreSet:
        r"""Build from a CSV file with a header row.

        Columns whose every non-empty value parses as a number become float
        columns (empty cells NaN);
        ``store_id`` becomes int when every id is an integer literal, else str.
        A ``service_area`` column may hold a radius in metres, a polygon as WKT
        or GeoJSON text (what :meth:`to_csv` writes); empty cells are ``None``.
        An unreadable service area raises :class:`InvalidGeometryError` naming
        the file line.

        Parameters
        ----------
        path : str or path-like
            The CSV file (UTF-8).
        store_id, lat, lon : str
            Names of the id and position columns.
        repair_service_areas : bool, default False
            See :meth:`from_columns`.

        Returns
        -------
        StoreSet

        Examples
        --------
        >>> import tempfile, os, o2o_geo as og
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "s.csv")
        >>> with open(p, "w") as fh:
        ...     _ = fh.write("store_id,lat,lon,category\n1,31.2,121.4,coffee\n2,31.3,121.5,tea\n")
        >>> og.StoreSet.from_csv(p).store_id.tolist()
        [1, 2]
        """
        from .._io import csv_to_stores

        return csv_to_stores(path, store_id=store_id, lat=lat, lon=lon, repair_service_areas=repair_service_areas)

    @classmethod
    def from_geojson(cls, obj: Any, *, repair_service_areas: bool = False) -> StoreSet:
        """Build from a GeoJSON FeatureCollection of Point features (a mapping, JSON text or a file path).

        The store id is the feature's ``id`` or its ``store_id`` property; the
        other properties become columns, and a ``service_area`` property may be
        a radius in metres or a GeoJSON geometry.

        Parameters
        ----------
        obj : mapping, str or path-like
            The FeatureCollection, its JSON text, or the path of a file.
        repair_service_areas : bool, default False
            See :meth:`from_columns`.

        Returns
        -------
        StoreSet

        Examples
        --------
        >>> import o2o_geo as og
        >>> fc = {"type": "FeatureCollection", "features": [
        ...     {"type": "Feature", "id": "s1", "geometry": {"type": "Point", "coordinates": [121.47, 31.23]},
        ...      "properties": {"category": "coffee"}}]}
        >>> s = og.StoreSet.from_geojson(fc)
        >>> s.store_id.tolist(), float(s.lat[0]), float(s.lon[0])
        (['s1'], 31.23, 121.47)
        """
        from .._io import geojson_to_stores

        return geojson_to_stores(obj, repair_service_areas=repair_service_areas)

    @classmethod
    def from_geodataframe(
        cls,
        gdf: Any,
        *,
        store_id: str = "store_id",
        repair_service_areas: bool = False,
    ) -> StoreSet:
        """Build from a geopandas GeoDataFrame whose active geometry is one Point per store.

        A GeoDataFrame in another CRS (a projected one such as EPSG:3857 or a
        UTM zone, or another datum) is reprojected to WGS84 (EPSG:4326) with
        ``to_crs`` first.  One with no CRS is taken to be in (lon, lat)
        degrees already, as GeoJSON is.  Every other column becomes a store
        column, except ``lat`` and ``lon``, which the Points replace.  A
        ``service_area`` column holds polygons or radii in metres as in
        :meth:`from_records`; if it is a geometry column with a CRS of its own,
        it is reprojected to EPSG:4326 too (without a CRS, it is taken as
        (lon, lat) degrees).

        Parameters
        ----------
        gdf : geopandas.GeoDataFrame
            One row per store.
        store_id : str, default "store_id"
            Name of the id column.
        repair_service_areas : bool, default False
            See :meth:`from_columns`.

        Returns
        -------
        StoreSet

        Raises
        ------
        ImportError
            geopandas is not installed (``pip install "o2o_geo[geo]"``).
        InvalidParameterError
            ``gdf`` is not a GeoDataFrame.
        InvalidRecordError
            There is no ``store_id`` column or no active geometry, or a
            geometry is missing, empty or not a Point (named by row, counted
            from 0, and store id).
        InvalidCoordinateError, DuplicateStoreError, InvalidGeometryError
            As in :meth:`from_columns`.

        Examples
        --------
        >>> import geopandas as gpd, o2o_geo as og
        >>> from shapely.geometry import Point
        >>> gdf = gpd.GeoDataFrame({"store_id": ["a", "b"], "category": ["coffee", "tea"]},
        ...                        geometry=[Point(121.4737, 31.2304), Point(121.4768, 31.2243)], crs="EPSG:4326")
        >>> s = og.StoreSet.from_geodataframe(gdf)
        >>> s.columns, s.lat.tolist()
        (['store_id', 'lat', 'lon', 'category'], [31.2304, 31.2243])
        >>> metres = og.StoreSet.from_geodataframe(gdf.to_crs("EPSG:3857"))  # back to degrees
        >>> print(metres.lat.round(6), metres.lon.round(6))
        [31.2304 31.2243] [121.4737 121.4768]
        """
        from .._io import geodataframe_to_stores

        return geodataframe_to_stores(gdf, store_id=store_id, repair_service_areas=repair_service_areas)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the stores to a CSV file that :meth:`from_csv` (and ``o2o-geo --stores``) reads back.

        One header row, then one row per store: ``store_id``, ``lat``, ``lon``
        and the other columns.  Numbers are written in full precision (NaN as
        ``nan``), text as it is, ``None`` as an empty cell; a polygon service
        area as WKT in (lon, lat) degrees, a radius as its number of metres.
        Numbers, text and service areas round-trip; other values are written
        as their ``str`` and come back as text.  The file is written in place.

        Parameters
        ----------
        path : str or path-like
            The CSV file to write (UTF-8).

        Examples
        --------
        >>> import os, tempfile, o2o_geo as og
        >>> from shapely.geometry import box
        >>> s = og.StoreSet.from_records([
        ...     {"store_id": "a", "lat": 0.5, "lon": 0.5, "service_area": box(0, 0, 1, 1), "seats": 12},
        ...     {"store_id": "b", "lat": 10.0, "lon": 10.0, "service_area": 2500.0, "seats": 30}])
        >>> p = os.path.join(tempfile.mkdtemp(), "stores.csv")
        >>> s.to_csv(p)
        >>> back = og.StoreSet.from_csv(p)
        >>> back.service_area_geometry[0].equals(box(0, 0, 1, 1)), back.service_radius_m[1], back["seats"].tolist()
        (True, np.float64(2500.0), [12.0, 30.0])
        """
        from .._io import stores_to_csv

        stores_to_csv(cast("StoreSet", self), path)

    def to_dataframe(self) -> Any:
        """The stores as a pandas DataFrame, one row per store.

        Columns ``store_id``, ``lat``, ``lon`` and then the others in
        :attr:`columns` order.  Each column keeps its dtype (an object column
        stays object, so ``None`` stays ``None``); int store ids are int64.  A
        ``service_area`` column holds what queries use: shapely polygons as
        normalised on load (repaired, split at the antimeridian), radii in
        metres as numbers, ``None`` (NaN in a column of radii) for no area.
        :meth:`from_dataframe` reads the frame back to an equal store set.

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        ImportError
            pandas is not installed (``pip install "o2o_geo[geo]"``).

        Examples
        --------
        >>> import o2o_geo as og
        >>> s = og.StoreSet.from_records([
        ...     {"store_id": 1, "lat": 31.2304, "lon": 121.4737, "category": "coffee", "service_area": 800.0},
        ...     {"store_id": 2, "lat": 31.2243, "lon": 121.4768, "category": None}])
        >>> df = s.to_dataframe()
        >>> df.columns.tolist(), df.store_id.dtype.name
        (['store_id', 'lat', 'lon', 'category', 'service_area'], 'int64')
        >>> df.category.tolist(), df.service_area.tolist()
        (['coffee', None], [800.0, None])
        """
        from .._io import stores_to_dataframe

        return stores_to_dataframe(cast("StoreSet", self))

    def to_geodataframe(self) -> Any:
        """The stores as a geopandas GeoDataFrame of Points in EPSG:4326.

        The columns of :meth:`to_dataframe` (``lat`` and ``lon`` included)
        plus the active ``geometry`` column, the Point (lon, lat) of each store.
        :meth:`from_geodataframe` reads it back to an equal store set.

        Returns
        -------
        geopandas.GeoDataFrame

        Raises
        ------
        ImportError
            geopandas is not installed (``pip install "o2o_geo[geo]"``).
        InvalidRecordError
            The store set has a column named ``geometry`` (rename it first).

        Examples
        --------
        >>> import o2o_geo as og
        >>> s = og.StoreSet.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737, "category": "coffee"}])
        >>> gdf = s.to_geodataframe()
        >>> gdf.columns.tolist(), gdf.crs.to_epsg(), gdf.geometry[0].wkt
        (['store_id', 'lat', 'lon', 'category', 'geometry'], 4326, 'POINT (121.4737 31.2304)')
        """
        from .._io import stores_to_geodataframe

        return stores_to_geodataframe(cast("StoreSet", self))

    def to_geojson(self) -> dict[str, Any]:
        """The stores as a GeoJSON FeatureCollection (a dict of plain Python values, ready for ``json.dumps``).

        Each store is a Feature with ``id`` = its store id, a Point geometry
        ``[lon, lat]`` and the other columns as ``properties``.  A
        ``service_area`` is written as a GeoJSON geometry mapping (the polygon
        as normalised on load: an antimeridian-crossing polygon is the
        MultiPolygon split at 180 degrees, as RFC 7946 asks, and a repaired
        one is the repaired polygon) or as a radius in metres; ``null`` for
        none.  numpy values become Python numbers, NaN and infinities
        ``null``, dates and datetimes ISO 8601 text, shapely geometries
        GeoJSON mappings, tuples and arrays lists.

        :meth:`from_geojson` reads it (or its JSON text) back to the same
        stores, positions and service areas; a column given as numbers with
        NaN comes back as an object column with ``None`` in those rows.

        Returns
        -------
        dict
            ``{"type": "FeatureCollection", "features": [...]}``.

        Raises
        ------
        InvalidRecordError
            A column holds a value with no JSON form (named by column and store id).

        Examples
        --------
        >>> import json, o2o_geo as og
        >>> s = og.StoreSet.from_records([
        ...     {"store_id": "a", "lat": 31.2304, "lon": 121.4737, "rating": 4.5, "service_area": 1500.0}])
        >>> fc = s.to_geojson()
        >>> feature = fc["features"][0]
        >>> feature["id"], feature["geometry"]
        ('a', {'type': 'Point', 'coordinates': [121.4737, 31.2304]})
        >>> feature["properties"]
        {'rating': 4.5, 'service_area': 1500.0}
        >>> og.StoreSet.from_geojson(json.dumps(fc)).service_radius_m.tolist()
        [1500.0]
        """
        from .._io import stores_to_geojson

        return stores_to_geojson(cast("StoreSet", self))
