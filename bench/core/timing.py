"""Timing compiled programs against each other on one machine."""

import statistics
import time

import jax


def round_robin(fns, rounds):
  """Median seconds per call of each ``fn()`` (already compiled).

  Each round times every function once, in turn, so load from other
  processes on a shared machine hits all of them alike; compare the
  results as ratios within one call.

  Args:
    fns: ``{name: fn}``, functions of no arguments returning arrays.
    rounds: calls of each function.

  Returns:
    ``{name: median seconds}``.
  """
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {k: statistics.median(v) for k, v in times.items()}
