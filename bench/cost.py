"""What a controller costs: step time, compile time and state bytes, each as a
ratio to plain ``optax.adam`` measured in the same process; and what
``jax.vmap`` over rates and seeds saves against a Python loop.

Timings interleave the controllers round-robin (each round times every
controller once) and keep the median, so load from other processes on a
shared machine hits all of them alike.
"""

import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import controllers as C
from bench import runner
from bench import tasks as T


def _adam_reference():
  return C.Controller("adam", "reference",
                      lambda b, lr, p, c: optax.adam(lr))


def cost_rows(controllers, steps):
  """``(name, transform, feed)`` for adam and every available controller,
  all on the Adam base at rate 1e-3 (fixed: cosine)."""
  payload = jnp.asarray(C.schedule_multipliers(steps)["cosine"])
  ctx = {"steps": steps, "steps_per_eval": max(steps // 10, 1)}
  rows = [("adam", optax.adam(1e-3), "none")]
  for ctrl in controllers:
    if ctrl.missing() or "adam" not in ctrl.bases and not ctrl.lr_free:
      continue
    name = "fixed_cosine" if ctrl.options else ctrl.name
    rows.append((name, ctrl.build("adam", 1e-3, payload, ctx), ctrl.feed))
  return rows


def _kwargs(feed, value, grads, loss_fn):
  if feed == "train":
    return {"value": value}
  if feed == "val":
    return {"value": value, "observe": jnp.asarray(True)}
  if feed == "linesearch":
    return {"value": value, "grad": grads, "value_fn": loss_fn}
  return {}


def _time_round_robin(fns, rounds):
  """Median seconds per call of each ``fn()`` (already compiled)."""
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {k: statistics.median(v) for k, v in times.items()}


def bare_update(rows, n_params, rounds):
  """Seconds of one jitted ``update`` + ``apply_updates`` on ``n_params``.

  Params are two square float32 matrices (8M parameters at the default).
  The line search needs a loss; it gets ``0.5 * ||p||^2``.
  """
  side = int((n_params / 2) ** 0.5)
  key = jax.random.PRNGKey(0)
  params = {"w1": jax.random.normal(key, (side, side)),
            "w2": jax.random.normal(jax.random.fold_in(key, 1), (side, side))}
  grads = jax.tree.map(lambda p: 1e-3 * p, params)

  def loss_fn(p):
    return 0.5 * sum(jnp.vdot(x, x) for x in jax.tree.leaves(p))

  fns, bytes_ = {}, {}
  for name, tx, feed in rows:
    def step(params, state, tx=tx, feed=feed):
      updates, state = tx.update(grads, state, params,
                                 **_kwargs(feed, jnp.float32(1.0), grads,
                                           loss_fn))
      return optax.apply_updates(params, updates), state
    state = tx.init(params)
    bytes_[name] = int(sum(x.size * x.dtype.itemsize
                           for x in jax.tree.leaves(state)))
    compiled = jax.jit(step).lower(params, state).compile()
    fns[name] = lambda c=compiled, s=state: c(params, s)
  times = _time_round_robin(fns, rounds)
  return times, bytes_, 2 * side * side


class _WideMLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width)(x))
    x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(10)(x)


def train_step(rows, width, batch, inner, rounds):
  """Seconds per full training step (forward, backward, update) of an MLP on
  digits, ``inner`` steps per call under ``lax.scan``; and compile seconds."""
  data = jax.tree.map(jnp.asarray, T.logreg(1).data)
  stream = np.random.default_rng(0).integers(
      0, data["y_train"].shape[0], (inner, batch), dtype=np.int32)
  module = _WideMLP(width)
  params = module.init(jax.random.PRNGKey(0), data["x_train"][:1])

  def loss_fn(p, idx):
    logits = module.apply(p, data["x_train"][idx])
    return optax.losses.softmax_cross_entropy_with_integer_labels(
        logits, data["y_train"][idx]).mean()

  fns, compile_s = {}, {}
  for name, tx, feed in rows:
    def many(params, state, stream, tx=tx, feed=feed):
      def one(carry, idx):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, idx)
        kwargs = _kwargs(feed, loss, grads, lambda p: loss_fn(p, idx))
        updates, state = tx.update(grads, state, params, **kwargs)
        return (optax.apply_updates(params, updates), state), loss
      return jax.lax.scan(one, (params, state), stream)
    state = tx.init(params)
    start = time.perf_counter()
    compiled = jax.jit(many).lower(params, state, stream).compile()
    compile_s[name] = time.perf_counter() - start
    fns[name] = lambda c=compiled, s=state: c(params, s, stream)
  times = _time_round_robin(fns, rounds)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  return {k: v / inner for k, v in times.items()}, compile_s, n_params


def overhead(controllers, preset):
  """The ``overhead`` section of the summary: seconds, bytes and ratios."""
  keep = preset.get("cost_controllers")
  rows = cost_rows([c for c in controllers if (keep is None or c.name in keep)
                    and not c.needs_bound], preset["steps_cost"])
  bare_s, state_bytes, n_bare = bare_update(
      rows, preset["cost_params"], preset["cost_rounds"])
  step_s, compile_s, n_mlp = train_step(
      rows, preset["cost_width"], 128, preset["cost_inner"],
      preset["cost_rounds"])

  def ratios(d):
    return {k: d[k] / d["adam"] for k in d}

  return {
      "reference": "optax.adam(1e-3), same process, interleaved timings",
      "bare_update": {"n_params": n_bare, "seconds": bare_s,
                      "ratio": ratios(bare_s)},
      "train_step": {"n_params": n_mlp, "batch": 128, "seconds": step_s,
                     "ratio": ratios(step_s)},
      "compile": {"seconds": compile_s, "ratio": ratios(compile_s)},
      "state_bytes": {"bytes": state_bytes, "ratio": ratios(state_bytes)},
  }


def vmap_savings(controllers, preset, seeds):
  """One config (MLP, GreedyLR, Adam): one vmapped program against a
  Python loop over (rate, seed), compile included in both (the initial
  parameters and streams are drawn once, outside the timings).

  ``loop_one_compile`` jits the single run with rate and seed as traced
  arguments (compiled once, called once per run); ``loop_recompile`` builds
  a fresh ``jax.jit`` per run with rate and seed as Python constants, as a
  script that loops over configurations does.
  """
  ctrl = next(c for c in controllers if c.name == "greedy")
  steps = preset["steps_vmap"]
  task = T.mlp(steps)
  lrs = task.lrs("adam", preset["n_lrs"])
  n_evals = preset["n_evals"]
  inputs = runner.prepare(task, seeds, steps)  # shared, not timed
  params0, stream = inputs
  start = time.perf_counter()
  prog = runner.run_program(task, ctrl, "adam", lrs, inputs, steps, n_evals,
                            [None])
  vmapped = time.perf_counter() - start

  run = runner.single_run(task, ctrl, "adam", steps, n_evals)
  dummy = np.zeros((1,), np.float32)
  start = time.perf_counter()
  jitted = jax.jit(run)
  for lr in lrs:
    for i in range(len(seeds)):
      params = jax.tree.map(lambda x, i=i: x[i], params0)
      jax.block_until_ready(jitted(task.data, np.float32(lr), params,
                                   stream[i], np.float32(0), dummy))
  loop_one = time.perf_counter() - start

  start = time.perf_counter()
  for lr in lrs:
    for i in range(len(seeds)):
      params = jax.tree.map(lambda x, i=i: x[i], params0)
      fn = jax.jit(lambda d, p, s, lr=lr: run(d, lr, p, s, 0.0, dummy))
      jax.block_until_ready(fn(task.data, params, stream[i]))
  loop_re = time.perf_counter() - start
  n = len(lrs) * len(seeds)
  return {"config": f"mlp, greedy, adam, {len(lrs)} rates x "
                    f"{len(seeds)} seeds = {n} runs of {steps} steps",
          "vmapped_s": vmapped, "vmapped_compile_s": prog.compile_s,
          "vmapped_run_s": prog.run_s, "loop_one_compile_s": loop_one,
          "loop_recompile_s": loop_re,
          "speedup_vs_loop_one_compile": loop_one / vmapped,
          "speedup_vs_loop_recompile": loop_re / vmapped}
