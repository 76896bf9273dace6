"""The step budget: a ramp up at the start, a decay to zero at the end.

Every controller of this library takes ``total_steps`` and ``envelope``
(an :class:`Envelope`: the one representation of the envelope's settings).
Given a number of steps, the rate it applies is its own rate times an
*envelope* that rises over the first ``ramp_fraction`` of the budget and
falls to zero over the last ``decay_fraction``; a controller that gates its
reaction (GreedyLR observing the loss, the hypergradient's steps) reacts
only in between, where the envelope is 1. This module is the one
implementation: :class:`Budget` computes the envelope and the reacting
phase from the update's ``step`` (a family's state holds that counter, and
nothing else of the budget), and :func:`controller` puts them around a
family's reaction, which is all a family implements. A reactive
controller cannot see the end of training coming, and the last part of
training, where the rate goes to zero, decides the final loss (Hägele et
al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations", NeurIPS 2024).
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, overload

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from optax_greedy import _checks

#: The decay shapes: the envelope at progress ``p`` in [0, 1] of the decay.
DECAY_SHAPES = {
    "linear": lambda p: 1.0 - p,
    "1-sqrt": lambda p: 1.0 - jnp.sqrt(p),
    "cosine": lambda p: 0.5 * (1.0 + jnp.cos(jnp.pi * p)),
}
RAMP_FRACTION = 0.05
DECAY_FRACTION = 0.2
DECAY_SHAPE = "linear"


class Envelope(NamedTuple):
  """The step budget's envelope, as fractions of ``total_steps``.

  One argument, ``envelope=``, of every controller and of
  :func:`budget_schedule`, and what a learned schedule's policy records
  (``policy.envelope``). A tuple, so ``Envelope() == (0.05, 0.2,
  "linear")``.

  Attributes:
    ramp_fraction: share of the budget spent ramping up, in [0, 1).
      Default 0.05.
    decay_fraction: share of the budget spent decaying to zero, in [0, 1],
      with ``ramp_fraction + decay_fraction <= 1``. Default 0.2.
    decay_shape: ``"linear"`` (default), ``"1-sqrt"`` or ``"cosine"``
      (:data:`DECAY_SHAPES`).

  Example:
    >>> import optax_greedy
    >>> tx = optax_greedy.greedy_adam(
    ...     1e-3, total_steps=1000,
    ...     envelope=optax_greedy.Envelope(decay_shape="1-sqrt"))
  """

  ramp_fraction: float = RAMP_FRACTION
  decay_fraction: float = DECAY_FRACTION
  decay_shape: str = DECAY_SHAPE

  def same_as(self, other: "Envelope") -> bool:
    """Whether two envelopes give the same scale at every step (the shape
    matters only where there is a decay)."""
    return (abs(self.ramp_fraction - other.ramp_fraction) < 1e-9
            and abs(self.decay_fraction - other.decay_fraction) < 1e-9
            and (self.decay_fraction == 0
                 or self.decay_shape == other.decay_shape))


#: The default envelope of every controller: (0.05, 0.2, "linear").
DEFAULT_ENVELOPE = Envelope()
#: No envelope: a scale of 1 at every step (the controller alone).
NO_ENVELOPE = Envelope(0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Budget:
  """A validated step budget: the envelope's phases, in updates.

  Attributes:
    total_steps: the number of updates of the run (float32 scalar).
    ramp_steps: updates of the ramp, at the start (float32, whole).
    decay_steps: updates of the decay, at the end (float32, whole).
    decay_shape: a key of :data:`DECAY_SHAPES`.
  """

  total_steps: jax.Array
  ramp_steps: jax.Array
  decay_steps: jax.Array
  decay_shape: str

  def scale(self, step: ArrayLike) -> jax.Array:
    r"""The envelope at update ``step`` (0-based), a float32 in (0, 1].

    With :math:`R` ramp and :math:`D` decay updates out of :math:`T`, and
    :math:`t = \min(\texttt{step}, T - 1)` (updates past the budget keep the
    last update's scale):

    .. math::

      e_t = \min\Big(1,\ \frac{t + 1}{R + 1}\Big)\cdot
        s\Big(\max\Big(0,\ \frac{t - (T - D)}{D}\Big)\Big),

    where :math:`s` is the decay shape (:math:`1 - p`, :math:`1 -
    \sqrt{p}` or :math:`\frac{1}{2}(1 + \cos \pi p)`). The first update is
    never zero and the last is :math:`s(1 - 1/D)`, above zero: no update
    of the budget is wasted. See :func:`budget_schedule` for short budgets.
    """
    t = jnp.minimum(jnp.asarray(step, jnp.float32), self.total_steps - 1)
    ramp = jnp.minimum(1.0, (t + 1.0) / (self.ramp_steps + 1.0))
    start = self.total_steps - self.decay_steps
    progress = jnp.clip((t - start) / jnp.maximum(self.decay_steps, 1.0),
                        0.0, 1.0)
    return ramp * DECAY_SHAPES[self.decay_shape](progress)

  def apply(self, rates: Any, step: ArrayLike) -> Any:
    """``rates`` (a rate or a tree of rates) times :meth:`scale` at update
    ``step``, each in its own dtype: the rate a controller applies."""
    scale = self.scale(step)
    return jax.tree.map(lambda r: (r * scale).astype(r.dtype), rates)

  def reacting(self, step: ArrayLike) -> jax.Array:
    """Whether the controller reacts at update ``step``: between the ramp
    and the decay (a boolean scalar)."""
    step = jnp.asarray(step, jnp.float32)
    return (step >= self.ramp_steps) & (
        step < self.total_steps - self.decay_steps)


@overload
def budget(total_steps: None, envelope: Envelope) -> None:
  ...


@overload
def budget(total_steps: ArrayLike, envelope: Envelope) -> Budget:
  ...


def budget(total_steps: Optional[ArrayLike],
           envelope: Envelope) -> Optional[Budget]:
  """Checks the budget's arguments; ``None`` when ``total_steps`` is.

  Concrete numbers are checked; a traced ``total_steps``
  (``optax.inject_hyperparams``, ``jax.vmap``) passes unchecked, since the
  envelope is computed with ``jax.numpy``. The envelope is checked even
  without ``total_steps``.

  Args:
    total_steps: an integer >= 1, or ``None`` (no budget).
    envelope: an :class:`Envelope` (or a ``(ramp_fraction,
      decay_fraction, decay_shape)`` tuple).

  Returns:
    A :class:`Budget`, or ``None``.
  """
  if not (isinstance(envelope, tuple) and len(envelope) == 3):
    raise ValueError(
        "envelope must be an optax_greedy.Envelope(ramp_fraction,"
        f" decay_fraction, decay_shape), got envelope={envelope!r}.")
  ramp_fraction, decay_fraction, decay_shape = envelope
  for name, value in (("ramp_fraction", ramp_fraction),
                      ("decay_fraction", decay_fraction)):
    _checks.check_number(name, value)
  _checks.check_range("ramp_fraction", ramp_fraction, 0, 1, high_open=True)
  _checks.check_range("decay_fraction", decay_fraction, 0, 1)
  if (_checks.is_concrete(ramp_fraction) and _checks.is_concrete(
      decay_fraction) and ramp_fraction + decay_fraction > 1):
    raise ValueError(
        "ramp_fraction + decay_fraction must be <= 1, got"
        f" ramp_fraction={ramp_fraction!r},"
        f" decay_fraction={decay_fraction!r}.")
  _checks.check_choice("decay_shape", decay_shape, tuple(DECAY_SHAPES))
  if total_steps is None:
    return None
  _checks.check_integer("total_steps", total_steps, 1)
  total = jnp.asarray(total_steps, jnp.float32)
  return Budget(total_steps=total,
                ramp_steps=jnp.round(ramp_fraction * total),
                decay_steps=jnp.round(decay_fraction * total),
                decay_shape=decay_shape)


@_checks.keyword_only_after(1, ("total_steps",))
def budget_schedule(
    learning_rate: ArrayLike,
    *,
    total_steps: int,
    envelope: Envelope = DEFAULT_ENVELOPE,
) -> optax.Schedule:
  r"""The envelope of the step budget times a constant rate, as a schedule.

  ``learning_rate`` times :meth:`Budget.scale`: a ramp over the first
  ``envelope.ramp_fraction`` of ``total_steps``, constant, then a decay to
  zero over the last ``envelope.decay_fraction``. This is the envelope that every controller
  of this library multiplies its own rate by when given ``total_steps``;
  as a schedule of its own it is the warmup-stable-decay schedule (Hägele
  et al., NeurIPS 2024, who found a short decay, in particular ``1-sqrt``,
  as good as a cosine over the whole run).

  Short budgets: the phases are whole updates, ``R =
  round(ramp_fraction * total_steps)`` and ``D = round(decay_fraction *
  total_steps)`` (halves to even), so a phase shorter than half an update
  vanishes, and the last update applies :math:`s(1 - 1/D)` of the rate
  (``1/D`` for ``"linear"``). With the defaults, ``total_steps=2`` has no
  ramp and no decay (every controller is then itself alone),
  ``total_steps=10`` no ramp and a 2-update decay whose last update
  applies half the rate; from ``total_steps=30`` (a 2-update ramp, a
  6-update decay) the envelope has its shape. This holds for every
  controller given ``total_steps``.

  Args:
    learning_rate: the constant rate, > 0.
    total_steps: the run's number of updates, >= 1.
    envelope: an :class:`Envelope`; default ``Envelope()``: a ramp over
      the first 0.05 of the budget, a linear decay over the last 0.2.

  Returns:
    An optax schedule ``count -> rate`` (float32).

  Example:
    >>> import optax, optax_greedy
    >>> tx = optax.adam(optax_greedy.budget_schedule(1e-3, total_steps=1000))

  References:
    Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations <https://arxiv.org/abs/2405.18392>`_, NeurIPS 2024.
  """
  _checks.check_number("learning_rate", learning_rate)
  _checks.check_range("learning_rate", learning_rate, 0, low_open=True,
                      finite=True)
  phases = budget(total_steps, envelope)
  return lambda count: learning_rate * phases.scale(count)


def controller(
    init: Callable[[optax.Params], Any],
    react: Callable[..., Any],
    rate: Callable[[Any], Any],
    *,
    total_steps: Optional[ArrayLike],
    envelope: Envelope,
    rate_before: bool = False,
    gated: bool = True,
    spread: Optional[Callable[[Any, Optional[optax.Params]], Any]] = None,
    apply: Optional[Callable[..., tuple[optax.Updates, Any]]] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""A rate controller from its reaction: the step budget around it.

  A family of this library implements only its reaction: how its own rate
  :math:`r_t` moves. This function adds what every family shares: the
  envelope :math:`e_t` (:meth:`Budget.scale` at update ``step``, 1 without
  ``total_steps``), the step counter, the gate that confines the reaction
  to the budget's reacting phase, and the record of the rate applied:

  .. math::

    s_{t+1} = \begin{cases} \mathrm{react}(s_t) & \text{reacting at } t
      \text{ (always without a budget or with } \texttt{gated=False}) \\
      s_t & \text{otherwise,} \end{cases} \qquad
    \eta_t = e_t \cdot \mathrm{rate}(s_t \text{ or } s_{t+1}), \qquad
    u_t = -\eta_t\, g_t.

  The family's state is a named tuple with the fields ``learning_rate``
  (set here: :math:`\eta_t`, the rate the last update applied; before the
  first update, the rate it would apply) and ``step`` (set here: the number
  of updates, ``None`` without ``total_steps``); its live rate is its own
  (``next_learning_rate``, or a learned schedule's ``fraction``).

  Args:
    init: ``params -> state``, the family's initial state (``learning_rate``
      and ``step`` are overwritten).
    react: ``(updates, state, params, **extra_args) -> state``, one
      reaction. The leaves it leaves alone must come back as they are (the
      same objects): the gate selects only the others.
    rate: ``state -> rate``, the family's own rate in a state: a scalar or
      a tree that is a prefix of the params'.
    total_steps: the run's number of updates, or ``None`` (no budget: the
      reaction alone, no step counter).
    envelope: the budget's :class:`Envelope`.
    rate_before: whether an update applies the rate in force before the
      reaction (GreedyLR, which observes the loss at the params the update
      starts from) rather than the reacted one (the hypergradient's step and
      the learned schedule's policy come before the rate is used).
    gated: whether the reaction waits for the reacting phase (a learned
      schedule reacts throughout: its policy reads the budget used).
    spread: ``(rate, params) -> rate``, the enveloped rate as applied to the
      params (a learned schedule's fraction times ``max_rate(params)``);
      default: the rate itself.
    apply: ``(updates, state, rate, params, **extra_args) -> (updates,
      state)``, the updates that the rate ``rate`` gives; default
      :func:`scale_updates` (the hypergradient runs its direction here).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is the
    family's.
  """
  phases = budget(total_steps, envelope)
  if spread is None:
    spread = lambda own, params: own  # noqa: E731
  if apply is None:
    apply = lambda updates, state, applied, params, **extra_args: (  # noqa: E731
        scale_updates(updates, applied), state)

  def applied_rate(state, step, params):
    own = rate(state)
    return spread(own if phases is None else phases.apply(own, step), params)

  def init_fn(params):
    state = init(params)
    step = None if phases is None else jnp.zeros([], jnp.int32)
    return state._replace(learning_rate=applied_rate(state, step, params),
                          step=step)

  def update_fn(updates, state, params=None, **extra_args):
    step = state.step
    reacted = react(updates, state, params, **extra_args)
    if gated and phases is not None:
      reacted = _gate(phases.reacting(step), reacted, state)
    applied = applied_rate(state if rate_before else reacted, step, params)
    updates, reacted = apply(updates, reacted, applied, params, **extra_args)
    return updates, reacted._replace(
        learning_rate=applied,
        step=None if phases is None else optax.safe_increment(step))

  # A None field (``step`` without a budget) is an empty pytree node, which
  # optax's ArrayTree alias does not spell.
  return optax.GradientTransformationExtraArgs(
      init_fn, update_fn)  # pyright: ignore[reportArgumentType]


def scale_updates(updates: optax.Updates, rate: Any) -> optax.Updates:
  """``-rate * updates``, in each update's dtype; ``rate`` is a scalar or a
  tree that is a prefix of the updates' (one rate per subtree)."""
  return jax.tree.map(
      lambda r, sub: jax.tree.map(lambda u: (-r * u).astype(u.dtype), sub),
      rate, updates)


def _gate(condition: jax.Array, new: Any, old: Any) -> Any:
  """``new`` where ``condition`` holds, else ``old``, leaf by leaf; a leaf
  that the reaction returned unchanged is kept (no select on it)."""
  return jax.tree.map(
      lambda n, o: o if n is o else jnp.where(condition, n, o), new, old)
