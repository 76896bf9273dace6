"""Runs the benchmark: presets, the program loop, the external tasks."""

from concurrent import futures
import datetime
import importlib
import json
import multiprocessing
import os
import pickle
import platform
import time
import traceback

import jax
import numpy as np
import tqdm

from bench import analysis
from bench import controllers as C
from bench import cost
from bench import report
from bench import runner
from bench import tasks as T

# Step budgets per task; the same for every controller of a task.
PRESETS = {
    "tiny": {
        "steps": {"quadratic": 40},
        "n_evals": 4, "seeds": (0,), "n_lrs": 2, "bases": ("sgd",),
        "controllers": ("greedy", "fixed"),
        "cost_controllers": ("greedy",),
        "cost_params": 20_000, "cost_rounds": 3, "cost_inner": 2,
        "cost_width": 32, "steps_cost": 10, "vmap": False, "external": (),
    },
    "quick": {
        # Fewer but longer runs: one base optimizer per task (every base and
        # every controller still runs somewhere), no char LM (its programs
        # compile at the default optimisation level), no vmap section.
        "steps": {"logreg": 300, "mlp": 300, "cnn": 100, "quadratic": 300,
                  "rosenbrock": 600},
        "n_evals": 10, "seeds": (0, 1), "n_lrs": 3, "bases": C.BASES,
        "task_bases": {"logreg": ("sgd",), "mlp": ("momentum",),
                       "cnn": ("adam",), "quadratic": ("sgd",),
                       "rosenbrock": ("adam",)},
        "controllers": None, "exclude": ("greedy_variants",),
        "cost_params": 1_000_000, "cost_rounds": 3, "cost_inner": 5,
        "cost_width": 256, "steps_cost": 20, "vmap": False,
        "external": ("nmf",),
    },
    "full": {
        "steps": {"logreg": 400, "mlp": 300, "cnn": 160, "charlm": 100,
                  "quadratic": 400, "rosenbrock": 1000},
        "n_evals": 20, "seeds": (0, 1, 2), "n_lrs": 3, "bases": C.BASES,
        "controllers": None,
        # The labelled GreedyLR variants run 9x the runs of one program.
        "task_exclude": {"cnn": ("greedy_variants",),
                         "charlm": ("greedy_variants",),
                         "mlp": ("greedy_variants",)},
        "cost_params": 8_000_000, "cost_rounds": 15, "cost_inner": 20,
        "cost_width": 512, "steps_cost": 100, "vmap": True,
        "steps_vmap": 200, "external": ("nmf", "learned"),
    },
}

# Backend options for the many small programs: XLA's LLVM optimisation level
# 0 halves CPU compile time, and these tasks are dispatch-bound. The char LM
# (real matrix work) keeps the default. Ignored off CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
HEAVY_TASKS = ("charlm", "cnn")

LOOKAHEAD = 2  # programs compiled ahead of the one running
EXTERNAL_TIMEOUT_S = 600

EXTERNAL = {"nmf": "bench.nmf_task", "learned": "bench.learned_task"}


def machine():
  """What the numbers were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f
               if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  dev = jax.devices()[0]
  return {"cpu": cpu, "cores": os.cpu_count(), "platform": dev.platform,
          "device": dev.device_kind, "jax": jax.__version__,
          "python": platform.python_version(),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds")}


def _programs(task_names, preset, controllers):
  """(task, controller, base) triples in run order, and skipped rows."""
  todo, skipped = [], {}
  for name in task_names:
    for ctrl in controllers:
      if ctrl.name in preset.get(
          "task_exclude", {}).get(name, ()):
        continue
      if ctrl.needs_bound and T.FACTORIES[name](1).lr_bound is None:
        continue
      allowed = preset.get("task_bases", {}).get(name, preset["bases"])
      bases = ("-",) if ctrl.lr_free else [
          b for b in allowed if b in ctrl.bases]
      todo.extend((name, ctrl, b) for b in bases)
  return todo, skipped


def run_grid(preset, controllers, progress=True):
  """Every (task, controller, base) program; returns records and timings.

  A background thread compiles up to two programs ahead while the main
  thread runs the current one (XLA compiles on one core; the run uses the
  others).
  """
  task_names = list(preset["steps"])
  todo, skipped = _programs(task_names, preset, controllers)
  tasks, inputs = {}, {}

  def compile_job(item):
    name, ctrl, base = item
    steps = preset["steps"][name]
    if name not in tasks:
      tasks[name] = T.FACTORIES[name](steps)
      inputs[name] = runner.prepare(tasks[name], preset["seeds"], steps)
    task = tasks[name]
    lrs = (1.0,) if ctrl.lr_free else task.lrs(base, preset["n_lrs"])
    options = {**C.schedule_multipliers(steps), **C.greedy_variant_payloads()}
    payloads = [options[o] for o in ctrl.options] or [None]
    bundle = runner.compile_program(
        task, ctrl, "adam" if base == "-" else base, lrs, inputs[name],
        steps, preset["n_evals"], payloads,
        compiler_options=None if name in HEAVY_TASKS else FAST_COMPILE)
    return task, lrs, bundle

  records, timings = [], []
  bar = tqdm.tqdm(todo, disable=not progress, unit="program")
  with futures.ThreadPoolExecutor(max_workers=1) as pool:
    jobs = [pool.submit(compile_job, item) for item in todo[:LOOKAHEAD]]
    for i, (name, ctrl, base) in enumerate(bar):
      bar.set_description(f"{name} {ctrl.name} {base}")
      if i + LOOKAHEAD < len(todo):
        jobs.append(pool.submit(compile_job, todo[i + LOOKAHEAD]))
      try:
        task, lrs, bundle = jobs[i].result()
        jobs[i] = None
        prog = runner.execute(bundle)
      except Exception as e:  # pylint: disable=broad-except
        # A controller that fails is reported, not fatal.
        skipped[f"{ctrl.name}/{name}/{base}"] = (
            f"{type(e).__name__}: {str(e)[:300]}")
        continue
      timings.append({"task": name, "controller": ctrl.name, "base": base,
                      "runs": int(np.prod(prog.eval_loss.shape[:4])),
                      "compile_s": prog.compile_s, "run_s": prog.run_s})
      records.extend(analysis.records(
          task, ctrl, base, lrs, ctrl.options or (ctrl.name,), prog,
          preset["steps"][name], preset["n_evals"]))
  return records, timings, skipped


def _external_child(module, quick, sub, seeds, errors):
  """Runs ``module.run`` in a child process; reports an exception."""
  try:
    mod = importlib.import_module(module)
    kwargs = {"seeds": tuple(seeds)} if module == EXTERNAL["nmf"] else {}
    mod.run(quick, sub, **kwargs)
  except BaseException:  # pylint: disable=broad-except
    errors.put(traceback.format_exc()[-3000:])
    raise


def run_external(quick, out_dir, seeds, which, log=print):
  """Runs the NMF and learned-schedule tasks (``run`` of
  bench/nmf_task.py and bench/learned_task.py), each in a child process
  with a time limit, so that a failure, an abort or a hang there is
  reported instead of stopping the suite. Each writes ``KEY.json`` and
  ``KEY.md`` into ``out_dir/KEY``."""
  results = {}
  ctx = multiprocessing.get_context("spawn")
  for key, module in EXTERNAL.items():
    if key not in which:
      results[key] = {"status": "skipped", "reason": (
          f"not in this preset; run `python -m {module} --quick` alone")}
      continue
    log(f"[bench] external task {key} ({module}.run, quick={quick}) ...")
    sub = os.path.join(out_dir, key)
    os.makedirs(sub, exist_ok=True)
    errors = ctx.Queue()
    proc = ctx.Process(target=_external_child,
                       args=(module, quick, sub, tuple(seeds), errors))
    start = time.perf_counter()
    proc.start()
    proc.join(EXTERNAL_TIMEOUT_S)
    seconds = time.perf_counter() - start
    if proc.is_alive():
      proc.kill()
      proc.join()
      results[key] = {"status": "error", "error":
                      f"timed out after {EXTERNAL_TIMEOUT_S} s"}
    elif proc.exitcode != 0:
      detail = errors.get() if not errors.empty() else ""
      results[key] = {"status": "error", "error": (
          f"exit code {proc.exitcode}"
          + (f" (signal {-proc.exitcode})" if proc.exitcode < 0 else "")
          + ("\n" + detail if detail else ""))}
    else:
      try:
        with open(os.path.join(sub, f"{key}.json"), encoding="utf-8") as f:
          result = json.load(f)
        with open(os.path.join(sub, f"{key}.md"), encoding="utf-8") as f:
          table = f.read()
        results[key] = {"status": "ok", "seconds": seconds, "dir": key,
                        "result": result, "table_md": table}
      except (OSError, ValueError) as e:
        results[key] = {"status": "error", "error": repr(e)}
    log(f"[bench] external task {key}: {results[key]['status']} "
        f"({seconds:.0f} s)")
  return results


CACHE = "grid_cache.pkl"


def main(preset_name, out_dir, progress=True, only=None, reuse=False,
         log=print):
  """Runs a preset and writes summary.md, summary.json and figures.

  The grid's raw results are kept in ``out_dir/grid_cache.pkl``; with
  ``reuse`` they are read back instead of re-running the grid, and the cost,
  vmap and external sections come from the previous ``summary.json`` if
  there is one (the report is rebuilt without running anything), else they
  are measured.
  """
  preset = dict(PRESETS[preset_name])
  if only:
    preset["steps"] = {k: v for k, v in preset["steps"].items() if k in only}
  os.makedirs(out_dir, exist_ok=True)
  controllers = [c for c in C.all_controllers()
                 if (preset["controllers"] is None
                     or c.name in preset["controllers"])
                 and c.name not in preset.get("exclude", ())]
  start = time.perf_counter()
  cache = os.path.join(out_dir, CACHE)
  if reuse:
    with open(cache, "rb") as f:
      records, timings, skipped, grid_s = pickle.load(f)
  else:
    log(f"[bench] {preset_name} preset: grid of tasks "
        f"{', '.join(preset['steps'])} ...")
    records, timings, skipped = run_grid(preset, controllers, progress)
    log(f"[bench] grid done ({time.perf_counter() - start:.0f} s, "
        f"{len(timings)} programs)")
    grid_s = time.perf_counter() - start
    with open(cache, "wb") as f:
      pickle.dump((records, timings, skipped, grid_s), f)
  previous = os.path.join(out_dir, "summary.json")
  if reuse and os.path.exists(previous):
    with open(previous, encoding="utf-8") as f:
      old = json.load(f)
    extra = {k: old.get(k) for k in ("vmap", "overhead", "external")}
    retry = [k for k, v in (extra["external"] or {}).items()
             if k in preset["external"] and v["status"] != "ok"]
    if retry:  # external tasks that failed or hung last time run again
      again = run_external(preset_name != "full", out_dir, preset["seeds"],
                           retry)
      extra["external"].update({k: again[k] for k in retry})
    host, total_s = old["meta"]["machine"], old["meta"]["total_seconds"]
  else:
    extra = {}
    if preset["vmap"]:
      log("[bench] vmap savings (one vmapped program vs Python loops) ...")
      t0 = time.perf_counter()
      extra["vmap"] = cost.vmap_savings(controllers, preset, preset["seeds"])
      log(f"[bench] vmap savings done ({time.perf_counter() - t0:.0f} s)")
    log(f"[bench] cost against optax.adam ({preset['cost_params']:,} "
        "parameters, train step, compile, state bytes) ...")
    t0 = time.perf_counter()
    extra["overhead"] = cost.overhead(controllers, preset)
    log(f"[bench] cost done ({time.perf_counter() - t0:.0f} s)")
    if preset["external"]:
      extra["external"] = run_external(
          preset_name != "full", out_dir, preset["seeds"], preset["external"],
          log=log)
    host, total_s = machine(), time.perf_counter() - start
  meta = {"preset": preset_name, "machine": host,
          "grid_seconds": grid_s, "total_seconds": total_s,
          "config": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in preset.items()},
          "skipped": skipped, "timings": timings}
  summary = analysis.summarize(records, meta, extra)
  report.write(summary, records, out_dir)
  log(f"[bench] wrote {out_dir} ({time.perf_counter() - start:.0f} s)")
  return summary
