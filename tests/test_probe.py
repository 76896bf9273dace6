"""rate_probe: the parabola from mathematics, the equilibrium on a quadratic,
no change without value_fn, no poisoning by a non-finite probe, the budget's
decay left alone, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy
from optax_greedy import _probe


def _quadratic(p):
  return jnp.sum((p - 1.0) ** 2)


def test_parabola_and_minimum_from_their_definitions():
  # f(m) = 3 - 2 m + m^2 through m = 0, 1, 2: a = -2, b = 1, minimum at 1.
  a, b = _probe.parabola(3.0, 2.0, 3.0)
  assert (float(a), float(b)) == (-2.0, 1.0)
  assert float(_probe.minimum(a, b, 10.0)) == 1.0
  # Concave and falling: the largest step; concave and rising: none.
  assert float(_probe.minimum(-1.0, -1.0, 8.0)) == 8.0
  assert float(_probe.minimum(1.0, -1.0, 8.0)) == 0.0
  # Rising with curvature: the minimum is behind the start, clipped to 0.
  assert float(_probe.minimum(1.0, 1.0, 8.0)) == 0.0


def _run(tx, steps, loss=_quadratic, params=None, value_fn=True,
         probe_loss=None):
  params = jnp.zeros(2) if params is None else params
  state = tx.init(params)
  for _ in range(steps):
    grads = jax.grad(loss)(params)
    kwargs = {"value_fn": probe_loss or loss} if value_fn else {}
    updates, state = tx.update(grads, state, params, **kwargs)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("rate", [0.01, 0.3, 3.0])
def test_equilibrium_on_a_quadratic_is_the_fraction_of_the_optimum(
    fraction, rate):
  """On sum (p - 1)^2 gradient descent's one-step optimum is the rate 1/2
  (the step that lands on the minimum), so with no averaging and full gain
  the probe sets the rate to fraction / 2 at its first probe, from any
  starting rate within its range."""
  tx = optax.chain(optax.sgd(rate),
                   optax_greedy.rate_probe(every=1, fraction=fraction,
                                           averaging=0.0, gain=1.0,
                                           max_change=1e3, min_scale=1e-3,
                                           max_scale=1e3))
  _, state = _run(tx, 1)
  # float32 finite differences of losses near 2: three to four digits.
  np.testing.assert_allclose(rate * state[-1].probe_scale, fraction / 2,
                             rtol=1e-3)


def test_a_rate_ten_times_too_high_is_cut_and_training_converges():
  tx = optax.chain(optax.sgd(5.0), optax_greedy.rate_probe(every=1))
  params, state = _run(tx, 30)
  assert float(state[-1].probe_scale) < 0.2
  assert float(_quadratic(params)) < 1e-4


def test_without_value_fn_the_updates_pass_unchanged():
  key = jax.random.PRNGKey(0)
  params = {"w": jax.random.normal(key, (3, 4)), "b": jnp.zeros(4)}
  loss = lambda p: jnp.sum(jnp.tanh(p["w"]).sum(0) * p["b"] + p["b"] ** 2)
  alone = optax_greedy.greedy_adam(1e-2, total_steps=20)
  probed = optax.chain(optax_greedy.greedy_adam(1e-2, total_steps=20),
                       optax_greedy.rate_probe(20))
  a, _ = _run(alone, 12, loss, params, value_fn=False)
  b, state = _run(probed, 12, loss, params, value_fn=False)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert int(state[-1].count) == 12
  assert float(state[-1].probe_scale) == 1.0


def test_a_non_finite_probe_cuts_the_rate_and_never_poisons_the_state():
  tx = optax_greedy.rate_probe(every=1, gain=1.0, max_change=4.0)
  params = jnp.ones(3)
  state = tx.init(params)
  nan_loss = lambda p: jnp.sum(p) * jnp.nan
  updates, state = tx.update(jnp.ones(3), state, params, value_fn=nan_loss)
  assert float(state.probe_scale) == 0.25
  assert np.isnan(float(state.probe_slope))  # never set by a bad probe
  assert np.all(np.isfinite(updates))
  # A later good probe starts the averages.
  updates, state = tx.update(jnp.ones(3), state, params, value_fn=_quadratic)
  assert np.isfinite(float(state.probe_slope))


def test_no_probe_in_the_budgets_decay_nor_between_probes():
  calls = []
  def loss(p):
    jax.debug.callback(lambda: calls.append(1))
    return _quadratic(p)
  # 20 updates, decay over the last 20% (updates 16..19), a probe every 5.
  tx = optax.chain(optax.sgd(0.1), optax_greedy.rate_probe(20, every=5))
  _run(tx, 20, probe_loss=loss)
  # Probes at updates 0, 5, 10, 15: three forward passes each.
  assert len(calls) == 4 * 3


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_updates_keep_the_params_dtype(dtype):
  tx = optax.chain(optax.sgd(0.1), optax_greedy.rate_probe(every=1))
  params = jnp.zeros(2, dtype)
  state = tx.init(params)
  grads = jax.grad(lambda p: _quadratic(p).astype(jnp.float32))(params)
  step = jax.jit(lambda g, s, p: tx.update(g, s, p, value_fn=_quadratic))
  updates, state = step(grads, state, params)
  assert updates.dtype == dtype


@pytest.mark.parametrize("kwargs, name", [
    ({"every": 0}, "every"), ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"), ({"averaging": 1.0}, "averaging"),
    ({"gain": 0.0}, "gain"), ({"max_change": 1.0}, "max_change"),
    ({"min_scale": 2.0}, "min_scale"), ({"max_scale": 0.5}, "max_scale"),
    ({"fraction": float("nan")}, "fraction")])
def test_bad_hyperparameters_raise_naming_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=name):
    optax_greedy.rate_probe(**kwargs)


def test_value_fn_without_params_is_a_clear_error():
  tx = optax_greedy.rate_probe()
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), value_fn=_quadratic)
