"""The benchmark's training loop for networks, under ``jax.lax.scan``
(the other loop, :mod:`bench.core.nmf_loop`, factors a matrix).

A run is ``n`` blocks of ``every`` training steps, each block followed by
an evaluation; there is one more evaluation before the first step. Every
function here is pure and traceable: the rate, the initial parameters and
the sample stream are arguments, so ``jax.jit(jax.vmap(run))`` runs many
(rate, seed) pairs as one program (the grid does; the workloads can).

What the controller's ``update`` receives (``feed``, from its registry
entry, :mod:`bench.core.registry`):

* ``"train"``: ``value=`` the minibatch training loss, every step;
* ``"val"``: ``value=`` the last evaluation's loss, with ``observe=`` true
  only on the first step after an evaluation (so the controller sees each
  evaluation once). The loop evaluates after every block anyway; this feed
  reuses that evaluation rather than compiling a second one into the step,
  as ``optax_greedy.validation_feed`` would (it evaluates under
  ``lax.cond`` inside the step before the block's last update);
* ``"linesearch"``: ``value``, ``grad`` and ``value_fn`` (the minibatch
  loss as a function of the parameters);
* ``"probe"``: ``value`` (the minibatch loss) and ``value_fn``, the loss on
  another minibatch (the next step's; within a block the last step takes
  the block's first), as :func:`optax_greedy.rate_probe` asks;
* ``"none"``: the gradients only.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

FEEDS = ("train", "val", "linesearch", "probe", "none")


class Problem(NamedTuple):
  """What the loop trains: two pure functions.

  Attributes:
    train_loss: ``train_loss(params, data, sample) -> scalar``, the loss
      on one sample of the stream (a minibatch's indices, gradient noise).
    evaluate: ``evaluate(params, data) -> (loss, extras)``: the evaluation
      loss (the one the ``"val"`` feed observes) and any other results (a
      pytree, e.g. a test loss and per-example correctness; ``()``: none).
  """

  train_loss: Callable[..., Any]
  evaluate: Callable[..., Any]


class Carry(NamedTuple):
  """The loop's state: parameters, optimizer state, last evaluation loss."""

  params: Any
  state: Any
  last_eval: Any


class Trajectory(NamedTuple):
  """One run.

  Attributes:
    evals: evaluation loss before the first step and after every block,
      ``[n + 1]``.
    extras: the evaluations' extras, stacked the same way.
    train_loss: the minibatch loss of every step, ``[steps]``.
    rate: the effective rate after every step (NaN if not given).
    carry: the final :class:`Carry`.
  """

  evals: Any
  extras: Any
  train_loss: Any
  rate: Any
  carry: Carry


class Loop(NamedTuple):
  """The loop's pieces (:func:`loop`), to run whole or block by block.

  Attributes:
    init: ``init(data, params) -> (carry, (loss, extras))``: the optimizer
      state and the first evaluation.
    train: ``train(data, carry, (steps, samples)) -> (carry, (losses,
      rates))``: one block of training steps (``steps`` are their 0-based
      indices in the run, ``samples`` one sample per step).
    evaluate: ``evaluate(data, carry) -> (carry, (loss, extras))``.
    run: ``run(data, params, stream) -> Trajectory``: the whole run
      (``stream`` has one sample per step; ``steps // every`` whole
      blocks run).
  """

  init: Callable[..., Any]
  train: Callable[..., Any]
  evaluate: Callable[..., Any]
  run: Callable[..., Any]


def feed_args(feed, step, every, loss, grads, last_eval, loss_fn,
              other_loss_fn=None):
  """The keyword arguments of ``update`` for ``feed`` (module docstring).

  Args:
    feed: one of :data:`FEEDS`.
    step: the 0-based index of the update (traced).
    every: steps between evaluations.
    loss, grads: the minibatch loss and its gradients.
    last_eval: the last evaluation's loss.
    loss_fn: the minibatch loss as a function of the parameters.
    other_loss_fn: the same on another minibatch (the ``"probe"`` feed).

  Returns:
    A dict to pass as ``**`` to ``update``.
  """
  if feed == "train":
    return {"value": loss}
  if feed == "val":
    return {"value": last_eval, "observe": (step % every == 0) & (step > 0)}
  if feed == "linesearch":
    return {"value": loss, "grad": grads, "value_fn": loss_fn}
  if feed == "probe":
    return {"value": loss, "value_fn": other_loss_fn}
  if feed == "none":
    return {}
  raise ValueError(f"feed must be one of {FEEDS}, got {feed!r}")


def loop(problem: Problem, tx, feed: str, every: int, *,
         eval_params: Optional[Callable[..., Any]] = None,
         rate: Optional[Callable[..., Any]] = None) -> Loop:
  """The training loop of ``tx`` on ``problem``.

  Args:
    problem: the losses (:class:`Problem`).
    tx: the optax transform (built inside the traced function when its rate
      is traced).
    feed: what ``update`` receives (module docstring).
    every: training steps per block (between evaluations).
    eval_params: ``eval_params(state, params) -> params`` evaluated instead
      of the params (schedule-free); ``None``: the params.
    rate: ``rate(state, step) -> scalar``, the effective rate after the
      update of ``step``; ``None``: NaN.

  Returns:
    A :class:`Loop`.
  """
  if feed not in FEEDS:
    raise ValueError(f"feed must be one of {FEEDS}, got {feed!r}")

  def evaluate_params(data, params, state):
    if eval_params is not None:
      params = eval_params(state, params)
    return problem.evaluate(params, data)

  def init(data, params):
    state = tx.init(params)
    loss, extras = evaluate_params(data, params, state)
    return Carry(params, state, loss), (loss, extras)

  def train(data, carry, xs):
    def step(carry, xs):
      i, sample, other = xs
      loss_fn = lambda p: problem.train_loss(p, data, sample)
      loss, grads = jax.value_and_grad(loss_fn)(carry.params)
      kwargs = feed_args(feed, i, every, loss, grads, carry.last_eval,
                         loss_fn, lambda p: problem.train_loss(p, data, other))
      updates, state = tx.update(grads, carry.state, carry.params, **kwargs)
      params = optax.apply_updates(carry.params, updates)
      r = jnp.nan if rate is None else rate(state, i)
      return (Carry(params, state, carry.last_eval),
              (loss, jnp.asarray(r, jnp.float32)))
    steps, samples = xs
    return jax.lax.scan(step, carry,
                        (steps, samples, jax.tree.map(
                            lambda x: jnp.roll(x, -1, axis=0), samples)))

  def evaluate(data, carry):
    loss, extras = evaluate_params(data, carry.params, carry.state)
    return carry._replace(last_eval=loss), (loss, extras)

  def run(data, params, stream):
    blocks = stream.shape[0] // every
    carry, first = init(data, params)

    def block(carry, xs):
      carry, (losses, rates) = train(data, carry, xs)
      carry, ev = evaluate(data, carry)
      return carry, (ev, losses, rates)

    xs = (jnp.arange(blocks * every).reshape(blocks, every),
          stream[:blocks * every].reshape((blocks, every) + stream.shape[1:]))
    carry, (evs, losses, rates) = jax.lax.scan(block, carry, xs)
    evals, extras = jax.tree.map(
        lambda f, e: jnp.concatenate([jnp.asarray(f)[None], e]), first, evs)
    return Trajectory(evals, extras, losses.reshape(-1), rates.reshape(-1),
                      carry)

  return Loop(init, train, evaluate, run)
