"""The public surface is exactly __all__, and every public name is documented with an example."""

from __future__ import annotations

import functools
import importlib
import inspect

import pytest

import o2o_geo as og

#: Optional integrations: submodules imported on demand (``import o2o_geo.dask``), so not in ``__all__``;
#: once imported they are attributes of the package.
OPTIONAL_MODULES = {"dask", "viz"}

#: Modules whose ``__all__`` is public surface, with the optional packages each needs to import.
DOCUMENTED_MODULES = {
    "o2o_geo": (),
    "o2o_geo.errors": (),
    "o2o_geo.simulate": (),
    "o2o_geo.viz": ("matplotlib", "folium"),
    "o2o_geo.dask": ("dask.dataframe",),
}

#: Public names allowed without an Examples section (a method is named by the class that defines it).
PENDING: set[str] = set()  # public names still without an Examples section (none left)


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
        assert name in errors.__doc__
        if issubclass(cls, Warning):
            assert issubclass(cls, errors.O2OGeoWarning) and issubclass(cls, UserWarning), name
            continue
        assert issubclass(cls, errors.O2OGeoError)
        if cls is not errors.O2OGeoError:
            assert issubclass(cls, (ValueError, KeyError, RuntimeError, OSError)), name


def _import_documented(module):
    for needed in DOCUMENTED_MODULES[module]:
        pytest.importorskip(needed, reason=f"{module} needs {needed}")
    return importlib.import_module(module)


def _is_ours(obj):
    return getattr(obj, "__module__", "").split(".")[0] == "o2o_geo"


def _public_methods(cls):
    """(name, function) of each public method of ``cls``, named by the o2o_geo class that defines it.

    Methods inherited from outside o2o_geo (object, Exception, ABC, ...), properties, dunder and
    private names are left out.
    """
    seen = set()
    for klass in cls.__mro__:
        names = vars(klass)
        if not _is_ours(klass):
            seen.update(names)
            continue
        for name, attr in names.items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attr, (classmethod, staticmethod)):
                attr = attr.__func__
            if isinstance(attr, (property, functools.cached_property)) or not inspect.isroutine(attr):
                continue
            yield f"{klass.__name__}.{name}", attr


def _has_examples(name, obj):
    """Its docstring has Examples, or it implements a method of an o2o_geo base class whose docstring has them.

    A backend's ``MemoryState.pushes`` is documented by ``DispatchState.pushes``, the protocol it implements.
    """
    if "Examples" in (obj.__doc__ or ""):
        return True
    if "." not in name:
        return False
    owner, method = name.split(".", 1)
    for module in ("o2o_geo", "o2o_geo.simulate"):
        cls = getattr(importlib.import_module(module), owner, None)
        if inspect.isclass(cls):
            return any(
                _is_ours(base) and method in vars(base) and "Examples" in (getattr(base, method).__doc__ or "")
                for base in cls.__mro__[1:]
            )
    return False


def _documentable(module):
    """(name, object) of every public class, function and method reachable from ``module.__all__``."""
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj
        if inspect.isclass(obj) and _is_ours(obj):
            yield from _public_methods(obj)


@pytest.mark.parametrize("module", sorted(DOCUMENTED_MODULES))
def test_every_public_name_and_method_has_examples(module):
    mod = _import_documented(module)
    missing = {name for name, obj in _documentable(mod) if not _has_examples(name, obj)}
    assert not missing - PENDING, f"no Examples section in the docstring of {sorted(missing - PENDING)}"


def test_pending_names_exist():
    """An entry of PENDING that names nothing (a typo, a renamed method) would excuse nothing and hide it."""
    known = set()
    for module in DOCUMENTED_MODULES:
        known.update(name for name, _ in _documentable(_import_documented(module)))
    assert not PENDING - known, sorted(PENDING - known)


def test_the_documented_check_sees_methods():
    """The walk finds methods, classmethods and inherited methods, and leaves out properties and builtins."""
    names = dict(_documentable(og))
    assert {"OfferScorer.rank", "OfferSet.from_records", "StoreIndex.load", "UserHistory.add"} <= set(names)
    assert "DispatchState.run" in names  # inherited by MemoryState and SQLiteState, named once
    assert "ScoredOffer.logit" not in names  # a property
    errors = dict(_documentable(og.errors))
    assert "O2OGeoError" in errors
    assert not [name for name in errors if "." in name]  # nothing from Exception (with_traceback, add_note)
