"""Text that ships with Python: the standard library's source and docstrings.

The one loader of standard-library text, for the learned-schedule
environments and for the benchmark (``bench`` imports it from here). Three
corpora, each the same on every install of one Python version:

* :func:`module_sources`: the source of named modules;
* :func:`module_docstrings`: their docstrings and those of their public
  attributes;
* :func:`library_files`: the top-level ``*.py`` files of the library,
  sorted by name;
* :func:`package_files`: the ``*.py`` files inside named packages of the
  library (never a top-level file, so disjoint from
  :func:`library_files`).
"""

import functools
import importlib
import inspect
import pathlib


def _source_path(name):
  return pathlib.Path(inspect.getsourcefile(importlib.import_module(name)))


def module_sources(names) -> list:
  """The source text of each module in ``names``, in order."""
  return [_source_path(n).read_text(encoding="utf-8") for n in names]


@functools.lru_cache(maxsize=None)
def module_docstrings(names: tuple) -> list:
  """The docstrings of each module in ``names`` and of its public
  attributes (sorted by name), in order."""
  docs = []
  for name in names:
    module = importlib.import_module(name)
    docs.append(module.__doc__ or "")
    for attr in sorted(vars(module)):
      doc = getattr(getattr(module, attr), "__doc__", None)
      if attr.startswith("_") or not isinstance(doc, str):
        continue
      docs.append(doc)
  return docs


def library_files() -> list:
  """The bytes of every top-level ``*.py`` file of the standard library,
  sorted by file name."""
  root = _source_path("inspect").parent
  return [path.read_bytes() for path in sorted(root.glob("*.py"))]


def package_files(names) -> list:
  """The bytes of every ``*.py`` file inside the packages ``names`` (their
  directories, recursively, test folders excluded), sorted by path."""
  root = _source_path("inspect").parent
  out = []
  for name in names:
    folder = root / name
    if not (folder / "__init__.py").exists():
      raise ValueError(f"package_files: {name!r} is not a package folder of"
                       f" the standard library ({root}).")
    for path in sorted(folder.rglob("*.py")):
      if any(part in ("test", "tests") for part in path.parts):
        continue
      out.append(path.read_bytes())
  return out
