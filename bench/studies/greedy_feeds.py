"""Study: GreedyLR's two feeds against the fixed schedules, on held-out loss.

Issue 11, section 3: which value should GreedyLR observe on small-data
networks -- the per-step training loss (``value=loss`` every step, smoothed)
or the validation loss once per evaluation (unsmoothed) -- and with which
patience, factor and bounds, so that it is equal-or-better than the fixed
schedules on **held-out** loss while staying so on training loss.

Setup. The digits tasks of :mod:`bench.grid.tasks` (``logreg``, ``mlp``,
``cnn``) with their step budgets of the ``full`` preset. Their training split is cut
once more: the last 20% becomes a *validation* split that only the
validation feed reads; every row (fixed schedules too) trains on the
remaining 80%, and every comparison uses the task's own held-out split,
which no row ever sees during training. Every run is the benchmark's loop
(:mod:`bench.core.loop`) with an evaluation on the validation split after
every ``steps / n_evals`` updates; the validation feed observes each on the
step after it (the loop's ``"val"`` feed).

Each (task, base optimizer) runs three compiled programs: the five fixed
schedules of :data:`bench.core.registry.FIXED_SCHEDULES`, GreedyLR on the
training feed (the registry's ``greedy``) and on the validation feed
(``greedy_val``), each vmapped over its
configurations (every GreedyLR setting below is a traced hyperparameter),
the task's three initial rates and the seeds. A comparison is one
(task, base, initial rate, fixed schedule) against one GreedyLR
configuration at the same initial rate, seed means, with the benchmark's
verdict (:func:`bench.core.verdict.compare`); ``equal_or_better`` is
(wins + ties) / comparisons, on the held-out loss and, separately, on the
final training loss (the whole training split, deterministic).

The recipe is *chosen* on the selection tasks (``--select``, default
``logreg``) and *reported* on the others (``--report``, default ``mlp`` and
``cnn``): the chosen configuration is the one with the highest held-out rate
among those whose training-loss rate is >= 90% on the selection tasks.

    python -m bench greedy-feeds                     # ~1.5 min on 2 cores
    python -m bench greedy-feeds --steps-scale 2 \
        --out bench/results/greedy_feeds/steps_x2
    python -m bench greedy-feeds --select logreg --report logreg \
        --bases sgd --steps-scale 0.05 --seeds 0 --out /tmp/gf   # smoke
"""

import dataclasses
import itertools
import pathlib
import time

import jax
import numpy as np

from bench.core import loop as L
from bench.core import output as O
from bench.core import registry as R
from bench.core import verdict as V
from bench.grid import programs as P
from bench.grid import tasks as T

STEPS = {"logreg": 400, "mlp": 300, "cnn": 160}
BASES = {"logreg": R.BASES, "mlp": R.BASES, "cnn": ("adam",)}
N_EVALS = 20
VALIDATION_FRACTION = 0.2
TARGET = 0.9

# GreedyLR configurations, all traced: (patience, factor, max_lr / lr); the
# lower bound is learning_rate / 100 throughout.
TRAIN_CONFIGS = [(p, 0.95, m) for p in (20, 10, 5) for m in (10.0, 1.0)]
VAL_CONFIGS = [(p, f, m) for p in (0, 1, 2) for f in (0.9, 0.7, 0.5)
               for m in (10.0, 1.0)]
FEEDS = {"train": TRAIN_CONFIGS, "val": VAL_CONFIGS}


def config_name(feed, config):
  patience, factor, ratio = config
  upper = "lr" if ratio == 1 else f"{ratio:g}lr"
  return (f"{feed}(patience={patience:g},factor={factor:g},"
          f"max_lr={upper})")


DEFAULTS = {"train": config_name("train", (20, 0.95, 10.0))}


@dataclasses.dataclass(frozen=True)
class SplitTask:
  """A digits task whose training split also gives a validation split."""

  task: T.Task
  data: dict
  n_train: int
  batch_shape: tuple

  def stream(self, rng, steps):
    return rng.integers(0, self.n_train, (steps,) + self.batch_shape,
                        dtype=np.int32)

  def loss_on(self, params, data, split):
    """The task's deterministic loss on ``split`` (train, val or eval)."""
    swapped = {**data, "x_eval": data[f"x_{split}"],
               "y_eval": data[f"y_{split}"]}
    return self.task.eval_loss(params, swapped, 0.0)


def split_task(task):
  data = dict(task.data)
  n = len(data["y_train"])
  n_val = int(VALIDATION_FRACTION * n)
  for key in ("x", "y"):
    whole = data[f"{key}_train"]
    data[f"{key}_train"], data[f"{key}_val"] = whole[:-n_val], whole[-n_val:]
  batch_shape = task.stream(np.random.default_rng(0), 1).shape[1:]
  return SplitTask(task, data, n - n_val, batch_shape)


ENTRIES = {"fixed": "fixed", "train": "greedy", "val": "greedy_val"}


def options(feed, configs):
  """The registry options of ``configs``: fixed-schedule multipliers, or
  GreedyLR's (patience, factor, max_lr / lr) with ``min_lr = lr / 100``."""
  if feed == "fixed":
    return [{"multiplier": m} for m in configs]
  return [{"patience": np.float32(p), "factor": np.float32(f),
           "min_lr": np.float32(0.01), "max_lr": np.float32(m)}
          for p, f, m in configs]


def single_run(split, base, feed, steps, every):
  """``run(data, rate, params, stream, options) -> (held-out, train)``
  final losses of one run of the registry entry for ``feed``."""
  task = split.task
  ctrl = R.get(ENTRIES[feed])
  context = R.Context(steps_per_eval=every)
  problem = L.Problem(
      train_loss=lambda p, d, s: task.train_loss(p, d, s, 0.0),
      evaluate=lambda p, d: (split.loss_on(p, d, "val"), ()))

  def run(data, rate, params, stream, opts):
    tx = ctrl.build(base, rate, steps, context, **opts)
    out = L.loop(problem, tx, ctrl.feed, every).run(data, params, stream)
    params = out.carry.params
    return (split.loss_on(params, data, "eval"),
            split.loss_on(params, data, "train"))

  return run


def run_program(split, base, feed, configs, lrs, seeds, steps):
  """Final (held-out, training) losses shaped [config, lr, seed]."""
  params0, _ = P.prepare(split.task, seeds, steps)
  stream = np.stack([split.stream(np.random.default_rng(s), steps)
                     for s in seeds])
  grid = list(itertools.product(range(len(configs)), range(len(lrs)),
                                range(len(seeds))))
  c, l, s = (np.asarray(x) for x in zip(*grid))
  opts = options(feed, configs)
  stacked = {k: np.stack([o[k] for o in opts])[c] for k in opts[0]}
  fn = jax.jit(jax.vmap(
      single_run(split, base, feed, steps, steps // N_EVALS),
      in_axes=(None, 0, 0, 0, 0)))
  start = time.perf_counter()
  held_out, train = jax.block_until_ready(fn(
      split.data, np.asarray(lrs, np.float32)[l],
      jax.tree.map(lambda x: x[s], params0), stream[s], stacked))
  shape = (len(configs), len(lrs), len(seeds))
  return (np.asarray(held_out).reshape(shape),
          np.asarray(train).reshape(shape), time.perf_counter() - start)


def _row(name, feed, task, base, lr, schedule, mine, theirs):
  """One comparison; ``mine``/``theirs`` are (held-out, train) per seed."""
  row = {"config": name, "feed": feed, "task": task, "base": base,
         "lr": lr, "schedule": schedule}
  for k, kind in enumerate(("held_out", "train")):
    row[kind] = V.compare(list(mine[k]), list(theirs[k]))[0]
    row[f"{kind}_greedy"] = float(np.mean(mine[k]))
    row[f"{kind}_schedule"] = float(np.mean(theirs[k]))
  return row


def comparisons(results, task, base, lrs, names):
  """Every GreedyLR configuration against every fixed schedule, at each
  initial rate (the benchmark's per-configuration view)."""
  rows = []
  held, train = results[(task, base, "fixed")]
  for feed in FEEDS:
    mine_held, mine_train = results[(task, base, feed)]
    for ci, name in enumerate(names[feed]):
      for li, lr in enumerate(lrs):
        for si, schedule in enumerate(R.FIXED_SCHEDULES):
          rows.append(_row(
              name, feed, task, base, lr, schedule,
              (mine_held[ci, li], mine_train[ci, li]),
              (held[si, li], train[si, li])))
  return rows


def tuned_comparisons(results, task, base, names):
  """Best-of-grid: each configuration and each schedule at its own best
  initial rate (lowest mean held-out loss), as the grid's tuned
  view: no credit for repairing a badly chosen initial rate."""
  def best(held, train, i):
    li = int(np.argmin(held[i].mean(-1)))
    return held[i, li], train[i, li]

  rows = []
  fixed = results[(task, base, "fixed")]
  for feed in FEEDS:
    mine = results[(task, base, feed)]
    for ci, name in enumerate(names[feed]):
      for si, schedule in enumerate(R.FIXED_SCHEDULES):
        rows.append(_row(name, feed, task, base, None, schedule,
                         best(*mine, ci), best(*fixed, si)))
  return rows


def tally(rows):
  """:func:`bench.core.verdict.tally` of ``rows`` on held-out and on
  training loss."""
  return {"n": len(rows), "held_out": V.tally(rows, key="held_out"),
          "train": V.tally(rows, key="train")}


def choose(views, tasks):
  """The configuration whose worse held-out rate over the two views (per
  initial rate, best-of-grid) on ``tasks`` is highest, among those whose
  training-loss rate is >= TARGET in both; ties go to the higher worse
  training-loss rate, then to the earlier configuration."""
  scores = {}
  names = dict.fromkeys(r["config"] for r in views["per_rate"])
  for order, name in enumerate(names):
    tallies = [tally([r for r in rows if r["config"] == name
                      and r["task"] in tasks]) for rows in views.values()]
    held = min(t["held_out"]["equal_or_better"] for t in tallies)
    train = min(t["train"]["equal_or_better"] for t in tallies)
    scores[name] = (train >= TARGET, held, train, -order)
  return max(scores, key=scores.get)


VIEWS = {"per_rate": "per initial rate", "tuned": "best-of-grid"}


def _table(lines, tables, chosen):
  lines += ["| configuration | view | n | held-out W/T/L | held-out "
            "eq-or-better | train W/T/L | train eq-or-better |",
            "|---|---|---|---|---|---|---|"]
  for name in tables["per_rate"]:
    for view, label in VIEWS.items():
      t = tables[view][name]
      h, tr = t["held_out"], t["train"]
      mark = " **(chosen)**" if name == chosen else ""
      lines.append(
          f"| `{name}`{mark} | {label} | {t['n']} | {h['wins']}/{h['ties']}/"
          f"{h['losses']} | {h['equal_or_better']:.0%} | {tr['wins']}/"
          f"{tr['ties']}/{tr['losses']} | {tr['equal_or_better']:.0%} |")
  lines.append("")


def markdown(summary):
  lines = [
      "# GreedyLR feeds vs fixed schedules (held-out and training loss)",
      "",
      f"Command: `{summary['command']}`. Machine: {summary['machine']}. "
      f"Seeds {summary['seeds']}; steps {summary['steps']}; "
      f"{summary['n_evals']} evaluations per run (the validation feed "
      f"observes each); {summary['seconds']:.0f} s.",
      "",
      "Every row trains on 80% of the task's training split; the validation "
      "feed reads the other 20%; **held-out** is the loss on the task's "
      "held-out split, which no row sees during training; **train** is the "
      "final loss on the training split. Equal-or-better = (wins + ties) / "
      "comparisons against the five fixed schedules (constant, cosine, "
      f"linear, step, warmup-cosine), seed means; {V.RULE}. Two views: "
      "*per initial rate* (same rate for both, "
      "each of the task's three rates) and *best-of-grid* (each at its own "
      "best initial rate by held-out loss).",
      "",
      f"Recipe chosen on **{', '.join(summary['select'])}** (selection "
      f"tasks; highest held-out rate in the worse view, training-loss rate "
      f">= {TARGET:.0%} in both): `{summary['chosen']}`.",
      "",
      f"## Report tasks (not used to choose): {', '.join(summary['report'])}",
      "",
  ]
  _table(lines, summary["report_tables"], summary["chosen"])
  lines += [f"## Selection tasks: {', '.join(summary['select'])}", ""]
  _table(lines, summary["select_tables"], summary["chosen"])
  lines += ["## Chosen recipe and the training-feed defaults per report task"
            " and base (held-out / train equal-or-better)", "",
            "| configuration | task | base | per initial rate | best-of-grid |",
            "|---|---|---|---|---|"]
  for row in summary["report_breakdown"]:
    cells = " | ".join(f"{row[v]['held_out']:.0%} / {row[v]['train']:.0%}"
                       for v in VIEWS)
    lines.append(f"| `{row['config']}` | {row['task']} | {row['base']} | "
                 f"{cells} |")
  lines += ["", "## Where the chosen recipe loses on held-out loss (report "
            "tasks)", "",
            "| view | task | base | lr | schedule | GreedyLR | schedule |",
            "|---|---|---|---|---|---|---|"]
  for view, rows in summary["chosen_losses"].items():
    for row in rows:
      lr = "best" if row["lr"] is None else f"{row['lr']:.3g}"
      lines.append(f"| {VIEWS[view]} | {row['task']} | {row['base']} | {lr} |"
                   f" {row['schedule']} | {row['held_out_greedy']:.4f} | "
                   f"{row['held_out_schedule']:.4f} |")
  return "\n".join(lines) + "\n"


def study(out_dir, select=("logreg",), report=("mlp", "cnn"),
          seeds=(0, 1, 2), bases=R.BASES, steps_scale=1.0, command=""):
  """Runs the study; writes ``greedy_feeds.json`` and ``greedy_feeds.md``.

  Args:
    out_dir: output folder (created).
    select: tasks the recipe is chosen on.
    report: held-out tasks the recipe is reported on.
    seeds: seeds (initialisation and minibatches).
    bases: base optimizers (cnn runs on adam only).
    steps_scale: multiplies every task's step budget (smoke runs).
    command: the command line, for the report.

  Returns:
    The summary written to ``greedy_feeds.json``.
  """
  select, report, seeds = list(select), list(report), list(seeds)

  start = time.perf_counter()
  names = {feed: [config_name(feed, c) for c in configs]
           for feed, configs in FEEDS.items()}
  results, steps_used = {}, {}
  views = {"per_rate": [], "tuned": []}
  runs = []
  for task_name in dict.fromkeys(select + report):
    steps = max(N_EVALS, int(STEPS[task_name] * steps_scale))
    steps -= steps % N_EVALS
    steps_used[task_name] = steps
    task = T.FACTORIES[task_name](steps)
    split = split_task(task)
    payloads = R.schedule_multipliers(steps)
    fixed = [payloads[name] for name in R.FIXED_SCHEDULES]
    for base in [b for b in BASES[task_name] if b in bases]:
      lrs = task.lrs(base, 3)
      for feed, configs in (("fixed", fixed), *FEEDS.items()):
        held, train, seconds = run_program(split, base, feed, configs, lrs,
                                           seeds, steps)
        results[(task_name, base, feed)] = (held, train)
        labels = R.FIXED_SCHEDULES if feed == "fixed" else names[feed]
        runs += [{"task": task_name, "base": base, "config": label,
                  "lr": lr, "held_out": held[ci, li].tolist(),
                  "train": train[ci, li].tolist()}
                 for ci, label in enumerate(labels)
                 for li, lr in enumerate(lrs)]
        print(f"{task_name:7s} {base:8s} {feed:5s} {seconds:6.1f} s",
              flush=True)
      views["per_rate"] += comparisons(results, task_name, base, lrs, names)
      views["tuned"] += tuned_comparisons(results, task_name, base, names)

  chosen = choose(views, select)
  tables = {}
  for key, tasks in (("select_tables", select),
                     ("report_tables", report)):
    tables[key] = {view: {name: tally([r for r in rows if r["config"] == name
                                       and r["task"] in tasks])
                          for name in names["train"] + names["val"]}
                   for view, rows in views.items()}
  breakdown = []
  for name in dict.fromkeys([chosen, DEFAULTS["train"]]):
    for task_name in report:
      for base in [b for b in BASES[task_name] if b in bases]:
        row = {"config": name, "task": task_name, "base": base}
        for view, rows in views.items():
          t = tally([r for r in rows if r["config"] == name
                     and r["task"] == task_name and r["base"] == base])
          row[view] = {"held_out": t["held_out"]["equal_or_better"],
                       "train": t["train"]["equal_or_better"]}
        breakdown.append(row)
  summary = {
      "command": command or "python -m bench greedy-feeds",
      "machine": O.machine_line(),
      "seeds": seeds, "steps": steps_used, "n_evals": N_EVALS,
      "select": select, "report": report, "chosen": chosen,
      **tables, "report_breakdown": breakdown,
      "chosen_losses": {view: [r for r in rows if r["config"] == chosen
                               and r["task"] in report
                               and r["held_out"] == "loss"]
                        for view, rows in views.items()},
      "seconds": time.perf_counter() - start,
      "runs": runs,
  }
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  O.write_json(out / "greedy_feeds.json", summary)
  (out / "greedy_feeds.md").write_text(markdown(summary))
  print(markdown(summary))
  return summary
