"""Directions whose state determines the previous direction.

Hypergradient descent needs the previous direction ``d_{t-1}``. For a
direction computed from its own state alone (Adam's moments and count, a
momentum trace) this module gives the transform together with a function
``previous(state) -> d_{t-1}`` that recomputes it from the state, so no copy
of it has to be stored. ``previous`` gives zeros before the first update.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class Direction(NamedTuple):
  """A direction transform and, where they exist, ``previous(state)`` and
  ``started(state)`` (whether an update has happened: a scalar bool)."""

  transform: optax.GradientTransformation
  previous: Optional[Callable[[Any], optax.Updates]] = None
  started: Optional[Callable[[Any], jax.Array]] = None


def _adam_step(mu, nu, count, b1, b2, eps, eps_root, reference_eps):
  """Adam's direction from its moments after ``count`` updates.

  The same operations as :func:`optax.scale_by_adam` (bias correction in the
  moments' dtype, ``eps`` after it), or ``eps / sqrt(1 - b2**count)`` for the
  reference's (and PyTorch's) placement of ``eps`` before correction.
  """
  mu_hat = optax.tree.bias_correction(mu, b1, count)
  nu_hat = optax.tree.bias_correction(nu, b2, count)
  if reference_eps:
    eps = eps / jnp.sqrt(1 - b2**count)
  return jax.tree.map(
      lambda m, v: m / (jnp.sqrt(v + jnp.asarray(eps_root, v.dtype))
                    + jnp.asarray(eps, m.dtype)),
      mu_hat, nu_hat)


def adam(b1, b2, eps, eps_root, mu_dtype, reference_eps) -> Direction:
  """Adam's bias-corrected direction; ``previous`` recomputes it.

  With ``reference_eps=False`` the updates are those of
  ``optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype)`` and so is the
  state (:class:`optax.ScaleByAdamState`).
  """
  if mu_dtype is not None:
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype)

  def init_fn(params):
    return optax.ScaleByAdamState(
        count=jnp.zeros([], jnp.int32),
        mu=optax.tree.zeros_like(params, dtype=mu_dtype),
        nu=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    directions = _adam_step(mu, nu, count, b1, b2, eps, eps_root,
                            reference_eps)
    return directions, optax.ScaleByAdamState(
        count=count, mu=optax.tree.cast(mu, mu_dtype), nu=nu)

  def previous(state):
    # The same direction, with the bias corrections as scalar reciprocals:
    # the hypergradient reduces it once more, and a division per element is
    # what that reduction loop would spend its time on (equal to the applied
    # direction up to rounding). Before the first update the moments are 0
    # and the correction would divide by 0: d_{-1} = 0 by definition.
    started = state.count > 0
    count = jnp.maximum(state.count, 1)
    inv_c1, inv_c2 = 1 / (1 - b1**count), 1 / (1 - b2**count)
    eps_hat = eps * jnp.sqrt(inv_c2) if reference_eps else eps

    def one(m, v):
      step = (m * inv_c1.astype(m.dtype)) / (
          jnp.sqrt(v * inv_c2.astype(v.dtype)
                   + jnp.asarray(eps_root, v.dtype))
          + jnp.asarray(eps_hat, m.dtype))
      return jnp.where(started, step, 0)

    return jax.tree.map(one, state.mu, state.nu)

  return Direction(optax.GradientTransformation(init_fn, update_fn), previous,
                   started=lambda state: state.count > 0)


def momentum(decay, nesterov, accumulator_dtype) -> Direction:
  """:func:`optax.trace`; without Nesterov the direction is the trace itself.

  With Nesterov, ``d_t = g_t + decay * v_t`` needs ``g_{t-1}``, which the
  trace does not determine: ``previous`` is ``None`` (store a copy).
  """
  transform = optax.trace(decay=decay, nesterov=nesterov,
                          accumulator_dtype=accumulator_dtype)
  return Direction(transform, None if nesterov else lambda s: s.trace)
