"""The one error tree of o2o_geo.

Every error the library raises on purpose derives from :class:`O2OGeoError`,
and each concrete error also derives from the matching built-in exception, so
callers can catch either the library's type or the familiar one::

    O2OGeoError
    ├── InvalidCoordinateError   (ValueError)   lat/lon out of range, NaN, inf
    ├── ShapeMismatchError       (ValueError)   arrays of different lengths
    ├── InvalidParameterError    (ValueError)   k < 1, negative radius, bad option
    ├── InvalidRecordError       (ValueError)   a store record that cannot be read
    ├── DuplicateStoreError      (ValueError)   a store id given twice
    ├── UnknownStoreError        (KeyError)     a store id the index does not hold
    ├── DuplicateOfferError      (ValueError)   an offer id given twice
    ├── UnknownOfferError        (KeyError)     an offer id the offer set does not hold
    ├── UnknownPushError         (KeyError)     a push id the dispatcher never issued (or of another user)
    ├── InvalidGeometryError     (ValueError)   an invalid service-area or geofence polygon
    ├── IndexFormatError         (ValueError)   a saved index file that is corrupt or foreign
    └── StateError               (RuntimeError) the dispatch state store failed (nothing was changed)

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
    "DuplicateOfferError",
    "DuplicateStoreError",
    "IndexFormatError",
    "InvalidCoordinateError",
    "InvalidGeometryError",
    "InvalidParameterError",
    "InvalidRecordError",
    "O2OGeoError",
    "ShapeMismatchError",
    "StateError",
    "UnknownOfferError",
    "UnknownPushError",
    "UnknownStoreError",
]


class O2OGeoError(Exception):
    """Base class of every error o2o_geo raises on purpose."""


class InvalidCoordinateError(O2OGeoError, ValueError):
    """A latitude or longitude is outside its range, NaN or infinite."""


class ShapeMismatchError(O2OGeoError, ValueError):
    """Arrays that must have the same length (or shape) do not."""


class InvalidParameterError(O2OGeoError, ValueError):
    """A parameter other than a coordinate has a value that cannot be used."""


class InvalidRecordError(O2OGeoError, ValueError):
    """A store record is missing a field or has a field of the wrong type."""


class DuplicateStoreError(O2OGeoError, ValueError):
    """The same ``store_id`` was given twice, or is already in the index."""


class UnknownStoreError(O2OGeoError, KeyError):
    """A ``store_id`` that the index does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DuplicateOfferError(O2OGeoError, ValueError):
    """The same ``offer_id`` was given twice."""


class UnknownOfferError(O2OGeoError, KeyError):
    """An ``offer_id`` that the offer set does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidGeometryError(O2OGeoError, ValueError):
    """A service-area geometry is invalid (e.g. self-intersecting) or of the wrong kind."""


class IndexFormatError(O2OGeoError, ValueError):
    """A file given to :meth:`StoreIndex.load` is corrupt, truncated or not an o2o_geo index."""


class UnknownPushError(O2OGeoError, KeyError):
    """A ``push_id`` that the dispatcher never issued, or issued to another user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StateError(O2OGeoError, RuntimeError):
    """The dispatch state store failed (e.g. a database is locked or unreachable); the operation changed nothing."""
