"""The realistic tier: every controller on two workloads that train for
thousands of steps, against a tuned warmup-cosine Adam.

``python -m bench --workloads --out DIR`` trains

* ``lm``: a byte-level causal transformer language model (about 1.06M
  parameters: width 128, 5 layers, 4 heads, 256 byte values, context 64) for
  2,000 steps of 8 windows on the source of the Python standard library
  (the top-level ``*.py`` files of the running Python, sorted by name; every
  tenth file is held out and split into validation and test windows);
* ``cnn``: a convolutional network (conv 32, conv 64, pool, conv 128, pool,
  dense 256, about 0.23M parameters) for 1,000 steps of 64 images on
  scikit-learn's digits (1,797 8x8 images; 1,197 train, 300 validation,
  300 test, a fixed permutation).

Every run of a workload sees the same initial parameters and minibatch
stream for a given seed (paired comparisons). Rows, all on an Adam direction
without weight decay unless named otherwise:

* ``cosine@peak``: ``optax.adam(warmup_cosine_decay_schedule(0, peak,
  steps/20, steps))`` for each peak of the grid (:attr:`Workload.peaks`); the
  baseline is the peak with the lowest final *validation* loss on the
  first seed (tuned, best of grid); every controller below starts from that same peak
  rate (so "at the same peak" and "against the tuned baseline" coincide).
* ``greedy``: :func:`optax_greedy.greedy_adam` with its defaults, fed the
  minibatch training loss every step.
* ``greedy_val``: the same, fed the validation loss once per evaluation
  (``observe=`` only on the step after it), with the settings documented
  for that feed (:data:`bench.controllers.GREEDY_VAL`).
* ``hd_adam``, ``hd_sgd``: :func:`optax_greedy.hd_adam` and
  :func:`optax_greedy.hd_sgd` with their defaults (on an install whose
  ``hypergrad_lr`` has no default, the paper's values 1e-7 and 1e-3, said in
  the row's note).
* ``learned``: :func:`optax_greedy.learned_schedule` with
  ``optax_greedy.load_policy("dnn")`` (max rate = the peak, budget = the
  steps) after ``scale_by_adam``; reported as unavailable where that policy
  does not load.
* ``reduce_on_plateau``: ``chain(adam(peak), contrib.reduce_on_plateau(
  accumulation_size=eval_every))`` (otherwise its defaults), fed the training
  loss: it compares the mean training loss of consecutive evaluation blocks.
* ``schedule_free``: ``contrib.schedule_free_adamw(peak, warmup_steps=
  steps/20)`` (the authors' recommended warmup), evaluated at
  ``schedule_free_eval_params``.
* ``prodigy``: ``contrib.prodigy()`` with its defaults (no rate).

Reported per row (mean over seeds): final test loss and accuracy (the test
split is never seen in training or tuning), final validation loss, the
accuracy change and the **negative flip rate** against the tuned baseline
(the share of test examples, or test next-byte predictions, that the
baseline's model of the same seed gets right and this row's model gets
wrong), **steps and seconds to the target** (the tuned baseline's final mean
test loss: the first evaluation at which the row's seed-mean test loss is at
or below it; seconds are training time without evaluations, AlgoPerf-style)
and wall-clock seconds per training step.

Results are written after every finished run (``DIR/workloads/``:
``workloads.json``, ``workloads.md``, ``workloads.png``; and the
``"workloads"`` section of ``DIR/summary.json``; per-example correctness in
``correct.npz``), so a run that is stopped keeps what it finished, and
``run(..., resume=True)`` (``python -m bench --workloads --reuse``) runs
only what is missing.
"""

import dataclasses
import inspect
import json
import os
import pathlib
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import optax_greedy
from bench import controllers as C
from bench import tasks as T

SEEDS = (0, 1)
CORRECT_FILE = "correct.npz"
# What must match for ``resume`` to reuse a finished run.
RESUME_KEYS = ("name", "n_params", "steps", "eval_every", "peaks")
WARMUP_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class Workload:
  """A model, its data and budget.

  Attributes:
    name: short name.
    init: ``init(key) -> params``.
    loss: ``loss(params, inputs, targets) -> (mean loss, correct [n])``.
    train: ``(inputs, targets)`` arrays of the training split.
    valid, test: the same for the validation and test splits.
    sample: ``sample(rng, steps) -> [steps, batch]`` indices into ``train``.
    steps: training steps of every run.
    eval_every: steps between evaluations.
    peaks: the warmup-cosine peak grid the baseline is tuned on.
    note: what was cut to fit the CPU budget.
  """

  name: str
  init: Callable[[Any], Any]
  loss: Callable[..., Any]
  train: Any
  valid: Any
  test: Any
  sample: Callable[[np.random.Generator, int], np.ndarray]
  steps: int
  eval_every: int
  peaks: tuple = (3e-4, 1e-3, 3e-3)
  note: str = ""


def _xent(logits, targets):
  loss = optax.losses.softmax_cross_entropy_with_integer_labels(
      logits, targets).mean()
  correct = (jnp.argmax(logits, -1) == targets).reshape(-1)
  return loss, correct


# ------------------------------------------------------------------ LM ----


def stdlib_bytes():
  """The top-level ``*.py`` files of the standard library, sorted by name:
  ``(train_bytes, held_out_bytes)``; every tenth file is held out."""
  root = pathlib.Path(inspect.getsourcefile(inspect)).parent
  files = sorted(root.glob("*.py"))
  train, held = [], []
  for i, path in enumerate(files):
    (held if i % 10 == 0 else train).append(path.read_bytes())
  join = lambda parts: np.frombuffer(b"\n".join(parts), np.uint8)
  return join(train).astype(np.int32), join(held).astype(np.int32)


def lm(steps=2000, batch=8, length=64, dim=128, layers=5, heads=4,
       eval_windows=64, eval_every=100):
  """Byte-level transformer LM on the standard library's source."""
  train, held = stdlib_bytes()
  half = len(held) // 2
  def windows(codes, n):
    starts = np.linspace(0, len(codes) - length - 2, n).astype(int)
    seqs = np.stack([codes[s:s + length + 1] for s in starts])
    return seqs[:, :-1], seqs[:, 1:]
  module = T.CharTransformer(dim=dim, heads=heads, layers=layers,
                             length=length, vocab=256)

  def loss(params, inputs, targets):
    return _xent(module.apply(params, inputs), targets)

  def sample(rng, steps):
    return rng.integers(0, len(train) - length - 1, (steps, batch),
                        dtype=np.int32)

  # The stream holds window starts; ``_minibatch`` gathers the bytes.
  offsets = np.arange(length + 1)
  return Workload(
      "lm", lambda key: module.init(key, jnp.zeros((1, length), jnp.int32)),
      loss, (train, offsets), windows(held[:half], eval_windows),
      windows(held[half:], eval_windows), sample, steps, eval_every,
      peaks=(1e-3, 3e-3, 1e-2),
      note=(f"batch {batch} windows of {length} bytes (cut from the usual "
            "hundreds of sequences of 256+ tokens to fit 2 CPU cores)"))


# ----------------------------------------------------------------- CNN ----


class CNN(nn.Module):
  """conv 32, conv 64, pool, conv 128, pool, dense 256, dense 10 (3x3
  'SAME' convolutions as im2col + dense, :class:`bench.tasks.Conv3x3`: the
  same function, about 15x less CPU time than XLA's CPU convolution here)."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(T.Conv3x3(32)(x))
    x = nn.relu(T.Conv3x3(64)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(T.Conv3x3(128)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


def cnn(steps=1000, batch=64, eval_every=50):
  """CNN on scikit-learn's digits, 1197 / 300 / 300 images."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  x, y = datasets.load_digits(return_X_y=True)
  perm = np.random.default_rng(0).permutation(len(x))
  x = (x[perm] / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  y = y[perm].astype(np.int32)
  module = CNN()

  def loss(params, inputs, targets):
    return _xent(module.apply(params, inputs), targets)

  def sample(rng, steps):
    return rng.integers(0, 1197, (steps, batch), dtype=np.int32)

  return Workload(
      "cnn", lambda key: module.init(key, x[:1]), loss,
      (x[:1197], y[:1197]), (x[1197:1497], y[1197:1497]),
      (x[1497:], y[1497:]), sample, steps, eval_every,
      note="digits is the largest image set shipped with an installed "
           "package; 8x8 images")


WORKLOADS = {"cnn": cnn, "lm": lm}


def _minibatch(workload, train, idx):
  """Training inputs and targets for one row of :meth:`Workload.sample`."""
  a, b = train
  if workload.name == "lm":
    seqs = a[idx[:, None] + b]
    return seqs[:, :-1], seqs[:, 1:]
  return a[idx], b[idx]


# ---------------------------------------------------------- controllers ---


def _hd(wrapper, paper_beta):
  """``wrapper(lr)`` with its defaults; the paper's ``hypergrad_lr`` where
  this install has no default for it."""
  if inspect.signature(wrapper).parameters["hypergrad_lr"].default is (
      inspect.Parameter.empty):
    return (lambda lr: wrapper(lr, paper_beta),
            f"hypergrad_lr={paper_beta:g} (paper; no default here)")
  return wrapper, "defaults"


def _learned():
  try:
    policy = optax_greedy.load_policy("dnn")
  except Exception as e:  # pylint: disable=broad-except
    return None, f"unavailable: load_policy('dnn') failed: {e!s:.200}"
  return policy, "load_policy('dnn')"


@dataclasses.dataclass(frozen=True)
class Row:
  """A controller of the workloads: ``build(lr, steps, eval_every)``."""
  name: str
  build: Callable[..., Any]
  feed: str = "none"      # "train", "val" or "none"
  eval_params: Any = None
  note: str = ""


def rows():
  """Every row but the cosine grid (their order in the report)."""
  hd_adam, hd_adam_note = _hd(optax_greedy.hd_adam, C.HD_BETA["adam"])
  hd_sgd, hd_sgd_note = _hd(optax_greedy.hd_sgd, C.HD_BETA["sgd"])
  policy, learned_note = _learned()
  out = [
      Row("greedy", lambda lr, s, k: optax_greedy.greedy_adam(lr), "train",
          note="defaults, training loss every step"),
      Row("greedy_val",
          lambda lr, s, k: optax_greedy.greedy_adam(lr, **C.GREEDY_VAL),
          "val", note=f"validation loss per evaluation, {C.GREEDY_VAL}"),
      Row("hd_adam", lambda lr, s, k: hd_adam(lr), note=hd_adam_note),
      Row("hd_sgd", lambda lr, s, k: hd_sgd(lr), note=hd_sgd_note),
  ]
  if policy is not None:
    out.append(Row("learned", lambda lr, s, k: optax.chain(
        optax.scale_by_adam(),
        optax_greedy.learned_schedule(policy, lr, budget=s)), "train",
                   note=learned_note))
  out += [
      Row("reduce_on_plateau", lambda lr, s, k: optax.chain(
          optax.adam(lr), optax.contrib.reduce_on_plateau(
              accumulation_size=k)), "train",
          note="defaults, accumulation_size = eval_every"),
      Row("schedule_free", lambda lr, s, k: optax.contrib.schedule_free_adamw(
          lr, warmup_steps=max(1, int(WARMUP_FRACTION * s))),
          eval_params=optax.contrib.schedule_free_eval_params,
          note="warmup 5% of the steps"),
      Row("prodigy", lambda lr, s, k: optax.contrib.prodigy(),
          note="defaults (learning-rate free)"),
  ]
  unavailable = {} if policy is not None else {"learned": learned_note}
  return out, unavailable


def cosine_row():
  """Warmup-cosine Adam; the schedule at peak 1 times ``lr`` (linear in the
  peak), so the peak can be a traced argument."""
  def build(lr, steps, k):
    del k
    unit = optax.warmup_cosine_decay_schedule(
        0.0, 1.0, max(1, int(WARMUP_FRACTION * steps)), steps)
    return optax.adam(lambda count: lr * unit(count))
  return Row("cosine", build)


# ------------------------------------------------------------ training ----


def _programs(workload, row):
  """``(init, block, evaluate)`` jitted once per (workload, row); the
  rate is a traced argument, so peaks and seeds reuse them."""
  steps, k = workload.steps, workload.eval_every

  def loss_fn(params, inputs, targets):
    return workload.loss(params, inputs, targets)[0]

  @jax.jit
  def init(lr, key):
    params = workload.init(key)
    return params, row.build(lr, steps, k).init(params)

  @jax.jit
  def block(lr, params, state, idx, last_val, observe, train):
    tx = row.build(lr, steps, k)

    def step(carry, xs):
      params, state = carry
      i, rows_ = xs
      inputs, targets = _minibatch(workload, train, rows_)
      value, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
      if row.feed == "train":
        extra = {"value": value}
      elif row.feed == "val":
        extra = {"value": last_val, "observe": observe & (i == 0)}
      else:
        extra = {}
      updates, state = tx.update(grads, state, params, **extra)
      return (optax.apply_updates(params, updates), state), value

    (params, state), losses = jax.lax.scan(
        step, (params, state), (jnp.arange(idx.shape[0]), idx))
    return params, state, losses

  @jax.jit
  def evaluate(params, state, valid, test):
    if row.eval_params is not None:
      params = row.eval_params(state, params)
    val, _ = workload.loss(params, *valid)
    test, correct = workload.loss(params, *test)
    return val, test, correct

  return init, block, evaluate


def train(workload, programs, lr, seed):
  """One run; returns its curves, final correctness and timings."""
  init, block, evaluate = programs
  k = workload.eval_every
  # Data are arguments, not constants folded into the programs.
  data = jax.device_put((workload.train, workload.valid, workload.test))
  stream = workload.sample(np.random.default_rng(seed), workload.steps)
  start = time.perf_counter()
  params, state = init(jnp.float32(lr), jax.random.PRNGKey(seed))
  val, test, correct = jax.device_get(evaluate(params, state, *data[1:]))
  first_s = time.perf_counter() - start
  curve = {"step": [0], "val_loss": [float(val)], "test_loss": [float(test)],
           "test_acc": [float(np.mean(correct))], "train_seconds": [0.0],
           "train_loss": []}
  train_s = 0.0
  for b in range(workload.steps // k):
    t0 = time.perf_counter()
    params, state, losses = block(jnp.float32(lr), params, state,
                                  stream[b * k:(b + 1) * k],
                                  jnp.float32(val), jnp.bool_(b > 0),
                                  data[0])
    losses = jax.device_get(losses)
    train_s += time.perf_counter() - t0
    val, test, correct = jax.device_get(evaluate(params, state, *data[1:]))
    curve["step"].append((b + 1) * k)
    curve["val_loss"].append(float(val))
    curve["test_loss"].append(float(test))
    curve["test_acc"].append(float(np.mean(correct)))
    curve["train_seconds"].append(train_s)
    curve["train_loss"].append(float(np.mean(losses)))
  # The first block includes compilation: per-step time from the others.
  blocks = np.diff(curve["train_seconds"])
  steady = blocks[1:] if len(blocks) > 1 else blocks
  return {"curve": curve, "correct": np.asarray(correct, bool),
          "seconds_per_step": float(np.median(steady) / k),
          "first_block_s": float(blocks[0]) + first_s,
          "train_seconds": train_s}


# ------------------------------------------------------------- analysis ---


def _finite(x):
  return float(x) if np.isfinite(x) else float("inf")


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
  mean_of = lambda name, key, seeds: float(np.mean(
      [_finite(runs[name][s]["curve"][key][-1]) for s in seeds]))
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
    tests = [_finite(r["curve"]["test_loss"][-1]) for r in rs]
    accs = [r["curve"]["test_acc"][-1] for r in rs]
    curve = np.mean([[_finite(x) for x in r["curve"]["test_loss"]]
                     for r in rs], axis=0)
    hit = np.flatnonzero(curve <= target * (1 + 1e-9))
    steps_to = int(rs[0]["curve"]["step"][hit[0]]) if hit.size else None
    secs_to = (float(np.mean([r["curve"]["train_seconds"][hit[0]]
                              for r in rs])) if hit.size else None)
    flips = [float(np.mean(np.asarray(runs[base][s]["correct"], bool)
                           & ~np.asarray(r["correct"], bool)))
             for s, r in zip(seeds, rs)]
    results[name] = {
        "seeds": [int(s) for s in seeds],
        "test_loss_mean": float(np.mean(tests)),
        "test_loss_sd": float(np.std(tests)),
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
  entry["baseline"] = base
  return results


def markdown(entries):
  lines = []
  for e in entries:
    lines += [f"### {e['name']}: {e['n_params']:,} parameters, "
              f"{e['steps']} steps, seeds {e['seeds']}", "",
              f"{e['description']}. {e.get('note', '')}.", ""]
    res = e.get("results") or {}
    if not res:
      lines += ["(no complete row yet)", ""]
      continue
    lines += [
        f"Baseline: warmup-cosine Adam, peak tuned on {e['peaks']} by "
        f"validation loss (seeds {e.get('tuned_on_seeds', e['seeds'])}): "
        f"**{e['baseline']}**; target = its mean final "
        f"test loss {e['target_test_loss']:.4f}. Held-out **test** loss "
        "and accuracy (mean over seeds); flips and accuracy change against "
        "the tuned baseline of the same seed.", "",
        "| row | seeds | test loss | test acc. | acc. change | negative "
        "flips | steps to target | seconds to target | ms/step | val loss | "
        "train loss (last block) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(res, key=lambda n: res[n]["test_loss_mean"])
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
  return "\n".join(lines) + "\n"


def figure(entries, path):
  """Test loss curves per workload and a performance profile."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
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
  doc = {"machine": machine, "workloads": public}
  tmp = sub / "workloads.json.tmp"
  tmp.write_text(json.dumps(_clean(doc), indent=1))
  os.replace(tmp, sub / "workloads.json")
  (sub / "workloads.md").write_text(markdown(entries))
  summary = out / "summary.json"
  data = json.loads(summary.read_text()) if summary.exists() else {}
  data["workloads"] = [{k: v for k, v in e.items() if k != "runs"}
                       for e in _clean(public)]
  data.setdefault("meta", {})["workloads_machine"] = machine
  tmp = out / "summary.json.tmp"
  tmp.write_text(json.dumps(data, separators=(",", ":")))
  os.replace(tmp, summary)


def _clean(x):
  if isinstance(x, dict):
    return {str(k): _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, np.ndarray):
    return _clean(x.tolist())
  if isinstance(x, (float, np.floating)):
    return float(x) if np.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  return x


def _finished(out_dir, entry, log):
  """The runs of ``entry``'s workload finished by an earlier call with the
  same configuration (:data:`RESUME_KEYS`), from ``out_dir/workloads``."""
  sub = pathlib.Path(out_dir) / "workloads"
  path = sub / "workloads.json"
  if not path.exists():
    return {}
  try:
    old = json.loads(path.read_text())["workloads"]
    correct = np.load(sub / CORRECT_FILE)
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f"cannot resume from {path}: expected workloads.json "
                     f"and {CORRECT_FILE} written by bench.workloads "
                     f"({type(e).__name__}: {e})") from e
  for prev in old:
    if all(prev.get(k) == entry[k] for k in RESUME_KEYS):
      runs = {}
      for label, by in prev["runs"].items():
        for seed, r in by.items():
          key = f"{entry['name']}/{label}/{seed}"
          if key in correct.files:
            runs.setdefault(label, {})[seed] = {
                **r, "correct": correct[key]}
      log(f"[workloads] {entry['name']}: resuming with "
          f"{sum(map(len, runs.values()))} finished runs from {path}")
      return runs
  return {}


def run(out_dir, names=("cnn", "lm"), seeds=SEEDS, peaks=None,
        scale=1.0, only=None, machine=None, resume=False, log=print):
  """Runs the workloads; writes results after every run (module doc).

  Args:
    peaks: the cosine grid (each workload's own, :attr:`Workload.peaks`,
      if None).
    scale: multiplies every step budget (``0.01`` for the smoke test).
    only: names of the rows to run besides the cosine grid (all if None).
    resume: reuse the runs that an earlier call with the same workload
      configuration finished in ``out_dir`` (rows whose code changed since
      are not detected: resume only within one version of the library).
  """
  entries = []
  candidates, unavailable = rows()
  if only is not None:
    candidates = [r for r in candidates if r.name in only]
  for name in names:
    kwargs = {"steps": max(2, int(WORKLOADS[name]().steps * scale))}
    kwargs["eval_every"] = max(1, kwargs["steps"] // 20)
    w = WORKLOADS[name](**kwargs)
    grid = tuple(peaks or w.peaks)
    n_params = sum(x.size for x in jax.tree.leaves(
        jax.eval_shape(w.init, jax.random.PRNGKey(0))))
    entry = {"name": w.name, "n_params": int(n_params), "steps": w.steps,
             "eval_every": w.eval_every, "seeds": list(seeds),
             "peaks": list(grid), "note": w.note,
             "description": (WORKLOADS[name].__doc__ or "").split("\n")[0]
                            .rstrip("."),
             "notes": {r.name: r.note for r in candidates},
             "errors": dict(unavailable), "runs": {}, "results": {}}
    if resume:
      entry["runs"] = _finished(out_dir, entry, log)
    entries.append(entry)

    programs = {}

    def do(row, lr, label, seed):
      if str(seed) in entry["runs"].get(label, {}):
        return
      try:
        if label not in programs:
          programs[label] = _programs(w, row)
        t0 = time.perf_counter()
        r = train(w, programs[label], lr, seed)
        entry["runs"].setdefault(label, {})[str(seed)] = r
        entry["results"] = analyse(entry)
        _write(out_dir, entries, machine)
        log(f"[workloads] {w.name} {label} seed {seed}: test loss "
            f"{r['curve']['test_loss'][-1]:.4f}, "
            f"{1e3 * r['seconds_per_step']:.1f} ms/step, "
            f"{time.perf_counter() - t0:.0f} s")
      except Exception as e:  # pylint: disable=broad-except
        entry["errors"][label] = f"{type(e).__name__}: {e!s:.300}"
        entry["runs"].pop(label, None)
        _write(out_dir, entries, machine)
        log(f"[workloads] {w.name} {label} failed: {entry['errors'][label]}")

    # Seed-major, so that a stopped run has whole tables for the first
    # seeds; the peak is tuned once, on the first seed's validation loss.
    cosine = cosine_row()
    entry["tuned_peak"] = None
    for seed in seeds:
      for p in grid:
        do(cosine, p, f"cosine@{p:g}", seed)
      entry["results"] = analyse(entry)
      tuned = entry.get("tuned_peak") or grid[len(grid) // 2]
      for row in candidates:
        if row.name not in entry["errors"]:
          do(row, tuned, row.name, seed)
      figure(entries, pathlib.Path(out_dir) / "workloads" / "workloads.png")
    entry["results"] = analyse(entry)
    _write(out_dir, entries, machine)
  return entries
