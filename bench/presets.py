"""The presets of ``python -m bench {quick,full,tiny}``: the grid, the cost
section and the NMF and learned-NMF studies, in one report.

Each preset is a grid configuration (:class:`bench.grid.run.GridConfig`)
and the cost and study settings that go with it. The studies run in child
processes with a time limit, so that a failure, an abort or a hang there is
reported in the summary instead of stopping the run.
"""

import dataclasses
import json
import multiprocessing
import os
import pickle
import time
import traceback

from bench.core import output as O
from bench.core import registry as R
from bench.grid import analysis
from bench.grid import report
from bench.grid import run as G
from bench.studies import cost
from bench.studies import learned_nmf
from bench.studies import nmf

PRESETS = {
    "tiny": {
        "grid": G.GridConfig(steps={"quadratic": 40}, n_evals=4, seeds=(0,),
                             n_lrs=2, bases=("sgd",),
                             controllers=("greedy", "fixed")),
        "cost_controllers": ("greedy",),
        "cost_params": 20_000, "cost_rounds": 3, "cost_inner": 2,
        "cost_width": 32, "steps_cost": 10, "vmap": False, "studies": (),
    },
    "quick": {
        # Fewer but longer runs: one base optimizer per task (every base and
        # every controller still runs somewhere), no char LM (its programs
        # compile at the default optimisation level), no ablations, no vmap
        # section.
        "grid": G.GridConfig(
            steps={"logreg": 300, "mlp": 300, "cnn": 100, "quadratic": 300,
                   "rosenbrock": 600},
            n_evals=10, seeds=(0, 1), n_lrs=3,
            task_bases={"logreg": ("sgd",), "mlp": ("momentum",),
                        "cnn": ("adam",), "quadratic": ("sgd",),
                        "rosenbrock": ("adam",)}),
        "cost_params": 1_000_000, "cost_rounds": 3, "cost_inner": 5,
        "cost_width": 256, "steps_cost": 20, "vmap": False,
        "studies": ("nmf",),
    },
    "full": {
        # The ablations run 9x the runs of one program: not on the larger
        # networks.
        "grid": G.GridConfig(
            steps={"logreg": 400, "mlp": 300, "cnn": 160, "charlm": 100,
                   "quadratic": 400, "rosenbrock": 1000},
            n_evals=20, seeds=(0, 1, 2), n_lrs=3,
            ablations=("logreg", "quadratic", "rosenbrock")),
        "cost_params": 8_000_000, "cost_rounds": 15, "cost_inner": 20,
        "cost_width": 512, "steps_cost": 100, "vmap": True,
        "steps_vmap": 200, "studies": ("nmf", "learned"),
    },
}

STUDY_TIMEOUT_S = 600
CACHE = "grid_cache.pkl"


def _nmf_study(quick, out_dir, seeds):
  """The NMF study on the preset's seeds; writes nmf.json and nmf.md."""
  nmf.run(quick, out_dir, seeds=seeds)


def _learned_study(quick, out_dir, seeds):
  """The learned-NMF study on its own seeds (3 quick, 5 full); writes
  learned.json and learned.md."""
  del seeds
  learned_nmf.run(quick, out_dir)


# The studies a preset can run: key -> function(quick, out_dir, seeds),
# which writes KEY.json and KEY.md into out_dir.
STUDIES = {"nmf": _nmf_study, "learned": _learned_study}


def _child(study, quick, out_dir, seeds, errors):
  """Runs one study in a child process; reports an exception."""
  try:
    STUDIES[study](quick, out_dir, seeds)
  except BaseException:  # pylint: disable=broad-except
    errors.put(traceback.format_exc()[-3000:])
    raise


def run_studies(quick, out_dir, seeds, which, log=print):
  """Runs the studies ``which`` of :data:`STUDIES`, each in a spawned
  child process with a time limit; each writes ``KEY.json`` and ``KEY.md``
  into ``out_dir/KEY``. Returns ``{key: result}`` with a status."""
  results = {}
  ctx = multiprocessing.get_context("spawn")
  for key in STUDIES:
    if key not in which:
      command = {"nmf": "nmf", "learned": "learned-nmf"}[key]
      results[key] = {"status": "skipped", "reason": (
          f"not in this preset; run `python -m bench {command} --quick` "
          "alone")}
      continue
    log(f"[bench] study {key} (quick={quick}) ...")
    sub = os.path.join(out_dir, key)
    os.makedirs(sub, exist_ok=True)
    errors = ctx.Queue()
    proc = ctx.Process(target=_child,
                       args=(key, quick, sub, tuple(seeds), errors))
    start = time.perf_counter()
    proc.start()
    proc.join(STUDY_TIMEOUT_S)
    seconds = time.perf_counter() - start
    if proc.is_alive():
      proc.kill()
      proc.join()
      results[key] = {"status": "error", "error":
                      f"timed out after {STUDY_TIMEOUT_S} s"}
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
    log(f"[bench] study {key}: {results[key]['status']} ({seconds:.0f} s)")
  return results


def main(preset_name, out_dir, progress=True, only=None, reuse=False,
         log=print):
  """Runs a preset and writes summary.md, summary.json and figures.

  The grid's raw results are kept in ``out_dir/grid_cache.pkl``; with
  ``reuse`` they are read back instead of re-running the grid, and the cost,
  vmap and study sections come from the previous ``summary.json`` if there
  is one (the report is rebuilt without running anything; studies that
  failed run again), else they are measured.
  """
  preset = PRESETS[preset_name]
  config = preset["grid"]
  if only:
    config = dataclasses.replace(config, steps={
        k: v for k, v in config.steps.items() if k in only})
  os.makedirs(out_dir, exist_ok=True)
  entries = config.entries()
  start = time.perf_counter()
  cache = os.path.join(out_dir, CACHE)
  quick = preset_name != "full"
  if reuse:
    with open(cache, "rb") as f:
      records, timings, skipped, grid_s = pickle.load(f)
  else:
    log(f"[bench] {preset_name} preset: grid of tasks "
        f"{', '.join(config.steps)} ...")
    records, timings, skipped = G.run_grid(config, progress)
    grid_s = time.perf_counter() - start
    log(f"[bench] grid done ({grid_s:.0f} s, {len(timings)} programs)")
    with open(cache, "wb") as f:
      pickle.dump((records, timings, skipped, grid_s), f)
  previous = os.path.join(out_dir, "summary.json")
  if reuse and os.path.exists(previous):
    with open(previous, encoding="utf-8") as f:
      old = json.load(f)
    extra = {k: old.get(k) for k in ("vmap", "overhead", "external")}
    retry = [k for k, v in (extra["external"] or {}).items()
             if k in preset["studies"] and v["status"] != "ok"]
    if retry:
      again = run_studies(quick, out_dir, config.seeds, retry, log=log)
      extra["external"].update({k: again[k] for k in retry})
    host, total_s = old["meta"]["machine"], old["meta"]["total_seconds"]
  else:
    extra = {}
    if preset["vmap"]:
      log("[bench] vmap savings (one vmapped program vs Python loops) ...")
      t0 = time.perf_counter()
      extra["vmap"] = cost.vmap_savings(R.get("greedy"), preset["steps_vmap"],
                                        config.n_lrs, config.n_evals,
                                        config.seeds)
      log(f"[bench] vmap savings done ({time.perf_counter() - t0:.0f} s)")
    log(f"[bench] cost against optax.adam ({preset['cost_params']:,} "
        "parameters, train step, compile, state bytes) ...")
    t0 = time.perf_counter()
    keep = preset.get("cost_controllers")
    extra["overhead"] = cost.overhead(
        [c for c in R.in_scope(R.COST) if keep is None or c.name in keep],
        steps=preset["steps_cost"], n_params=preset["cost_params"],
        rounds=preset["cost_rounds"], width=preset["cost_width"],
        inner=preset["cost_inner"], hd_variants=keep is None)
    log(f"[bench] cost done ({time.perf_counter() - t0:.0f} s)")
    if preset["studies"]:
      extra["external"] = run_studies(quick, out_dir, config.seeds,
                                      preset["studies"], log=log)
    host, total_s = O.machine(), time.perf_counter() - start
  meta = {"preset": preset_name, "machine": host,
          "grid_seconds": grid_s, "total_seconds": total_s,
          "config": _config_json(config, preset),
          "skipped": skipped, "timings": timings}
  summary = analysis.summarize(records, meta, extra)
  report.write(summary, records, out_dir)
  log(f"[bench] wrote {out_dir} ({time.perf_counter() - start:.0f} s)")
  return summary


def _config_json(config, preset):
  """The preset's settings as JSON data (the report reads ``steps``,
  ``n_evals``, ``seeds``, ``n_lrs`` and ``bases``)."""
  out = {k: v for k, v in preset.items() if k != "grid"}
  out.update(dataclasses.asdict(config))
  return O.clean(out)
