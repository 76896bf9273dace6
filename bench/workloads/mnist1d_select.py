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

from bench.workloads import mnist1d

STEPS = 1500
EXAMPLES, SEED, BATCH = 20_000, 1, 64
CHANNELS = (16, 32, 64, 64)


def make(steps=STEPS, examples=EXAMPLES):
  """The selection workload (module doc), as a
  :class:`bench.core.workload.Workload` (``examples``: fewer, for the smoke
  test)."""
  return mnist1d.build(
      "mnist1d_select", mnist1d.splits(examples, SEED), CHANNELS, BATCH,
      steps, max(steps // 15, 1),
      note=f"selection only: MNIST-1D drawn with seed {SEED}, {{}} examples")
