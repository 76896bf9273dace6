"""What a learned schedule's policy sees: its features, by name and formula.

Each feature is a scale-free statistic of training that the schedule keeps
in its state (:class:`optax_greedy.LearnedScheduleState`). A policy names
the features it reads, in order; the names and their formulas live here
together, and a policy file naming another feature is refused.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

#: Every feature is clipped to [-FEATURE_CLIP, FEATURE_CLIP].
FEATURE_CLIP = 10.0

# name -> formula(state, total_steps as float32); the order is the order of
# KNOWN_FEATURES, which policy files refer to by name.
_FORMULAS = {
    # moving average of the log loss minus the first log loss
    "log_loss_ratio": lambda s, T: s.log_loss - s.log_loss0,
    # the log-loss change the run would make at its current speed, / 10
    "loss_slope": lambda s, T: T * s.slope / 10.0,
    # log_loss_ratio, for the norm of the incoming updates
    "log_grad_norm_ratio": lambda s, T: s.log_grad_norm - s.log_grad_norm0,
    # the fraction applied by the last update
    "fraction": lambda s, T: s.fraction,
    # updates so far / total_steps
    "budget_used": lambda s, T: s.step / T,
    # RMS of the log loss around its moving average
    "loss_noise": lambda s, T: jnp.sqrt(s.loss_variance),
    # moving average of the log loss minus its smallest value so far
    "loss_above_min": lambda s, T: s.log_loss - s.log_loss_min,
}
#: The features a policy may read, by name.
KNOWN_FEATURES = tuple(_FORMULAS)


def clean_features(features: ArrayLike) -> jax.Array:
  """NaN becomes 0, everything else is clipped to ``+-FEATURE_CLIP``."""
  features = jnp.nan_to_num(
      jnp.asarray(features, jnp.float32), nan=0.0, posinf=FEATURE_CLIP,
      neginf=-FEATURE_CLIP)
  return jnp.clip(features, -FEATURE_CLIP, FEATURE_CLIP)


def policy_features(state: Any, total_steps: ArrayLike,
                    names: Sequence[str] = KNOWN_FEATURES) -> jax.Array:
  r"""The named features of ``state``, each finite and in [-10, 10].

  With :math:`\bar\ell_t` the moving average of the log loss,
  :math:`\ell_0` the first log loss, :math:`\bar s_t` the moving average of
  the per-step change of :math:`\bar\ell`, :math:`v_t` the moving average
  of :math:`(\log f_t - \bar\ell_{t-1})^2`, :math:`\bar g_t, g_0` the same
  as :math:`\bar\ell_t, \ell_0` for the log norm of the incoming updates,
  :math:`f_{t-1}` the last fraction and :math:`t/T` the budget used:

  ================================  ====================================
  ``log_loss_ratio``                :math:`\bar\ell_t - \ell_0`
  ``loss_slope``                    :math:`T \bar s_t / 10` (the log-loss
                                    change the run would make at its
                                    current speed, /10)
  ``log_grad_norm_ratio``           :math:`\bar g_t - g_0`
  ``fraction``                      :math:`f_{t-1}`
  ``budget_used``                   :math:`t / T`
  ``loss_noise``                    :math:`\sqrt{v_t}`
  ``loss_above_min``                :math:`\bar\ell_t - \min_{s\le t}
                                    \bar\ell_s`
  ================================  ====================================

  All are invariant to the scale of the loss, of the parameters and of
  ``max_rate``. NaN becomes 0 and +/-inf the clip value.

  Args:
    state: a :class:`optax_greedy.LearnedScheduleState` after observing the
      current loss.
    total_steps: the run's number of steps ``T``.
    names: which features, in order (default: all known ones).

  Returns:
    A float32 vector of ``len(names)`` features.
  """
  total = jnp.asarray(total_steps, jnp.float32)
  raw = jnp.stack([jnp.asarray(_FORMULAS[n](state, total), jnp.float32)
                   for n in names])
  return clean_features(raw)
