"""Sphinx configuration of the optax_greedy documentation.

Sphinx (not MkDocs) because the docstrings are reStructuredText with Google
sections and ``.. math::`` blocks, which autodoc + napoleon render as they
are, and because the libraries beside this one (optax, jax) use it: a user
finds the same layout. Pages are MyST Markdown so that they also read on a
code host; the notebook is rendered by myst-nb without executing it.
"""

import os
import re
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import optax_greedy  # noqa: E402
import optax_greedy_docs  # noqa: E402

# The API lists, the benchmark's tables and figures, the notebook's copy.
optax_greedy_docs.generate()

project = "optax_greedy"
author = "the optax_greedy authors"
copyright = "the optax_greedy authors, Apache License 2.0"
release = optax_greedy.__version__  # the version is the package's
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # MyST Markdown pages and the notebook
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_ext", "_generated/*.md", "api/_names.md"]
root_doc = "index"

# The API reference: autosummary writes one page per public name.
# Only the generated lists hold autosummary directives (docs/api/_names.md,
# included by docs/api/index.md; see _ext/optax_greedy_docs.py).
autosummary_generate = ["api/_names.md"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# MyST: $...$ math, definition lists, heading anchors for in-page links.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebook is rendered, not executed

html_theme = "alabaster"
html_title = f"optax_greedy {release}"
html_static_path = []
napoleon_use_ivar = True  # a NamedTuple's "Attributes:" as fields, not as
# second descriptions of the fields autodoc already documents


def _join_grouped_args(app, what, name, obj, options, lines):
  """Google-style ``Args:`` entries that name several arguments over several
  lines (``mode, factor, ...,`` then ``  min_lr, ...: as in greedy_lr``) are
  joined onto one line before napoleon reads them; napoleon takes a first
  line without a colon for a malformed entry."""
  i = 0
  names = re.compile(r"^\s+\w+(, \w+)*,$")
  while i < len(lines):
    if names.match(lines[i]):
      j = i + 1
      while j < len(lines) and ":" not in lines[i] and lines[j].strip():
        lines[i] = lines[i] + " " + lines[j].strip()
        del lines[j]
        if ":" in lines[i]:
          break
    i += 1


def _warn_missing_docstrings(app):
  """A public name without a docstring is a warning, so ``-W`` fails."""
  from sphinx.util import logging
  for name in optax_greedy_docs.missing_docstrings():
    logging.getLogger(__name__).warning(
        "public name without a docstring: %s", name)


# jax.typing.ArrayLike is a Union that autodoc spells out in full; show it by
# its name, as the source does.
_ARRAY_LIKE = re.compile(
    r"(?:[\w.]*\.)?Array \| (?:[\w.]*\.)?ndarray \| (?:[\w.]*\.)?bool \| "
    r"(?:[\w.]*\.)?number \| bool \| int \| float \| complex")


def _short_array_like(app, what, name, obj, options, signature,
                      return_annotation):
  if signature:
    signature = _ARRAY_LIKE.sub("ArrayLike", signature)
  if return_annotation:
    return_annotation = _ARRAY_LIKE.sub("ArrayLike", return_annotation)
  return signature, return_annotation


def setup(app):
  app.connect("autodoc-process-signature", _short_array_like)
  app.connect("builder-inited", _warn_missing_docstrings)
  app.connect("autodoc-process-docstring", _join_grouped_args, priority=400)
