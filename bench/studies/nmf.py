"""Study: learning-rate schedules for stochastic NMF of the digits.

Factors ``V`` = scikit-learn's digits as a ``64 x 1797`` matrix (one image
per column, pixels in [0, 1]) into rank-16 non-negative ``W``, ``H`` by
projected SGD on column minibatches (256 images per step, the ``n / b``
scaled :func:`optax_greedy.nmf.loss`), every controller at the same step
budget, from the same initialisations and minibatch streams (one per seed;
all seeds of a controller run under one ``jax.vmap`` in one ``jax.jit``):

* ``constant 3x bound``: a constant rate 3 times the bound (fails);
* ``constant at bound``: the bound ``B0`` itself;
* ``step decay``: ``B0``, halved every quarter of the budget;
* ``cosine``: ``B0`` decayed to 0 by a cosine;
* ``greedy_lr``: :func:`optax_greedy.greedy_lr` with its defaults from
  ``B0`` (its ``max_lr`` lets it climb to ``10 B0``), and from ``10 B0``;
* ``greedy_lr clipped (batch bound)``: the same inside
  :func:`optax_greedy.stability_clip` (``safety=0.9``), capped at the joint
  bound of each step's minibatch (``bound_args=("columns",)``), from ``B0``
  and from ``10 B0``;
* ``greedy_lr clipped (any-batch bound)``: capped at the joint bound that
  holds for every batch of 256 columns (``batch_size=256``), from ``B0``.

The bounds are recomputed every step. All greedy rows share one compiled
program (an infinite bound turns the clip off).

``B0`` is :func:`optax_greedy.nmf.stability_bounds` with ``joint=True`` and
``batch_size=256`` at the initial factors (the same for both, as both are
updated in every step), averaged over the seeds. Reported: the final
relative reconstruction error ``||V - WH||_F / ||V||_F`` on the full matrix
(mean and spread over seeds), the steps to reach a target error (within
10% of scikit-learn's full-batch ``NMF``, rounded up to 0.01; the median
over seeds, ``-`` if a seed never reaches it), and the wall-clock time, next
to scikit-learn's ``NMF`` (coordinate descent, full batch) and
``MiniBatchNMF`` (same batch size) on the same matrix and rank.

    python -m bench nmf --quick --out /tmp/nmf_bench

The fits run in the NMF loop (:mod:`bench.core.nmf_loop`), not the
networks' (:mod:`bench.core.loop`): every step passes the minibatch's
columns to the clipped controllers' bound (``bound_args``) and reads the
rate from the state before and after the update.
"""

import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy
from bench.core import nmf_loop as NL
from bench.core import output as O
from bench.core import registry as R
from bench.core import verdict
from optax_greedy import nmf

RANK = 16
BATCH = 256
SAFETY = 0.9


def _schedules(bound, steps):
  """The fixed schedules, name -> rate at each step (an array): the
  benchmark's builder (:func:`bench.core.registry.schedule_multipliers`)
  times the bound."""
  unit = R.schedule_multipliers(steps, ("constant", "step", "cosine"))
  return {
      "constant 3x bound": jnp.asarray(3 * bound * unit["constant"]),
      "constant at bound": jnp.asarray(bound * unit["constant"]),
      "step decay": jnp.asarray(bound * unit["step"]),
      "cosine": jnp.asarray(bound * unit["cosine"]),
  }


# Greedy variants: name -> (initial rate in units of the bound, clip mode).
# Mode 0 has an infinite bound, i.e. plain greedy_lr (stability_clip then
# changes nothing), so all variants share one compiled program.
_GREEDY = {
    "greedy_lr": (1.0, 0),
    "greedy_lr from 10x bound": (10.0, 0),
    "greedy_lr clipped (batch bound)": (1.0, 2),
    "greedy_lr clipped (batch bound) from 10x": (10.0, 2),
    "greedy_lr clipped (any-batch bound)": (1.0, 1),
}


def _clip_bound(params, columns=None, *, mode):
  """Mode 0: no bound; 1: safe for every batch; 2: exact for this batch
  (the full-batch bound at ``init``, which has no batch)."""
  any_batch = nmf.stability_bounds(params, joint=True, batch_size=BATCH)
  this_batch = nmf.stability_bounds(params, joint=True, columns=columns)
  return jax.tree.map(
      lambda a, b: jnp.select([mode == 1, mode == 2], [a, b], jnp.inf),
      any_batch, this_batch)


def _schedule_tx(rates):
  """SGD at ``rates[t]``; the rate applied is the schedule's."""
  def rate_fn(before, after, t):
    del before, after
    return rates[t]
  return optax.sgd(lambda count: rates[count]), rate_fn


def _greedy_tx(initial, mode):
  """greedy_lr from ``initial``, inside stability_clip (see ``_GREEDY``)."""
  def rate_fn(before, after, t):
    del before, t
    return optax.tree.get(after, "learning_rate")["W"]
  max_rate = functools.partial(_clip_bound, mode=mode)
  tx = optax_greedy.stability_clip(
      max_rate, inner=optax_greedy.greedy_lr(initial), safety=SAFETY,
      bound_args=("columns",))
  return tx, rate_fn


def _batches(seed, n, steps):
  """Column indices of each step, ``[steps, BATCH]``: a fresh permutation
  every epoch (drawn by NumPy: ``jax.random.permutation`` compiles slowly)."""
  rng = np.random.default_rng(seed)
  per_epoch = n // BATCH
  epochs = -(-steps // per_epoch)
  perms = np.stack([rng.permutation(n) for _ in range(epochs)])
  return perms[:, :per_epoch * BATCH].reshape(-1, BATCH)[:steps]


def _fit(V, build, eval_every, seed, batches, *hyper):
  """One run in the NMF loop (:mod:`bench.core.nmf_loop`): errors every
  ``eval_every`` steps, per-step losses and rates."""
  tx, rate_fn = build(*hyper)
  tx = optax.chain(tx, optax.keep_params_nonnegative())
  key = jax.random.key(seed)
  params = nmf.init(jax.random.fold_in(key, 0), V, RANK)
  n = V.shape[1]

  def record(s):
    rate = rate_fn(s.state, s.new_state, s.t)
    return s.value / n, jnp.asarray(rate, jnp.float32)

  lp = NL.loop(V, tx, record, pass_columns=True)
  errors, (values, rates) = lp.run(params, batches, eval_every)
  return errors, values, rates


def _program(V, build, steps, eval_every, seeds, *hyper):
  """Runs every (hyper, seed) pair in one compiled program.

  Returns errors ``[k, seed, eval]``, rates ``[k, seed, step]`` and the
  compile and run seconds.
  """
  over_seeds = jax.vmap(
      functools.partial(_fit, V, build, eval_every),
      (0, 0) + (None,) * len(hyper))
  fit = jax.jit(jax.vmap(over_seeds, (None, None) + (0,) * len(hyper)))
  batches = np.stack([_batches(s, V.shape[1], steps) for s in seeds])
  args = (jnp.asarray(seeds), jnp.asarray(batches)) + tuple(
      jnp.asarray(h) for h in hyper)
  start = time.perf_counter()
  compiled = fit.lower(*args).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  errors, _, rates = jax.block_until_ready(compiled(*args))
  run_s = time.perf_counter() - start
  return np.asarray(errors, np.float64), np.asarray(rates), compile_s, run_s


def _initial_bound(V, seeds):
  bounds = [nmf.stability_bounds(
      nmf.init(jax.random.fold_in(jax.random.key(s), 0), V, RANK),
      joint=True, batch_size=BATCH)["W"] for s in seeds]
  return float(np.mean(bounds))


def _sklearn(X, seeds, steps):
  """scikit-learn's NMF (its defaults: at most 200 coordinate-descent
  iterations, tol 1e-4) and MiniBatchNMF (as many passes over the data as
  ``steps`` minibatches): relative error and seconds per fit."""
  # pylint: disable=import-outside-toplevel
  import warnings
  from sklearn import decomposition
  from sklearn.exceptions import ConvergenceWarning
  rows = {}
  epochs = max(steps * BATCH // X.shape[0], 1)
  makers = {
      "sklearn NMF (cd)": lambda s: decomposition.NMF(
          RANK, init="random", solver="cd", random_state=s),
      # The same number of passes over the data as the SGD runs.
      "sklearn MiniBatchNMF": lambda s: decomposition.MiniBatchNMF(
          RANK, init="random", batch_size=BATCH, max_iter=epochs,
          max_no_improvement=None, random_state=s),
  }
  norm = np.linalg.norm(X)
  for name, make in makers.items():
    errors, seconds, iters = [], [], []
    for s in seeds:
      model = make(s)
      start = time.perf_counter()
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = model.fit_transform(X)
      seconds.append(time.perf_counter() - start)
      errors.append(np.linalg.norm(X - W @ model.components_) / norm)
      iters.append(model.n_iter_)
    rows[name] = {"errors": errors, "seconds": float(np.mean(seconds)),
                  "iterations": int(np.median(iters))}
  return rows


def _steps_to(errors, target, eval_every):
  """Median over seeds of the first evaluated step at or below ``target``
  (:func:`bench.core.verdict.steps_to_target`); ``None`` unless every
  seed reaches it."""
  steps = np.arange(errors.shape[-1]) * eval_every
  first = [verdict.steps_to_target(e, steps, target) for e in errors]
  if None in first:
    return None
  return int(np.median(first))


def _plot(path, curves, eval_every, bound, title):
  plt = O.pyplot()
  fig, (ax_err, ax_lr) = plt.subplots(1, 2, figsize=(14, 4.2))
  for name, (errors, rates) in curves.items():
    steps = np.arange(errors.shape[-1]) * eval_every
    ax_err.plot(steps, np.where(np.isfinite(errors), errors, np.nan),
                label=name)
    ax_lr.plot(np.arange(rates.shape[-1]), rates, label=name)
  ax_lr.axhline(bound, color="k", ls=":", lw=1, label="bound at init")
  finite = [e[np.isfinite(e)] for e, _ in curves.values()]
  low = min(e.min() for e in finite if e.size)
  ax_err.set(xlabel="step", ylabel="relative error ||V-WH||/||V||",
             yscale="log", title=title, ylim=(0.9 * low, 1.5))
  ax_lr.set(xlabel="step", ylabel="learning rate applied to W",
            yscale="log", title="learning rate (seed 0)")
  # One legend, beside the panels: it covers no data.
  handles, labels = ax_lr.get_legend_handles_labels()
  fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.79, 0.5),
             fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0, 0.79, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(quick: bool = True, out_dir=None, seeds=None, steps=None) -> dict:
  """Runs the comparison; writes ``nmf.md``, ``nmf.json``, ``nmf.png``.

  Args:
    quick: 600 steps and 3 seeds (under a minute on 2 cores) instead of
      3000 steps and 5 seeds.
    out_dir: folder for the outputs (created); ``None`` writes nothing.
    seeds: the seeds (default ``range(3)``, or ``range(5)`` when not quick).
    steps: the step budget, a multiple of 20 (default 600 quick, 3000
      not; smaller for a smoke test).

  Returns:
    A dict with ``config``, ``bound``, ``target`` and ``rows``: one per
    method with ``final_error`` (per seed), ``steps_to_target``, ``seconds``.
  """
  steps = steps or (600 if quick else 3000)
  eval_every = 20
  seeds = tuple(range(3 if quick else 5)) if seeds is None else tuple(seeds)
  V = nmf.digits_matrix().T
  bound = _initial_bound(V, seeds)
  rows, curves = {}, {}
  programs = []
  schedules = _schedules(bound, steps)
  programs.append((list(schedules), _schedule_tx,
                   (jnp.stack(list(schedules.values())),)))
  programs.append((list(_GREEDY), _greedy_tx, (
      jnp.asarray([bound * v[0] for v in _GREEDY.values()]),
      jnp.asarray([v[1] for v in _GREEDY.values()]))))
  for names, build, hyper in programs:
    errors, rates, compile_s, run_s = _program(
        V, build, steps, eval_every, seeds, *hyper)
    for k, name in enumerate(names):
      rows[name] = {"errors": errors[k],
                    "seconds": run_s / len(names) / len(seeds),
                    "compile_seconds": compile_s}
      finite = np.where(np.isfinite(errors[k]), errors[k], np.inf)
      curves[name] = (np.median(finite, axis=0), rates[k, 0])
  X = np.asarray(V.T, np.float64)
  reference = _sklearn(X, seeds[:1] if quick else seeds, steps)
  best = np.mean(reference["sklearn NMF (cd)"]["errors"])
  target = float(np.ceil(best * 1.1 * 100) / 100)

  table = {}
  for name, row in rows.items():
    final = row["errors"][:, -1]
    table[name] = {
        "final_error": [float(e) for e in final],
        "steps_to_target": _steps_to(row["errors"], target, eval_every),
        "seconds": row["seconds"],
        "compile_seconds": row["compile_seconds"],
    }
  for name, row in reference.items():
    table[name] = {"final_error": [float(e) for e in row["errors"]],
                   "steps_to_target": None, "seconds": row["seconds"],
                   "iterations": row["iterations"]}
  result = {
      "config": {"matrix": "sklearn digits, 64 x 1797 (images as columns)",
                 "rank": RANK, "batch_size": BATCH, "steps": steps,
                 "eval_every": eval_every, "seeds": list(seeds),
                 "safety": SAFETY, "backend": jax.default_backend()},
      "bound": bound, "target": target, "rows": table}
  if out_dir is not None:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    O.write_json(out / "nmf.json", result, indent=1)
    (out / "nmf.md").write_text(markdown(result))
    _plot(out / "nmf.png", curves, eval_every, SAFETY * bound,
          f"stochastic NMF of digits, rank {RANK}, batch {BATCH}")
  return result


def _fmt_errors(errors):
  """Mean ± sd over seeds; failed seeds (non-finite or >= 1) counted apart."""
  errors = np.asarray(errors)
  failed = ~np.isfinite(errors) | (errors >= 1)
  if not failed.any():
    return f"{errors.mean():.4f} ± {errors.std():.4f}"
  text = f"failed on {int(failed.sum())}/{errors.size} seeds"
  if not failed.all():
    text += f" (others {errors[~failed].mean():.4f})"
  return text


def markdown(result) -> str:
  """The results as a markdown table."""
  cfg = result["config"]
  lines = [
      f"Stochastic NMF, {cfg['matrix']}, rank {cfg['rank']}, batch "
      f"{cfg['batch_size']}, {cfg['steps']} steps, seeds {cfg['seeds']}; "
      f"bound B0 = {result['bound']:.3g} (joint, minibatch); target error "
      f"{result['target']:.2f}.",
      "",
      "| method | final relative error (mean ± sd) | steps to target "
      "(median) | seconds per run* |",
      "|---|---|---|---|",
  ]
  for name, row in result["rows"].items():
    steps = row["steps_to_target"]
    if "iterations" in row:
      steps_text = f"n/a ({row['iterations']} iterations)"
    else:
      steps_text = "-" if steps is None else str(steps)
    lines.append(f"| {name} | {_fmt_errors(row['final_error'])} | "
                 f"{steps_text} | {row['seconds']:.3f} |")
  lines += [
      "",
      "*Excluding compilation. The schedules share one program, the"
      " greedy_lr rows another that computes both bounds every step (even"
      " unclipped); scikit-learn's are one fit on the CPU, on "
      f"{'one seed' if len(result['rows']['sklearn NMF (cd)']['final_error']) == 1 else 'each seed'}.",
  ]
  return "\n".join(lines) + "\n"
