"""The benchmark's data: nothing is downloaded.

* :func:`sklearn_table`: a data set shipped with scikit-learn (digits,
  breast cancer, ...), as stored;
* :func:`shuffled`: the same rows in a fixed random order;
* :func:`digits_standardised`, :func:`digits_images`: the digits splits of
  the grid and of the workloads;
* :func:`ascii_codes`, :func:`byte_codes`: standard-library text from
  :mod:`optax_greedy_lab.stdlib_text` (the package's one loader) as
  integer codes.
"""

import functools

import numpy as np

from optax_greedy_lab import stdlib_text


@functools.lru_cache(maxsize=None)
def sklearn_table(name):
  """``sklearn.datasets.load_<name>(return_X_y=True)``: ``(x, y)`` as
  scikit-learn returns them (float64 features, integer targets)."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  return getattr(datasets, f"load_{name}")(return_X_y=True)


def shuffled(x, y, seed=0):
  """``x`` and ``y`` in the order of a fixed permutation (NumPy's
  ``default_rng(seed)``)."""
  perm = np.random.default_rng(seed).permutation(len(x))
  return x[perm], y[perm]


def ascii_codes(text):
  """``text`` as ASCII codes (int32); other characters become ``?``."""
  codes = np.frombuffer(text.encode("ascii", errors="replace"), np.uint8)
  return codes.astype(np.int32)


def module_sources(names, max_chars):
  """The source of the standard-library modules ``names``, joined by
  newlines and cut to ``max_chars``, as ASCII codes (int32)."""
  return ascii_codes("\n".join(stdlib_text.module_sources(names))[:max_chars])


def library_split(every=10):
  """The standard library's top-level files as bytes (int32 codes):
  ``(train, held_out)``, every ``every``-th file (by name) held out."""
  train, held = [], []
  for i, data in enumerate(stdlib_text.library_files()):
    (held if i % every == 0 else train).append(data)
  join = lambda parts: np.frombuffer(b"\n".join(parts), np.uint8)
  return join(train).astype(np.int32), join(held).astype(np.int32)


def digits_standardised(train_fraction=0.8, seed=0):
  """scikit-learn's digits in a fixed order, split into training and
  held-out rows, standardised by the training rows' mean and standard
  deviation (+1, so that constant pixels stay finite).

  Returns:
    ``{"x_train", "y_train", "x_eval", "y_eval"}`` (float32 / int32).
  """
  x, y = sklearn_table("digits")
  x, y = shuffled(x.astype(np.float32), y, seed)
  y = y.astype(np.int32)
  n_train = int(train_fraction * len(x))
  mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1.0
  x = (x - mean) / std
  return {"x_train": x[:n_train], "y_train": y[:n_train],
          "x_eval": x[n_train:], "y_eval": y[n_train:]}


def digits_images(sizes=(1197, 300, 300), seed=0):
  """scikit-learn's digits as ``[n, 8, 8, 1]`` images in [0, 1], in a fixed
  order, cut into consecutive splits of ``sizes`` rows.

  Returns:
    One ``(images, labels)`` pair per split (float32 / int32).
  """
  x, y = shuffled(*sklearn_table("digits"), seed)
  x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  y = y.astype(np.int32)
  bounds = np.cumsum((0,) + tuple(sizes))
  return [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
