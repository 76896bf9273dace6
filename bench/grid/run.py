"""Runs the grid: every (task, controller, base) program of a configuration.

A :class:`GridConfig` says which tasks run for how many steps, with which
seeds, rates and bases; :func:`run_grid` compiles and runs the programs
(:mod:`bench.grid.programs`) and returns the records
(:func:`bench.grid.analysis.records`).
"""

from concurrent import futures
import dataclasses
from typing import Optional

import numpy as np
import tqdm

from bench.core import registry as R
from bench.grid import analysis
from bench.grid import programs as P
from bench.grid import tasks as T

# XLA's LLVM optimisation level 0 halves CPU compile time of the many small,
# dispatch-bound programs; the tasks with real matrix work keep the
# default. Ignored off CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
HEAVY_TASKS = ("charlm", "cnn")
LOOKAHEAD = 2  # programs compiled ahead of the one running


@dataclasses.dataclass(frozen=True)
class GridConfig:
  """What the grid runs.

  Attributes:
    steps: task name -> step budget (the same for every controller).
    n_evals: evaluations per run.
    seeds: the seeds (initialisation and sample stream).
    n_lrs: initial rates per (task, base).
    bases: the base optimizers.
    task_bases: task -> its bases, where not ``bases``.
    controllers: entry names to run (``None``: every grid entry).
    ablations: tasks on which the entries' labelled variants run too
      (``greedy[patience=5]``, ...).
  """

  steps: dict
  n_evals: int
  seeds: tuple
  n_lrs: int
  bases: tuple = R.BASES
  task_bases: dict = dataclasses.field(default_factory=dict)
  controllers: Optional[tuple] = None
  ablations: tuple = ()

  def entries(self):
    """The grid's registry entries, in report order."""
    return [c for c in R.in_scope(R.GRID)
            if self.controllers is None or c.name in self.controllers]


def programs(config):
  """``(task, controller, base, variants)`` in run order: ``variants`` is
  false for the plain row, true for the entry's labelled variants (the
  fixed schedules, or ablations where ``config.ablations`` asks), which
  run together as one program."""
  todo = []
  for name in config.steps:
    bounded = T.FACTORIES[name](1).lr_bound is not None
    allowed = config.task_bases.get(name, config.bases)
    for ctrl in config.entries():
      if ctrl.needs_bound and not bounded:
        continue
      bases = ("-",) if ctrl.lr_free else [b for b in allowed
                                           if b in ctrl.bases]
      sets = [False] if ctrl.plain else []
      if ctrl.variants is not None and (not ctrl.plain
                                        or name in config.ablations):
        sets.append(True)
      todo.extend((name, ctrl, b, v) for v in sets for b in bases)
  return todo


def run_grid(config, progress=True):
  """Every program of ``config``; returns ``(records, timings, skipped)``.

  A background thread compiles up to two programs ahead while the main
  thread runs the current one (XLA compiles on one core; the run uses the
  others). A program that fails is reported in ``skipped``, not raised.
  """
  todo = programs(config)
  tasks, inputs, skipped = {}, {}, {}

  def compile_job(item):
    name, ctrl, base, labelled = item
    steps = config.steps[name]
    variants = ctrl.variants(steps) if labelled else None
    if name not in tasks:
      tasks[name] = T.FACTORIES[name](steps)
      inputs[name] = P.prepare(tasks[name], config.seeds, steps)
    task = tasks[name]
    lrs = (1.0,) if ctrl.lr_free else task.lrs(base, config.n_lrs)
    bundle = P.compile_program(
        task, ctrl, "adam" if base == "-" else base, lrs, inputs[name],
        steps, config.n_evals, variants,
        compiler_options=None if name in HEAVY_TASKS else FAST_COMPILE)
    return task, lrs, variants, bundle

  records, timings = [], []
  bar = tqdm.tqdm(todo, disable=not progress, unit="program")
  with futures.ThreadPoolExecutor(max_workers=1) as pool:
    jobs = [pool.submit(compile_job, item) for item in todo[:LOOKAHEAD]]
    for i, (name, ctrl, base, labelled) in enumerate(bar):
      label = f"{ctrl.name}[...]" if labelled else ctrl.name
      bar.set_description(f"{name} {label} {base}")
      if i + LOOKAHEAD < len(todo):
        jobs.append(pool.submit(compile_job, todo[i + LOOKAHEAD]))
      try:
        task, lrs, variants, bundle = jobs[i].result()
        jobs[i] = None
        prog = P.execute(bundle)
      except Exception as e:  # pylint: disable=broad-except
        skipped[f"{label}/{name}/{base}"] = (
            f"{type(e).__name__}: {str(e)[:300]}")
        continue
      timings.append({"task": name, "controller": label, "base": base,
                      "runs": int(np.prod(prog.eval_loss.shape[:4])),
                      "compile_s": prog.compile_s, "run_s": prog.run_s})
      rows = (ctrl.name,) if variants is None else tuple(variants)
      records.extend(analysis.records(
          task, ctrl, base, lrs, rows, prog, config.steps[name],
          config.n_evals))
  return records, timings, skipped
