"""The one error tree of o2o_geo.

Every error the library raises on purpose derives from :class:`O2OGeoError`,
and each concrete error also derives from the matching built-in exception, so
callers can catch either the library's type or the familiar one::

    O2OGeoError
    ├── InvalidCoordinateError   (ValueError)   lat/lon out of range, NaN, inf
    ├── ShapeMismatchError       (ValueError)   arrays of different lengths
    ├── InvalidParameterError    (ValueError)   k < 1, negative radius, bad option
    │   └── StaleRadiiError                     per-store radii prepared for an index that changed since
    ├── InvalidRecordError       (ValueError)   a store record that cannot be read
    ├── DuplicateStoreError      (ValueError)   a store id given twice
    ├── UnknownStoreError        (KeyError)     a store id the index does not hold
    ├── DuplicateOfferError      (ValueError)   an offer id given twice
    ├── UnknownOfferError        (KeyError)     an offer id the offer set does not hold
    ├── UnknownPushError         (KeyError)     a push id the dispatcher never issued (or of another user)
    ├── InvalidGeometryError     (ValueError)   an invalid service-area or geofence polygon
    ├── IndexFormatError         (ValueError)   a saved index file that is corrupt or foreign
    ├── MissingFileError         (FileNotFoundError) a file to read that is not there
    ├── FileAccessError          (OSError)      a file that cannot be read or written (a folder, no permission)
    ├── StateError               (RuntimeError) the dispatch state store failed (nothing was changed)
    └── BrowserError             (RuntimeError) the headless browser rendering a map failed

Warnings, for calls that run but whose answer is empty or incomplete, have a
tree of their own::

    O2OGeoWarning                (UserWarning)
    ├── EmptyResultWarning                      a where= value no store has; serving() with no service areas
    └── RetentionWarning                        a report reaching past the pushes and events the state keeps

Messages name the parameter, the bad value, where it was (row or store id)
and, where there is one, the fix.

Examples
--------
>>> import o2o_geo as og
>>> try:
...     og.geodesic_distance_m(91.0, 0.0, 0.0, 0.0)
... except og.errors.InvalidCoordinateError as exc:
...     print(type(exc).__name__, isinstance(exc, ValueError))
InvalidCoordinateError True
"""

from __future__ import annotations

__all__ = [
    "BrowserError",
    "DuplicateOfferError",
    "EmptyResultWarning",
    "FileAccessError",
    "DuplicateStoreError",
    "IndexFormatError",
    "InvalidCoordinateError",
    "InvalidGeometryError",
    "InvalidParameterError",
    "InvalidRecordError",
    "MissingFileError",
    "O2OGeoError",
    "O2OGeoWarning",
    "RetentionWarning",
    "ShapeMismatchError",
    "StaleRadiiError",
    "StateError",
    "UnknownOfferError",
    "UnknownPushError",
    "UnknownStoreError",
]


class O2OGeoError(Exception):
    """Base class of every error o2o_geo raises on purpose.

    Examples
    --------
    Catch every deliberate error of the library at once, or each by its built-in type:

    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737}])
    >>> try:
    ...     index.nearest(31.23, 121.47, k=0)
    ... except og.errors.O2OGeoError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError), "-", exc)
    InvalidParameterError True - k must be a positive integer; got 0
    >>> try:
    ...     index.remove(["zzz"])
    ... except KeyError as exc:
    ...     print(type(exc).__name__, isinstance(exc, og.errors.O2OGeoError))
    UnknownStoreError True
    """


class InvalidCoordinateError(O2OGeoError, ValueError):
    """A latitude or longitude is outside its range, NaN or infinite.

    Examples
    --------
    >>> import o2o_geo as og
    >>> try:
    ...     og.geodesic_distance_m(121.4737, 31.2304, 31.2243, 121.4768)  # (lon, lat) by mistake
    ... except og.errors.InvalidCoordinateError as exc:
    ...     print(type(exc).__name__)
    InvalidCoordinateError
    """


class ShapeMismatchError(O2OGeoError, ValueError):
    """Arrays that must have the same length (or shape) do not.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737}])
    >>> try:
    ...     index.nearest([31.20, 31.21], [121.40], k=1)
    ... except og.errors.ShapeMismatchError as exc:
    ...     print(type(exc).__name__)
    ShapeMismatchError
    """


class InvalidParameterError(O2OGeoError, ValueError):
    """A parameter other than a coordinate has a value that cannot be used.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737}])
    >>> try:
    ...     index.within(31.23, 121.47, radius_m=-5.0)
    ... except og.errors.InvalidParameterError as exc:
    ...     print(type(exc).__name__)
    InvalidParameterError
    """


class StaleRadiiError(InvalidParameterError):
    """Per-store radii (:class:`~o2o_geo.StoreRadii`) were prepared for an index version that has changed since.

    Stores were added or removed, so the radii's rows no longer name the same
    stores: prepare them again with :meth:`StoreIndex.store_radii`.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 0.0, "lon": 0.0}])
    >>> radii = index.store_radii([100.0])
    >>> index.add([{"store_id": "b", "lat": 0.0, "lon": 0.001}])
    >>> try:
    ...     index.pairs_within(0.0, 0.0, radii)
    ... except og.errors.StaleRadiiError as exc:
    ...     print(type(exc).__name__, isinstance(exc, og.errors.InvalidParameterError))
    StaleRadiiError True
    """


class InvalidRecordError(O2OGeoError, ValueError):
    """A store record is missing a field or has a field of the wrong type.

    Records of offers and events are checked the same way.

    Examples
    --------
    >>> import o2o_geo as og
    >>> try:
    ...     og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304}])
    ... except og.errors.InvalidRecordError as exc:
    ...     print(type(exc).__name__)
    InvalidRecordError
    """


class DuplicateStoreError(O2OGeoError, ValueError):
    """The same ``store_id`` was given twice, or is already in the index.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737}])
    >>> try:
    ...     index.add([{"store_id": "a", "lat": 31.2243, "lon": 121.4768}])
    ... except og.errors.DuplicateStoreError as exc:
    ...     print(type(exc).__name__)
    DuplicateStoreError
    """


class UnknownStoreError(O2OGeoError, KeyError):
    """A ``store_id`` that the index does not hold.

    Examples
    --------
    >>> import o2o_geo as og
    >>> index = og.StoreIndex.from_records([{"store_id": "a", "lat": 31.2304, "lon": 121.4737}])
    >>> try:
    ...     index.remove(["b"])
    ... except og.errors.UnknownStoreError as exc:
    ...     print(type(exc).__name__)
    UnknownStoreError
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DuplicateOfferError(O2OGeoError, ValueError):
    """The same ``offer_id`` was given twice.

    Examples
    --------
    >>> import o2o_geo as og
    >>> try:
    ...     og.OfferSet([og.Offer("latte", "m-lucky"), og.Offer("latte", "m-lucky")])
    ... except og.errors.DuplicateOfferError as exc:
    ...     print(type(exc).__name__)
    DuplicateOfferError
    """


class UnknownOfferError(O2OGeoError, KeyError):
    """An ``offer_id`` that the offer set does not hold.

    Examples
    --------
    >>> import o2o_geo as og
    >>> try:
    ...     og.OfferSet([og.Offer("latte", "m-lucky")])["mocha"]
    ... except og.errors.UnknownOfferError as exc:
    ...     print(type(exc).__name__)
    UnknownOfferError
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidGeometryError(O2OGeoError, ValueError):
    """A service-area geometry is invalid (e.g. self-intersecting) or of the wrong kind.

    Examples
    --------
    >>> import o2o_geo as og
    >>> from shapely.geometry import Polygon
    >>> bowtie = Polygon([(121.47, 31.23), (121.48, 31.24), (121.48, 31.23), (121.47, 31.24)])
    >>> try:
    ...     og.StoreIndex.from_records([{"store_id": "a", "lat": 31.235, "lon": 121.475, "service_area": bowtie}])
    ... except og.errors.InvalidGeometryError as exc:
    ...     print(type(exc).__name__)
    InvalidGeometryError
    """


class IndexFormatError(O2OGeoError, ValueError):
    """A file given to :meth:`StoreIndex.load` is corrupt, truncated or not an o2o_geo index.

    Examples
    --------
    >>> import os, tempfile, o2o_geo as og
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "notes.txt")
    ...     with open(path, "w") as f:
    ...         _ = f.write("not an index")
    ...     try:
    ...         og.StoreIndex.load(path)
    ...     except og.errors.IndexFormatError as exc:
    ...         print(type(exc).__name__)
    IndexFormatError
    """


class MissingFileError(O2OGeoError, FileNotFoundError):
    """A file to read is not there (``except FileNotFoundError`` catches it too).

    Examples
    --------
    >>> import o2o_geo as og
    >>> try:
    ...     og.StoreIndex.load("no-such-index.o2oidx")
    ... except FileNotFoundError as exc:
    ...     print(type(exc).__name__)
    MissingFileError
    """


class FileAccessError(O2OGeoError, OSError):
    """A file could not be read or written: a folder in its place, no permission, a full disk (an ``OSError`` too).

    Examples
    --------
    >>> import os, tempfile, o2o_geo as og
    >>> folder = tempfile.mkdtemp()
    >>> try:
    ...     og.StoreIndex(og.sample_stores()).save(folder)      # a folder, not a file name
    ... except OSError as exc:
    ...     print(type(exc).__name__)
    FileAccessError
    """


class BrowserError(O2OGeoError, RuntimeError):
    """The headless browser that renders a map to PNG (:func:`o2o_geo.viz.html_to_png`) failed or wrote nothing.

    Examples
    --------
    >>> import o2o_geo as og
    >>> issubclass(og.errors.BrowserError, RuntimeError)    # ``except RuntimeError`` still catches it
    True
    """


class UnknownPushError(O2OGeoError, KeyError):
    """A ``push_id`` that the dispatcher never issued, or issued to another user.

    Examples
    --------
    >>> import o2o_geo as og
    >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()), og.OfferSet([og.Offer("latte", "m-lucky")]))
    >>> try:
    ...     engine.record(og.Event("redeem", "u1", 1767225600, push_id="p404"))
    ... except og.errors.UnknownPushError as exc:
    ...     print(type(exc).__name__)
    UnknownPushError
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StateError(O2OGeoError, RuntimeError):
    """The dispatch state store failed (e.g. a database is locked or unreachable); the operation changed nothing.

    Examples
    --------
    >>> import os, tempfile, o2o_geo as og
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     try:
    ...         og.SQLiteState(os.path.join(folder, "no-such-folder", "state.db"))
    ...     except og.errors.StateError as exc:
    ...         print(type(exc).__name__)
    StateError
    """


class O2OGeoWarning(UserWarning):
    """Base class of every warning o2o_geo issues.

    Examples
    --------
    Turn the library's warnings into errors, e.g. in a test suite:

    >>> import warnings, o2o_geo as og
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", og.errors.O2OGeoWarning)
    ...     try:
    ...         og.StoreIndex(og.sample_stores()).nearest(31.23, 121.47, k=1, where={"category": "cofee"})
    ...     except og.errors.EmptyResultWarning as exc:
    ...         print(type(exc).__name__)
    EmptyResultWarning
    """


class EmptyResultWarning(O2OGeoWarning):
    r"""A query can only come back empty: a ``where=`` value that no store has, or no store with a service area.

    The message names the column, the value and some values that do exist.

    Examples
    --------
    >>> import warnings, o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     nb = index.nearest(31.23, 121.47, k=1, where={"category": "Coffee"})
    >>> nb.store_id.tolist()
    [None]
    >>> print(str(caught[0].message).replace("; ", ";\n"))
    where={'category': 'Coffee'} matches no store: no store has category 'Coffee' (did you mean 'coffee'?);
    category holds 'coffee', 'grocery', 'tea'
    """


class RetentionWarning(O2OGeoWarning):
    """A report's window reaches back past the pushes and events the state still keeps (``retention_days``).

    Examples
    --------
    >>> import warnings, o2o_geo as og
    >>> engine = og.Dispatcher(og.StoreIndex(og.sample_stores()),
    ...                        og.OfferSet([og.Offer("latte", "m-lucky", discount_rate=0.8)]),
    ...                        policy=og.PushPolicy(holdout_fraction=0.0), state=og.MemoryState(retention_days=7))
    >>> _ = engine.on_location("u1", 31.2325, 121.4801, 1767258000)             # a push on day 0
    >>> _ = engine.on_location("u1", 31.2325, 121.4801, 1767258000 + 9 * 86400)  # day 9: day 0 is dropped
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     rows = engine.report(as_frame=False)
    >>> [type(w.message).__name__ for w in caught]
    ['RetentionWarning']
    """
