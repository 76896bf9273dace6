"""The realistic workloads, one module each; adding one is writing a module
with a ``make(steps=None, size="cpu", eval_every=None)`` that returns a
:class:`bench.core.workload.Workload`, and naming it in :data:`WORKLOADS`.
"""

from bench.workloads import digits_cnn
from bench.workloads import lm
from bench.workloads import mnist1d

# name -> module; the report order of the workloads study.
WORKLOADS = {"lm": lm, "mnist1d": mnist1d, "cnn": digits_cnn}
# What the study runs unless told: the headline's report workloads (the
# digits CNN is saturated, a smoke workload only).
REPORT = ("lm", "mnist1d")


def make(name, size="cpu", scale=1.0):
  """Workload ``name`` at ``size``, its step budget times ``scale`` (at
  least 2 steps; 20 evaluations)."""
  module = WORKLOADS[name]
  steps = max(2, int(module.STEPS * scale))
  return module.make(steps=steps, size=size, eval_every=max(1, steps // 20))
