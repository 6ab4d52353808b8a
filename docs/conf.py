"""Sphinx configuration of the API reference (built from the docstrings: numpydoc + autosummary)."""

import o2o_geo

project = "o2o_geo"
release = version = o2o_geo.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc sections describe the types
numpydoc_show_class_members = False  # autosummary lists them; numpydoc would list them again
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates"]
html_theme = "alabaster"
nitpicky = False
