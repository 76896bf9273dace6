"""Chooses hypergradient descent's default ``hypergrad_lr`` on some tasks of
the benchmark and reports it on the others.

``python -m bench.hd_defaults --out bench/results/hd`` runs, with the quick
preset's step budgets, 2 seeds and 3 initial rates per (task, base):

* the fixed schedules (the comparison),
* the paper's additive rule (``hd_paper_global`` etc., beta 1e-3 / 1e-7),
* the multiplicative rule at every ``beta`` of :data:`BETAS`, per
  granularity (one compiled program per granularity: ``beta`` is traced),

on the selection tasks (:data:`SELECT`) and the held-out tasks
(:data:`HELD_OUT`). The choice per granularity is the ``beta`` with the
highest equal-or-better fraction against the fixed schedules on the
selection tasks among those never worse than the paper's rule on the
noise-free selection task (``quadratic/noise=0``; ``rosenbrock/noise=0`` is
the held-out one); the held-out tasks only report it. Outputs:
``hd_defaults.json`` (every tally, every final loss) and ``hd_defaults.md``;
``--reuse`` rebuilds them from the final losses in ``hd_defaults.json``.
"""

import argparse
import json
import os
import time

import numpy as np

from bench import analysis
from bench import controllers as C
from bench import runner
from bench import tasks as T

SELECT = ("logreg", "mlp", "quadratic")
HELD_OUT = ("rosenbrock", "cnn", "charlm")
STEPS = {"logreg": 200, "mlp": 200, "cnn": 60, "charlm": 40,
         "quadratic": 200, "rosenbrock": 400}
ADAM_ONLY = ("cnn", "charlm")
SEEDS = (0, 1)
N_EVALS = 10
N_LRS = 3
BETAS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
GRANULARITIES = ("global", "per_tensor", "per_parameter")


def _row(granularity, beta):
  return f"hd_mult[{granularity},beta={beta:g}]"


def _programs():
  fixed = next(c for c in C.all_controllers() if c.name == "fixed")
  paper = [C.hd_paper(g) for g in GRANULARITIES]
  candidates = [C.hd_multiplicative(g, tuple(_row(g, b) for b in BETAS))
                for g in GRANULARITIES]
  return [fixed] + paper + candidates


def run(out_dir, tasks=SELECT + HELD_OUT):
  """Runs every program; returns the records (``analysis.records``)."""
  records, timings = [], []
  for name in tasks:
    steps = STEPS[name]
    task = T.FACTORIES[name](steps)
    inputs = runner.prepare(task, SEEDS, steps)
    options = {**C.schedule_multipliers(steps),
               **{_row(g, b): np.asarray([b], np.float32)
                  for g in GRANULARITIES for b in BETAS}}
    for ctrl in _programs():
      for base in (("adam",) if name in ADAM_ONLY else C.BASES):
        lrs = task.lrs(base, N_LRS)
        payloads = [options[o] for o in ctrl.options] or [None]
        start = time.perf_counter()
        prog = runner.run_program(
            task, ctrl, base, lrs, inputs, steps, N_EVALS, payloads,
            compiler_options=(None if name in ("cnn", "charlm") else
                              {"xla_backend_optimization_level": 0}))
        timings.append((name, ctrl.name, base, time.perf_counter() - start))
        print(f"{name} {ctrl.name} {base}: {timings[-1][-1]:.1f} s",
              flush=True)
        records.extend(analysis.records(
            task, ctrl, base, lrs, ctrl.options or (ctrl.name,), prog, steps,
            N_EVALS))
  return records, timings


def _noise_free(task):
  """The analytic tasks without gradient noise (not the minibatch ones)."""
  return task.endswith("/noise=0")


def tallies(records):
  """Win tables against the fixed schedules and against the paper's rule,
  on the selection and held-out tasks."""
  rows = analysis.comparisons(records)
  index = {(r["task"], r["row"], r["base"], r["lr_index"]): r
           for r in records}
  out = {}
  for split, families in (("select", SELECT), ("held_out", HELD_OUT)):
    mine = [r for r in rows if r["task"].split("/")[0] in families]
    vs_fixed = {k: {kk: v[kk] for kk in ("n", "wins", "ties", "losses",
                                         "equal_or_better")}
                for k, v in analysis.win_tables(mine).items()
                if k.startswith("hd")}
    vs_paper = {}
    for g in GRANULARITIES:
      for b in BETAS:
        outcomes = []
        for (task, row, base, li), rec in index.items():
          if (row != _row(g, b) or task.split("/")[0] not in families
              or not _noise_free(task)):
            continue
          paper = index[(task, f"hd_paper_{g}", base, li)]
          outcomes.append(analysis.compare(rec["final"], paper["final"])[0])
        vs_paper[_row(g, b)] = {o: outcomes.count(o)
                                for o in ("win", "tie", "loss")}
    out[split] = {"vs_fixed": vs_fixed, "vs_paper_noise_free": vs_paper}
  return out


def choose(tally):
  """Per granularity, the selection split's best ``beta`` (see module);
  ties go to the smaller ``beta``."""
  select = tally["select"]
  chosen = {}
  for g in GRANULARITIES:
    ok = [b for b in BETAS
          if select["vs_paper_noise_free"][_row(g, b)]["loss"] == 0]
    chosen[g] = max(ok, key=lambda b: (
        select["vs_fixed"][_row(g, b)]["equal_or_better"], -b)) if ok else None
  return chosen


def overall(tally, chosen):
  """Equal-or-better against the fixed schedules over both splits, and the
  record against the paper's rule on every noise-free task, per chosen
  row."""
  out = {}
  for g, b in chosen.items():
    if b is None:
      continue
    row = _row(g, b)
    parts = [tally[s]["vs_fixed"][row] for s in ("select", "held_out")]
    n = sum(p["n"] for p in parts)
    good = sum(p["wins"] + p["ties"] for p in parts)
    paper = {o: sum(tally[s]["vs_paper_noise_free"][row][o]
                    for s in ("select", "held_out"))
             for o in ("win", "tie", "loss")}
    out[row] = {"n": n, "equal_or_better": good / n,
                "vs_paper_noise_free": paper}
  return out


def _markdown(tally, chosen, totals):
  lines = ["# Hypergradient defaults: multiplicative beta\n",
           f"Selection tasks: {', '.join(SELECT)}; held-out: "
           f"{', '.join(HELD_OUT)}. Final held-out (evaluation) loss, mean "
           f"over seeds {SEEDS}, {N_LRS} initial rates; equal-or-better "
           "against the five fixed schedules (bench tie rule); "
           "against the paper's additive rule on the noise-free tasks "
           "(win/tie/loss).\n",
           "Rule (per granularity): the beta with the most equal-or-better"
           " comparisons on the selection tasks among those with no loss"
           " against the paper's rule on the noise-free selection task"
           " (quadratic/noise=0); ties go to the smaller beta.\n",
           f"Chosen: {chosen}\n",
           "Chosen rows over all tasks: " + "; ".join(
               f"`{k}` {v['equal_or_better']:.0%} of {v['n']} equal or "
               "better, vs paper on the noise-free tasks (W/T/L) "
               f"{v['vs_paper_noise_free']['win']}/"
               f"{v['vs_paper_noise_free']['tie']}/"
               f"{v['vs_paper_noise_free']['loss']}"
               for k, v in totals.items()) + "\n",
           "| row | select: eq-or-better vs fixed | select: vs paper "
           "(noise-free) | held-out: eq-or-better vs fixed | held-out: vs "
           "paper (noise-free) |", "|---|---|---|---|---|"]
  names = [f"hd_paper_{g}" for g in GRANULARITIES] + [
      _row(g, b) for g in GRANULARITIES for b in BETAS]
  for name in names:
    cells = []
    for split in ("select", "held_out"):
      fixed = tally[split]["vs_fixed"].get(name)
      cells.append("-" if fixed is None else
                   f"{fixed['equal_or_better']:.0%} ({fixed['wins']}/"
                   f"{fixed['ties']}/{fixed['losses']} of {fixed['n']})")
      paper = tally[split]["vs_paper_noise_free"].get(name)
      cells.append("-" if paper is None else
                   f"{paper['win']}/{paper['tie']}/{paper['loss']}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--only", nargs="*", help="run only these tasks")
  parser.add_argument("--reuse", action="store_true",
                      help="re-tally the final losses of OUT/hd_defaults.json")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "hd_defaults.json")
  if args.reuse:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    records, timings = old["finals"], old["timings"]
    for r in records:  # files written before lr_index was kept
      if "lr_index" not in r:
        lrs = sorted({x["lr"] for x in records
                      if x["task"] == r["task"] and x["base"] == r["base"]})
        r["lr_index"] = lrs.index(r["lr"])
  else:
    records, timings = run(args.out, tuple(args.only or SELECT + HELD_OUT))
  tally = tallies(records)
  chosen = choose(tally)
  totals = overall(tally, chosen)
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"tally": tally, "chosen": chosen, "overall": totals,
               "timings": timings,
               "finals": [{k: r[k] for k in ("task", "row", "base", "lr",
                                              "lr_index", "final")}
                          for r in records]}, f, indent=1)
  table = _markdown(tally, chosen, totals)
  with open(os.path.join(args.out, "hd_defaults.md"), "w",
            encoding="utf-8") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
