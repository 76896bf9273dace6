"""Learned schedules: a small policy sets the rate as a fraction of a maximum.

A learning-rate schedule is a policy: from what an optimizer can observe
(the loss, the update, the step) it picks the next rate. Following the
reinforcement-learning studies behind this library (Amazon, "Efficient
learning rate schedules for stochastic non-negative matrix factorization via
reinforcement learning" and "Learned learning rate schedules for deep neural
network training using reinforcement learning", ICLR 2023 Tiny Papers), the
policy does not pick the rate itself but a *fraction in (0, 1] of the
largest rate allowed* (``max_rate``): a stability bound for NMF, the peak
rate the user gives for deep networks. No output of the policy can exceed
it.

The policy (:class:`optax_greedy.policy.Policy`, a tiny MLP in plain
jax.numpy) reads named, scale-free features of the state (see
:func:`optax_greedy.policy.policy_features`). Two policies ship with the
package and are read by :func:`optax_greedy.load_policy`;
``optax_greedy_lab`` trains them.
"""

from typing import Any, Callable, NamedTuple, Optional, Union
import warnings

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import optax

from optax_greedy import _budget
from optax_greedy import _checks
from optax_greedy import _features
from optax_greedy import policy as _policy


class LearnedScheduleState(NamedTuple):
  """State of :func:`learned_schedule`; every field is an array.

  Attributes:
    learning_rate: the rate applied by the most recent update, ``fraction *
      max_rate(params)`` (a scalar, or a tree shaped like ``max_rate``'s
      output); before the first update, the initial rate ``max_rate(params)``
      (the initial fraction is 1). Informational: overwriting it (as
      :func:`optax_greedy.stability_clip` does) changes nothing, the
      fraction drives the schedule.
    fraction: the fraction of ``max_rate`` applied by the last update.
    log_loss0: log of the first finite loss observed (NaN before).
    log_loss: exponential moving average of the log loss (NaN before).
    log_loss_min: smallest ``log_loss`` so far (NaN before).
    slope: moving average of the per-step change of ``log_loss``.
    loss_variance: moving average of the squared deviation of the log loss
      from ``log_loss``.
    log_grad_norm0: log of the first finite update norm (NaN before).
    log_grad_norm: moving average of the log update norm (NaN before).
    step: number of updates so far (``optax.safe_increment``), the step
      budget's counter (``count`` before 0.2.0).
  """

  learning_rate: Any
  fraction: jax.Array
  log_loss0: jax.Array
  log_loss: jax.Array
  log_loss_min: jax.Array
  slope: jax.Array
  loss_variance: jax.Array
  log_grad_norm0: jax.Array
  log_grad_norm: jax.Array
  step: Optional[jax.Array] = None


def _ema(average_decay, old, new):
  """Moving average that starts at the first value (``old`` NaN)."""
  return jnp.where(jnp.isnan(old), new,
                   average_decay * old + (1.0 - average_decay) * new)


def _observe(state, updates, value, average_decay):
  """The state's statistics after observing ``value`` and ``updates``."""
  log_loss = jnp.log(jnp.asarray(value, jnp.float32))
  log_norm = jnp.log(optax.tree.norm(updates).astype(jnp.float32))
  ok_loss = jnp.isfinite(log_loss)
  ok_norm = jnp.isfinite(log_norm)
  first = jnp.isnan(state.log_loss)
  new_log_loss = _ema(average_decay, state.log_loss, log_loss)
  step = jnp.where(first, 0.0, new_log_loss - state.log_loss)
  deviation = jnp.where(first, 0.0, log_loss - state.log_loss)
  keep_if_bad = lambda new, old: jnp.where(ok_loss, new, old)
  return state._replace(
      log_loss0=jnp.where(jnp.isnan(state.log_loss0) & ok_loss, log_loss,
                          state.log_loss0),
      log_loss=keep_if_bad(new_log_loss, state.log_loss),
      log_loss_min=keep_if_bad(
          jnp.fmin(state.log_loss_min, new_log_loss), state.log_loss_min),
      slope=keep_if_bad(average_decay * state.slope + (1 - average_decay) * step,
                        state.slope),
      loss_variance=keep_if_bad(
          average_decay * state.loss_variance + (1 - average_decay) * deviation ** 2,
          state.loss_variance),
      log_grad_norm0=jnp.where(
          jnp.isnan(state.log_grad_norm0) & ok_norm, log_norm,
          state.log_grad_norm0),
      log_grad_norm=jnp.where(
          ok_norm, _ema(average_decay, state.log_grad_norm, log_norm),
          state.log_grad_norm),
  )


def _warn_if_other_envelope(policy, envelope):
  if policy.envelope is None:
    return
  trained, used = _budget.Envelope(*policy.envelope), _budget.Envelope(
      *envelope)
  if not trained.same_as(used):
    warnings.warn(
        f"learned_schedule: the policy was trained for the envelope"
        f" ramp_fraction={trained.ramp_fraction},"
        f" decay_fraction={trained.decay_fraction},"
        f" decay_shape={trained.decay_shape!r}, and is used with"
        f" ramp_fraction={used.ramp_fraction},"
        f" decay_fraction={used.decay_fraction},"
        f" decay_shape={used.decay_shape!r}; pass the training envelope"
        " (envelope=policy.envelope) for the schedule it learned.",
        UserWarning, stacklevel=5)


@_checks.renamed_keywords(budget="total_steps", decay="average_decay")
@_checks.envelope_keywords
def learned_schedule(
    policy: _policy.Policy,
    max_rate: Union[ArrayLike, Callable[[optax.Params], Any]],
    *,
    total_steps: int,
    average_decay: ArrayLike = 0.9,
    envelope: _budget.Envelope = _budget.DEFAULT_ENVELOPE,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates by ``-fraction_t * max_rate``, a learned schedule.

  Each call ``update(updates, state, params, value=loss)`` observes ``loss``
  (the loss at ``params``, e.g. the minibatch loss) and the norm of
  ``updates``, computes the policy's features
  (:func:`optax_greedy.policy.policy_features`),
  asks the policy for

  .. math::

    f_t = \pi_\theta(x_t) \in [10^{-3}, 1], \qquad
    \text{lr}_t = e_t \cdot f_t \cdot \texttt{max\_rate}(\text{params}_t),

  where :math:`e_t` is the step budget's envelope (a ramp over the first
  ``ramp_fraction`` of ``total_steps``, a decay to zero over the last
  ``decay_fraction`` of ``envelope``; see
  :func:`optax_greedy.budget_schedule`; ``envelope=optax_greedy.NO_ENVELOPE``
  for none), and returns ``-lr_t * updates``. No policy
  output can exceed ``max_rate``. ``value=None`` keeps the last fraction
  (``max_rate`` and the envelope are still recomputed) and observes
  nothing; omitting ``value`` does the same but warns once, at trace time.

  The two shipped policies:

  * ``load_policy("dnn")``: deep networks. ``max_rate`` is the peak rate you
    would give cosine annealing; use it after a direction such as
    ``optax.scale_by_adam()`` or ``optax.trace(decay=0.9)``.
  * ``load_policy("nmf")``: stochastic NMF with
    ``max_rate = lambda p: nmf.stability_bounds(p, joint=True)``, SGD on
    column minibatches. To also cap at ``safety * bound`` and clip single
    updates, wrap it: ``stability_clip(max_rate,
    inner=learned_schedule(...))``.

  References: "Learned learning rate schedules for deep neural network
  training using reinforcement learning" and "Efficient learning rate
  schedules for stochastic non-negative matrix factorization via
  reinforcement learning", ICLR 2023 Tiny Papers (Amazon).

  Args:
    policy: a :class:`optax_greedy.policy.Policy`, e.g.
      ``load_policy("dnn")``. May be traced (training vmaps over a
      population of them).
    max_rate: the rate that a fraction of 1 means: a number > 0, or a
      function of the current params returning a scalar or a tree that is
      a prefix of the params (per-block rates, e.g. ``{"W": bW, "H": bH}``).
    total_steps: the number of updates of the run, an integer >= 1; the
      policy sees the share used, and the envelope spans it.
    average_decay: the decay of the moving averages of the log loss, its
      slope and noise and the log update norm, in [0, 1) (``decay=`` before
      0.2.0, a name now left to the envelope's ``decay_*``). Default 0.9
      (the one both shipped policies were trained with): about 10 steps of
      memory.
    envelope: an :class:`optax_greedy.Envelope`, as in
      :func:`optax_greedy.budget_schedule` (default ``Envelope()``: ramp
      0.05, linear decay 0.2). A policy records the envelope it is meant to
      act inside (``policy.envelope``; the shipped ``"dnn"`` policy: the
      default); another one here warns (``UserWarning``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`LearnedScheduleState`; ``optax.tree.get(state, "learning_rate")``
    is the rate applied by the last update and ``optax.tree.get(state,
    "fraction")`` its fraction of ``max_rate``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optax_greedy
    >>> loss_fn = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
    >>> params = {"w": jnp.zeros(3)}
    >>> tx = optax.chain(
    ...     optax.scale_by_adam(),
    ...     optax_greedy.learned_schedule(
    ...         optax_greedy.load_policy("dnn"), 0.1, total_steps=100))
    >>> state = tx.init(params)
    >>> value, grads = jax.value_and_grad(loss_fn)(params)
    >>> updates, state = tx.update(grads, state, params, value=value)
    >>> params = optax.apply_updates(params, updates)
    >>> rate = optax.tree.get(state, "learning_rate")
  """
  if not isinstance(policy, _policy.Policy):
    raise ValueError(
        "policy must be a Policy (e.g. optax_greedy.load_policy(\"dnn\")),"
        f" got policy={policy!r}.")
  if total_steps is None:
    raise ValueError(
        "learned_schedule needs total_steps (an integer >= 1): its policy"
        " reads the share of the budget used, got total_steps=None.")
  # The budget is checked here, before the policy's envelope is compared
  # with it; the controller below applies it.
  _budget.budget(total_steps, envelope)
  _warn_if_other_envelope(policy, envelope)
  _checks.check_number("average_decay", average_decay)
  _checks.check_range("average_decay", average_decay, 0, 1, high_open=True)
  rate_fn = max_rate if callable(max_rate) else None
  if rate_fn is None:
    _checks.check_number("max_rate", max_rate)
    _checks.check_range("max_rate", max_rate, 0, low_open=True,
                      finite=True)
  warn_without_value = _checks.warn_once_without_value(
      "learned_schedule",
      "the policy observes no loss and the fraction never changes")

  def rate_tree(params):
    if rate_fn is None:
      return jnp.asarray(max_rate, jnp.float32)
    if params is None:
      raise ValueError(
          "learned_schedule: max_rate is a function of the params, so"
          " update() needs params=...")
    return jax.tree.map(lambda b: jnp.asarray(b, jnp.float32),
                        rate_fn(params))

  def init_fn(params):
    del params
    nan = jnp.asarray(jnp.nan, jnp.float32)
    zero = jnp.zeros([], jnp.float32)
    return LearnedScheduleState(
        learning_rate=None, fraction=jnp.ones([], jnp.float32),
        log_loss0=nan, log_loss=nan, log_loss_min=nan, slope=zero,
        loss_variance=zero, log_grad_norm0=nan, log_grad_norm=nan)

  def react(updates, state, params=None, *, value=_checks.NO_VALUE,
            observe=True, **extra_args):
    """Observes ``value`` and ``updates`` (if ``observe``); the policy
    picks the fraction."""
    del params, extra_args
    if value is _checks.NO_VALUE:
      warn_without_value()
      value = None
    if value is None:
      return state
    _checks.check_scalar_value(value)
    new_state = _observe(state, updates, value, average_decay)
    features = _features.policy_features(
        new_state, jnp.asarray(total_steps, jnp.float32), policy.features)
    new_state = new_state._replace(fraction=_policy.policy_fraction(
        policy, features).astype(jnp.float32))
    if observe is not True:
      new_state = optax.tree.where(observe, new_state, state)
    return new_state

  return _budget.controller(
      init_fn, react, lambda state: state.fraction, total_steps=total_steps,
      envelope=envelope, gated=False,
      spread=lambda fraction, params: jax.tree.map(
          lambda b: fraction * b, rate_tree(params)))
