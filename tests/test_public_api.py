"""The public surface is exactly __all__, and every public name is documented with an example."""

from __future__ import annotations

import inspect

import o2o_geo as og

#: Optional integrations: submodules imported on demand (``import o2o_geo.dask``), so not in ``__all__``;
#: once imported they are attributes of the package.
OPTIONAL_MODULES = {"dask"}


def test_all_is_the_public_surface():
    public = {name for name in vars(og) if not name.startswith("_")} - OPTIONAL_MODULES | {"__version__"}
    assert set(og.__all__) == public
    assert og.__all__ == sorted(og.__all__, key=str)


def test_every_public_callable_has_examples():
    for name in og.__all__:
        obj = getattr(og, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert "Examples" in (obj.__doc__ or ""), name


def test_errors_tree():
    from o2o_geo import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.O2OGeoError)
        if cls is not errors.O2OGeoError:
            assert issubclass(cls, (ValueError, KeyError, RuntimeError)), name
        assert name in errors.__doc__
