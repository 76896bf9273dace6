"""The selection LM: a byte-level transformer LM (width 96, 4 layers, 4
heads, context 64, 8 windows a step, about 0.5M parameters) for 1,500 steps
on scikit-learn's own source (its ``*.py`` files but the tests, sorted;
every tenth file held out, its first half validation and its second half
test windows). The report workloads train on other data; this one chooses
defaults (the budget-defaults and probe-defaults studies) and is never
reported as evidence for them.
"""

import pathlib

import jax.numpy as jnp
import numpy as np

from bench.core import models as M
from bench.core import workload as W

STEPS = 1500
PEAKS = (1e-3, 3e-3, 1e-2)
# The LM's shape.
MODEL = {"dim": 96, "heads": 4, "layers": 4}


def make(steps=STEPS, model=None):
  """The selection workload (module doc), as a :class:`bench.core.workload.Workload`
  (``model``: another shape, for the smoke test)."""
  import sklearn  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(sklearn.__file__).parent
  files = [f for f in sorted(root.rglob("*.py")) if "tests" not in f.parts]
  train, held = [], []
  for i, f in enumerate(files):
    (held if i % 10 == 0 else train).append(f.read_bytes())
  join = lambda parts: np.frombuffer(b"\n".join(parts), np.uint8).astype(
      np.int32)
  train, held = join(train), join(held)
  length, batch, half = 64, 8, len(held) // 2

  def windows(codes, n=64):
    starts = np.linspace(0, len(codes) - length - 2, n).astype(int)
    seqs = np.stack([codes[i:i + length + 1] for i in starts])
    return seqs[:, :-1], seqs[:, 1:]

  module = M.CharTransformer(**(model or MODEL), length=length, vocab=256)

  def loss(params, inputs, targets):
    return W.xent(module.apply(params, inputs), targets)

  def sample(rng, n):
    return rng.integers(0, len(train) - length - 1, (n, batch),
                        dtype=np.int32)

  return W.Workload(
      "sklearn_lm",
      lambda key: module.init(key, jnp.zeros((1, length), jnp.int32)),
      loss, W.gather_windows, (train, np.arange(length + 1)),
      windows(held[:half]), windows(held[half:]), sample, steps,
      eval_every=max(steps // 15, 1), peaks=PEAKS,
      note="selection only: scikit-learn's source")


