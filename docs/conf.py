"""Sphinx configuration of the API reference (built from the docstrings: numpydoc + autosummary)."""

import o2o_geo

project = "o2o_geo"
release = version = o2o_geo.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc sections describe the types
numpydoc_show_class_members = False  # autosummary lists them; numpydoc would list them again
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
templates_path = ["_templates"]
# Classes built from package-internal groups of methods (the Dispatcher's, one per stage of the loop;
# the scorer's fit; the history's readers): their pages list those methods as their own, and their
# private bases are not shown.
_public = [getattr(o2o_geo, n) for n in o2o_geo.__all__]
autosummary_context = {
    "composed": [
        n
        for n in o2o_geo.__all__
        if isinstance(c := getattr(o2o_geo, n), type)
        and any(b.__module__.startswith("o2o_geo.") and all(b is not p for p in _public) for b in c.__mro__[1:])
    ]
}
exclude_patterns = ["_build", "_templates"]
html_theme = "alabaster"
nitpicky = False


def _public_bases(app, name, obj, options, bases):
    """Show only public bases: a private module's class is an implementation detail."""
    public = [b for b in bases if not any(part.startswith("_") for part in b.__module__.split("."))]
    bases[:] = public or [object]


def setup(app):
    """Register the hook above."""
    app.connect("autodoc-process-bases", _public_bases)
