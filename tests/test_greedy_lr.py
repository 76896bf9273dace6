"""GreedyLR: conformance with the reference, the optax contract, bad input."""

import functools
import gzip
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy

REFERENCE = (pathlib.Path(__file__).parent / "reference"
             / "greedy_lr_trajectories.json.gz")


def _reference_cases():
  with gzip.open(REFERENCE, "rt") as f:
    return json.load(f)["cases"]


@functools.lru_cache(maxsize=None)
def _compiled_run(config_items):
  """One jit-compiled scan per distinct configuration."""
  config = dict(config_items)
  lr = config.pop("lr")
  tx = optax_greedy.greedy_lr(lr, **config)
  params = jnp.zeros(2)

  def run(values):
    def step(state, value):
      _, state = tx.update(params, state, params, value=value)
      return state, optax.tree.get(state, "learning_rate")
    return jax.lax.scan(step, tx.init(params), values)[1]

  return jax.jit(run)


@pytest.mark.parametrize(
    "case", _reference_cases(), ids=lambda case: case["name"])
def test_matches_reference_trajectories(case):
  with jax.enable_x64(True):
    run = _compiled_run(tuple(sorted(case["config"].items())))
    rates = run(jnp.asarray(case["values"], jnp.float64))
    assert rates.dtype == jnp.float64
    np.testing.assert_allclose(
        np.asarray(rates), np.asarray(case["learning_rates"]), rtol=1e-9,
        atol=0)


def _observe(tx, values, state=None):
  params = jnp.zeros(())
  state = tx.init(params) if state is None else state
  for value in values:
    _, state = tx.update(params, state, params, value=value)
  return state


def test_update_uses_rate_before_observation():
  # patience=0: the very first observation improves on best=inf, so the rate
  # rises at once; the update returned by that call still uses the old rate.
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False, max_lr=1.0)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  updates, state = tx.update(params, state, params, value=1.0)
  np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3), rtol=1e-6)
  np.testing.assert_allclose(state.learning_rate, 0.1 / 0.95, rtol=1e-6)
  updates, _ = tx.update(params, state, params, value=0.5)
  np.testing.assert_allclose(updates["w"], -(0.1 / 0.95) * np.ones(3),
                             rtol=1e-6)


def test_reset_after_lingering_at_min_lr():
  # Rates 1 -> 0.5 -> 0.25 = min_lr; each decrease that ends at min_lr (steps
  # 3, 4, 5) counts one of reset_start=3, the third resets the rate to its
  # initial value; step 6 improves on the cleared best (rate held at max_lr).
  tx = optax_greedy.greedy_lr(1.0, factor=0.5, patience=0, min_lr=0.25,
                              max_lr=1.0, smooth=False, reset_start=3)
  params = jnp.zeros(())
  state = tx.init(params)
  rates = []
  for value in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]:
    _, state = jax.jit(tx.update)(params, state, params, value=value)
    rates.append(float(state.learning_rate))
  assert rates == [1.0, 0.5, 0.25, 0.25, 1.0, 1.0]


def test_defaults_bound_the_rate_relative_to_learning_rate():
  tx = optax_greedy.greedy_lr(1e-4, smooth=False, patience=0)
  up = _observe(tx, [-float(k) for k in range(200)])
  down = _observe(tx, [float(k) for k in range(200)])
  np.testing.assert_allclose(up.learning_rate, 1e-3, rtol=1e-5)
  assert float(down.learning_rate) >= 1e-6 * (1 - 1e-5)


def test_exactly_one_learning_rate_in_chained_state():
  tx = optax_greedy.greedy_adam(1e-3)
  state = tx.init({"w": jnp.ones(2)})
  found = optax.tree.get_all_with_path(state, "learning_rate")
  assert len(found) == 1
  assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_never_poison_state(bad):
  tx = optax_greedy.greedy_lr(0.1, patience=1, window_size=3)
  clean = _observe(tx, [3.0, 2.0])
  poisoned = _observe(tx, [bad, bad, bad], state=clean)
  # Kept out of the window and best; counted as non-improvements, so the
  # rate can only go down.
  np.testing.assert_array_equal(poisoned.window, clean.window)
  assert float(poisoned.window_sum) == float(clean.window_sum)
  assert float(poisoned.best) == float(clean.best)
  assert float(poisoned.learning_rate) < float(clean.learning_rate)
  assert all(np.all(np.isfinite(np.asarray(leaf)))
             for leaf in jax.tree.leaves(poisoned)
             if jnp.issubdtype(leaf.dtype, jnp.floating))
  # Later finite values work as before: the window mean 1.5 beats best 2.5.
  after = _observe(tx, [1.0], state=poisoned)
  assert float(after.best) == pytest.approx((3.0 + 2.0 + 1.0) / 3)


def test_value_none_and_observe_false_keep_state():
  tx = optax_greedy.greedy_lr(0.1)
  params = {"w": jnp.ones(2)}
  state = _observe(tx, [1.0, 0.5])
  updates, same = tx.update(params, state, params)
  np.testing.assert_allclose(updates["w"], -0.1 * np.ones(2), rtol=1e-6)
  chex_equal = jax.tree.map(np.testing.assert_array_equal, same, state)
  del chex_equal
  step = jax.jit(functools.partial(tx.update, params=params))
  _, held = step(params, state, value=0.1, observe=jnp.asarray(False))
  _, moved = step(params, state, value=0.1, observe=jnp.asarray(True))
  jax.tree.map(np.testing.assert_array_equal, held, state)
  assert int(moved.count) == int(state.count) + 1


def test_validation_loss_once_per_evaluation():
  # Feed (b): observe only every 5th step; the steps between keep the rate.
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False)
  params = jnp.zeros(())
  state = tx.init(params)
  step = jax.jit(tx.update)
  rates = []
  for t in range(20):
    value = 10.0 - t if t % 5 == 4 else None
    _, state = step(params, state, params, value=value)
    rates.append(float(state.learning_rate))
  assert int(state.count) == 4
  assert len(set(rates[4:9])) == 1 and rates[4] > rates[3]


def test_jit_does_not_recompile():
  traces = []
  tx = optax_greedy.greedy_adam(1e-2)
  params = {"w": jnp.ones(4), "b": jnp.zeros(())}

  @jax.jit
  def step(params, state, loss):
    traces.append(None)
    updates, state = tx.update(params, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for loss in [1.0, 0.5, 0.25]:
    params, state = step(params, state, jnp.float32(loss))
  assert len(traces) == 1


def _quadratic_loss(params):
  return sum(jnp.sum((p - 3.0) ** 2) for p in jax.tree.leaves(params))


def test_scan_ten_thousand_steps():
  tx = optax_greedy.greedy_sgd(0.01)
  params = {"w": jnp.ones(3)}

  def step(carry, key):
    params, state = carry
    loss, grads = jax.value_and_grad(_quadratic_loss)(params)
    noisy = loss + 0.1 * jax.random.normal(key)
    updates, state = tx.update(grads, state, params, value=noisy)
    rate = optax.tree.get(state, "learning_rate")
    return (optax.apply_updates(params, updates), state), rate

  keys = jax.random.split(jax.random.key(0), 10_000)
  (params, state), rates = jax.jit(
      lambda c: jax.lax.scan(step, c, keys))((params, tx.init(params)))
  assert int(optax.tree.get(state, "count")) == 10_000
  assert np.all(np.isfinite(rates))
  assert float(rates.min()) >= 1e-4 * (1 - 1e-5)
  assert float(rates.max()) <= 0.1 * (1 + 1e-5)
  np.testing.assert_allclose(params["w"], 3.0, atol=1e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("value_dtype", ["float16", "float32", "int32"])
def test_dtypes_are_kept(dtype, value_dtype):
  with jax.enable_x64(dtype == "float64"):
    tx = optax_greedy.greedy_adam(1e-3)
    params = {"w": jnp.ones(3, dtype)}
    state = tx.init(params)
    value = jnp.asarray(2, value_dtype)
    updates, new_state = jax.jit(
        lambda g, s, v: tx.update(g, s, params, value=v))(params, state, value)
    assert updates["w"].dtype == jnp.dtype(dtype)
    # The state's structure and dtypes are fixed: lax.cond accepts both arms.
    jax.lax.cond(
        True, lambda s: tx.update(params, s, params, value=value)[1],
        lambda s: s, state)
    jax.tree.map(lambda a, b: (a.dtype == b.dtype) or pytest.fail("dtype"),
                 state, new_state)


def _train(tx, steps=300):
  params = {"w": jnp.zeros(3), "b": jnp.zeros(())}

  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(_quadratic_loss)(params)
    updates, state = tx.update(grads, state, params, value=loss)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.jit(
      lambda c: jax.lax.scan(step, c, None, length=steps))(
          (params, tx.init(params)))
  return params, losses


@pytest.mark.parametrize("make_tx", [
    lambda: optax_greedy.greedy_sgd(0.05),
    lambda: optax_greedy.greedy_sgd(0.02, momentum=0.9),
    lambda: optax_greedy.greedy_sgd(0.02, momentum=0.9, nesterov=True),
    lambda: optax_greedy.greedy_adam(0.05),
    lambda: optax_greedy.greedy_adamw(0.05, weight_decay=0.0),
    lambda: optax.chain(optax.scale_by_lion(), optax_greedy.greedy_lr(0.01)),
    lambda: optax.chain(optax.scale_by_rms(), optax_greedy.greedy_lr(0.01)),
], ids=["sgd", "momentum", "nesterov", "adam", "adamw", "lion", "rmsprop"])
def test_converges_on_quadratic(make_tx):
  params, losses = _train(make_tx(), steps=1500)
  assert float(losses[-1]) < 1e-3 * float(losses[0])
  for leaf in jax.tree.leaves(params):
    np.testing.assert_allclose(leaf, 3.0, atol=2e-2)


def test_inside_multisteps():
  tx = optax.MultiSteps(optax_greedy.greedy_sgd(0.05), every_k_schedule=2)
  _, losses = _train(tx, steps=600)
  assert float(losses[-1]) < 1e-3 * float(losses[0])


def test_inside_inject_hyperparams():
  # window_size fixes the state's shape, so it must be static.
  tx = optax.inject_hyperparams(
      optax_greedy.greedy_lr, static_args=("window_size",))(
          learning_rate=0.05, factor=0.9)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  _, state = jax.jit(tx.update)(params, state, params, value=1.0)
  assert float(state.hyperparams["factor"]) == pytest.approx(0.9)
  _, losses = _train(optax.chain(optax.identity(), tx), steps=400)
  assert float(losses[-1]) < 1e-3 * float(losses[0])


def test_inside_partition():
  tx = optax.partition(
      {"fast": optax_greedy.greedy_sgd(0.05),
       "frozen": optax.set_to_zero()},
      {"w": "fast", "b": "frozen"})
  params, _ = _train(tx, steps=600)
  np.testing.assert_allclose(params["w"], 3.0, atol=2e-2)
  assert float(params["b"]) == 0.0


def test_vmap_over_initial_rates():
  def final_rate(lr):
    tx = optax_greedy.greedy_lr(lr, smooth=False, patience=0)
    return _observe(tx, [3.0, 2.0, 1.0]).learning_rate

  rates = jax.jit(jax.vmap(final_rate))(jnp.asarray([0.1, 0.01, 0.001]))
  # Three improvements with patience 0: three increases by 1 / 0.95.
  np.testing.assert_allclose(
      rates, np.array([0.1, 0.01, 0.001]) / 0.95**3, rtol=1e-5)


@pytest.mark.parametrize("kwargs, name", [
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(factor=1.0), "factor"),
    (dict(factor=0.0), "factor"),
    (dict(factor=1.5), "factor"),
    (dict(patience=-1), "patience"),
    (dict(cooldown=-1), "cooldown"),
    (dict(warmup=-2), "warmup"),
    (dict(threshold=-1e-3), "threshold"),
    (dict(eps=-1e-8), "eps"),
    (dict(min_lr=-1e-3), "min_lr"),
    (dict(min_lr=1.0, max_lr=0.1), "min_lr"),
    (dict(mode="minimum"), "mode"),
    (dict(threshold_mode="relative"), "threshold_mode"),
    (dict(window_size=0), "window_size"),
    (dict(reset_start=0), "reset_start"),
])
def test_invalid_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 0.1, **kwargs}
  with pytest.raises(ValueError, match=name):
    optax_greedy.greedy_lr(**kwargs)


def test_window_size_is_only_checked_with_smoothing():
  optax_greedy.greedy_lr(0.1, smooth=False, window_size=0)
