"""Study: the learned NMF schedule against heuristic schedules.

Every method sets the rate of projected minibatch SGD on
:func:`optax_greedy.nmf.loss` with the same budget, the same initial factors
and the same minibatch stream per seed. ``B(params)`` is
``nmf.stability_bounds(params, joint=True)`` recomputed every step (the
scale of the learned policy's action, see
``optax_greedy_lab.nmf_problems``):

* ``learned``: :func:`optax_greedy.learned_schedule` with the shipped policy
  (:func:`optax_greedy.load_policy`), ``f_t * B``;
* ``learned, clipped``: the same inside
  :func:`optax_greedy.stability_clip` (``safety=0.9``);
* ``constant at bound``: ``B``; ``constant 0.5 bound``: ``0.5 B`` (the best
  constant fraction on the training distribution, a tuned baseline);
* ``step decay``: ``B`` halved every quarter of the budget;
* ``cosine``: ``B`` decayed to 0 by a cosine;
* ``greedy_lr``: :func:`optax_greedy.greedy_lr` from ``B0`` (``B`` at the
  initial factors), its defaults (it may climb to ``10 B0``);
* ``greedy_lr clipped``: the same inside ``stability_clip(B, safety=0.9)``.

Held-out problems: scikit-learn's digits (``64 x 1797``, images as
columns, rank 16, batch 256) and breast-cancer features (``30 x 569``,
rank 5, batch 64; columns of very different scales), both never seen in
training, plus synthetic problems from a *larger* distribution than the
training one (up to 64 x 128, true rank up to 10, fitted rank 8, batch
16; fresh seeds). Reported:
final relative error ``||V - WH||_F / ||V||_F``, steps to a target (10% above
the best final error any method reached on that problem and seed, median
over runs; ``-`` when a run never reaches it), and win/tie/loss of
``learned`` against each method per run (tie: final errors within 1%).

Transfer: the NMF policy applied, unchanged, to a small MLP (64-64-10,
SGD with momentum 0.9, batch 64) on the digits classification task with
``max_rate`` the peak rate of a cosine annealing baseline; test loss and
accuracy over seeds against cosine annealing at the same peak.

    python -m bench learned-nmf --quick --out /tmp/learned_bench

Win/tie/loss per run is the benchmark's verdict (:mod:`bench.core.verdict`)
on one run each. The fits run in the NMF loop (:mod:`bench.core.nmf_loop`),
recording the full relative error after every step and the rate applied to
``W`` as a fraction of the bound, read from the update itself; the MLP
trains in the benchmark's loop (:mod:`bench.core.loop`).
"""

import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy
from bench.core import data as D
from bench.core import loop as L
from bench.core import models as M
from bench.core import nmf_loop as NL
from bench.core import output as O
from bench.core import registry as R
from bench.core import verdict
from optax_greedy_lab import nmf_problems
from optax_greedy import nmf

SAFETY = 0.9
_FIXED = ("constant at bound", "constant 0.5 bound", "step decay", "cosine")
_GREEDY = ("greedy_lr", "greedy_lr clipped")
_LEARNED = ("learned", "learned, clipped")


def _fixed_fractions(steps):
  """Fractions of the bound per step for the fixed schedules ``[4, T]``
  (the benchmark's builder,
  :func:`bench.core.registry.schedule_multipliers`)."""
  unit = R.schedule_multipliers(steps, ("constant", "step", "cosine"))
  return jnp.asarray(np.stack([unit["constant"], 0.5 * unit["constant"],
                               unit["step"], unit["cosine"]]))


def _fraction_of_bound(fractions):
  """Scales updates by ``-fractions[t] * B(params_t)``."""
  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    fraction = fractions[jnp.minimum(state.count, fractions.shape[0] - 1)]
    updates = jax.tree.map(
        lambda b, sub: jax.tree.map(lambda u: -fraction * b * u, sub),
        nmf_problems.nmf_bound(params), updates)
    return updates, optax.ScaleByScheduleState(
        count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _greedy_tx(initial, clipped):
  """greedy_lr from ``initial``; inside stability_clip (infinite bound when
  not ``clipped``, so both variants share one compiled program)."""
  max_rate = lambda p: jax.tree.map(
      lambda b: jnp.where(clipped, b, jnp.inf), nmf_problems.nmf_bound(p))
  return optax_greedy.stability_clip(
      max_rate, inner=optax_greedy.greedy_lr(initial), safety=SAFETY)


def _learned_tx(policy, steps, clipped):
  inner = optax_greedy.learned_schedule(policy, nmf_problems.nmf_bound,
                                        total_steps=steps,
                                        envelope=optax_greedy.NO_ENVELOPE)
  max_rate = lambda p: jax.tree.map(
      lambda b: jnp.where(clipped, b, jnp.inf), nmf_problems.nmf_bound(p))
  return optax_greedy.stability_clip(max_rate, inner=inner, safety=SAFETY)


def _batches(seed, n, batch, steps):
  """Column indices per step ``[steps, batch]``, without replacement within
  a step (drawn by NumPy, outside the compiled program)."""
  rng = np.random.default_rng(seed)
  return np.stack([rng.choice(n, batch, replace=False) for _ in range(steps)])


def _record(V):
  """What the fits keep of a step (:class:`bench.core.nmf_loop.Step`): the
  full relative error after it and the rate applied to ``W`` as a fraction
  of the bound, read from the update itself."""
  def record(s):
    g = s.grads["W"]
    rate = -jnp.vdot(s.updates["W"], g) / jnp.maximum(jnp.vdot(g, g), 1e-30)
    fraction = rate / nmf_problems.nmf_bound(s.params)["W"]
    return nmf.relative_error(s.new_params, V), fraction
  return record


def _fit(V, rank, batch, steps, tx, key, batches):
  """Projected minibatch SGD in the NMF loop (:mod:`bench.core.nmf_loop`);
  per-step full relative error and the rate applied to ``W`` as a
  fraction of the bound."""
  del batch
  params = nmf_problems.init_factors(
      key, nmf_problems.NMFProblem(V, jnp.ones([rank]), jnp.asarray(steps)))
  lp = NL.loop(V, tx, _record(V), apply=NL.project)
  _, (errors, fractions) = lp.train(
      (params, tx.init(params)), (jnp.arange(batches.shape[0]), batches))
  return errors, fractions


# Key -> the name of each held-out problem set in the report.
PROBLEMS = {"digits": "digits 64x1797 r16",
            "cancer": "breast cancer 30x569 r5",
            "synthetic": "synthetic (larger)"}


def _problems(quick, steps=None, sets=tuple(PROBLEMS)):
  """Held-out problem ``sets``: name -> (V [P, m, n], rank, batch,
  steps); ``steps`` replaces every budget."""
  count = 8 if quick else 24
  keys = jax.random.split(jax.random.key(20_231_123), count)
  synth = jax.vmap(functools.partial(
      nmf_problems.sample_problem, rows=64, cols=128, max_rank=10))(keys)
  cancer = jnp.asarray(D.sklearn_table("breast_cancer")[0].T, jnp.float32)
  every = {
      "digits": (nmf.digits_matrix().T[None], 16, 256,
                 steps or (200 if quick else 400)),
      "cancer": (cancer[None], 5, 64, steps or 200),
      "synthetic": (synth.V, 8, 16, steps or 200),
  }
  return {PROBLEMS[k]: every[k] for k in sets}


def _run_problem(V, rank, batch, steps, seeds, policy):
  """All methods on all ``V`` x seeds: errors ``{name: [runs, T]}``,
  fractions of the first run and seconds per method."""
  keys = jnp.stack([jax.random.key(s) for s in seeds])
  batches = jnp.asarray(np.stack([_batches(s, V.shape[2], batch, steps)
                                  for s in seeds]))
  fit = functools.partial(_fit, rank=rank, batch=batch, steps=steps)

  def runs(make_tx, hyper):
    """One program vmapped over the hyperparameters and the seeds, run once
    per matrix (a Python loop over ``V``; the program compiles once).

    Vmapping over the matrices too (24 x 5 seeds x 2 options in one call)
    deadlocks the XLA CPU runtime of jax/jaxlib 0.10.2 now and then: every
    thread idles and the result never comes (see bench/README.md).
    """
    one = lambda h, v, k, b: fit(v, tx=make_tx(h, v, k), key=k, batches=b)
    over_seeds = jax.vmap(one, (None, None, 0, 0))
    program = jax.jit(jax.vmap(over_seeds, (0, None, None, None)))
    per_matrix = [jax.device_get(program(hyper, v, keys, batches))
                  for v in V]
    # [hyper, matrix, seed, T], as the single vmapped call returned.
    return jax.tree.map(lambda *x: np.stack(x, axis=1), *per_matrix)

  def initial_bound(v, k):
    params = nmf_problems.init_factors(
        k, nmf_problems.NMFProblem(v, jnp.ones([rank]), jnp.asarray(steps)))
    return nmf_problems.nmf_bound(params)["W"]

  out, fractions, seconds = {}, {}, {}
  programs = (
      (_FIXED, lambda f, v, k: _fraction_of_bound(f),
       _fixed_fractions(steps)),
      (_GREEDY, lambda c, v, k: _greedy_tx(initial_bound(v, k), c),
       jnp.asarray([False, True])),
      (_LEARNED, lambda c, v, k: _learned_tx(policy, steps, c),
       jnp.asarray([False, True])),
  )
  for names, make_tx, hyper in programs:
    start = time.perf_counter()
    errors, fracs = jax.device_get(runs(make_tx, hyper))
    elapsed = time.perf_counter() - start
    for i, name in enumerate(names):
      out[name] = np.asarray(errors[i]).reshape(-1, steps)
      fractions[name] = np.asarray(fracs[i])[0, 0]
      seconds[name] = elapsed / len(names)
  return out, fractions, seconds


def _per_run_verdicts(mine, theirs):
  """``[wins, ties, losses]`` of ``mine`` against ``theirs``, run by run
  (one seed each: the verdict's 1% rule)."""
  outcomes = [verdict.compare([a], [b])[0] for a, b in zip(mine, theirs)]
  return [outcomes.count(o) for o in verdict.OUTCOMES]


def _summary(errors):
  """Per method: final errors, divergences, steps to a target 10% above
  the best final error of the run, and ``learned``'s verdicts."""
  finals = {k: np.where(np.isfinite(v[:, -1]), v[:, -1], np.inf)
            for k, v in errors.items()}
  best = np.min(np.stack(list(finals.values())), axis=0)
  target = 1.1 * best
  rows = {}
  for name, err in errors.items():
    first = np.asarray([
        verdict.steps_to_target(e, np.arange(1, e.size + 1), t) or -1
        for e, t in zip(err, target)])
    ok = finals[name] < 1
    rows[name] = {
        "final_error_mean": float(np.mean(finals[name][ok])) if ok.any()
                            else None,
        "final_error_sd": float(np.std(finals[name][ok])) if ok.any()
                          else None,
        "diverged": int((~ok).sum()),
        "steps_to_target_median": (
            int(np.median(first)) if (first > 0).all() else None),
        "reached_target": int((first > 0).sum()),
        "runs": int(first.size),
    }
    if name != "learned":
      rows[name]["learned_win_tie_loss"] = _per_run_verdicts(
          finals["learned"], finals[name])
  return rows


def _either(learned, first, second):
  """Both transforms updated every step, the updates of ``second`` applied
  where ``learned`` (traced: both choices in one program), else those of
  ``first``; ``second`` alone receives ``value=``."""
  def init_fn(params):
    return first.init(params), second.init(params)

  def update_fn(updates, state, params=None, value=None, **extra_args):
    del extra_args
    u_first, s_first = first.update(updates, state[0], params)
    u_second, s_second = second.update(updates, state[1], params,
                                       value=value)
    chosen = jax.tree.map(lambda a, b: jnp.where(learned, b, a), u_first,
                          u_second)
    return chosen, (s_first, s_second)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _transfer(policy, seeds, quick, steps=None):
  """NMF policy vs cosine on an MLP for sklearn digits (see module doc),
  trained in the benchmark's loop (:mod:`bench.core.loop`), one block."""
  x, y = D.sklearn_table("digits")
  x = jnp.asarray(x / 16.0, jnp.float32)
  y = jnp.asarray(y)
  data = (x[:1200], y[:1200], x[1200:], y[1200:])
  steps, batch = steps or (300 if quick else 600), 64
  model = M.MLP(widths=(64,))

  def loss_fn(params, xb, yb):
    logits = model.apply(params, xb)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, yb))

  def train_loss(params, data, key):
    x_train, y_train, _, _ = data
    idx = jax.random.choice(key, x_train.shape[0], (batch,), replace=False)
    return loss_fn(params, x_train[idx], y_train[idx])

  def evaluate(params, data):
    _, _, x_test, y_test = data
    logits = model.apply(params, x_test)
    return (loss_fn(params, x_test, y_test),
            jnp.mean(jnp.argmax(logits, -1) == y_test))

  def train(peak, learned, key):
    key_init, key_steps = jax.random.split(key)
    params = model.init(key_init, data[0][:1])
    cosine = optax.scale_by_learning_rate(
        optax.cosine_decay_schedule(peak, steps))
    tx = _either(learned, optax.chain(optax.trace(0.9), cosine), optax.chain(
        optax.trace(0.9),
        optax_greedy.learned_schedule(policy, peak, total_steps=steps,
                                      envelope=optax_greedy.NO_ENVELOPE)))
    lp = L.loop(L.Problem(train_loss, evaluate), tx, "train", steps)
    out = lp.run(data, params, jax.random.split(key_steps, steps))
    return out.evals[-1], out.extras[-1]

  peaks = jnp.asarray([0.03, 0.1, 0.3])
  keys = jnp.stack([jax.random.key(s) for s in seeds])
  start = time.perf_counter()
  grid = jax.jit(jax.vmap(lambda p: jax.vmap(lambda l: jax.vmap(
      lambda k: train(p, l, k))(keys))(jnp.asarray([False, True]))))
  losses, accs = jax.device_get(grid(peaks))
  seconds = time.perf_counter() - start
  rows = {}
  for i, peak in enumerate(np.asarray(peaks)):
    for j, name in enumerate(("cosine", "learned (NMF policy)")):
      rows[f"{name}, peak {peak:g}"] = {
          "test_loss_mean": float(np.mean(losses[i, j])),
          "test_loss_sd": float(np.std(losses[i, j])),
          "test_accuracy_mean": float(np.mean(accs[i, j]))}
    rows[f"learned (NMF policy), peak {peak:g}"]["win_tie_loss_vs_cosine"] = (
        _per_run_verdicts(losses[i, 1], losses[i, 0]))
  return {"task": "MLP 64-64-10 on sklearn digits (1200 train / 597 test),"
                  f" SGD momentum 0.9, batch {batch}, {steps} steps",
          "seconds": seconds, "rows": rows}


def _plot(path, curves):
  plt = O.pyplot()
  shown = ("learned", "step decay", "greedy_lr", "greedy_lr clipped",
           "cosine")
  fig, axes = plt.subplots(2, len(curves), figsize=(5 * len(curves), 7),
                           squeeze=False)
  for col, (title, (errors, fractions)) in enumerate(curves.items()):
    low = np.inf
    for name in shown:
      median = np.nanmedian(errors[name], axis=0)
      width = 2.5 if name == "learned" else 1.2
      axes[0, col].plot(median, label=name, lw=width)
      axes[1, col].plot(fractions[name], label=name, lw=width)
      low = min(low, np.nanmin(median))
    # A diverging run leaves the plot at the top; the rest stays readable.
    axes[0, col].set(title=title, xlabel="step", yscale="log",
                     ylabel="relative error (median over runs)",
                     ylim=(0.9 * low, 1.2))
    axes[1, col].set(xlabel="step", yscale="log", ylim=(1e-3, 10),
                     ylabel="rate on W / bound (first run)")
    axes[1, col].axhline(1.0, color="k", ls=":", lw=1)
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def run(quick: bool = True, out_dir=None, seeds=None, steps=None,
        sets=tuple(PROBLEMS)) -> dict:
  """Runs the comparison and the transfer experiment.

  Args:
    quick: 3 seeds, 8 synthetic problems, 200 steps on digits, 300 MLP
      steps (about 25 seconds on 2 idle cores) instead of 5 seeds, 24
      problems, 400 steps and 600 MLP steps.
    out_dir: folder for ``learned.json``, ``learned.md`` and
      ``learned.png`` (created); ``None`` writes nothing.
    seeds: the seeds (default ``range(3)``, or ``range(5)`` when not quick).
    steps: replaces every step budget (a smoke test).
    sets: which held-out problem sets (keys of :data:`PROBLEMS`).

  Returns:
    ``{"config", "problems": {name: {method: row}}, "transfer", "seconds"}``
    where a row has ``final_error_mean``/``_sd`` (over the runs that did
    not diverge, i.e. ended with error < 1; ``None`` if none), ``diverged``,
    ``steps_to_target_median``, ``reached_target``, ``runs`` and (except
    for ``learned``) ``learned_win_tie_loss``.
  """
  start = time.perf_counter()
  seeds = tuple(range(3 if quick else 5)) if seeds is None else tuple(seeds)
  policy = optax_greedy.load_policy("nmf")
  problems, curves = {}, {}
  for name, (V, rank, batch, budget) in _problems(quick, steps,
                                                  tuple(sets)).items():
    errors, fractions, seconds = _run_problem(V, rank, batch, budget, seeds,
                                              policy)
    problems[name] = {"rank": rank, "batch": batch, "steps": budget,
                      "matrices": int(V.shape[0]),
                      "rows": _summary(errors),
                      "seconds": seconds}
    curves[name] = (errors, fractions)
  result = {
      "config": {"seeds": list(seeds), "safety": SAFETY, "tie": verdict.RULE,
                 "bound": "nmf.stability_bounds(params, joint=True)",
                 "backend": jax.default_backend()},
      "problems": problems,
      "transfer": _transfer(policy, seeds, quick, steps),
  }
  result["seconds"] = time.perf_counter() - start
  if out_dir is not None:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    O.write_json(out / "learned.json", result, indent=1)
    (out / "learned.md").write_text(markdown(result))
    _plot(out / "learned.png", curves)
    result["figure"] = str(out / "learned.png")
  return result


def markdown(result) -> str:
  """The results as markdown tables."""
  lines = []
  for name, prob in result["problems"].items():
    lines += [
        f"**{name}** ({prob['matrices']} matrix/matrices x "
        f"{len(result['config']['seeds'])} seeds, batch {prob['batch']}, "
        f"{prob['steps']} steps)", "",
        "| method | final rel. error (mean ± sd) | steps to target (median)"
        " | learned vs it: win/tie/loss |", "|---|---|---|---|"]
    for method, row in prob["rows"].items():
      steps = row["steps_to_target_median"]
      steps = (str(steps) if steps is not None else
               f"- ({row['reached_target']}/{row['runs']} reach)")
      wtl = row.get("learned_win_tie_loss")
      error = ("diverged" if row["final_error_mean"] is None else
               f"{row['final_error_mean']:.4f} ± {row['final_error_sd']:.4f}")
      if row["diverged"] and row["final_error_mean"] is not None:
        error += f" ({row['diverged']}/{row['runs']} diverged, excluded)"
      lines.append(
          f"| {method} | {error} | {steps} | "
          f"{'/'.join(map(str, wtl)) if wtl else ''} |")
    lines.append("")
  tr = result["transfer"]
  lines += [f"**Transfer**: {tr['task']}", "",
            "| schedule | test loss (mean ± sd) | test accuracy | "
            "learned vs cosine: win/tie/loss |", "|---|---|---|---|"]
  for name, row in tr["rows"].items():
    wtl = row.get("win_tie_loss_vs_cosine")
    lines.append(
        f"| {name} | {row['test_loss_mean']:.4f} ± {row['test_loss_sd']:.4f}"
        f" | {row['test_accuracy_mean']:.4f} | "
        f"{'/'.join(map(str, wtl)) if wtl else ''} |")
  return "\n".join(lines) + "\n"
