"""One compiled program per (task, controller, base): every option, noise
level, learning rate and seed of it runs under one ``jax.vmap``.

A run is ``n_evals`` blocks of ``steps_per_eval`` training steps (a nested
``lax.scan``), each block followed by an evaluation. Seeds fix the
initialisation and the minibatch stream (:func:`prepare`, outside the
compiled program), so every controller sees the same data for a given seed.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass
class Program:
  """Results of one compiled program, arrays shaped ``[option, variant, lr,
  seed, ...]``.

  Attributes:
    eval_loss: evaluation loss at steps 0, k, 2k, ..., ``steps``.
    train_loss: minibatch training loss at every step.
    rate: effective learning rate after every step (NaN if not defined).
    correct: which held-out examples the final model classifies correctly
      (``[..., n]``, classification tasks; an empty last axis elsewhere).
    compile_s, run_s: wall-clock seconds to compile and to run.
  """

  eval_loss: np.ndarray
  train_loss: np.ndarray
  rate: np.ndarray
  correct: np.ndarray
  compile_s: float
  run_s: float


def prepare(task, seeds, steps):
  """Initial params and sampling stream per seed, stacked on axis 0."""
  init = jax.jit(task.init)
  params = [init(jax.random.PRNGKey(s)) for s in seeds]
  streams = [task.stream(np.random.default_rng(s), steps) for s in seeds]
  return (jax.tree.map(lambda *x: np.stack(x), *params), np.stack(streams))


def single_run(task, ctrl, base, steps, n_evals):
  """``run(data, lr, params, stream, variant, payload) -> (evals, losses,
  rates, correct)``; ``stream`` has one sample per step."""
  k = steps // n_evals
  ctx = {"steps": steps, "steps_per_eval": k, "lr_bound": task.lr_bound}
  loss_grad = jax.value_and_grad(task.train_loss)

  def evaluate(params, state, data, variant):
    if ctrl.eval_params is not None:
      params = ctrl.eval_params(state, params)
    return task.eval_loss(params, data, variant)

  def final_correct(params, state, data):
    if task.eval_correct is None:
      return jnp.zeros([0], bool)
    if ctrl.eval_params is not None:
      params = ctrl.eval_params(state, params)
    return task.eval_correct(params, data)

  def run(data, lr, params, stream, variant, payload):
    tx = ctrl.build(base, lr, payload, ctx)
    state = tx.init(params)
    first_eval = evaluate(params, state, data, variant)

    def step(carry, xs):
      i, sample = xs
      params, state, last_eval = carry
      loss, grads = loss_grad(params, data, sample, variant)
      if ctrl.feed == "train":
        kwargs = {"value": loss}
      elif ctrl.feed == "val":
        kwargs = {"value": last_eval, "observe": (i % k == 0) & (i > 0)}
      elif ctrl.feed == "linesearch":
        kwargs = {"value": loss, "grad": grads, "value_fn": lambda p: (
            task.train_loss(p, data, sample, variant))}
      else:
        kwargs = {}
      updates, state = tx.update(grads, state, params, **kwargs)
      params = optax.apply_updates(params, updates)
      rate = jnp.asarray(ctrl.rate(state, lr, payload, i), jnp.float32)
      return (params, state, last_eval), (loss, rate)

    def block(carry, xs):
      carry, (losses, rates) = jax.lax.scan(step, carry, xs)
      params, state, _ = carry
      ev = evaluate(params, state, data, variant)
      return (params, state, ev), (ev, losses, rates)

    blocks = (jnp.arange(n_evals * k).reshape(n_evals, k),
              stream.reshape((n_evals, k) + stream.shape[1:]))
    (params, state, _), (evals, losses, rates) = jax.lax.scan(
        block, (params, state, first_eval), blocks)
    evals = jnp.concatenate([first_eval[None], evals])
    return (evals, losses.reshape(-1), rates.reshape(-1),
            final_correct(params, state, data))

  return run


def run_program(task, ctrl, base, lrs, inputs, steps, n_evals, payloads,
                compiler_options=None):
  """Compiles and runs (:func:`compile_program`, :func:`execute`)."""
  return execute(compile_program(task, ctrl, base, lrs, inputs, steps,
                                 n_evals, payloads, compiler_options))


def compile_program(task, ctrl, base, lrs, inputs, steps, n_evals, payloads,
                    compiler_options=None):
  """Compiles the grid ``payloads x task.variants x lrs x seeds`` vmapped.

  Args:
    inputs: :func:`prepare`'s output for the seeds.
    payloads: one array per option (``[steps]`` schedule multipliers), or
      ``[None]`` for a controller without options.
    compiler_options: XLA options for this program (e.g. a lower LLVM
      optimisation level for small, dispatch-bound tasks); CPU only.

  Returns:
    ``(compiled, args, shape, compile_s)`` for :func:`execute`.
  """
  grid = np.array(np.meshgrid(
      np.arange(len(payloads)), np.arange(len(task.variants)),
      np.arange(len(lrs)), np.arange(len(inputs[1])), indexing="ij"))
  o, v, l, s = grid.reshape(4, -1)
  pay = (np.zeros((len(payloads), 1), np.float32) if payloads[0] is None
         else np.stack(payloads))
  params0, stream = inputs
  args = (np.asarray(lrs, np.float32)[l], jax.tree.map(lambda x: x[s], params0),
          stream[s], np.asarray(task.variants, np.float32)[v], pay[o])
  fn = jax.jit(jax.vmap(single_run(task, ctrl, base, steps, n_evals),
                        in_axes=(None, 0, 0, 0, 0, 0)))
  start = time.perf_counter()
  if jax.default_backend() != "cpu":
    compiler_options = None
  compiled = fn.lower(task.data, *args).compile(compiler_options)
  compile_s = time.perf_counter() - start
  shape = (len(payloads), len(task.variants), len(lrs), len(stream))
  return compiled, (task.data,) + args, shape, compile_s


def execute(bundle):
  """Runs a compiled program; returns a :class:`Program`."""
  compiled, args, shape, compile_s = bundle
  start = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  run_s = time.perf_counter() - start
  evals, losses, rates, correct = (
      np.asarray(x).reshape(shape + x.shape[1:]) for x in out)
  return Program(evals, losses, rates, correct, compile_s, run_s)
