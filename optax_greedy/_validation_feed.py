"""Feeding GreedyLR a validation loss every k steps, inside a compiled
loop."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optax_greedy import _checks


def validation_feed(
    step: ArrayLike,
    every: int,
    evaluate: Callable[[], Any],
) -> dict[str, Any]:
  """``value=`` and ``observe=`` for feeding a validation loss every k steps.

  GreedyLR as its authors describe it observes the validation loss once per
  evaluation. Inside a jitted, scanned training loop that is one line::

    updates, state = tx.update(
        grads, state, params,
        **optax_greedy.validation_feed(t, 50, lambda: val_loss(params)))

  On the steps ``t`` where ``(t + 1) % every == 0`` (after every ``every``
  updates) it calls ``evaluate()`` (under :func:`jax.lax.cond`, so the
  validation loss is computed only then) and returns
  ``{"value": loss, "observe": True}``; on the other steps
  ``{"value": <unused>, "observe": False}``, which leaves the controller
  untouched and keeps the rate.

  Pair it with settings for a sparse, already-averaged signal:
  ``greedy_lr(lr, smooth=False, patience=1, factor=0.9)``. It raises the
  rate at every improving evaluation, so it suits models trained to
  convergence, not a model whose validation loss still improves at almost
  every evaluation (a language model early in training): there, feed the
  training loss (the defaults).

  Args:
    step: the 0-based index of the update (a Python int or a traced integer,
      e.g. the scan's counter).
    every: evaluate after every ``every`` updates, a Python int >= 1.
    evaluate: a function of no arguments returning the scalar validation
      loss (close over the current parameters).

  Returns:
    A dict with the keys ``value`` and ``observe``, to pass as ``**`` to the
    update of any chain that contains :func:`greedy_lr`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optax_greedy
    >>> tx = optax_greedy.greedy_sgd(0.1, smooth=False, patience=1,
    ...                              factor=0.9)
    >>> params = jnp.ones(2)
    >>> def train_step(carry, t):
    ...   params, state = carry
    ...   grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
    ...   updates, state = tx.update(grads, state, params,
    ...       **optax_greedy.validation_feed(
    ...           t, 10, lambda: jnp.sum((params - 0.1) ** 2)))
    ...   return (optax.apply_updates(params, updates), state), None
    >>> (params, state), _ = jax.lax.scan(
    ...     train_step, (params, tx.init(params)), jnp.arange(100))
    >>> int(optax.tree.get(state, "count"))  # 100 steps, 10 evaluations
    10
  """
  _checks.check_integer("every", every, 1)
  observe = (jnp.asarray(step) + 1) % every == 0
  skipped = jax.eval_shape(evaluate)
  value = jax.lax.cond(
      observe, evaluate,
      lambda: jnp.zeros(skipped.shape, skipped.dtype))
  return {"value": value, "observe": observe}
