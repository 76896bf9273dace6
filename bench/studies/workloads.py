"""Study: the realistic tier, every controller on workloads that train for
thousands of steps, against a tuned warmup-cosine Adam.

``python -m bench workloads --out DIR`` trains the workloads of
:mod:`bench.workloads` (:data:`WORKLOADS`; each module's docstring says
what it is): ``lm``, a byte-level transformer LM on the standard library's
source (sizes :data:`LM_SIZES`, ``--size``), ``mnist1d``, a 1-D CNN on
MNIST-1D, and ``cnn``, the saturated digits CNN kept as the smoke workload.

Every run of a workload sees the same initial parameters and minibatch
stream for a given seed (paired comparisons), and is the benchmark's loop
(:mod:`bench.core.loop`). Rows (:func:`rows`), all on the Adam direction:

* ``cosine@peak``: the registry's ``fixed`` entry with the
  ``warmup_cosine`` schedule (warmup 5% of the steps) for each peak of the
  grid (:attr:`bench.core.workload.Workload.peaks`, extended by
  :data:`GRID_STEP` while its best point is at an edge); the baseline is
  the peak with the lowest final *validation* loss on the first seed
  (tuned, best of grid); every other row starts from that same peak rate
  or, in the sweep, from multiples of it;
* every registry entry whose scope includes the workloads
  (:data:`bench.core.registry.WORKLOADS`), with the settings it has in
  every table: ``greedy`` (training loss every step), ``greedy_val`` (the
  validation loss once per evaluation), ``hd_global``, ``learned``
  (``load_policy("dnn")``, budget = the steps), ``reduce_on_plateau``,
  ``schedule_free`` (evaluated at ``schedule_free_eval_params``),
  ``prodigy``.

Reported per row (mean over seeds): final test loss and accuracy (the test
split is never seen in training or tuning), final validation loss, the
accuracy change and the **negative flip rate** against the tuned baseline
(the share of test examples, or test next-byte predictions, that the
baseline's model of the same seed gets right and this row's model gets
wrong), **steps and seconds to the target** (the tuned baseline's final mean
test loss, :func:`bench.core.verdict.steps_to_target` on the seed-mean test
loss; seconds are training time without evaluations, AlgoPerf-style) and
wall-clock seconds per training step.

Runs go one by one (each block of steps a compiled call, timed), or, with
``vmap=True`` (``--vmap``), every (peak, seed) run of a row as one
``jax.jit(jax.vmap(...))`` program (seconds per step are then the
program's, shared by its runs). Results are written after every finished
run or program (``DIR/workloads/``: ``workloads.json``, ``workloads.md``,
``workloads.png``; and the ``"workloads"`` section of ``DIR/summary.json``;
per-example correctness in ``correct.npz``), so a run that is stopped keeps
what it finished, and ``run(..., resume=True)`` (``--reuse``) runs only
what is missing.
"""

import dataclasses
import json
import os
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy

from bench.core import loop as L
from bench.core import output as O
from bench.core import registry as R
from bench.core import timing
from bench.core import verdict as V
from bench.core import workload as WK
from bench import workloads as WL
from bench.workloads import lm as LM

SEEDS = (0, 1, 2)
CORRECT_FILE = "correct.npz"
# What must match for ``resume`` to reuse a finished run.
RESUME_KEYS = ("name", "size", "n_params", "steps", "eval_every",
               "n_eval")
BASE = "adam"
# The LM's sizes (the command line's ``--size``).
LM_SIZES = LM.SIZES
# The workloads (``--only``), in report order.
WORKLOADS = WL.WORKLOADS
make = WL.make
problem = WK.problem
# The grid is extended while its best point is at an edge, by this factor,
# at most this many times.
GRID_STEP, GRID_EXTENSIONS = 3.0, 3


# ----------------------------------------------------------------- rows ---


@dataclasses.dataclass(frozen=True)
class Row:
  """A row of the workloads' tables: a registry entry at a rate."""

  label: str
  ctrl: R.Controller
  options: dict = dataclasses.field(default_factory=dict)


def cosine_row(peak, steps):
  """The baseline at ``peak``: the fixed warmup-cosine schedule."""
  fixed = R.get("fixed")
  return Row(f"cosine@{peak:g}", fixed, fixed.variants(steps)["warmup_cosine"])


def rows(only=None):
  """The registry's workload entries but the fixed schedules, in report
  order (``only``: these names)."""
  return [Row(c.name, c) for c in R.in_scope(R.WORKLOADS)
          if c.plain and (only is None or c.name in only)]


# The rate-sensitivity sweep: every sweep entry started at these multiples
# of the tuned peak (keys as in summary.json), on every seed at the middle
# three and on the first two at the ends (the cut that fits 2 CPU cores;
# ``sweep_seeds="all"`` runs every seed everywhere).
MULTIPLIERS = {"0.1": 0.1, "0.333": 1 / 3, "1": 1.0, "3": 3.0, "10": 10.0}
MIDDLE = ("0.333", "1", "3")
# The sweep's rows in summary.json: registry entry -> key.
SWEEP_KEYS = {"fixed": "cosine", "wsd": "wsd", "greedy_budget": "greedy",
              "greedy_probe": "greedy_probe", "wsd_probe": "wsd_probe",
              "learned_scale": "learned_scale",
              "hd_budget": "hd_adam", "learned_budget": "learned",
              "schedule_free": "schedule_free", "mechanic": "mechanic",
              "prodigy_sweep": "prodigy", "dog_sweep": "dog",
              "dowg_sweep": "dowg", "dadapt_adamw_sweep": "dadapt_adamw",
              "momo": "momo", "cocob_sweep": "cocob"}


def sweep_rows(only=None):
  """``[(key, entry)]``: the registry's sweep entries (``only``: these
  keys of :data:`SWEEP_KEYS`), in report order."""
  return [(SWEEP_KEYS[c.name], c) for c in R.in_scope(R.SWEEP)
          if only is None or SWEEP_KEYS[c.name] in only]


def sweep_row(key, ctrl, peak, mult, steps):
  """The run of sweep row ``key`` started at ``mult`` times the tuned
  ``peak``: ``(row, rate)``. Its label is the main table's at ``mult`` 1
  (the cosine at a rate is the grid's ``cosine@rate``), else
  ``key@xmult``; a rate-free row has one label."""
  rate = MULTIPLIERS[mult] * (1.0 if ctrl.rate_is_multiplier else peak)
  if ctrl.name == "fixed":
    return cosine_row(rate, steps), rate
  label = ctrl.name if ctrl.lr_free or mult == "1" else f"{key}@x{mult}"
  return Row(label, ctrl), rate


# ------------------------------------------------------------ training ----


def _loop(workload, row, rate):
  ctrl = row.ctrl
  context = R.Context(steps_per_eval=workload.eval_every)
  tx = ctrl.build(BASE, rate, workload.steps, context, **row.options)
  trace = None if ctrl.rate is None else (
      lambda state, i: ctrl.rate(state, rate, row.options, i))
  return L.loop(problem(workload), tx, ctrl.feed, workload.eval_every,
                eval_params=ctrl.eval_params, rate=trace)


def _data(workload):
  """The splits as arguments, not constants folded into the programs."""
  return jax.device_put({"train": workload.train, "valid": workload.valid,
                         "test": workload.test})


def _curve(steps, vals, tests, corrects, seconds, train_losses, rates):
  """A run's curves; ``train_loss`` and ``rate`` (the rate applied, NaN
  where the entry gives none) are means over each block."""
  return {"step": [int(s) for s in steps],
          "val_loss": [float(v) for v in vals],
          "test_loss": [float(t) for t in tests],
          "test_acc": [float(np.mean(c)) for c in corrects],
          "train_seconds": [float(s) for s in seconds],
          "train_loss": [float(x) for x in train_losses],
          "rate": [float(x) for x in rates]}


def programs(workload, row):
  """``(init, block, evaluate)`` of ``row`` on ``workload``, jitted once;
  the rate is a traced argument, so every peak and seed reuses them."""
  init = jax.jit(lambda r, key, data: _loop(workload, row, r).init(
      data, workload.init(key)))
  block = jax.jit(lambda r, data, carry, xs: _loop(workload, row, r).train(
      data, carry, xs))
  evaluate = jax.jit(lambda r, data, carry: _loop(
      workload, row, r).evaluate(data, carry))
  return init, block, evaluate


def train(workload, jitted, rate, seed):
  """One run, block by block (each block one call of ``jitted``, from
  :func:`programs`, timed); returns its curves, final correctness and
  timings."""
  k = workload.eval_every
  init, block, evaluate = jitted
  data = _data(workload)
  stream = workload.sample(np.random.default_rng(seed), workload.steps)
  rate = jnp.float32(rate)
  start = time.perf_counter()
  carry, (val, (test, correct)) = init(rate, jax.random.PRNGKey(seed), data)
  evals = [jax.device_get((val, test, correct))]
  first_s = time.perf_counter() - start
  seconds, losses, rates, train_s = [0.0], [], [], 0.0
  for b in range(workload.steps // k):
    t0 = time.perf_counter()
    idx = jnp.arange(b * k, (b + 1) * k)
    carry, (block_losses, block_rates) = block(
        rate, data, carry, (idx, stream[b * k:(b + 1) * k]))
    block_losses, block_rates = jax.device_get((block_losses, block_rates))
    losses.append(float(np.mean(block_losses)))
    rates.append(float(np.mean(block_rates)))
    train_s += time.perf_counter() - t0
    seconds.append(train_s)
    carry, (val, (test, correct)) = evaluate(rate, data, carry)
    evals.append(jax.device_get((val, test, correct)))
  vals, tests, corrects = zip(*evals)
  blocks = np.diff(seconds)
  steady = blocks[1:] if len(blocks) > 1 else blocks
  return {"curve": _curve(np.arange(len(evals)) * k, vals, tests, corrects,
                          seconds, losses, rates),
          "correct": np.asarray(corrects[-1], bool),
          "seconds_per_step": float(np.median(steady) / k),
          "first_block_s": float(blocks[0]) + first_s,
          "train_seconds": train_s}


def train_vmapped(workload, row, rates, seeds):
  """Every ``(rates[i], seeds[i])`` run of ``row`` as one
  ``jax.jit(jax.vmap(...))`` program; returns one result per run, as
  :func:`train` (the program's seconds per step, shared by its runs)."""
  def run(rate, key, data, stream):
    lp = _loop(workload, row, rate)
    return lp.run(data, workload.init(key), stream)

  data = _data(workload)
  streams = np.stack([workload.sample(np.random.default_rng(s),
                                      workload.steps) for s in seeds])
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  program = jax.jit(jax.vmap(run, in_axes=(0, 0, None, 0)))
  start = time.perf_counter()
  compiled = program.lower(jnp.asarray(rates, jnp.float32), keys, data,
                           streams).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  out = jax.device_get(compiled(jnp.asarray(rates, jnp.float32), keys, data,
                                streams))
  run_s = time.perf_counter() - start
  k = workload.eval_every
  per_step = run_s / workload.steps
  steps = np.arange(out.evals.shape[1]) * k
  results = []
  for i in range(len(seeds)):
    tests, corrects = out.extras[0][i], out.extras[1][i]
    block_losses = out.train_loss[i].reshape(-1, k).mean(-1)
    block_rates = out.rate[i].reshape(-1, k).mean(-1)
    results.append({
        "curve": _curve(steps, out.evals[i], tests, corrects,
                        steps * per_step, block_losses, block_rates),
        "correct": np.asarray(corrects[-1], bool),
        "seconds_per_step": per_step, "first_block_s": compile_s,
        "train_seconds": run_s})
  return results


# ------------------------------------------------------------ step cost ---


def step_cost_rows(steps):
  """``{name: (transform, feed)}``: Adam at the rate 1e-3, the
  hypergradient with each reduction of its sums (``"auto"`` is what a user
  gets on this backend), GreedyLR told the budget, the same followed by
  the rate probe (fed the next minibatch's loss; a probe every 20 steps),
  and the learned scale."""
  rows = {"adam": (optax.adam(1e-3), "none")}
  for reduction in ("auto", "blocked", "per_term", "concatenated"):
    rows[f"hd_adam[{reduction}]"] = (
        optax_greedy.hd_adam(1e-3, reduction=reduction), "none")
  rows["greedy_adam[total_steps]"] = (
      optax_greedy.greedy_adam(1e-3, total_steps=steps), "train")
  rows["greedy_adam[total_steps] + rate_probe"] = (optax.chain(
      optax_greedy.greedy_adam(1e-3, total_steps=steps),
      optax_greedy.rate_probe(steps)), "probe")
  rows["learned_scale[total_steps]"] = (
      optax_greedy.learned_scale(1e-3, total_steps=steps), "none")
  return rows


def step_cost(workload, inner=60, rounds=15):
  """Seconds per training step of the workload (forward, backward, update
  and apply: one block of ``inner`` steps of the benchmark's loop per timed
  call, no evaluation) for every :func:`step_cost_rows` entry, timed round
  robin against Adam in one process: ``{"seconds_per_step", "vs_adam",
  "compile_seconds", "inner", "rounds"}``. ``inner`` is a multiple of the
  probe's period, so the probe's share is its average."""
  data = _data(workload)
  params = workload.init(jax.random.PRNGKey(0))
  xs = (jnp.arange(inner),
        jnp.asarray(workload.sample(np.random.default_rng(0), inner)))
  fns, compile_s = {}, {}
  for name, (tx, feed) in step_cost_rows(workload.steps).items():
    lp = L.loop(problem(workload), tx, feed, workload.eval_every)
    carry, _ = jax.jit(lp.init)(data, params)
    start = time.perf_counter()
    compiled = jax.jit(lp.train).lower(data, carry, xs).compile()
    compile_s[name] = time.perf_counter() - start
    fns[name] = lambda c=compiled, carry=carry: c(data, carry, xs)
  seconds = timing.round_robin(fns, rounds)
  per_step = {k: v / inner for k, v in seconds.items()}
  return {"seconds_per_step": per_step,
          "vs_adam": {k: v / per_step["adam"] for k, v in per_step.items()},
          "compile_seconds": compile_s, "inner": inner, "rounds": rounds}


def step_cost_markdown(name, size, n_params, result, machine_line):
  """The step-cost table of one workload."""
  lines = [f"### Train step of `{name}` ({size} size, {n_params:,} "
           f"parameters)", "", f"Measured on {machine_line}.", "",
           f"Median of {result['rounds']} interleaved rounds of "
           f"{result['inner']} steps (forward, backward, update, apply; no "
           "evaluation). `auto` is the reduction a user gets on this "
           "backend.", "",
           "| row | ms / step | vs Adam | compile s |", "|---|---|---|---|"]
  for k, v in result["seconds_per_step"].items():
    lines.append(f"| {k} | {1e3 * v:.3f} | {result['vs_adam'][k]:.3f}x | "
                 f"{result['compile_seconds'][k]:.1f} |")
  return "\n".join(lines) + "\n"


def step_cost_study(out_dir, names=("lm",), size="cpu", inner=60, rounds=15,
                    machine=None, log=print):
  """Writes ``out_dir/workloads/step_cost.json`` and ``step_cost.md``: the
  train step of each workload, Adam against the hypergradient (each
  reduction) and GreedyLR (:func:`step_cost`)."""
  machine = machine or O.machine()
  sub = pathlib.Path(out_dir) / "workloads"
  sub.mkdir(parents=True, exist_ok=True)
  doc, text = {"machine": machine, "workloads": {}}, ""
  for name in names:
    w = make(name, size)
    n_params = sum(x.size for x in jax.tree.leaves(
        jax.eval_shape(w.init, jax.random.PRNGKey(0))))
    result = step_cost(w, inner, rounds)
    doc["workloads"][name] = {"size": size, "n_params": int(n_params),
                              **result}
    text += step_cost_markdown(name, size, n_params, result,
                               O.machine_line())
    log(text)
  O.write_json(sub / "step_cost.json", doc, indent=1)
  (sub / "step_cost.md").write_text(text)
  return doc


# ------------------------------------------------------------- analysis ---


def _done(runs, label):
  return sorted(runs.get(label, {}), key=int)


def analyse(entry):
  """Per-row results against the tuned baseline (see module doc). The peak
  is tuned once, on the first seed that every peak has finished (also when
  resuming with more seeds finished); each row is compared on the seeds it
  shares with the baseline (``seeds`` in its result)."""
  runs = entry["runs"]
  grid = [f"cosine@{p:g}" for p in entry["peaks"]]
  common = set.intersection(*(set(_done(runs, g)) for g in grid))
  if not common:
    return {}
  mean_of = lambda name, key, seeds: float(np.mean(V.finite_or_inf(
      [runs[name][s]["curve"][key][-1] for s in seeds])))
  if entry.get("tuned_peak") is None:
    first = [min(common, key=int)]
    best = min(entry["peaks"], key=lambda p: mean_of(
        f"cosine@{p:g}", "val_loss", first))
    entry["tuned_peak"] = best
    entry["tuned_on_seeds"] = [int(first[0])]
  base = f"cosine@{entry['tuned_peak']:g}"
  base_seeds = _done(runs, base)
  target = mean_of(base, "test_loss", base_seeds)
  results = {}
  for name in runs:
    seeds = [s for s in _done(runs, name) if s in base_seeds]
    if not seeds:
      continue
    rs = [runs[name][s] for s in seeds]
    tests = V.finite_or_inf([r["curve"]["test_loss"][-1] for r in rs])
    accs = [r["curve"]["test_acc"][-1] for r in rs]
    curve = np.mean([V.finite_or_inf(r["curve"]["test_loss"]) for r in rs],
                    axis=0)
    steps = rs[0]["curve"]["step"]
    steps_to = V.steps_to_target(curve, steps, target)
    secs_to = (None if steps_to is None else float(np.mean(
        [r["curve"]["train_seconds"][steps.index(steps_to)] for r in rs])))
    flips = [float(np.mean(np.asarray(runs[base][s]["correct"], bool)
                           & ~np.asarray(r["correct"], bool)))
             for s, r in zip(seeds, rs)]
    results[name] = {
        "seeds": [int(s) for s in seeds],
        "test_loss_mean": float(np.mean(tests)),
        # A diverged seed (inf) makes the spread infinite, not NaN.
        "test_loss_sd": (float(np.std(tests)) if np.all(np.isfinite(tests))
                         else float("inf")),
        "test_acc_mean": float(np.mean(accs)),
        "val_loss_mean": mean_of(name, "val_loss", seeds),
        "train_loss_last_block_mean": mean_of(name, "train_loss", seeds),
        "acc_change_vs_tuned": float(np.mean(accs)) - mean_of(
            base, "test_acc", seeds),
        "negative_flip_rate_vs_tuned": float(np.mean(flips)),
        "steps_to_target": steps_to,
        "seconds_to_target": secs_to,
        "seconds_per_step": float(np.mean([r["seconds_per_step"]
                                           for r in rs])),
    }
  entry["target_test_loss"] = target
  entry["tuned_cosine_test_loss"] = target
  entry["baseline"] = base
  entry["sweep"], entry["sweep_runs"] = sweep_summary(entry)
  entry["sweep_ci"] = sweep_intervals(entry)
  tuned_on = [str(x) for x in entry["tuned_on_seeds"]]
  entry["grid"] = {f"{p:g}": mean_of(f"cosine@{p:g}", "val_loss", tuned_on)
                   for p in entry["peaks"]}
  return results


def sweep_intervals(entry):
  """``{key: {mult: [low, high]}}``: the 95% paired bootstrap interval
  (:func:`bench.core.verdict.paired_interval`) of the mean over seeds of
  the per-seed ratio of a sweep run's final test loss to the tuned
  cosine's on the same seed (one seed: no interval, omitted)."""
  peak, runs = entry.get("tuned_peak"), entry["runs"]
  base = runs.get(f"cosine@{peak:g}", {}) if peak is not None else {}
  out = {}
  for key, ctrl in sweep_rows():
    for mult in ("1",) if ctrl.lr_free else MULTIPLIERS:
      row, _ = sweep_row(key, ctrl, peak, mult, entry["steps"])
      done = runs.get(row.label, {})
      seeds = [s for s in done if s in base]
      if len(seeds) < 2:
        continue
      ratios = V.finite_or_inf(
          [done[s]["curve"]["test_loss"][-1] for s in seeds]) / np.asarray(
              [base[s]["curve"]["test_loss"][-1] for s in seeds])
      if not np.all(np.isfinite(ratios)):
        continue
      low, high = V.paired_interval(ratios)
      out.setdefault(key, {})[mult] = [float(low), float(high)]
  return out


def _lost(curve):
  """A run that lost what it had: a non-finite final test loss, or one at
  or above the test loss it started from."""
  first, last = curve["test_loss"][0], curve["test_loss"][-1]
  return not np.isfinite(last) or last >= first


def sweep_summary(entry):
  """``({key: {mult: mean test loss}}, {key: {mult: {"seeds", "lost"}}})``
  of the finished sweep runs (:data:`SWEEP_KEYS`, :data:`MULTIPLIERS`);
  ``lost``: how many seeds ended non-finite or above their starting test
  loss."""
  peak, runs = entry.get("tuned_peak"), entry["runs"]
  means, counts = {}, {}
  if peak is None:
    return means, counts
  for key, ctrl in sweep_rows():
    for mult in ("1",) if ctrl.lr_free else MULTIPLIERS:
      row, _ = sweep_row(key, ctrl, peak, mult, entry["steps"])
      done = runs.get(row.label, {})
      if not done:
        continue
      curves = [r["curve"] for r in done.values()]
      means.setdefault(key, {})[mult] = float(np.mean(V.finite_or_inf(
          [c["test_loss"][-1] for c in curves])))
      counts.setdefault(key, {})[mult] = {
          "seeds": len(curves), "lost": int(sum(map(_lost, curves)))}
  return means, counts



def markdown(entries):
  """The tables of ``workloads.md``, one per workload."""
  lines = []
  for e in entries:
    lines += [f"### {e['name']} ({e.get('size', 'cpu')} size): "
              f"{e['n_params']:,} parameters, {e['steps']} steps, seeds "
              f"{e['seeds']}", "",
              f"{e['description']}. {e.get('note', '')}.", ""]
    res = e.get("results") or {}
    if not res:
      lines += ["(no complete row yet)", ""]
      continue
    lines += [
        "Baseline: warmup-cosine Adam, peak tuned on "
        f"{', '.join(f'{p:g}' for p in e['peaks'])} by "
        f"validation loss (seeds {e.get('tuned_on_seeds', e['seeds'])}): "
        f"**{e['baseline']}**; target = its mean final "
        f"test loss {e['target_test_loss']:.4f}. Held-out **test** loss "
        "and accuracy (mean over seeds); flips and accuracy change against "
        "the tuned baseline of the same seed.", "",
        "| row | seeds | test loss | test acc. | acc. change | negative "
        "flips | steps to target | seconds to target | ms/step | val loss | "
        "train loss (last block) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    grid = {f"cosine@{p:g}" for p in e["peaks"]}
    main = [n for n in res if "@" not in n or n in grid]
    order = sorted(main, key=lambda n: res[n]["test_loss_mean"])
    for n in order:
      r = res[n]
      fmt = lambda x, spec: "-" if x is None else format(x, spec)
      lines.append(
          f"| {n} | {len(r.get('seeds', e['seeds']))} | "
          f"{r['test_loss_mean']:.4f} ± {r['test_loss_sd']:.4f} | "
          f"{r['test_acc_mean']:.4f} | {r['acc_change_vs_tuned']:+.4f} | "
          f"{r['negative_flip_rate_vs_tuned']:.4f} | "
          f"{fmt(r['steps_to_target'], 'd')} | "
          f"{fmt(r['seconds_to_target'], '.0f')} | "
          f"{1e3 * r['seconds_per_step']:.1f} | {r['val_loss_mean']:.4f} | "
          f"{r['train_loss_last_block_mean']:.4f} |")
    notes = {n: v for n, v in e["notes"].items() if v}
    lines += ["", "Rows: " + "; ".join(f"`{n}`: {v}" for n, v in
                                       notes.items()), ""]
    if e.get("errors"):
      lines += ["Failed or unavailable: " + "; ".join(
          f"`{n}`: {v}" for n, v in e["errors"].items()), ""]
    lines += sweep_markdown(e)
  return "\n".join(lines) + "\n"


def summary_rows(e):
  """``{key: {"x1", "worst_middle", "worst_all", "beats", "points"}}`` of
  workload entry ``e``'s sweep: each row's held-out test loss over the tuned
  cosine's at x1, the worst over x1/3..x3 and over x1/10..x10 (over the
  points run; ``None`` where none), and at how many of its points it is
  below the tuned cosine."""
  tuned, out = e["tuned_cosine_test_loss"], {}
  for key, by in (e.get("sweep") or {}).items():
    # A diverged mean is inf, which JSON (summary.json) stores as null.
    ratio = {m: (np.inf if v is None else v) / tuned for m, v in by.items()}
    middle = [ratio[m] for m in MIDDLE if m in ratio]
    out[key] = {"x1": ratio.get("1"),
                "worst_middle": max(middle) if middle else None,
                "worst_all": max(ratio.values()),
                "beats": sum(r < 1 for r in ratio.values()),
                "points": len(ratio)}
  return out


def summary_markdown(entries):
  """One table over the workloads: per sweep row, its ratio at x1, its
  worst in x1/3..x3 and in x1/10..x10, and the points where it beats the
  tuned cosine (:func:`summary_rows`)."""
  done = [e for e in entries if e.get("sweep")]
  if not done:
    return ""
  keys = list(dict.fromkeys(k for e in done for k in e["sweep"]))
  head = " | ".join(f"{e['name']} ({e.get('size', 'cpu')}): x1 / worst "
                    "x1/3..x3 / worst x1/10..x10 / beats" for e in done)
  lines = ["Held-out **test** loss over the grid-tuned warmup-cosine's "
           "(below 1 is better; mean over the seeds run, `sweep_runs` says "
           "how many), by starting rate; beats: points below 1 of those "
           "run; > 100: the run blew up.", "", f"| row | {head} |",
           "|---|" + "---|" * len(done)]
  fmt = lambda x: ("-" if x is None else f"{x:.3f}" if x < 100
                   else "> 100")
  for key in keys:
    cells = []
    for e in done:
      r = summary_rows(e).get(key)
      cells.append("-" if r is None else
                   f"{fmt(r['x1'])} / {fmt(r['worst_middle'])} / "
                   f"{fmt(r['worst_all'])} / {r['beats']} of {r['points']}")
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


HEADLINE = ("<!-- headline:start -->", "<!-- headline:end -->")


def write_headline(out_dir, readme):
  """Rewrites the block of ``readme`` between the :data:`HEADLINE` markers
  with :func:`summary_markdown` of ``out_dir/summary.json``."""
  summary = json.loads((pathlib.Path(out_dir) / "summary.json").read_text())
  table = summary_markdown(summary.get("workloads", []))
  path = pathlib.Path(readme)
  text = path.read_text()
  start, end = text.index(HEADLINE[0]), text.index(HEADLINE[1])
  source = (f"(generated by `python -m bench workloads --report-only --out "
            f"{out_dir} --readme {readme}` from `{out_dir}/summary.json`)")
  path.write_text(text[:start] + HEADLINE[0] + "\n" + table + "\n" + source
                  + "\n" + text[end:])


def sweep_markdown(e):
  """The sweep's table: held-out test loss over the grid-tuned cosine's, by
  starting rate."""
  sweep, counts = e.get("sweep") or {}, e.get("sweep_runs") or {}
  if not sweep:
    return []
  tuned = e["tuned_cosine_test_loss"]
  lines = [
      f"#### Rate sensitivity: {e['name']}", "",
      "Held-out **test** loss of each row started at a multiple of the "
      f"tuned peak ({e['tuned_peak']:g}), over the grid-tuned "
      f"warmup-cosine's ({tuned:.4f}; below 1 is better), mean over "
      "seeds (n). `lost`: seeds that ended non-finite or above their "
      "starting test loss. Prodigy and DoG take no rate: one run.", "",
      "| row | " + " | ".join(f"x{m}" for m in MULTIPLIERS) + " |",
      "|---|" + "---|" * len(MULTIPLIERS)]
  for key, by in sweep.items():
    cells = []
    for m in MULTIPLIERS:
      if m not in by:
        cells.append("-")
        continue
      c = counts[key][m]
      lost = f", {c['lost']} lost" if c["lost"] else ""
      cells.append(f"{by[m] / tuned:.3f} ({c['seeds']}{lost})")
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  lines += [""]
  for key in ("greedy", "hd_adam", "learned"):
    lines += _goal_lines(key, sweep, tuned)
  return lines + [""] + high_start_lines(e)


# Where in the run the x10 table reads the applied rate.
TRACE_POINTS = (0.1, 0.5, 0.75)


def high_start_lines(e):
  """What each row does started at ten times the tuned peak: its ratio,
  the seeds lost, and the rate it applied (first seed) at
  :data:`TRACE_POINTS` of the run, in units of the tuned peak."""
  peak, sweep = e.get("tuned_peak"), e.get("sweep") or {}
  if peak is None or not any("10" in by for by in sweep.values()):
    return []
  tuned, counts = e["tuned_cosine_test_loss"], e.get("sweep_runs") or {}
  lines = [f"##### Started at x10: {e['name']}", "",
           "Each row started at ten times the tuned peak: held-out test "
           "loss over the tuned cosine's, seeds lost (non-finite or above "
           "the starting test loss), and the rate it applied at "
           + ", ".join(f"{int(100 * f)}%" for f in TRACE_POINTS)
           + " of the run (first seed; in units of the tuned peak; - where "
           "the row records no rate).", "",
           "| row | ratio | lost | " + " | ".join(
               f"rate at {int(100 * f)}%" for f in TRACE_POINTS) + " |",
           "|---|---|---|" + "---|" * len(TRACE_POINTS)]
  for key, ctrl in sweep_rows():
    if "10" not in sweep.get(key, {}):
      continue
    row, _ = sweep_row(key, ctrl, peak, "10", e["steps"])
    done = e["runs"].get(row.label, {})
    rates = next(iter(done.values()))["curve"]["rate"] if done else []
    cells = []
    for f in TRACE_POINTS:
      r = rates[min(len(rates) - 1, int(f * len(rates)))] if rates else None
      cells.append("-" if r is None else f"{r / peak:.2g}")
    ratio = sweep[key]["10"] / tuned
    lines.append(f"| {key} | "
                 + ("> 100" if not ratio <= 100 else f"{ratio:.3f}") + " | "
                 f"{counts[key]['10']['lost']} of "
                 f"{counts[key]['10']['seeds']} | " + " | ".join(cells)
                 + " |")
  return lines + [""]


def _goal_lines(key, sweep, tuned):
  """How row ``key`` fares on the budget-aware goals: at the tuned peak <=
  the tuned cosine, <= 1.02x anywhere in x1/3..x3, better than
  warmup-cosine started at the same rate at every point."""
  by, cosine = sweep.get(key, {}), sweep.get("cosine", {})
  if "1" not in by:
    return []
  middle = [by[m] / tuned for m in MIDDLE if m in by]
  beats = [m for m in MULTIPLIERS if m in by and m in cosine
           and by[m] < cosine[m]]
  shared = [m for m in MULTIPLIERS if m in by and m in cosine]
  return [f"- `{key}`: at the tuned peak {by['1'] / tuned:.3f}x the tuned "
          f"cosine; worst in x1/3..x3 {max(middle):.3f}x; better than "
          f"warmup-cosine at the same rate at {len(beats)} of "
          f"{len(shared)} rates ({', '.join('x' + m for m in beats)})."]


def figure(entries, path):
  """Test loss curves per workload and a performance profile."""
  plt = O.pyplot()
  done = [e for e in entries if e.get("results")]
  if not done:
    return
  fig, axes = plt.subplots(1, len(done) + 1,
                           figsize=(5.5 * (len(done) + 1), 4.5))
  names = sorted({n for e in done for n in e["results"]})
  styles = {n: (f"C{i % 10}", ("-", "--", ":", "-.")[i // 10 % 4])
            for i, n in enumerate(names)}
  for ax, e in zip(axes, done):
    for n in names:
      if n not in e["results"]:
        continue
      seeds = e["results"][n].get("seeds", e["seeds"])
      rs = [e["runs"][n][str(s)]["curve"] for s in seeds]
      y = np.mean([r["test_loss"] for r in rs], axis=0)
      color, ls = styles[n]
      ax.plot(rs[0]["step"], y, color=color, ls=ls, lw=2.2 if n.startswith(
          ("greedy", "cosine@%g" % e["tuned_peak"])) else 1.2, label=n)
    ax.axhline(e["target_test_loss"], color="k", lw=0.8, ls=":",
               label="target (tuned cosine's final)")
    ax.set(title=f"{e['name']} ({e['n_params']:,} params): test loss "
                 "(dotted: target)",
           xlabel="step", ylabel="test loss (mean over seeds)", yscale="log")
    # The region that decides the table: from below the best final loss
    # to three times the target (early steps and diverged rows are cut).
    low = min(r["test_loss_mean"] for r in e["results"].values())
    ax.set_ylim(0.8 * min(low, e["target_test_loss"]),
                3 * e["target_test_loss"])
  # Performance profile: fraction of workloads whose steps to target are
  # within a factor tau of the best row's.
  ax = axes[-1]
  taus = np.linspace(1, 4, 200)
  for n in names:
    ratios = []
    for e in done:
      steps = {m: r["steps_to_target"] for m, r in e["results"].items()}
      best = min(v for v in steps.values() if v)
      s = steps.get(n)
      ratios.append(s / best if s else np.inf)
    color, ls = styles[n]
    ax.plot(taus, [np.mean([r <= t for r in ratios]) for t in taus],
            color=color, ls=ls, label=n)
  ax.set(title="performance profile (steps to the tuned target)",
         xlabel="tau (x the fastest row)",
         ylabel="fraction of workloads reached within tau", ylim=(-0.05, 1.05))
  # One legend for every panel (a row has the same style everywhere).
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)



def sweep_figure(entries, path):
  """Per workload: held-out loss against the starting rate (one line per
  row, the grid-tuned cosine as a horizontal line), and the rate applied by
  the reactive rows started at x1/3, x1 and x3 of the tuned peak."""
  plt = O.pyplot()
  done = [e for e in entries if e.get("sweep")]
  if not done:
    return
  fig, axes = plt.subplots(2, len(done), figsize=(6.5 * len(done), 9),
                           squeeze=False)
  keys = list(SWEEP_KEYS.values())
  cmap = plt.get_cmap("tab20")
  colors = {k: cmap(i % 20) for i, k in enumerate(keys)}
  for col, e in enumerate(done):
    ax, tuned = axes[0, col], e["tuned_cosine_test_loss"]
    for key, by in e["sweep"].items():
      mults = [m for m in MULTIPLIERS if m in by]
      x = [e["tuned_peak"] * MULTIPLIERS[m] for m in mults]
      y = [by[m] for m in mults]
      if len(mults) == 1:
        ax.axhline(y[0], color=colors[key], ls="--", lw=1, label=key)
      else:
        ax.plot(x, y, "o-", color=colors[key], label=key,
                lw=2.2 if key in ("greedy", "learned_scale") else 1.2)
    ax.axhline(tuned, color="k", lw=1.5, ls=":",
               label="warmup-cosine, peak tuned on "
                     f"{', '.join(f'{p:.2g}' for p in e['peaks'])}")
    ax.set(xscale="log", yscale="log", xlabel="starting (peak) rate",
           ylabel="held-out test loss (mean over seeds)",
           title=f"{e['name']} ({e['n_params']:,} params, {e['size']} size)")
    ax.set_ylim(0.95 * min(min(by.values()) for by in e["sweep"].values()),
                2.5 * tuned)
    ax.legend(fontsize=7)
    ax = axes[1, col]
    for key, ls in (("greedy", "-"), ("hd_adam", "--"), ("learned", ":"),
                    ("learned_scale", "-.")):
      ctrl = dict(sweep_rows()).get(key)
      for mult, shade in (("0.333", 0.45), ("1", 0.7), ("3", 1.0)):
        if ctrl is None:
          continue
        row, rate = sweep_row(key, ctrl, e["tuned_peak"], mult, e["steps"])
        by = e["runs"].get(row.label, {})
        if not by:
          continue
        curve = by[min(by, key=int)]["curve"]
        ax.plot(curve["step"][1:], np.asarray(curve["rate"]) / e["tuned_peak"],
                ls=ls, color=colors[key], alpha=shade,
                label=f"{key} from x{mult}")
    ax.set(yscale="log", xlabel="step",
           ylabel="rate applied / tuned peak (first seed, block means)",
           title="what the controllers do with the rate")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, ncol=3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _write(out_dir, entries, machine):
  out = pathlib.Path(out_dir)
  sub = out / "workloads"
  sub.mkdir(parents=True, exist_ok=True)
  # Per-example correctness (for flips on resume) beside the JSON.
  correct = {f"{e['name']}/{n}/{s}": r["correct"] for e in entries
             for n, by in e["runs"].items() for s, r in by.items()}
  with open(sub / "correct.npz.tmp", "wb") as f:
    np.savez_compressed(f, **correct)
  os.replace(sub / "correct.npz.tmp", sub / CORRECT_FILE)
  public = []
  for e in entries:
    runs = {n: {s: {k: v for k, v in r.items() if k != "correct"}
                for s, r in by.items()} for n, by in e["runs"].items()}
    public.append({**{k: v for k, v in e.items() if k != "runs"},
                   "runs": runs})
  O.write_json(sub / "workloads.json", {"machine": machine,
                                        "workloads": public}, indent=1)
  (sub / "workloads.md").write_text(
      "### Summary\n\n" + summary_markdown(entries) + "\n"
      + markdown(entries))
  summary = out / "summary.json"
  data = json.loads(summary.read_text()) if summary.exists() else {}
  data["workloads"] = [{k: v for k, v in e.items() if k != "runs"}
                       for e in public]
  data.setdefault("meta", {})["workloads_machine"] = machine
  O.write_json(summary, data)


def _finished(saved, entry, source, log):
  """The runs of ``entry``'s workload finished by an earlier call with the
  same configuration (:data:`RESUME_KEYS`), among the entries
  :func:`_saved` read from ``source``."""
  for prev in saved:
    if all(prev.get(k) == entry[k] for k in RESUME_KEYS):
      log(f"[workloads] {entry['name']}: resuming with "
          f"{sum(map(len, prev['runs'].values()))} finished runs from "
          f"{source}")
      return prev["runs"]
  return {}


def run(out_dir, names=WL.REPORT, seeds=SEEDS, peaks=None, scale=1.0,
        only=None, size="cpu", vmap=False, machine=None, resume=False,
        sweep=True, sweep_only=None, sweep_seeds="cut", log=print):
  """Runs the workloads; writes results after every run (module doc).

  Args:
    out_dir: output folder (``out_dir/workloads`` and ``summary.json``).
    names: the workloads (:data:`WORKLOADS`).
    seeds: the seeds.
    peaks: the cosine grid (each workload's own, :attr:`Workload.peaks`,
      if None).
    scale: multiplies every step budget (``0.004`` for the smoke test).
    only: names of the rows to run besides the cosine grid (all if None).
    size: the LM's size (:data:`LM_SIZES`).
    vmap: run every (peak, seed) of a row as one vmapped program instead of
      run by run.
    machine: what it runs on (:func:`bench.core.output.machine` if None).
    resume: reuse the runs that an earlier call with the same workload
      configuration finished in ``out_dir`` (rows whose code changed since
      are not detected: resume only within one version of the library).
    sweep: also run the rate-sensitivity sweep (:data:`MULTIPLIERS`).
    sweep_only: the sweep's rows (keys of :data:`SWEEP_KEYS`; all if None).
    sweep_seeds: ``"cut"`` (every seed at x1/3..x3, the first two at the ends)
      or ``"all"``.
    log: where progress lines go.

  Returns:
    One entry per workload (configuration, runs and results).
  """
  machine = machine or O.machine()
  candidates = rows(only)
  saved = _saved(out_dir)[0]
  # The other workloads' results in out_dir stay (e.g. after --only lm).
  entries = [e for e in saved if e["name"] not in names]
  for name in names:
    w = make(name, size, scale)
    grid = tuple(peaks or w.peaks)
    n_params = sum(x.size for x in jax.tree.leaves(
        jax.eval_shape(w.init, jax.random.PRNGKey(0))))
    entry = {"name": w.name, "size": w.size, "n_params": int(n_params),
             "steps": w.steps, "eval_every": w.eval_every,
             "n_eval": [int(len(w.valid[1])), int(len(w.test[1]))],
             "seeds": list(seeds), "peaks": list(grid), "note": w.note,
             "description": (WORKLOADS[name].__doc__ or "").split("\n\n")[0]
                            .replace("\n", " ").rstrip("."),
             "notes": {r.label: r.ctrl.label for r in candidates},
             "errors": {}, "runs": {}, "results": {}, "tuned_peak": None}
    if resume:
      entry["runs"] = _finished(
          saved, entry, pathlib.Path(out_dir) / "workloads" / "workloads.json",
          log)
    entries.append(entry)
    plan = Plan(grid, candidates, seeds,
                sweep_rows(sweep_only) if sweep else [], sweep_seeds,
                extend=peaks is None)
    _run_workload(w, entry, plan, vmap,
                  lambda: _write(out_dir, entries, machine), log)
    sub = pathlib.Path(out_dir) / "workloads"
    figure(entries, sub / "workloads.png")
    sweep_figure(entries, sub / "sweep.png")
  return entries


def _saved(out_dir):
  """``(entries, machine)`` of ``out_dir/workloads`` (its JSON, with each
  run's per-example correctness attached and its results analysed again:
  JSON stores a diverged row's infinite mean as null); ``([], None)`` if
  none."""
  sub = pathlib.Path(out_dir) / "workloads"
  path = sub / "workloads.json"
  if not path.exists():
    return [], None
  try:
    doc = json.loads(path.read_text())
    correct = np.load(sub / CORRECT_FILE)
    for e in doc["workloads"]:
      for label, by in e["runs"].items():
        for seed, r in by.items():
          by[seed] = _loaded(r, correct[f"{e['name']}/{label}/{seed}"])
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f"cannot read {path}: expected workloads.json and "
                     f"{CORRECT_FILE} written by bench.studies.workloads "
                     f"({type(e).__name__}: {e})") from e
  for e in doc["workloads"]:
    e["results"] = analyse(e)
  return doc["workloads"], doc["machine"]


def _loaded(run, correct):
  """A run read back from ``workloads.json``, with its per-example
  ``correct``; JSON has no NaN, so a diverged run's losses, stored as
  null, come back as NaN."""
  curve = {key: [np.nan if v is None else v for v in values]
           if key.endswith("loss") else values
           for key, values in run["curve"].items()}
  return {**run, "curve": curve, "correct": correct}


def redraw(out_dir, log=print):
  """Rebuilds the tables and figures of ``out_dir/workloads`` from its
  ``workloads.json`` and ``correct.npz`` (e.g. after a run was stopped
  before its figures), without training."""
  sub = pathlib.Path(out_dir) / "workloads"
  entries, machine = _saved(out_dir)
  _write(out_dir, entries, machine)
  figure(entries, sub / "workloads.png")
  sweep_figure(entries, sub / "sweep.png")
  log(f"rewrote {sub}/workloads.md, workloads.png and sweep.png")
  return entries


class Plan(NamedTuple):
  """What a workload runs: the cosine grid's peaks, the rows at the tuned
  peak, the seeds, the sweep's ``[(key, entry)]``, its seeds (``"cut"`` or
  ``"all"``) and whether the grid is extended until its best point is
  interior (the workload's own grid; a grid given as ``peaks`` runs as
  given)."""

  grid: tuple
  rows: list
  seeds: tuple
  sweep: list
  sweep_seeds: str
  extend: bool = True

  def sweep_runs(self, peak, steps, seed=None):
    """``[(row, rate, seed)]`` of the sweep (of one ``seed``, or all)."""
    out = []
    for key, ctrl in self.sweep:
      for mult in ("1",) if ctrl.lr_free else MULTIPLIERS:
        seeds = (self.seeds if self.sweep_seeds == "all" or mult in MIDDLE
                 else self.seeds[:2])
        row, rate = sweep_row(key, ctrl, peak, mult, steps)
        out += [(row, rate, s) for s in seeds if seed in (None, s)]
    return out


def _run_workload(w, entry, plan, vmap, save, log):
  """The cosine grid, every row at the tuned peak, then the sweep. Run by
  run, seed by seed (so that a stopped run has whole tables for its first
  seeds); vmapped, the whole cosine grid (peaks x seeds) as one program,
  then each row's seeds as one, then each sweep row's (rate, seed) pairs
  as one."""
  grid, candidates, seeds = plan.grid, plan.rows, plan.seeds
  compiled = {}

  def do(runs):
    """Runs ``[(row, rate, seed)]`` of one entry and options: one by one,
    or as one vmapped program; records them and writes the results."""
    runs = [(row, rate, seed) for row, rate, seed in runs
            if str(seed) not in entry["runs"].get(row.label, {})
            and row.label not in entry["errors"]]
    if not runs:
      return
    row = runs[0][0]
    try:
      t0 = time.perf_counter()
      if vmap:
        results = train_vmapped(w, row, [r for _, r, _ in runs],
                                [s for _, _, s in runs])
      else:
        # Rows of one entry (the cosine peaks) share a program: the rate
        # is traced.
        if row.ctrl.name not in compiled:
          compiled[row.ctrl.name] = programs(w, row)
        results = [train(w, compiled[row.ctrl.name], rate, seed)
                   for _, rate, seed in runs]
    except Exception as e:  # pylint: disable=broad-except
      for label in dict.fromkeys(r.label for r, _, _ in runs):
        entry["errors"][label] = f"{type(e).__name__}: {e!s:.300}"
        log(f"[workloads] {w.name} {label} failed: {entry['errors'][label]}")
      save()
      return
    seconds = time.perf_counter() - t0
    for (run_row, _, seed), r in zip(runs, results):
      entry["runs"].setdefault(run_row.label, {})[str(seed)] = r
      log(f"[workloads] {w.name} {run_row.label} seed {seed}: test loss "
          f"{r['curve']['test_loss'][-1]:.4f}, "
          f"{1e3 * r['seconds_per_step']:.1f} ms/step, {seconds:.0f} s")
    entry["results"] = analyse(entry)
    save()

  def tuned():
    entry["results"] = analyse(entry)
    return entry.get("tuned_peak") or grid[len(grid) // 2]

  def bracket(seeds):
    """Extends the grid (and ``entry["peaks"]``) past an edge that holds
    its best point, running the new peak on ``seeds``, until the best is
    interior (at most :data:`GRID_EXTENSIONS` times)."""
    if not plan.extend:
      return
    for _ in range(GRID_EXTENSIONS):
      entry["tuned_peak"] = None
      best = tuned()
      if min(grid) < best < max(grid):
        return
      new = best * GRID_STEP if best == max(grid) else best / GRID_STEP
      log(f"[workloads] {w.name}: best peak {best:g} at the grid's edge; "
          f"adding {new:g}")
      grid.append(new)
      grid.sort()
      entry["peaks"] = list(grid)
      cosine[new] = cosine_row(new, w.steps)
      do([(cosine[new], new, s) for s in seeds])
    entry["tuned_peak"] = None

  grid = sorted(grid)
  cosine = {peak: cosine_row(peak, w.steps) for peak in grid}
  swept = {ctrl.name for _, ctrl in plan.sweep}
  if vmap:
    do([(cosine[p], p, s) for p in grid for s in seeds])
    bracket(seeds)
    peak = tuned()
    for row in candidates:
      # A row of the sweep runs at the tuned peak in the sweep's program.
      if row.ctrl.name not in swept:
        do([(row, peak, s) for s in seeds])
    sweep = plan.sweep_runs(peak, w.steps)
    for ctrl in dict.fromkeys(row.ctrl.name for row, _, _ in sweep):
      do([r for r in sweep if r[0].ctrl.name == ctrl])
  else:
    for seed in seeds:
      for p in list(grid):
        do([(cosine[p], p, seed)])
      if seed == seeds[0]:
        bracket([seed])
      peak = tuned()
      for row in candidates:
        if row.ctrl.name not in swept:
          do([(row, peak, seed)])
      for run in plan.sweep_runs(peak, w.steps, seed):
        do([run])
  entry["results"] = analyse(entry)
  save()
