"""SGD-HD, SGDN-HD and Adam-HD: hypergradient descent around SGD (with
momentum) and Adam, taking the optax alias's arguments by the same names.

Reference: Baydin, Cornish, Martinez Rubio, Schmidt, Wood, "Online Learning
Rate Adaptation with Hypergradient Descent", ICLR 2018 (arXiv:1703.04782),
and its PyTorch ``SGDHD`` and ``AdamHD``.
"""

from typing import Any, Optional

from jax.typing import ArrayLike
from jax.typing import DTypeLike
import optax

from optax_greedy import _checks
from optax_greedy import _hd_directions
from optax_greedy._hypergradient import hypergradient
from optax_greedy._hypergradient import hypergradient_around


@_checks.keyword_only_after(
    1, ("momentum", "nesterov"),
    note="(optax.sgd's order; the hypergradient's step size is"
    " hypergrad_lr=.)")
@_checks.envelope_keywords
@_checks.takes_keywords_of(hypergradient)
def hd_sgd(
    learning_rate: ArrayLike,
    *,
    hypergrad_lr: Optional[ArrayLike] = None,
    momentum: Optional[ArrayLike] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[DTypeLike] = None,
    **hypergradient_options: Any,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD-HD and SGDN-HD: SGD (with momentum) with a hypergradient rate.

  The direction is the one SGD applies, after momentum:

  .. math::

    v_t = \mu\, v_{t-1} + g_t, \qquad
    d_t = g_t \ (\text{no momentum}), \quad v_t \ (\text{momentum}), \quad
    g_t + \mu\, v_t \ (\text{Nesterov}),

  and :math:`h_t = g_t \cdot d_{t-1}`, as the reference ``SGDHD``
  (momentum without dampening, ``v_0 = g_0``), with the rate rule of
  :func:`hypergradient`. For L2 weight decay as the reference's
  ``weight_decay``, chain :func:`optax.add_decayed_weights` before it: the
  decayed gradient then enters both ``d_t`` and ``h_t``.

  Memory: without momentum, a copy of the previous gradient; with momentum
  ``d_{t-1}`` is the trace (recomputed, nothing stored); with Nesterov a
  copy of ``d_{t-1}`` next to the trace. ``momentum=None`` (no trace) and a
  number (a trace, even ``0.0``) give different state structures, as in
  :func:`optax.sgd`; a traced momentum (``optax.inject_hyperparams``)
  keeps the structure of the number.

  Args:
    learning_rate: the initial rate, a number >= 0 (> 0 for the
      multiplicative rule).
    hypergrad_lr: ``beta``; default ``None``: :func:`hypergradient`'s
      default for the multiplicative rule, the paper's 1e-3 for the
      additive rule (the reference's ``hypergrad_lr``).
    momentum: ``mu`` in [0, 1), or ``None`` (default: plain SGD-HD, no
      momentum buffer).
    nesterov: Nesterov momentum (SGDN-HD); needs ``momentum``.
    accumulator_dtype: the dtype of the momentum buffer, as in
      :func:`optax.sgd` (default ``None``: the params').
    granularity, rule, min_lr, max_lr, rate_dtype, reduction, total_steps,
      envelope: as in
      :func:`hypergradient` (defaults ``"global"``, ``"multiplicative"``,
      0, ``None``, ``None``, ``"auto"``, ``None``). ``rule="additive"``
      with the default ``hypergrad_lr`` is the paper's SGD-HD.

  Returns:
    ``hypergradient(optax.trace(momentum, nesterov), ...)``, or
    ``hypergradient(optax.identity(), ...)`` for ``momentum=None``.

  Example:
    >>> tx = hd_sgd(0.01, momentum=0.9, nesterov=True)
    >>> paper = hd_sgd(0.01, rule="additive")  # beta = 1e-3

  References:
    Baydin et al., `Online Learning Rate Adaptation with Hypergradient
    Descent <https://arxiv.org/abs/1703.04782>`_, ICLR 2018.
  """
  _checks.check_static("nesterov", nesterov, "True or False", bool)
  _checks.check_momentum(momentum, nesterov)
  if momentum is None:
    direction = _hd_directions.Direction(optax.identity())
  else:
    direction = _hd_directions.momentum(momentum, nesterov,
                                        accumulator_dtype)
  return hypergradient_around(
      direction, learning_rate, hypergrad_lr=hypergrad_lr,
      additive_default=1e-3, **hypergradient_options)


@_checks.keyword_only_after(
    1, ("b1", "b2", "eps", "eps_root", "mu_dtype"),
    note="(optax.adam's order; the hypergradient's step size is"
    " hypergrad_lr=.)")
@_checks.envelope_keywords
@_checks.takes_keywords_of(hypergradient)
def hd_adam(
    learning_rate: ArrayLike,
    *,
    hypergrad_lr: Optional[ArrayLike] = None,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Optional[DTypeLike] = None,
    nesterov: bool = False,
    eps_placement: str = "optax",
    **hypergradient_options: Any,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam-HD: Adam with a hypergradient rate.

  The direction is Adam's bias-corrected step and the hypergradient uses the
  previous one, as the reference ``AdamHD``:

  .. math::

    d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon},
    \qquad h_t = g_t \cdot d_{t-1},

  with the rate rule of :func:`hypergradient`. With ``hypergrad_lr=0`` this
  is :func:`optax.adam` with a constant rate.

  Memory and passes: ``d_{t-1}`` is recomputed from Adam's moments and
  count, so the state is :func:`optax.scale_by_adam`'s plus the rates (a
  scalar, one per leaf, or one per parameter); scalar rates add one
  reduction pass that reads the gradient and both moments, per-parameter
  rates read and write the rate array.

  Args:
    learning_rate: the initial rate, a number >= 0 (> 0 for the
      multiplicative rule).
    hypergrad_lr: ``beta``; default ``None``: :func:`hypergradient`'s
      default for the multiplicative rule, the paper's 1e-7 for the
      additive rule (``h`` is a sum of ``|g|``-sized terms, hence far
      smaller than for SGD-HD).
    b1, b2: Adam's decay rates in [0, 1), defaults 0.9 and 0.999.
    eps: Adam's ``eps`` >= 0, default 1e-8.
    eps_root: added to ``v_hat`` under the square root, >= 0, default 0.
    mu_dtype: the dtype of the first moment, as in :func:`optax.adam`
      (default ``None``: the params').
    nesterov: Nesterov's Adam (NAdam), as in :func:`optax.adam`; its
      direction needs ``g_{t-1}``, which the moments do not determine, so
      ``d_{t-1}`` is stored (one params-sized copy) instead of recomputed.
      Only with ``eps_placement="optax"``.
    eps_placement: ``"optax"`` (default: ``eps`` added after bias correction,
      as :func:`optax.scale_by_adam`) or ``"reference"`` (``eps`` added to
      the uncorrected ``sqrt(v)``, as PyTorch and the reference, i.e.
      ``eps / sqrt(1 - b2**t)`` after correction). The two differ only
      where ``sqrt(v_hat)`` is comparable to ``eps``.
    granularity, rule, min_lr, max_lr, rate_dtype, reduction, total_steps,
      envelope: as in
      :func:`hypergradient` (defaults ``"global"``, ``"multiplicative"``,
      0, ``None``, ``None``, ``"auto"``, ``None``). ``rule="additive"``
      with the default ``hypergrad_lr`` is the paper's Adam-HD.

  Returns:
    ``hypergradient`` around Adam's direction (state
    :class:`optax.ScaleByAdamState`), recomputing ``d_{t-1}``.

  Example:
    >>> tx = hd_adam(1e-3)
    >>> paper = hd_adam(1e-3, rule="additive", eps_placement="reference")

  References:
    Baydin et al., `Online Learning Rate Adaptation with Hypergradient
    Descent <https://arxiv.org/abs/1703.04782>`_, ICLR 2018.
  """
  _checks.check_adam(b1, b2, eps, eps_root)
  _checks.check_choice("eps_placement", eps_placement, ("optax", "reference"))
  _checks.check_static("nesterov", nesterov, "True or False", bool)
  if nesterov and eps_placement == "reference":
    raise ValueError(
        "nesterov=True takes optax's eps placement: pass"
        " eps_placement='optax', got eps_placement='reference'.")
  if nesterov:
    direction = _hd_directions.Direction(optax.scale_by_adam(
        b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nesterov=True))
  else:
    direction = _hd_directions.adam(
        b1, b2, eps, eps_root, mu_dtype,
        reference_eps=eps_placement == "reference")
  return hypergradient_around(
      direction, learning_rate, hypergrad_lr=hypergrad_lr,
      additive_default=1e-7, **hypergradient_options)
