"""The selection MNIST-1D: the MNIST-1D task at another size, for choosing
defaults only.

Signals drawn with another seed (1; the report workload draws seed 0):
20,000 examples cut into 16,000 training, 2,000 validation and 2,000 test
examples; a CNN of half the report workload's widths (conv 16, 32, 64,
dense 64: about 50k parameters), 1,500 steps of 64. Fewer examples per
parameter than :mod:`bench.workloads.mnist1d` and a smaller batch, so that
the held-out loss punishes a rate that over-fits, where the selection LM
(:mod:`bench.workloads.sklearn_lm`, one pass over its data) cannot. Like
that LM it chooses defaults (the probe-defaults study) and is never
reported as evidence for them.
"""

import numpy as np

from bench.core import workload as W
from bench.workloads import mnist1d

STEPS = 1500
EXAMPLES, SEED, BATCH = 20_000, 1, 64
CHANNELS = (16, 32, 64, 64)
PEAKS = mnist1d.PEAKS


def make(steps=STEPS, examples=EXAMPLES):
  """The selection workload (module doc), as a
  :class:`bench.core.workload.Workload` (``examples``: fewer, for the smoke
  test)."""
  train, valid, test = mnist1d.splits(examples, SEED)
  module = mnist1d.CNN1d(CHANNELS)

  def loss(params, inputs, targets):
    return W.xent(module.apply(params, inputs), targets)

  def sample(rng, n):
    return rng.integers(0, len(train[1]), (n, BATCH), dtype=np.int32)

  return W.Workload(
      "mnist1d_select", lambda key: module.init(key, train[0][:1]), loss,
      W.take, train, valid, test, sample, steps,
      eval_every=max(steps // 15, 1), peaks=PEAKS,
      note="selection only: MNIST-1D drawn with seed 1, "
           f"{len(train[1]):,} / {len(valid[1]):,} / {len(test[1]):,} "
           f"examples, batch {BATCH}")
