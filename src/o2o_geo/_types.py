"""Type aliases shared by the public signatures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ArrayLike", "FloatArray", "IntArray", "StoreId", "Where"]

#: A scalar, a sequence, a numpy array or a pandas Series of numbers.
ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: A store id is a string or an integer.
StoreId = str | int
#: A filter over the store table: ``{"column": value or list of values}``, a
#: boolean mask over the stores, or a callable taking the table (a mapping of
#: column name to array) and returning such a mask.
Where = Mapping[str, Any] | npt.NDArray[np.bool_] | Callable[[Mapping[str, np.ndarray]], Any] | None
