"""The store table: StoreSet (``_table``) and service areas (``_areas``)."""

from ._areas import area_from_text, normalize_service_areas, split_antimeridian
from ._table import CORE_COLUMNS, StoreSet, as_store_set, check_unique, concat_stores, export_columns, take_rows

__all__ = [
    "CORE_COLUMNS",
    "StoreSet",
    "area_from_text",
    "as_store_set",
    "check_unique",
    "concat_stores",
    "export_columns",
    "normalize_service_areas",
    "split_antimeridian",
    "take_rows",
]
