"""Study: the learned deep-network schedule on held-out networks.

``load_policy("dnn")`` was trained (``examples/train_dnn_policy.py``) on
the families its file names (``optax_greedy.policy.policy_config``: the
first policy on MLPs and small CNNs over digits, iris, wine and
teacher-student data; the second on MLPs without digits, CNNs on
teacher-labelled images and tiny transformer language models on the
standard library's package sources). It is evaluated here on what neither
saw:

* ``char_mlp``: a next-character MLP on Python standard-library docstrings;
* ``attention``: a tiny single-head attention block on the same text;
* ``mlp_breast_cancer``: MLPs (width up to 64, wider than in training) on
  scikit-learn's breast-cancer data.

Each problem runs with Adam (``optax.scale_by_adam``) and with SGD momentum
0.9 (``optax.trace``), at two peak rates per direction (Adam 1e-3, 1e-2;
momentum 1e-2, 1e-1), for ``--seeds`` seeds (rows used, label noise,
initialisation and minibatches), batch 32 and a budget of 200 steps. Methods (:data:`ROWS`), all registry
entries (:mod:`bench.core.registry`) on the same initialisation and
minibatches, each run by the environment's own episode
(:func:`optax_greedy_lab.dnn_problems.run_episode`, the loop the
policy was trained in):

* ``learned``: the direction, then ``learned_schedule(policy, peak,
  total_steps=200)`` -- with the step budget's default envelope (ramp over
  the first 5%, linear decay to zero over the last 20%; ``--envelope on``,
  the default, what a user gets) or without it (``--envelope off``: the
  policy alone, ``envelope=optax_greedy.NO_ENVELOPE``);
* ``cosine``: the fixed cosine schedule from the peak to 0;
* ``warmup_cosine``: the fixed warmup-cosine schedule (warmup 5% of the
  budget);
* ``greedy``: GreedyLR with its defaults on the direction.

Reported (held-out loss first): win/tie/loss of ``learned`` against each
method on the final validation (held-out) loss and on the final training
loss (full training set), by the benchmark's verdict on one run each
(:mod:`bench.core.verdict`: tie within 1%); the fraction of problems where
``learned`` is equal or better than both cosine and warmup-cosine; the
median number of steps each method needs to reach cosine's final training
loss (checked every 10 steps; runs that never reach it count as the
budget + 10). The same table for fresh problems of the policy's training
families is shown separately, as in-distribution.

    python -m bench dnn-policy [--seeds 5] [--envelope on|off]
        [--out bench/results/dnn_policy]
"""

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import optax_greedy
from bench.core import output as O
from bench.core import registry as R
from bench.core import verdict as V
from optax_greedy import policy as policy_lib
from optax_greedy_lab import dnn_problems

BUDGET = 200
CHECKPOINTS = 20
BATCH = 32
PEAKS = {"adam": (1e-3, 1e-2), "momentum": (1e-2, 1e-1)}
# Row -> (registry entry, its variant or None).
ROWS = {"learned": ("learned_budget", None), "cosine": ("fixed", "cosine"),
        "warmup_cosine": ("fixed", "warmup_cosine"),
        "greedy": ("greedy", None)}
METHODS = tuple(ROWS)
BASELINES = METHODS[1:]
#: The registry entry of the ``learned`` row: with the step budget's
#: default envelope ("on") or the policy alone ("off").
LEARNED_ENTRY = {"on": "learned_budget", "off": "learned"}


def optimizer(row, base, policy, envelope="on"):
  """``problem -> transform``: the registry entry of ``row`` on ``base``'s
  direction from the problem's peak rate (``policy`` for ``learned``, with
  the envelope or not)."""
  name, variant = ROWS[row]
  if row == "learned":
    name = LEARNED_ENTRY[envelope]
  ctrl = R.get(name)
  options = {} if variant is None else ctrl.variants(BUDGET)[variant]
  if row == "learned":
    options = {"policy": policy}
  context = R.Context(steps_per_eval=BUDGET // CHECKPOINTS)
  return lambda problem: ctrl.build(base, problem.peak, BUDGET, context,
                                    **options)


def problems_of(family, seeds, directions=tuple(PEAKS)):
  """The grid of problems: direction x peak x seed, stacked."""
  config = dnn_problems.EnvConfig(max_steps=BUDGET, min_budget=BUDGET,
                                  max_batch=BATCH)
  grid = []
  for direction in directions:
    for peak in PEAKS[direction]:
      for seed in range(seeds):
        grid.append((direction, peak, seed))
  keys = jnp.stack([jax.random.key_data(jax.random.fold_in(
      jax.random.key(20_000), s)) for _, _, s in grid])
  problems = jax.vmap(lambda k: family.sample(
      jax.random.wrap_key_data(k), config))(keys)
  problems = problems._replace(
      adam=jnp.asarray([d == "adam" for d, _, _ in grid]),
      peak=jnp.asarray([p for _, p, _ in grid], jnp.float32),
      batch_size=jnp.full([len(grid)], BATCH),
      budget=jnp.full([len(grid)], BUDGET),
      init_scale=jnp.ones([len(grid)]))
  return grid, problems, keys


def run_family(family, policy, seeds, directions=tuple(PEAKS),
               envelope="on"):
  """All methods on all problems of one family: ``{method: arrays}`` in
  the order of the grid (one compiled program per direction)."""
  grid, problems, keys = problems_of(family, seeds, directions)

  def run(base, problems, keys):
    out = {}
    for row in METHODS:
      make = optimizer(row, base, policy, envelope)
      out[row] = jax.vmap(lambda p, k, o=make: dnn_problems.run_episode(
          family, p, o, jax.random.wrap_key_data(k), max_steps=BUDGET,
          max_batch=BATCH, checkpoints=CHECKPOINTS))(problems, keys)
    return out

  parts = []
  for base in directions:  # the grid is direction-major
    idx = np.asarray([i for i, (d, _, _) in enumerate(grid) if d == base])
    parts.append(jax.jit(run, static_argnums=0)(
        base, jax.tree.map(lambda x, i=idx: x[i], problems), keys[idx]))
  out = jax.tree.map(lambda *x: np.concatenate(x), *parts)
  return grid, out


def _wtl(learned, other):
  """Win, tie and loss masks of ``learned`` against ``other``, problem by
  problem (the benchmark's verdict on one run each)."""
  outcomes = np.asarray([V.compare([a], [b])[0]
                         for a, b in zip(learned, other)])
  return tuple(outcomes == o for o in V.OUTCOMES)


def _steps_to(train_curves, target):
  """Per problem, the first checkpoint step at which the training loss is
  at or below ``target`` (:func:`bench.core.verdict.steps_to_target`);
  ``BUDGET + BUDGET // CHECKPOINTS`` where never."""
  every = BUDGET // CHECKPOINTS
  steps = (np.arange(CHECKPOINTS) + 1) * every
  first = [V.steps_to_target(c, steps, t) for c, t in zip(train_curves,
                                                         target)]
  return np.asarray([BUDGET + every if f is None else f for f in first])


def summarise(grid, out):
  """Per-problem records and win/tie/loss counts for one family."""
  records = []
  final = {m: {"val": out[m]["val"][:, -1], "train": out[m]["train"][:, -1]}
           for m in METHODS}
  target = final["cosine"]["train"]
  steps = {m: _steps_to(out[m]["train"], target) for m in METHODS}
  for i, (direction, peak, seed) in enumerate(grid):
    records.append({
        "direction": direction, "peak": peak, "seed": seed,
        **{f"{m}_{s}": float(final[m][s][i]) for m in METHODS
           for s in ("val", "train")},
        **{f"{m}_steps_to_cosine_train": int(steps[m][i]) for m in METHODS},
    })
  counts = {}
  for split in ("val", "train"):
    for b in BASELINES:
      w, t, l = _wtl(final["learned"][split], final[b][split])
      counts[f"{split}_vs_{b}"] = [int(w.sum()), int(t.sum()), int(l.sum())]
    both = np.ones(len(grid), bool)
    for b in ("cosine", "warmup_cosine"):
      _, _, l = _wtl(final["learned"][split], final[b][split])
      both &= ~l
    counts[f"{split}_equal_or_better_both"] = [int(both.sum()), len(grid)]
  counts["median_steps_to_cosine_train"] = {
      m: float(np.median(steps[m])) for m in METHODS}
  return records, counts


def _table(title, summary):
  lines = [f"### {title}", "",
           "| family | loss | vs cosine W/T/L | vs warmup-cosine W/T/L |"
           " vs greedy W/T/L | equal-or-better than both cosines |",
           "|---|---|---|---|---|---|"]
  totals = {}
  for family, counts in summary.items():
    for split, label in (("val", "held-out (validation)"),
                         ("train", "training")):
      cells = []
      for b in BASELINES:
        w, t, l = counts[f"{split}_vs_{b}"]
        cells.append(f"{w}/{t}/{l}")
        acc = totals.setdefault((split, b), [0, 0, 0])
        for j, v in enumerate((w, t, l)):
          acc[j] += v
      ok, n = counts[f"{split}_equal_or_better_both"]
      acc = totals.setdefault((split, "both"), [0, 0])
      acc[0] += ok
      acc[1] += n
      lines.append(f"| {family} | {label} | " + " | ".join(cells)
                   + f" | {ok}/{n} ({100 * ok / n:.0f}%) |")
  for split, label in (("val", "held-out (validation)"), ("train", "training")):
    cells = ["/".join(map(str, totals[(split, b)])) for b in BASELINES]
    ok, n = totals[(split, "both")]
    lines.append(f"| **all** | {label} | " + " | ".join(cells)
                 + f" | **{ok}/{n} ({100 * ok / n:.0f}%)** |")
  lines += ["", "Median steps to reach cosine's final training loss"
            f" (budget {BUDGET}; {BUDGET + BUDGET // CHECKPOINTS} = never):",
            "", "| family | " + " | ".join(METHODS) + " |",
            "|---|" + "---|" * len(METHODS)]
  for family, counts in summary.items():
    med = counts["median_steps_to_cosine_train"]
    lines.append(f"| {family} | " + " | ".join(f"{med[m]:.0f}"
                                               for m in METHODS) + " |")
  return lines


def _breakdown(records_by_family):
  """Where it wins and loses: vs cosine per family, direction and peak."""
  lines = ["| family | direction | peak | held-out loss vs cosine W/T/L |"
           " training loss vs cosine W/T/L | held-out vs warmup-cosine W/T/L |",
           "|---|---|---|---|---|---|"]
  for family, records in records_by_family.items():
    cells = {}
    for r in records:
      cells.setdefault((r["direction"], r["peak"]), []).append(r)
    for (direction, peak), rs in cells.items():
      row = [family, direction, f"{peak:g}"]
      for split, other in (("val", "cosine"), ("train", "cosine"),
                           ("val", "warmup_cosine")):
        w, t, l = _wtl(np.asarray([r[f"learned_{split}"] for r in rs]),
                       np.asarray([r[f"{other}_{split}"] for r in rs]))
        row.append(f"{w.sum()}/{t.sum()}/{l.sum()}")
      lines.append("| " + " | ".join(row) + " |")
  return lines


def write_report(out_dir, report):
  """Writes ``dnn_policy.md`` from the json's content."""
  summaries, results = report["summary"], report["problems"]
  lines = ["# Learned deep-network schedule on held-out networks", "",
           f"`python -m bench dnn-policy --seeds {report['seeds']}"
           f" --envelope {report.get('envelope', 'off')}`"
           f" ({report['seconds']:.0f} s; {report['machine']})."
           f" Win/tie/loss of the learned schedule, one run each"
           f" ({report['tie']}); held-out loss = the loss on validation"
           " rows never trained on; training loss = on the full training"
           " rows.", "",
           "Learned row: " + (
               "`learned_schedule(policy, peak, total_steps=200)` with the"
               " step budget's default envelope (ramp over the first 5%,"
               " linear decay to zero over the last 20%)."
               if report.get("envelope", "off") == "on" else
               "the policy alone (`envelope=optax_greedy.NO_ENVELOPE`)."),
           ""]
  lines += _table("Held-out families (never seen in training)",
                  summaries["held_out"])
  lines += ["", "#### Held-out families by direction and peak rate", ""]
  lines += _breakdown(results["held_out"])
  if summaries["in_distribution"]:
    lines += [""] + _table("Training families, fresh problems"
                           " (in-distribution, not the headline)",
                           summaries["in_distribution"])
  (pathlib.Path(out_dir) / "dnn_policy.md").write_text("\n".join(lines)
                                                       + "\n")
  return lines


def _figure(path, examples):
  plt = O.pyplot()
  fig, axes = plt.subplots(2, len(examples), figsize=(4.2 * len(examples), 7),
                           squeeze=False)
  steps = np.arange(BUDGET)
  checks = (np.arange(CHECKPOINTS) + 1) * (BUDGET // CHECKPOINTS)
  unit = R.schedule_multipliers(BUDGET, ("cosine", "warmup_cosine"))
  for j, (title, peak, out, i) in enumerate(examples):
    ax = axes[0, j]
    ax.plot(steps, out["learned"]["rates"][i], label="learned", lw=2)
    ax.plot(steps, peak * unit["cosine"], label="cosine", ls="--")
    ax.plot(steps, peak * unit["warmup_cosine"], label="warmup-cosine",
            ls=":")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=8)
    ax = axes[1, j]
    for m, style in (("learned", "-"), ("cosine", "--"),
                     ("warmup_cosine", ":"), ("greedy", "-.")):
      line, = ax.plot(checks, out[m]["val"][i], style,
                      label=f"{m} held-out")
      ax.plot(checks, out[m]["train"][i], style, color=line.get_color(),
              alpha=0.4, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (bold: held-out, faint: training)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def study(out_dir, seeds=5, policy="dnn", families=None,
          directions=tuple(PEAKS), in_distribution=True, report_only=False,
          envelope="on"):
  """Runs the study; writes ``dnn_policy.json``, ``.md`` and ``.png``.

  Args:
    out_dir: output folder (created).
    seeds: seeds per (direction, peak) cell.
    policy: the policy's name or ``.npz`` path.
    families: names of the families to run (``None``: every one).
    directions: the base directions (keys of :data:`PEAKS`).
    in_distribution: also run fresh problems of the training families.
    report_only: rewrite the ``.md`` from the ``.json`` in ``out_dir``.
    envelope: ``"on"`` (the learned row inside the step budget's default
      envelope) or ``"off"`` (the policy alone).

  Returns:
    The per-family counts.
  """
  out = pathlib.Path(out_dir)
  if report_only:
    report = json.loads((out / "dnn_policy.json").read_text())
    print("\n".join(write_report(out, report)))
    return report["summary"]
  loaded = optax_greedy.load_policy(policy)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  results = {"held_out": {}, "in_distribution": {}}
  summaries = {"held_out": {}, "in_distribution": {}}
  examples = []
  groups = [("held_out", dnn_problems.held_out_families())]
  trained_on = policy_lib.policy_config(policy).get("env", {}).get(
      "families", ["mlp", "cnn"])
  if in_distribution:
    groups.append(("in_distribution",
                   dnn_problems.training_families(tuple(trained_on))))
  for group, members in groups:
    for family in members:
      if families is not None and family.name not in families:
        continue
      t0 = time.perf_counter()
      grid, runs = run_family(family, loaded, seeds, tuple(directions),
                              envelope)
      records, counts = summarise(grid, runs)
      results[group][family.name] = records
      summaries[group][family.name] = counts
      print(f"{group}/{family.name}: {time.perf_counter() - t0:.0f}s"
            f" {counts}", flush=True)
      if group == "held_out":
        i = next(k for k, (d, p, s) in enumerate(grid)
                 if p == PEAKS[d][-1] and s == 0)
        examples.append((f"{family.name}, {grid[i][0]}, peak "
                         f"{grid[i][1]:g}", grid[i][1], runs, i))
  report = {"summary": summaries, "problems": results,
            "seconds": time.perf_counter() - start, "seeds": seeds,
            "budget": BUDGET, "tie": V.RULE, "policy": str(policy),
            "envelope": envelope,
            "machine": O.machine_line()}
  O.write_json(out / "dnn_policy.json", report, indent=1)
  lines = write_report(out, report)
  if examples:
    _figure(out / "dnn_policy.png", examples)
  print("\n".join(lines))
  return summaries
