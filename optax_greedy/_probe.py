"""The rate probe: the step size measured along the update, on another batch.

A rate that is far too high or too low shows in the loss measured at
several step sizes along the same update: the three losses are paired
(one batch), so the minibatch noise that hides a trend in consecutive
losses cancels. The batch must not be the one the update came from: on
its own batch an update keeps lowering the loss far past any rate that
trains well (measured on the benchmark's selection LM: the same-batch
optimum was 3-4 times the step at the tuned rate and still 2 times at 10
times that rate), so ``value_fn`` is the loss on the next minibatch or a
held-out one. Every ``every`` updates the probe evaluates it at zero, one
and two times the update (three forward passes), keeps running averages
of the parabola through them, and moves its own multiplier of the rate
toward a fixed fraction of the averaged parabola's minimum, from the
probed update on. Between probes the multiplier is held.
"""

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from optax_greedy import _budget
from optax_greedy import _checks


class RateProbeState(NamedTuple):
  """State of :func:`rate_probe`.

  Attributes:
    count: updates so far (int32, ``optax.safe_increment``).
    probe_scale: the probe's multiplier of the incoming updates (float32,
      starts at 1; stays 1 when ``value_fn`` is never given).
    probe_slope, probe_curvature: running averages of the parabola's
      coefficients :math:`a / s` and :math:`b / s^2` (float32; NaN before
      the first probe), per unit of the full-rate update.
  """

  count: jax.Array
  probe_scale: jax.Array
  probe_slope: jax.Array
  probe_curvature: jax.Array


def parabola(f0, f1, f2):
  r"""The coefficients ``(a, b)`` of :math:`f_0 + a m + b m^2` through
  ``(0, f0), (1, f1), (2, f2)``: :math:`b = (f_2 - 2 f_1 + f_0)/2`,
  :math:`a = f_1 - f_0 - b`."""
  b = (f2 - 2.0 * f1 + f0) / 2.0
  return f1 - f0 - b, b


def minimum(a, b, max_x):
  r"""Where :math:`a x + b x^2` is least on ``[0, max_x]``: :math:`-a /
  (2b)` when :math:`b > 0`, else ``max_x`` if :math:`a < 0` and 0 if not
  (clipped to the interval)."""
  curved = -a / jnp.where(b > 0, 2.0 * b, 1.0)
  return jnp.clip(jnp.where(b > 0, curved, jnp.where(a < 0, max_x, 0.0)),
                  0.0, max_x)


def rate_probe(
    total_steps: Optional[int] = None,
    *,
    every: int = 20,
    fraction: float = 0.5,
    averaging: float = 0.9,
    gain: float = 0.5,
    max_change: float = 4.0,
    min_scale: float = 1e-2,
    max_scale: float = 1e2,
    envelope: _budget.Envelope = _budget.DEFAULT_ENVELOPE,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales the updates by a multiplier measured along them.

  Place it last in a chain, after the rate (a controller of this library,
  or any optax schedule): it multiplies the incoming updates :math:`u_t`
  by its ``probe_scale`` :math:`s_t`. When ``update`` is given
  ``value_fn``, the loss as a function of the parameters on a batch other
  than the one the gradients came from (the next minibatch, or a held-out
  one), then every ``every`` updates, outside the step budget's decay, it
  evaluates

  .. math::

    f_k = \texttt{value\_fn}(\theta_t + k\, s_t\, u_t / e_t),
    \quad k = 0, 1, 2,

  where :math:`e_t` is the budget's envelope (:func:`budget_schedule`,
  1 without ``total_steps``), so the probed update is the one the rate
  takes after the ramp. With :math:`(a, b)` the parabola through the three
  (:func:`parabola`), it averages :math:`A \leftarrow \rho A + (1-\rho)
  a/s_t` and :math:`B \leftarrow \rho B + (1-\rho) b/s_t^2` (per unit of
  the full-rate update; :math:`\rho` = ``averaging``, the first probe sets
  them), and moves the multiplier toward ``fraction`` of the averaged
  parabola's minimum :math:`x^*` (:func:`minimum`):

  .. math::

    \log s_{t+1} = \log s_t + g\, \mathrm{clip}\big(\log(c\, x^* /
      s_t), \pm \log M\big),

  with :math:`c` = ``fraction``, :math:`g` = ``gain``, :math:`M` =
  ``max_change``, and :math:`s` kept in ``[min_scale, max_scale]``. A
  probe whose loss is not finite cuts the multiplier by :math:`M^g`. At
  equilibrium the full-rate step is ``fraction`` of the one-step optimum
  along it on fresh data. Without ``value_fn`` the updates pass unchanged
  (times the multiplier, 1 unless restored from a run that probed) and the
  state still counts, so one checkpoint layout serves both.

  Each probe costs three forward passes, every ``every`` updates.

  Args:
    total_steps: the run's number of updates (the same as the rate's), to
      skip probing in the budget's decay and to probe the full-rate update
      during its ramp; ``None``: probe throughout.
    every: updates between probes, an integer >= 1.
    fraction: :math:`c`, the share of the one-step optimum to aim for, in
      (0, 1].
    averaging: :math:`\rho`, the running averages' decay per probe, in
      [0, 1).
    gain: :math:`g`, the share of the log-distance moved at each probe, in
      (0, 1].
    max_change: :math:`M`, the most one probe can move the multiplier
      (before ``gain``), > 1.
    min_scale, max_scale: bounds of the multiplier, ``0 < min_scale <= 1
      <= max_scale``.
    envelope: the budget's ramp and decay, the same as the rate's
      (:data:`DEFAULT_ENVELOPE`).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is
    :class:`RateProbeState`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optax_greedy
    >>> loss = lambda p: jnp.sum((p - 1.0) ** 2)
    >>> tx = optax.chain(optax.sgd(3.0), optax_greedy.rate_probe(every=1))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(20):
    ...   grads = jax.grad(loss)(params)
    ...   updates, state = tx.update(grads, state, params, value_fn=loss)
    ...   params = optax.apply_updates(params, updates)
    >>> bool(loss(params) < 1e-3)
    True

  References:
    Mutschler and Zell, `Parabolic Approximation Line Search for DNNs
    <https://arxiv.org/abs/1903.11991>`_, NeurIPS 2020 (a parabola along
    the update); Wu et al., `Understanding Short-Horizon Bias in
    Stochastic Meta-Optimization <https://arxiv.org/abs/1803.02021>`_,
    ICLR 2018 (why a one-step optimum needs the ``fraction``).
  """
  _checks.check_integer("every", every, 1)
  for name, value in (("fraction", fraction), ("averaging", averaging),
                      ("gain", gain), ("max_change", max_change),
                      ("min_scale", min_scale), ("max_scale", max_scale)):
    _checks.check_number(name, value)
  _checks.check_range("fraction", fraction, 0, 1, low_open=True)
  _checks.check_range("averaging", averaging, 0, 1, high_open=True)
  _checks.check_range("gain", gain, 0, 1, low_open=True)
  _checks.check_range("max_change", max_change, 1, low_open=True,
                      finite=True)
  _checks.check_range("min_scale", min_scale, 0, 1, low_open=True)
  _checks.check_range("max_scale", max_scale, 1, finite=True)
  budget = _budget.budget(total_steps, envelope)
  nan = lambda: jnp.full([], jnp.nan, jnp.float32)

  def init_fn(params):
    del params
    return RateProbeState(count=jnp.zeros([], jnp.int32),
                          probe_scale=jnp.ones([], jnp.float32),
                          probe_slope=nan(), probe_curvature=nan())

  def update_fn(updates, state, params=None, *, value_fn=None,
                **extra_args):
    del extra_args
    if value_fn is not None:
      if params is None:
        raise ValueError("rate_probe: value_fn needs the params: call "
                         "update(grads, state, params, value_fn=...).")
      state = _probe(updates, state, params, value_fn)
    updates = jax.tree.map(
        lambda u: u * state.probe_scale.astype(u.dtype), updates)
    return updates, state._replace(count=optax.safe_increment(state.count))

  def _probe(updates, state, params, value_fn):
    step, s = state.count, state.probe_scale
    if budget is None:
      full, probing = jnp.ones([], jnp.float32), jnp.ones([], bool)
    else:
      full = budget.scale(step)
      probing = step < budget.total_steps - budget.decay_steps
    probing = probing & (step % every == 0)

    def measure():
      at = lambda k: jnp.asarray(value_fn(jax.tree.map(
          lambda p, u: p + (k * s / full).astype(p.dtype) * u.astype(
              p.dtype), params, updates)), jnp.float32)
      return at(0.0), at(1.0), at(2.0)

    f0, f1, f2 = jax.lax.cond(probing, measure, lambda: (nan(),) * 3)
    a, b = parabola(f0, f1, f2)
    finite = jnp.isfinite(a) & jnp.isfinite(b)
    first = jnp.isnan(state.probe_slope)
    average = lambda old, new: jnp.where(
        finite, jnp.where(first, new, averaging * old + (1 - averaging) * new),
        old)
    slope = average(state.probe_slope, a / s)
    curvature = average(state.probe_curvature, b / s**2)
    target = fraction * minimum(slope, curvature, max_change * s / fraction)
    move = jnp.where(
        finite, jnp.clip(jnp.log(jnp.maximum(target, 1e-30) / s),
                         -jnp.log(max_change), jnp.log(max_change)),
        -jnp.log(max_change))
    moved = jnp.clip(s * jnp.exp(gain * move), min_scale, max_scale)
    return state._replace(
        probe_scale=jnp.where(probing, moved, s).astype(jnp.float32),
        probe_slope=slope.astype(jnp.float32),
        probe_curvature=curvature.astype(jnp.float32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
