"""The problems' data: scikit-learn's tables and standard-library text.

Scikit-learn is imported when first used (``pip install
'optax_greedy[examples]'``).
"""

import functools

import numpy as np

from optax_greedy_lab import stdlib_text as stdlib_text_lib


@functools.lru_cache(maxsize=None)
def tabular(name: str):
  """A scikit-learn data set, standardised: ``(x [n, d], labels [n])``."""
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "optax_greedy_lab.dnn_problems needs scikit-learn for its data"
        " sets: pip install 'optax_greedy[examples]'") from error
  x, labels = getattr(datasets, f"load_{name}")(return_X_y=True)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  return x.astype(np.float32), labels.astype(np.int32)


_ALPHABET = "abcdefghijklmnopqrstuvwxyz .,;:'()-\n"
#: Character ids of :func:`char_windows`: the alphabet and one "other".
VOCAB = len(_ALPHABET) + 1
# The modules whose docstrings are the text of the sequence families.
TEXT_MODULES = ("argparse", "collections", "json", "textwrap", "string",
                "random", "statistics", "fractions", "decimal", "heapq",
                "bisect", "functools", "itertools", "pathlib", "shutil",
                "subprocess", "logging", "threading", "csv", "datetime")


@functools.lru_cache(maxsize=None)
def stdlib_text() -> str:
  """Lower-cased docstrings of :data:`TEXT_MODULES` and their public
  attributes (about 200k characters), whitespace collapsed
  (:func:`optax_greedy_lab.stdlib_text.module_docstrings`)."""
  docs = stdlib_text_lib.module_docstrings(TEXT_MODULES)
  return " ".join(" ".join(docs).lower().split())


def char_windows(context: int, count: int, seed: int):
  """``count`` windows of ``context`` character ids and the next id.

  Characters outside a 36-letter alphabet share one id (vocabulary 37).
  """
  lookup = {c: i for i, c in enumerate(_ALPHABET)}
  ids = np.asarray([lookup.get(c, len(_ALPHABET)) for c in stdlib_text()],
                   np.int32)
  starts = np.random.default_rng(seed).integers(
      0, len(ids) - context - 1, count)
  windows = ids[starts[:, None] + np.arange(context + 1)]
  return windows[:, :-1], windows[:, -1]


def padded(x, labels, rows, dims):
  """Pads ``x`` to ``[rows, dims]`` and labels to ``[rows]``."""
  out = np.zeros((rows, dims), np.float32)
  out[:x.shape[0], :x.shape[1]] = x
  lab = np.zeros(rows, np.int32)
  lab[:len(labels)] = labels
  return out, lab


# Packages of the standard library whose source is the text of the
# ``char_lm`` training family: only files inside package folders, never the
# top-level ``*.py`` files (the benchmark's language model), and none of the
# packages whose docstrings are held-out text (TEXT_MODULES) or that they
# import public names from.
SOURCE_PACKAGES = ("asyncio", "email", "http", "xml", "unittest",
                   "concurrent", "importlib", "multiprocessing", "sqlite3",
                   "wsgiref", "xmlrpc", "html", "dbm", "ctypes", "curses")
#: Byte ids of :func:`source_windows`: printable ASCII, newline, "other".
SOURCE_VOCAB = 97


@functools.lru_cache(maxsize=None)
def _source_ids():
  text = np.frombuffer(b"\n".join(stdlib_text_lib.package_files(
      SOURCE_PACKAGES)), np.uint8).astype(np.int32)
  ids = np.where((text >= 32) & (text < 127), text - 32, 96)
  return np.where(text == 10, 95, ids).astype(np.int32)


def source_windows(context: int, count: int, seed: int):
  """``count`` windows of ``context + 1`` byte ids of the source of
  :data:`SOURCE_PACKAGES` (vocabulary :data:`SOURCE_VOCAB`): inputs are the
  first ``context``, targets the last ``context`` (next-byte prediction at
  every position)."""
  ids = _source_ids()
  starts = np.random.default_rng(seed).integers(
      0, len(ids) - context - 1, count)
  windows = ids[starts[:, None] + np.arange(context + 1)]
  return windows[:, :-1], windows[:, 1:]
