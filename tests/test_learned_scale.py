"""learned_scale: the rate it records, what it does from a rate too low or
too high, dtypes, jit, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy


def _loss(p):
  # Minimum at p ~ 0.86 in each coordinate, loss ~ 0.2975 over 4.
  return jnp.sum((p - 1.0) ** 2) + 0.1 * jnp.sum(p ** 4)


def _train(tx, steps=300, dtype=jnp.float32):
  params = jnp.zeros(4, dtype)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(_loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(steps):
    params, state = step(params, state)
  return params, state, step


def test_the_rate_it_records_is_the_base_rate_times_the_scale():
  tx = optax_greedy.learned_scale(0.01, total_steps=40, headroom=10.0,
                                  start=1.0)
  _, state, _ = _train(tx, steps=7)
  base = optax_greedy.budget_schedule(0.1, total_steps=40)
  np.testing.assert_allclose(
      optax_greedy.get_learning_rate(state),
      base(6) * float(jnp.sum(state.mechanic.s)), rtol=1e-6)


def test_from_a_rate_ten_times_too_low_it_still_reaches_the_minimum():
  """Adam with the envelope at 0.003 stops far from the minimum in 300
  steps; the learned scale, given the same rate, gets there."""
  envelope_alone = optax.adam(optax_greedy.budget_schedule(
      0.003, total_steps=300))
  params, _, _ = _train(envelope_alone)
  assert float(_loss(params)) > 0.5
  params, _, _ = _train(optax_greedy.learned_scale(0.003, total_steps=300))
  assert float(_loss(params)) < 0.31


# Up to 100x too high (the toy's good Adam rate is about 0.03).
@pytest.mark.parametrize("rate", [0.03, 0.3, 3.0])
def test_from_any_rate_up_to_a_hundred_times_too_high_it_converges(rate):
  params, state, _ = _train(optax_greedy.learned_scale(rate,
                                                       total_steps=300))
  assert float(_loss(params)) < 0.31
  assert np.isfinite(float(optax_greedy.get_learning_rate(state)))


def test_from_a_thousand_times_too_high_it_loses_nothing():
  """At 1000x the run starts at 5 per step (a sixth of 30): it ends finite
  and far below its starting loss of 4, within 12% of the minimum."""
  params, state, _ = _train(optax_greedy.learned_scale(30.0,
                                                       total_steps=300))
  assert float(_loss(params)) < 0.2975 * 1.12
  assert np.isfinite(float(optax_greedy.get_learning_rate(state)))


@pytest.mark.parametrize("form, same", [("scale-free", True),
                                        ("mechanic", False)])
def test_with_the_scale_free_decay_only_the_starting_rate_matters(form,
                                                                  same):
  """Mechanic's update is invariant to the base rate's scale but for its
  decay (and its 1e-8 epsilons, negligible where the scale is near 1): a
  base rate ten times higher with a start ten times lower gives the same
  run with the scale-free decay, not with Mechanic's own."""
  runs = [_train(optax_greedy.learned_scale(
      0.03 * k, total_steps=100, headroom=1.0, start=1 / k,
      weight_decay=0.1, decay_form=form), steps=30)[0] for k in (1.0, 10.0)]
  change = float(jnp.max(jnp.abs(runs[1] / runs[0] - 1)))
  assert (change < 1e-5) == same and (change > 1e-3) != same, change


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_updates_keep_the_params_dtype_and_compile_once(dtype):
  tx = optax_greedy.learned_scale(0.01, total_steps=10)
  params, _, step = _train(tx, steps=3, dtype=dtype)
  assert params.dtype == dtype
  assert step._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("kwargs, name", [
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"headroom": 0.5}, "headroom"), ({"start": 0.0}, "start"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"decay_form": "l2"}, "decay_form")])
def test_bad_arguments_raise_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    optax_greedy.learned_scale(**{"learning_rate": 0.01, **kwargs},
                               total_steps=10)
