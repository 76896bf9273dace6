"""Byte-level transformer LM on the source of the Python standard library
(the top-level ``*.py`` files of the running Python, sorted by name; every
tenth file is held out and split into validation and test windows)."""

import jax.numpy as jnp
import numpy as np

from bench.core import data as D
from bench.core import models as M
from bench.core import workload as W

STEPS = 2000
# What fits 2 CPU cores, and a size for one accelerator.
SIZES = {
    "cpu": {"batch": 8, "length": 64, "dim": 128, "layers": 5, "heads": 4,
            "eval_windows": 256},
    "gpu": {"batch": 32, "length": 128, "dim": 256, "layers": 6, "heads": 8,
            "eval_windows": 256},
}
# Factors of 3, as the sweep's x1/3 and x3 (which then reuse grid runs).
PEAKS = tuple(3e-3 * 3.0 ** k for k in (-2, -1, 0, 1, 2))


def make(steps=STEPS, size="cpu", eval_every=100):
  """The LM at ``size`` (:data:`SIZES`)."""
  s = SIZES[size]
  length = s["length"]
  train, held = D.library_split()
  half = len(held) // 2

  def windows(codes, n):
    starts = np.linspace(0, len(codes) - length - 2, n).astype(int)
    seqs = np.stack([codes[i:i + length + 1] for i in starts])
    return seqs[:, :-1], seqs[:, 1:]

  module = M.CharTransformer(dim=s["dim"], heads=s["heads"],
                             layers=s["layers"], length=length, vocab=256)

  def loss(params, inputs, targets):
    return W.xent(module.apply(params, inputs), targets)

  def sample(rng, n):
    return rng.integers(0, len(train) - length - 1, (n, s["batch"]),
                        dtype=np.int32)

  return W.Workload(
      "lm", lambda key: module.init(key, jnp.zeros((1, length), jnp.int32)),
      loss, W.gather_windows, (train, np.arange(length + 1)),
      windows(held[:half], s["eval_windows"]),
      windows(held[half:], s["eval_windows"]), sample, steps, eval_every,
      peaks=PEAKS, size=size,
      note=(f"batch {s['batch']} windows of {length} bytes (the {size} "
            "size; real LMs use far longer contexts and batches)"))
