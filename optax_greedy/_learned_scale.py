"""The learned scale: Mechanic around the budget's envelope, with headroom.

A rate that is too high is hard to see in one step (the loss surface
adapts to the rate), but it shows in the whole run's displacement: when the
gradient points against the path travelled so far, the steps overshoot.
Mechanic (Cutkosky, Defazio and Mehta, 2023; ``optax.contrib.mechanize``)
learns one scale of that displacement online from exactly this
correlation, and lowers a rate far too high within a few hundred steps;
what it does badly is climb from its tiny initial scale. Given the base
optimizer at ``headroom`` times the rate, the scale only has to come down.
"""

from typing import NamedTuple, Optional, cast

import jax
import jax.numpy as jnp
import optax
import optax.contrib
from jax.typing import ArrayLike

from optax_greedy import _budget
from optax_greedy import _checks

NUM_BETAS = 6
#: What Mechanic's own weight decay adds to the gradient its scale learns
#: from (``decay_form``): its own form scales the pull by the scale.
DECAY_FORMS = ("mechanic", "scale-free")


class LearnedScaleState(NamedTuple):
  """State of :func:`learned_scale`.

  Attributes:
    mechanic: ``optax.contrib.MechanicState`` of the wrapped base optimizer
      (the direction at ``headroom`` times the enveloped rate).
    learning_rate: the rate the last update applied: the base optimizer's
      rate times the learned scale (float32); before the first update,
      the rate it will apply (``start`` times the rate and the envelope).
  """

  mechanic: optax.contrib.MechanicState
  learning_rate: jax.Array


def learned_scale(
    learning_rate: ArrayLike,
    *,
    total_steps: int,
    direction: Optional[optax.GradientTransformation] = None,
    headroom: float = 100.0,
    start: Optional[float] = 1 / 6,
    weight_decay: float = 0.1,
    decay_form: str = "mechanic",
    envelope: _budget.Envelope = _budget.DEFAULT_ENVELOPE,
) -> optax.GradientTransformationExtraArgs:
  r"""A rate that a learned scale brings down to what the run can take.

  The base optimizer is ``direction`` at the rate :math:`H \eta\, e_t`
  (:math:`H` = ``headroom``, :math:`\eta` = ``learning_rate``, :math:`e_t`
  the step budget's envelope, :func:`budget_schedule`); Mechanic
  (``optax.contrib.mechanize``) learns a scale :math:`s_t` of the
  displacement that this optimizer accumulates, from the correlation of
  each gradient with it:

  .. math::

    \theta_t = \theta_0 + s_t \sum_{k<t} u_k,

  so the rate the run applies is :math:`H \eta\, e_t\, s_t`. With the
  headroom the scale only has to come down, which Mechanic does fast,
  instead of climbing from its tiny start; Mechanic's own weight decay
  pulls the scale down where a higher rate only fits the training data
  better (what over-fits). It costs the
  Mechanic's memory (a copy of the initial parameters) and about one more
  pass over the parameters per step, and needs no ``value`` or
  ``value_fn``.

  Mechanic's update is invariant to the scale of its base rate but for
  its decay (and its 1e-8 epsilons): a run depends on ``learning_rate``,
  ``headroom`` and ``start`` through the rate it starts at,
  :math:`\eta` times ``start``, and through the decay's strength relative
  to the gradient, :math:`\lambda s_t`, which falls as :math:`1/H` and as
  the rate given rises. With ``decay_form="scale-free"`` only the first
  is left: ``headroom`` changes nothing.

  Args:
    learning_rate: :math:`\eta`, the rate you would give ``direction``,
      positive and finite.
    total_steps: the run's number of updates (the envelope's budget).
    direction: the base direction (default ``optax.scale_by_adam()``).
    headroom: :math:`H`, how far above ``learning_rate`` the base
      optimizer runs, >= 1. Default 100.
    start: Mechanic's initial scale in units of :math:`1/H`: its scale
      stays near it until the run gives it evidence, so the run starts
      near ``start`` times ``learning_rate``. Default 1/6; ``None``:
      Mechanic's own ``1e-6`` (a start far below the rate, which it is slow
      to climb from).
    weight_decay: :math:`\lambda`, Mechanic's own weight decay, >= 0: a pull
      on the scale proportional to the parameters' norm. Default 0.1
      (Mechanic's default is 0.01).
    decay_form: how the decay enters the gradient :math:`g` that the scale
      learns from: ``"mechanic"`` (default, Mechanic's own), :math:`g +
      \lambda s_t \lVert g\rVert \theta / \lVert\theta\rVert`, whose
      pull, relative to the gradient's, grows with the scale: weak where
      the base rate is high (the scale small), strong where it is low;
      ``"scale-free"``, :math:`g + \lambda \lVert g\rVert \theta /
      \lVert\theta\rVert`, equally strong whatever the base rate (so a
      far smaller :math:`\lambda`, about :math:`10^{-3}`).
    envelope: the budget's ramp and decay (:data:`DEFAULT_ENVELOPE`).

  The defaults were chosen on two selection workloads that the
  benchmark's report workloads never see (a byte-level LM and a smaller
  MNIST-1D; ``python -m bench probe-defaults``), by the lowest worst
  held-out loss over starting rates from a tenth to ten times the tuned
  one, over both. What the report workloads say is in the docs' "Finding
  the rate from a wrong start".

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is
    :class:`LearnedScaleState`.

  Example:
    >>> import jax.numpy as jnp, optax_greedy
    >>> tx = optax_greedy.learned_scale(1e-3, total_steps=1000)
    >>> state = tx.init({"w": jnp.zeros(3)})

  References:
    Cutkosky, Defazio and Mehta, `Mechanic: A Learning Rate Tuner
    <https://arxiv.org/abs/2306.00144>`_, NeurIPS 2023.
  """
  _checks.check_number("learning_rate", learning_rate)
  _checks.check_range("learning_rate", learning_rate, 0, low_open=True,
                      finite=True)
  _checks.check_number("headroom", headroom)
  _checks.check_range("headroom", headroom, 1, finite=True)
  if start is not None:
    _checks.check_number("start", start)
    _checks.check_range("start", start, 0, low_open=True, finite=True)
  _checks.check_number("weight_decay", weight_decay)
  _checks.check_range("weight_decay", weight_decay, 0)
  _checks.check_choice("decay_form", decay_form, DECAY_FORMS)
  base_rate = _budget.budget_schedule(learning_rate * headroom,
                                      total_steps=total_steps,
                                      envelope=envelope)
  base = optax.chain(
      optax.scale_by_adam() if direction is None else direction,
      optax.scale_by_learning_rate(base_rate))
  s_init = 1e-6 if start is None else start / headroom

  def mechanize(decay):
    return optax.contrib.mechanize(base, weight_decay=decay, s_init=s_init,
                                   num_betas=NUM_BETAS)

  mechanic = mechanize(weight_decay)

  def init_fn(params):
    inner = cast(optax.contrib.MechanicState, mechanic.init(params))
    # Mechanic's first update sets its scale to s_init.
    first = base_rate(0) * s_init
    return LearnedScaleState(inner, jnp.asarray(first, jnp.float32))

  def update_fn(updates, state, params=None, **extra_args):
    step = mechanic
    if decay_form == "scale-free":
      # Mechanic multiplies its decay by the scale it held, s_sum: divided
      # by it here, the pull no longer depends on the scale.
      s_sum = jnp.sum(state.mechanic.s)
      step = mechanize(weight_decay / jnp.maximum(
          s_sum, jnp.finfo(s_sum.dtype).tiny))
    updates, inner = step.update(updates, state.mechanic, params,
                                 **extra_args)
    inner = cast(optax.contrib.MechanicState, inner)
    applied = base_rate(state.mechanic.count) * jnp.sum(jnp.asarray(inner.s))
    return updates, LearnedScaleState(inner,
                                      jnp.asarray(applied, jnp.float32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
