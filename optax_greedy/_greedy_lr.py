"""GreedyLR: a learning rate that follows the loss, as an optax transform.

Reference: Subramanian et al., "GreedyLR: A Novel Adaptive Learning Rate
Scheduler", arXiv:2512.14527; the authors' implementation is
``transformers.optimization.GreedyLR`` (PyTorch). One ``update`` call that
observes a ``value`` is one reference ``scheduler.step(value)``.
"""

import numbers
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import optax

from optax_greedy import _budget
from optax_greedy import _checks
from optax_greedy import _xla_numerics


# Defaults that depend on other arguments: markers, typed ``Any`` so that
# they may stand where the argument's own type is declared.
RELATIVE_MIN_LR: Any = _checks.Marker("learning_rate / 100")
RELATIVE_MAX_LR: Any = _checks.Marker("10 * learning_rate")
_WINDOW_SIZE = 50
DEFAULT_WINDOW_SIZE: Any = _checks.Marker(str(_WINDOW_SIZE))


class GreedyLRState(NamedTuple):
  """State of :func:`greedy_lr`; every field is an array.

  Attributes:
    learning_rate: the rate applied by the most recent update (the initial
      rate before the first update), scalar. Informational: a wrapper such as
      :func:`optax_greedy.stability_clip` may overwrite it with the rate it
      actually applied.
    next_learning_rate: the rate the next update applies (the reference's
      ``get_last_lr()`` after ``step(value)``).
    best: the best (smoothed) value observed since the last reset.
    num_good: consecutive improvements since the last change.
    num_bad: consecutive non-improvements since the last change.
    cooldown_counter: observations left in the hold after a decrease.
    warmup_counter: observations left in the hold after an increase.
    reset_counter: decreases left at ``min_lr`` before the reset.
    window: the smoothing window (a ring buffer; empty without ``smooth``).
    window_sum: running sum of the window, as the reference keeps it.
    window_len: number of values in the window.
    window_head: ring position that the next value is written to.
    count: number of observations (``optax.safe_increment``).
    step: number of updates (``optax.safe_increment``) with ``total_steps``;
      ``None`` without it.
  """

  learning_rate: jax.Array
  next_learning_rate: jax.Array
  best: jax.Array
  num_good: jax.Array
  num_bad: jax.Array
  cooldown_counter: jax.Array
  warmup_counter: jax.Array
  reset_counter: jax.Array
  window: jax.Array
  window_sum: jax.Array
  window_len: jax.Array
  window_head: jax.Array
  count: jax.Array
  step: Optional[jax.Array] = None


@_checks.envelope_keywords
def greedy_lr(
    learning_rate: ArrayLike,
    *,
    mode: str = "min",
    factor: ArrayLike = 0.95,
    patience: ArrayLike = 20,
    threshold: ArrayLike = 1e-6,
    threshold_mode: str = "abs",
    cooldown: ArrayLike = 0,
    warmup: ArrayLike = 0,
    min_lr: Optional[ArrayLike] = RELATIVE_MIN_LR,
    max_lr: Optional[ArrayLike] = RELATIVE_MAX_LR,
    min_change: ArrayLike = 1e-8,
    smooth: bool = True,
    window_size: int = DEFAULT_WINDOW_SIZE,
    reset_start: ArrayLike = 500,
    total_steps: Optional[int] = None,
    envelope: _budget.Envelope = _budget.DEFAULT_ENVELOPE,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates by ``-learning_rate_t``, a rate that reacts to the loss.

  This transform plays the role of :func:`optax.scale_by_learning_rate`:
  ``optax.chain(optax.scale_by_adam(), greedy_lr(1e-3))`` is Adam with
  GreedyLR. Each call ``update(updates, state, params, value=loss)`` returns
  ``-lr_t * updates`` with the rate in force *before* ``loss`` is seen, then
  observes ``loss``:

  .. math::

    \tilde v_t &= \tfrac{1}{|W_t|}\textstyle\sum_{v \in W_t} v
      \quad (\text{last } \texttt{window\_size} \text{ finite values, if }
      \texttt{smooth}; \text{ else } \tilde v_t = v_t) \\
    \text{better}_t &= \tilde v_t < \text{best} - \tau
      \ (\texttt{abs}) \quad\text{or}\quad
      \tilde v_t < \text{best}\,(1 - \tau) \ (\texttt{rel})
      \quad (\text{mirrored for } \texttt{mode="max"}) \\
    \text{good}_t &= (\text{good}_{t-1} + 1)\,[\text{better}_t], \qquad
    \text{bad}_t = (\text{bad}_{t-1} + 1)\,[\lnot\text{better}_t] \\
    \text{lr}_{t+1} &= \begin{cases}
      \min(\text{lr}_t / \gamma,\ \texttt{max\_lr}) & \text{good}_t >
        \texttt{patience} \ (\text{then hold } \texttt{warmup} \text{ steps})\\
      \max(\text{lr}_t \gamma,\ \texttt{min\_lr}) & \text{bad}_t >
        \texttt{patience} \ (\text{then hold } \texttt{cooldown} \text{ steps})\\
      \text{lr}_t & \text{otherwise,}
    \end{cases}

  where ``best`` is the best :math:`\tilde v` seen, :math:`\gamma` is
  ``factor``, a change of at most ``min_change`` is skipped, and the counters
  restart after a change. During a hold (cooldown or warmup) observations only
  count the hold down. A decrease that leaves the rate at or below ``min_lr``
  counts one of ``reset_start``; an increase restores the count. When it runs
  out the controller resets: the rate returns to ``learning_rate``; ``best``,
  counters and window are cleared; and, as in the reference, the cooldown
  hold of that last decrease still applies.

  Non-finite values (NaN, +/-inf) count as non-improvements: they can lower
  the rate, never raise it, and they are kept out of the window and ``best``.
  (The reference puts them in its window sum, which then stays NaN or
  infinite for good: the one documented difference from it.)

  Feeding the loss:

  * every step: pass the training loss, with ``smooth=True`` (the default);
  * once per evaluation: pass the validation loss on evaluation steps and
    ``value=None`` elsewhere; ``value=None`` leaves the controller's state
    untouched and keeps the rate. Inside one compiled step, pass
    ``observe=is_eval_step`` (a boolean array) instead, or use
    :func:`optax_greedy.validation_feed`.

  One rate controller per chain: this transform applies a rate, and so do
  :func:`greedy_adam`, :func:`optax_greedy.hd_adam`, :func:`optax.adam`...;
  chained, their rates multiply (``chain(greedy_adam(1e-3),
  greedy_lr(1e-3))`` moves the parameters by about ``1e-6``), and
  :func:`optax_greedy.get_learning_rate` refuses such a state. Put
  preconditioners without a rate before it (``optax.scale_by_adam()``).

  Omitting ``value`` altogether is almost always a mistake (the rate then
  never moves): tracing an update without it emits a ``UserWarning`` once;
  pass ``value=None`` to skip observing on purpose.

  Args:
    learning_rate: the initial rate, > 0; also the rate after a reset.
    mode: ``"min"`` (a loss) or ``"max"`` (e.g. an accuracy).
    factor: ``gamma`` in (0, 1); the rate is divided by it on improvement and
      multiplied by it on a plateau. Default 0.95 (the reference's).
    patience: a change needs more than ``patience`` consecutive improvements
      (or non-improvements), >= 0. Default 20 (the reference's is 10): on
      noisy losses a shorter patience raises the rate on streaks of luck.
      With a validation loss observed once per evaluation, use
      ``smooth=False, patience=1, factor=0.9`` (see
      :func:`optax_greedy.validation_feed`).
    threshold: ``tau`` >= 0, the margin a value must beat ``best`` by.
      Default 1e-6 (the reference's).
    threshold_mode: ``"abs"`` or ``"rel"``. Default ``"abs"``.
    cooldown: observations held after a decrease, >= 0. Default 0.
    warmup: observations held after an increase, >= 0. Default 0.
    min_lr: lower bound on the rate, >= 0, or ``None`` for no lower bound.
      Default ``learning_rate / 100``: the reference's absolute 1e-3 would
      exceed most Adam rates and pin them up, so the default is relative.
    max_lr: upper bound on the rate, >= ``min_lr``, or ``None`` for no upper
      bound. Default ``10 * learning_rate``: enough room to recover from a
      rate chosen 10x too small, not enough to run away on a loss that keeps
      improving.
    min_change: changes of the rate of at most ``min_change`` are skipped,
      >= 0. Default 1e-8. This is the reference's ``eps``, renamed so that it
      cannot be confused with Adam's ``eps`` in :func:`greedy_adam`.
    smooth: average the last ``window_size`` values before deciding. Default
      ``True``, because most users feed the noisy per-step training loss
      (the reference's default is ``False``); pass ``False`` for an
      already-averaged validation loss.
    window_size: length of the smoothing window, a Python int >= 1. Default
      50. It sets the state's shape, so under :func:`optax.inject_hyperparams`
      name it in ``static_args`` when you pass it.
    reset_start: decreases at ``min_lr`` before a reset, >= 1. Default 500.
    total_steps: the run's number of updates, or ``None`` (the default: no
      budget, exactly the reference's rule). With a number, the rate applied
      is the controller's rate times an envelope that ramps up over the
      first ``ramp_fraction`` of the budget and decays to zero over the
      last ``decay_fraction`` (shape ``decay_shape``) of ``envelope``; the
      controller observes only in between. These are not ``warmup`` and
      ``cooldown``, which hold the rate after a change.
    envelope: an :class:`optax_greedy.Envelope` (used only with
      ``total_steps``); default ``Envelope()`` (0.05, 0.2, ``"linear"``).
      See :func:`optax_greedy.budget_schedule`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`GreedyLRState`; ``optax.tree.get(state, "learning_rate")`` is the
    rate applied by the last update and
    ``optax.tree.get(state, "next_learning_rate")`` the one the next update
    applies. Its ``update`` takes the extra keyword arguments ``value`` (a
    scalar loss, or ``None`` to skip observing) and ``observe`` (a boolean,
    possibly traced: whether to observe ``value``).

  Example:
    >>> import jax.numpy as jnp, optax, optax_greedy
    >>> tx = optax.chain(optax.scale_by_adam(), optax_greedy.greedy_lr(1e-3))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> loss, grads = 3.0, {"w": jnp.ones(3)}
    >>> updates, state = tx.update(grads, state, params, value=loss)
    >>> print(f'{optax.tree.get(state, "learning_rate"):.3g}')
    0.001
  """
  numbers_in = dict(learning_rate=learning_rate, factor=factor,
                    patience=patience, threshold=threshold, cooldown=cooldown,
                    warmup=warmup, min_change=min_change,
                    reset_start=reset_start)
  if min_lr is not None and min_lr is not RELATIVE_MIN_LR:
    numbers_in["min_lr"] = min_lr
  if max_lr is not None and max_lr is not RELATIVE_MAX_LR:
    numbers_in["max_lr"] = max_lr
  for name, val in numbers_in.items():
    _checks.check_number(name, val)
  _checks.check_range("learning_rate", learning_rate, 0, low_open=True,
                      finite=True)
  _checks.check_choice("mode", mode, ("min", "max"))
  _checks.check_range("factor", factor, 0, 1, low_open=True, high_open=True)
  for name in ("patience", "cooldown", "warmup", "threshold", "min_change",
               "min_lr", "max_lr"):
    if name in numbers_in:
      _checks.check_range(name, numbers_in[name], 0)
  _checks.check_choice("threshold_mode", threshold_mode, ("abs", "rel"))
  _checks.check_range("reset_start", reset_start, 1)
  if window_size is DEFAULT_WINDOW_SIZE:
    window_size = _WINDOW_SIZE
  if smooth:
    _checks.check_static("window_size", window_size, "a Python int >= 1",
                         numbers.Integral)
    _checks.check_range("window_size", int(window_size), 1)
  window_len_max = int(window_size) if smooth else 0
  if min_lr is RELATIVE_MIN_LR:
    min_lr = learning_rate / 100
  if max_lr is RELATIVE_MAX_LR:
    max_lr = 10 * learning_rate
  if (_checks.is_concrete(min_lr) and _checks.is_concrete(max_lr)
      and min_lr > max_lr):
    raise ValueError(
        f"min_lr must be in [0, max_lr={max_lr!r}], got min_lr={min_lr!r}.")
  sign = 1.0 if mode == "min" else -1.0
  warn_without_value = _checks.warn_once_without_value(
      "greedy_lr", "the learning rate will never change")

  def fresh_state(rate, count):
    """The rate ``rate``, no history; ``count`` observations so far."""
    zero = jnp.zeros([], jnp.int32)
    return GreedyLRState(
        learning_rate=rate,
        next_learning_rate=rate,
        best=jnp.asarray(sign * jnp.inf, rate.dtype),
        num_good=zero,
        num_bad=zero,
        cooldown_counter=zero,
        warmup_counter=zero,
        reset_counter=jnp.asarray(reset_start, jnp.int32),
        window=jnp.zeros([window_len_max], rate.dtype),
        window_sum=jnp.zeros([], rate.dtype),
        window_len=zero,
        window_head=zero,
        count=count,
    )

  def init_fn(params):
    del params
    return fresh_state(jnp.asarray(learning_rate, dtype=float),
                       jnp.zeros([], jnp.int32))

  def push_to_window(state, value):
    """The state with ``value`` in the window, and the window's mean."""
    if not smooth:
      return state, value
    full = state.window_len == window_len_max
    total = state.window_sum + value
    total = jnp.where(full, total - state.window[state.window_head], total)
    length = jnp.minimum(state.window_len + 1, window_len_max)
    state = state._replace(
        window=state.window.at[state.window_head].set(value),
        window_sum=total,
        window_len=length,
        window_head=(state.window_head + 1) % window_len_max,
    )
    return state, _xla_numerics.divide(total, length.astype(total.dtype))

  def is_better(current, best):
    if threshold_mode == "abs":
      target = best - sign * threshold
    else:
      target = best * (1.0 - sign * threshold)
    return sign * current < sign * target

  def decide(state, current, finite):
    """Counts the observation; returns the state and whether to step up/down.

    During a hold (cooldown, then warmup) the observation only counts the
    hold down and clears both streaks.
    """
    in_cooldown = state.cooldown_counter > 0
    in_warmup = ~in_cooldown & (state.warmup_counter > 0)
    active = ~(in_cooldown | in_warmup)
    better = active & finite & is_better(current, state.best)
    num_good = jnp.where(better, state.num_good + 1, 0)
    num_bad = jnp.where(active & ~better, state.num_bad + 1, 0)
    increase = num_good > patience
    decrease = ~increase & (num_bad > patience)
    state = state._replace(
        best=jnp.where(better, current, state.best),
        num_good=jnp.where(increase, 0, num_good).astype(jnp.int32),
        num_bad=jnp.where(decrease, 0, num_bad).astype(jnp.int32),
        cooldown_counter=jnp.where(
            decrease, cooldown,
            state.cooldown_counter - in_cooldown).astype(jnp.int32),
        warmup_counter=jnp.where(
            increase, warmup,
            state.warmup_counter - in_warmup).astype(jnp.int32),
    )
    return state, increase, decrease

  def step_rate(rate, increase, decrease):
    """The rate after an increase or decrease, within the bounds.

    A change of at most ``min_change`` is skipped. Returns the new rate and
    whether it is at (or below) ``min_lr``.
    """
    raised = _xla_numerics.divide(rate, jnp.asarray(factor, rate.dtype))
    if max_lr is not None:
      raised = jnp.minimum(raised, jnp.asarray(max_lr, rate.dtype))
    lowered = (rate * factor).astype(rate.dtype)
    if min_lr is not None:
      lowered = jnp.maximum(lowered, jnp.asarray(min_lr, rate.dtype))
    new_rate = jnp.where(increase & (raised - rate > min_change), raised, rate)
    new_rate = jnp.where(decrease & (rate - lowered > min_change), lowered,
                         new_rate)
    if min_lr is None:
      at_min = jnp.zeros([], bool)
    else:
      at_min = new_rate <= jnp.asarray(min_lr, rate.dtype)
    return new_rate, at_min

  def count_toward_reset(reset_counter, increase, decrease_at_min):
    """An increase restores ``reset_start``; a decrease at min_lr counts."""
    reset_counter = jnp.where(increase, reset_start, reset_counter)
    return jnp.where(decrease_at_min, reset_counter - 1,
                     reset_counter).astype(jnp.int32)

  def reset(state):
    """The initial rate, cleared history; the cooldown hold still applies."""
    rate = jnp.asarray(learning_rate, state.next_learning_rate.dtype)
    return fresh_state(rate, state.count)._replace(
        learning_rate=state.learning_rate, step=state.step,
        cooldown_counter=state.cooldown_counter)

  def observe_value(state, value):
    value = jnp.asarray(value).astype(state.next_learning_rate.dtype)
    finite = jnp.isfinite(value)
    pushed, current = push_to_window(state, value)
    state = optax.tree.where(finite, pushed, state)
    state, increase, decrease = decide(state, current, finite)
    rate, at_min = step_rate(state.next_learning_rate, increase, decrease)
    reset_counter = count_toward_reset(
        state.reset_counter, increase, decrease & at_min)
    state = state._replace(
        next_learning_rate=rate, reset_counter=reset_counter,
        count=optax.safe_increment(state.count))
    return optax.tree.where(decrease & at_min & (reset_counter <= 0),
                            reset(state), state)

  def react(updates, state, params=None, *, value=_checks.NO_VALUE,
            observe=True, **extra_args):
    """Observes ``value`` (if ``observe``); ``value=None`` skips it."""
    del updates, params, extra_args
    if value is _checks.NO_VALUE:
      warn_without_value()
      return state
    if value is None:
      return state
    _checks.check_scalar_value(value)
    observed = observe_value(state, value)
    if observe is not True:
      observed = optax.tree.where(observe, observed, state)
    return observed

  return _budget.controller(
      init_fn, react, lambda state: state.next_learning_rate,
      total_steps=total_steps, envelope=envelope, rate_before=True)
