"""One compiled program per (task, controller, base): every option, noise
level, initial rate and seed of it runs under one ``jax.vmap`` of the
benchmark's loop (:mod:`bench.core.loop`).

A run is ``n_evals`` blocks of ``steps / n_evals`` training steps, each
followed by an evaluation. Seeds fix the initialisation and the minibatch
stream (:func:`prepare`, outside the compiled program), so every controller
sees the same data for a given seed.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.core import loop as L
from bench.core import registry as R


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
  """``run(data, rate, params, stream, variant, options) -> (evals, losses,
  rates, correct)`` of one run; ``stream`` has one sample per step,
  ``options`` are the entry's (``{}``: none)."""
  every = steps // n_evals
  context = R.Context(steps_per_eval=every, lr_bound=task.lr_bound)

  def run(data, rate, params, stream, variant, options):
    tx = ctrl.build(base, rate, steps, context, **options)
    problem = L.Problem(
        train_loss=lambda p, d, s: task.train_loss(p, d, s, variant),
        evaluate=lambda p, d: (task.eval_loss(p, d, variant), ()))
    lp = L.loop(problem, tx, ctrl.feed, every, eval_params=ctrl.eval_params,
                rate=lambda state, i: ctrl.rate(state, rate, options, i))
    out = lp.run(data, params, stream)
    return out.evals, out.train_loss, out.rate, final_correct(
        task, ctrl, out.carry, data)

  return run


def final_correct(task, ctrl, carry, data):
  """Which held-out examples the final model gets right (empty if the task
  is not a classification)."""
  if task.eval_correct is None:
    return jnp.zeros([0], bool)
  params = carry.params
  if ctrl.eval_params is not None:
    params = ctrl.eval_params(carry.state, params)
  return task.eval_correct(params, data)


def _stack(variants):
  """``{row: options}`` as one dict of arrays stacked over the rows."""
  rows = list(variants.values())
  return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def compile_program(task, ctrl, base, lrs, inputs, steps, n_evals,
                    variants=None, compiler_options=None):
  """Compiles the grid ``variants x task.variants x lrs x seeds`` vmapped.

  Args:
    inputs: :func:`prepare`'s output for the seeds.
    variants: ``{row: options}`` run as one program (traced options), or
      ``None`` for the entry without options.
    compiler_options: XLA options for this program (e.g. a lower LLVM
      optimisation level for small, dispatch-bound tasks); CPU only.

  Returns:
    ``(compiled, args, shape, compile_s)`` for :func:`execute`.
  """
  n_options = 1 if variants is None else len(variants)
  grid = np.array(np.meshgrid(
      np.arange(n_options), np.arange(len(task.variants)),
      np.arange(len(lrs)), np.arange(len(inputs[1])), indexing="ij"))
  o, v, l, s = grid.reshape(4, -1)
  options = {} if variants is None else {
      k: x[o] for k, x in _stack(variants).items()}
  params0, stream = inputs
  args = (np.asarray(lrs, np.float32)[l], jax.tree.map(lambda x: x[s], params0),
          stream[s], np.asarray(task.variants, np.float32)[v], options)
  fn = jax.jit(jax.vmap(single_run(task, ctrl, base, steps, n_evals),
                        in_axes=(None, 0, 0, 0, 0, 0)))
  start = time.perf_counter()
  if jax.default_backend() != "cpu":
    compiler_options = None
  compiled = fn.lower(task.data, *args).compile(compiler_options)
  compile_s = time.perf_counter() - start
  shape = (n_options, len(task.variants), len(lrs), len(stream))
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


def run_program(task, ctrl, base, lrs, inputs, steps, n_evals, variants=None,
                compiler_options=None):
  """Compiles and runs (:func:`compile_program`, :func:`execute`)."""
  return execute(compile_program(task, ctrl, base, lrs, inputs, steps,
                                 n_evals, variants, compiler_options))
