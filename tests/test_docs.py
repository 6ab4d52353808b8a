"""The API reference: Sphinx (numpydoc + autosummary) builds from the docstrings with warnings as errors."""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import sys

from _worlds import REPO

import o2o_geo as og

DOCS = REPO / "docs"


def test_api_reference_builds_without_warnings_and_covers_the_public_surface(tmp_path):
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "generated"))  # build outside the checkout
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(src), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    pages = {p.stem: p.read_text(encoding="utf-8") for p in (tmp_path / "html" / "generated").glob("*.html")}
    for name in og.__all__:
        obj = getattr(og, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            page = pages.get(f"o2o_geo.{name}")
            assert page is not None, f"{name} has no page in the API reference (add it to docs/index.rst)"
            summary = re.sub(r":\w+:", "", inspect.getdoc(obj).splitlines()[0])  # roles render as their target
            words = re.findall(r"[a-z0-9]+", summary.lower())[:4]
            assert " ".join(words) in " ".join(re.findall(r"[a-z0-9]+", re.sub(r"<[^>]+>", " ", page).lower())), name
            if inspect.isclass(obj):  # its public methods, also those of its package-internal bases
                public = [getattr(og, n) for n in og.__all__]
                for meth, value in inspect.getmembers(obj, inspect.isfunction):
                    owner = next(c for c in obj.__mro__ if meth in vars(c))
                    inherited = owner is not obj and any(owner is p for p in public)  # on the base's page
                    if not meth.startswith("_") and value.__module__.startswith("o2o_geo") and not inherited:
                        assert f'id="o2o_geo.{name}.{meth}"' in page, f"{name}.{meth} is missing from its page"
    for module in ("errors", "simulate", "viz", "dask"):  # a module's page: every public name, a class's members
        page = pages.get(f"o2o_geo.{module}")
        assert page is not None, f"o2o_geo.{module} has no page"
        mod = importlib.import_module(f"o2o_geo.{module}")
        for name in mod.__all__:
            assert f'id="o2o_geo.{module}.{name}"' in page, f"{module}.{name} is missing from its page"
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                for member in dir(obj):
                    owner = next((c for c in obj.__mro__ if member in vars(c)), object)
                    if not member.startswith("_") and owner.__module__.startswith("o2o_geo"):
                        assert f'id="o2o_geo.{module}.{name}.{member}"' in page, f"{module}.{name}.{member} is missing"
