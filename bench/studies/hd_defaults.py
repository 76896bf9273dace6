"""Study: chooses hypergradient descent's default ``hypergrad_lr`` on some
tasks of the grid and reports it on the others.

``python -m bench hd-defaults --out bench/results/hd`` runs, with the quick
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

import json
import os
import time

import numpy as np

from bench.core import output as O
from bench.core import registry as R
from bench.core import verdict as V
from bench.grid import analysis
from bench.grid import programs as P
from bench.grid import run as G
from bench.grid import tasks as T

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


def _programs(steps):
  """``(entry, variants)`` pairs: the fixed schedules, the paper's rule per
  granularity, and the multiplicative rule per granularity with every beta
  of :data:`BETAS` as one program's variants."""
  fixed = R.get("fixed")
  out = [(fixed, fixed.variants(steps))]
  out += [(R.get(f"hd_paper_{g}"), None) for g in GRANULARITIES]
  out += [(R.get(f"hd_{g}"), {_row(g, b): {"beta": np.float32(b)}
                              for b in BETAS}) for g in GRANULARITIES]
  return out


def run(tasks=SELECT + HELD_OUT):
  """Runs every program; returns the records (``analysis.records``) and
  the seconds per program."""
  records, timings = [], []
  for name in tasks:
    steps = STEPS[name]
    task = T.FACTORIES[name](steps)
    inputs = P.prepare(task, SEEDS, steps)
    for ctrl, variants in _programs(steps):
      for base in (("adam",) if name in ADAM_ONLY else R.BASES):
        lrs = task.lrs(base, N_LRS)
        start = time.perf_counter()
        prog = P.run_program(
            task, ctrl, base, lrs, inputs, steps, N_EVALS, variants,
            compiler_options=(None if name in G.HEAVY_TASKS else
                              G.FAST_COMPILE))
        timings.append((name, ctrl.name, base, time.perf_counter() - start))
        print(f"{name} {ctrl.name} {base}: {timings[-1][-1]:.1f} s",
              flush=True)
        rows = (ctrl.name,) if variants is None else tuple(variants)
        records.extend(analysis.records(task, ctrl, base, lrs, rows, prog,
                                        steps, N_EVALS))
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
          outcomes.append(V.compare(rec["final"], paper["final"])[0])
        vs_paper[_row(g, b)] = {o: outcomes.count(o)
                                for o in V.OUTCOMES}
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
             for o in V.OUTCOMES}
    out[row] = {"n": n, "equal_or_better": good / n,
                "vs_paper_noise_free": paper}
  return out


def _markdown(tally, chosen, totals):
  lines = ["# Hypergradient defaults: multiplicative beta\n",
           f"Selection tasks: {', '.join(SELECT)}; held-out: "
           f"{', '.join(HELD_OUT)}. Final held-out (evaluation) loss, mean "
           f"over seeds {SEEDS}, {N_LRS} initial rates; equal-or-better "
           f"against the five fixed schedules ({V.RULE}); "
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


def study(out_dir, only=None, reuse=False):
  """Runs the study (or, with ``reuse``, re-tallies the final losses in
  ``out_dir/hd_defaults.json``); writes ``hd_defaults.json`` and
  ``hd_defaults.md``; returns the chosen beta per granularity."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "hd_defaults.json")
  if reuse:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    records, timings = old["finals"], old["timings"]
  else:
    records, timings = run(tuple(only or SELECT + HELD_OUT))
  tally = tallies(records)
  chosen = choose(tally)
  totals = overall(tally, chosen)
  O.write_json(path, {"tally": tally, "chosen": chosen, "overall": totals,
                      "timings": timings,
                      "finals": [{k: r[k] for k in ("task", "row", "base",
                                                     "lr", "lr_index",
                                                     "final")}
                                 for r in records]}, indent=1)
  table = _markdown(tally, chosen, totals)
  with open(os.path.join(out_dir, "hd_defaults.md"), "w",
            encoding="utf-8") as f:
    f.write(table)
  print(table)
  return chosen
