"""GreedyLR after optax's directions: SGD, Adam and AdamW whose rate is set
by :func:`optax_greedy.greedy_lr`, taking the optax alias's arguments by the
same names, and every keyword argument of :func:`optax_greedy.greedy_lr`
(one list of them: its signature's)."""

from typing import Any, Optional

from jax.typing import ArrayLike
from jax.typing import DTypeLike
import optax

from optax_greedy import _checks
from optax_greedy._greedy_lr import greedy_lr


@_checks.keyword_only_after(1, ("momentum", "nesterov"))
@_checks.envelope_keywords
@_checks.takes_keywords_of(greedy_lr)
def greedy_sgd(
    learning_rate: ArrayLike,
    *,
    momentum: Optional[ArrayLike] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[DTypeLike] = None,
    **greedy_options: Any,
) -> optax.GradientTransformationExtraArgs:
  """SGD (optionally with momentum) whose rate is set by :func:`greedy_lr`.

  Args:
    learning_rate: the initial rate, > 0.
    momentum: decay of :func:`optax.trace`, in [0, 1); ``None`` (the
      default) for plain SGD, with no momentum buffer in the state.
    nesterov: use Nesterov momentum (needs ``momentum``).
    accumulator_dtype: the dtype of the momentum buffer, as in
      :func:`optax.sgd` (default ``None``: the params').
    mode, factor, patience, threshold, threshold_mode, cooldown, warmup,
      min_lr, max_lr, min_change, smooth, window_size, reset_start,
      total_steps, envelope: as in :func:`greedy_lr`, with its defaults
      (``min_change`` is the reference's ``eps``).

  Returns:
    ``optax.chain(optax.trace(momentum, nesterov), greedy_lr(...))`` (the
    trace is :func:`optax.identity` for ``momentum=None``).

  Example:
    >>> tx = greedy_sgd(0.1, momentum=0.9, patience=5)
  """
  _checks.check_momentum(momentum, nesterov)
  if momentum is None:
    direction = optax.identity()
  else:
    direction = optax.trace(decay=momentum, nesterov=nesterov,
                            accumulator_dtype=accumulator_dtype)
  return optax.chain(
      direction, greedy_lr(learning_rate, **greedy_options))


@_checks.keyword_only_after(1, ("b1", "b2", "eps"))
@_checks.envelope_keywords
@_checks.takes_keywords_of(greedy_lr)
def greedy_adam(
    learning_rate: ArrayLike,
    *,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Optional[DTypeLike] = None,
    nesterov: bool = False,
    **greedy_options: Any,
) -> optax.GradientTransformationExtraArgs:
  """Adam whose rate is set by :func:`greedy_lr`.

  Args:
    learning_rate: the initial rate, > 0.
    b1, b2: Adam's decay rates, in [0, 1), as in :func:`optax.adam`.
    eps: Adam's ``eps`` >= 0, as in :func:`optax.adam` (GreedyLR's own
      threshold on rate changes is ``min_change``).
    eps_root, mu_dtype, nesterov: as in :func:`optax.adam` (defaults 0,
      ``None`` and ``False``).
    mode, factor, patience, threshold, threshold_mode, cooldown, warmup,
      min_lr, max_lr, min_change, smooth, window_size, reset_start,
      total_steps, envelope: as in :func:`greedy_lr`, with its defaults
      (``min_change`` is the reference's ``eps``).

  Returns:
    ``optax.chain(optax.scale_by_adam(...), greedy_lr(...))``.

  Example:
    >>> tx = greedy_adam(1e-3, patience=5)
  """
  _checks.check_adam(b1, b2, eps, eps_root)
  return optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                          mu_dtype=mu_dtype, nesterov=nesterov),
      greedy_lr(learning_rate, **greedy_options))


@_checks.keyword_only_after(
    1, ("b1", "b2", "eps", "weight_decay", "mask"),
    note="(greedy_adamw read its fifth positional as weight_decay before"
    " 0.2.0, where optax.adamw reads eps_root.)")
@_checks.envelope_keywords
@_checks.takes_keywords_of(greedy_lr)
def greedy_adamw(
    learning_rate: ArrayLike,
    *,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Optional[DTypeLike] = None,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    mask: Any = None,
    nesterov: bool = False,
    **greedy_options: Any,
) -> optax.GradientTransformationExtraArgs:
  """AdamW (decoupled weight decay) whose rate is set by :func:`greedy_lr`.

  As in :func:`optax.adamw`, the decay is scaled by the current rate.

  Args:
    learning_rate: the initial rate, > 0.
    b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`greedy_adam`.
    weight_decay: decoupled weight decay >= 0, or a schedule of it
      (default 1e-4), as in :func:`optax.adamw`.
    mask: as in :func:`optax.add_decayed_weights`.
    mode, factor, patience, threshold, threshold_mode, cooldown, warmup,
      min_lr, max_lr, min_change, smooth, window_size, reset_start,
      total_steps, envelope: as in :func:`greedy_lr`, with its defaults
      (``min_change`` is the reference's ``eps``).

  Returns:
    ``optax.chain(scale_by_adam, add_decayed_weights, greedy_lr(...))``.

  Example:
    >>> tx = greedy_adamw(1e-3, weight_decay=1e-2)
  """
  _checks.check_adam(b1, b2, eps, eps_root)
  if not callable(weight_decay):
    _checks.check_number("weight_decay", weight_decay, " or a schedule")
    _checks.check_range("weight_decay", weight_decay, 0)
  return optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                          mu_dtype=mu_dtype, nesterov=nesterov),
      optax.add_decayed_weights(weight_decay, mask),
      greedy_lr(learning_rate, **greedy_options))
