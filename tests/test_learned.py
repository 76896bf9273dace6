"""Tests of learned schedules: the policy, its file, its training, the transform."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy
from optax_greedy import _learned
from optax_greedy import _rl_env
from optax_greedy import nmf

_TINY = _rl_env.ESConfig(iterations=2, pairs=2, problems=2, max_steps=12,
                         min_budget=6, max_budget=12)


def _extreme_features(key, count):
  """Random features, a quarter of the entries replaced by extremes."""
  normal = 3.0 * jax.random.normal(key, (count, len(_learned.FEATURES)))
  specials = jnp.asarray([jnp.nan, jnp.inf, -jnp.inf, 1e30, -1e30, 0.0])
  pick = jax.random.randint(jax.random.fold_in(key, 1), normal.shape, 0, 6)
  replace = jax.random.uniform(jax.random.fold_in(key, 2), normal.shape) < .25
  return jnp.where(replace, specials[pick], normal)


def _policies():
  """The shipped policy and random ones with huge and non-finite weights."""
  policies = [optax_greedy.load_policy()]
  for scale in (1.0, 1e3, 1e30):
    random = _learned.init_policy(jax.random.key(int(np.log10(scale))))
    policies.append(jax.tree.map(lambda w: scale * w, random))
  broken = _learned.init_policy(jax.random.key(7))
  broken["params"]["Dense_0"]["kernel"] = (
      broken["params"]["Dense_0"]["kernel"].at[0, 0].set(jnp.nan))
  policies.append(broken)
  return policies


@pytest.mark.parametrize("index", range(5))
def test_policy_output_finite_and_inside_bound(index):
  policy = _policies()[index]
  features = _extreme_features(jax.random.key(index), 4096)
  fraction = np.asarray(_learned.policy_fraction(policy, features))
  assert fraction.shape == (4096,)
  assert np.all(np.isfinite(fraction))
  assert np.all(fraction >= _learned.MIN_FRACTION)
  assert np.all(fraction <= 1.0)


def test_rate_stays_inside_bound_for_non_finite_losses_and_updates():
  bound = 0.37
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy(), bound,
                                     budget=20)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  values = [1.0, jnp.nan, 0.0, jnp.inf, -jnp.inf, 1e38, 1e-38, -5.0, 2.0]
  grads = [jnp.ones(3), jnp.full(3, jnp.inf), jnp.zeros(3),
           jnp.full(3, 1e30), jnp.full(3, jnp.nan)]
  for i, value in enumerate(values):
    g = {"w": grads[i % len(grads)]}
    _, state = tx.update(g, state, params, value=value)
    rate = float(optax.tree.get(state, "learning_rate"))
    assert np.isfinite(rate) and 0 < rate <= bound, (i, rate)


def test_update_is_fraction_times_bound_times_direction():
  policy = optax_greedy.load_policy()
  V = jax.random.uniform(jax.random.key(0), (6, 9))
  params = nmf.init(jax.random.key(1), V, 3)
  max_rate = lambda p: nmf.stability_bounds(p, joint=True)
  tx = optax_greedy.learned_schedule(policy, max_rate, budget=10)
  state = tx.init(params)
  value, grads = jax.value_and_grad(nmf.loss)(params, V)
  updates, state = tx.update(grads, state, params, value=value)
  fraction = float(optax.tree.get(state, "fraction"))
  assert _learned.MIN_FRACTION <= fraction <= 1.0
  # The joint bound is 2 / (lambda_max(H H^T) + lambda_max(W^T W)).
  lam_w = np.linalg.eigvalsh(np.asarray(params["H"] @ params["H"].T))[-1]
  lam_h = np.linalg.eigvalsh(np.asarray(params["W"].T @ params["W"]))[-1]
  bound = 2.0 / (lam_w + lam_h)
  for k in ("W", "H"):
    np.testing.assert_allclose(updates[k], -fraction * bound * grads[k],
                               rtol=1e-4, atol=1e-7)


def test_features_are_scale_free():
  policy = optax_greedy.load_policy()
  tx = optax_greedy.learned_schedule(policy, 1.0, budget=30)
  losses = 5.0 * 0.9 ** np.arange(12) * (1 + 0.1 * np.sin(np.arange(12)))
  fractions = []
  for scale in (1.0, 1e4):
    params = {"w": jnp.ones(4)}
    state = tx.init(params)
    run = []
    for t, loss in enumerate(losses):
      grads = {"w": scale * jnp.full(4, 0.8 ** t)}
      _, state = tx.update(grads, state, params, value=scale * loss)
      run.append(float(state.fraction))
    fractions.append(run)
  np.testing.assert_allclose(fractions[0], fractions[1], rtol=1e-4)
  # The policy does react to its features (not a constant).
  assert np.ptp(fractions[0]) > 1e-4


def test_value_none_keeps_fraction_and_observes_nothing():
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy(), 2.0,
                                     budget=10)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.ones(2)}, state, params, value=3.0)
  updates, new = tx.update({"w": jnp.ones(2)}, state, params)
  assert float(new.fraction) == float(state.fraction)
  assert float(new.log_loss) == float(state.log_loss)
  np.testing.assert_allclose(updates["w"], -2.0 * float(state.fraction))


def test_bad_arguments_raise():
  policy = optax_greedy.load_policy()
  with pytest.raises(ValueError, match="budget"):
    optax_greedy.learned_schedule(policy, 1.0, budget=0)
  with pytest.raises(ValueError, match="max_rate"):
    optax_greedy.learned_schedule(policy, -1.0, budget=5)
  tx = optax_greedy.learned_schedule(policy, nmf.stability_bounds, budget=5)
  with pytest.raises(ValueError, match="params"):
    tx.update({"W": jnp.ones((2, 2)), "H": jnp.ones((2, 2))},
              tx.init({"W": jnp.ones((2, 2)), "H": jnp.ones((2, 2))}),
              None, value=1.0)


def test_shipped_policy_loads():
  policy = optax_greedy.load_policy()
  assert _learned.policy_hidden(policy) == (8, 8)
  assert policy["params"]["Dense_0"]["kernel"].shape == (5, 8)
  assert all(np.all(np.isfinite(w)) for w in jax.tree.leaves(policy))


def test_loading_wrong_version_or_shape_fails_clearly(tmp_path):
  policy = _learned.init_policy(jax.random.key(0))
  good = tmp_path / "good.npz"
  _learned.save_policy(good, policy, seed=0)
  loaded = optax_greedy.load_policy(good)
  for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)

  files = dict(np.load(good))
  def write(name, **changes):
    path = tmp_path / name
    np.savez(path, **{**files, **changes})
    return path

  with pytest.raises(ValueError, match="version 2, expected 1"):
    optax_greedy.load_policy(write("v2.npz", version=np.asarray(2)))
  with pytest.raises(ValueError, match=r"layer 0 has kernel \(4, 8\)"):
    optax_greedy.load_policy(write("shape.npz", kernel_0=np.zeros((4, 8))))
  with pytest.raises(ValueError, match=r"layer 1 .* bias \(3,\)"):
    optax_greedy.load_policy(write("bias.npz", bias_1=np.zeros(3)))
  with pytest.raises(ValueError, match="features"):
    optax_greedy.load_policy(write("feat.npz", features=np.asarray(["x"])))
  with pytest.raises(ValueError, match="1 output"):
    optax_greedy.load_policy(write("out.npz", kernel_2=np.zeros((8, 2)),
                                   bias_2=np.zeros(2)))
  del files["version"]
  with pytest.raises(ValueError, match="version None"):
    optax_greedy.load_policy(write("none.npz"))


def test_tiny_training_run_is_deterministic_for_a_seed():
  policy_a, history_a = _rl_env.train_es(3, _TINY)
  policy_b, history_b = _rl_env.train_es(3, _TINY)
  start = _learned.init_policy(
      jax.random.split(jax.random.key(3))[0], _TINY.hidden)
  assert len(history_a) == _TINY.iterations
  assert all(np.isfinite(h["mean_fitness"]) for h in history_a)
  assert [h["mean_fitness"] for h in history_a] == [
      h["mean_fitness"] for h in history_b]
  for a, b, s in zip(jax.tree.leaves(policy_a), jax.tree.leaves(policy_b),
                     jax.tree.leaves(start)):
    np.testing.assert_array_equal(a, b)
  # Training moved the weights away from the initial policy.
  moved = sum(float(jnp.sum(jnp.abs(a - s))) for a, s in zip(
      jax.tree.leaves(policy_a), jax.tree.leaves(start)))
  assert moved > 0


def test_jit_without_recompilation_and_dtype_kept():
  policy = optax_greedy.load_policy()
  for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
    tx = optax_greedy.learned_schedule(policy, 0.1, budget=8)
    params = {"a": jnp.ones(3, dtype), "b": jnp.ones((2, 2), dtype)}
    traces = []

    @jax.jit
    def step(params, state, value):
      traces.append(1)
      grads = jax.tree.map(lambda p: 0.5 * p, params)
      updates, state = tx.update(grads, state, params, value=value)
      return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    for t in range(5):
      params, state, updates = step(params, state, jnp.asarray(2.0 - t / 10))
      assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
      assert all(p.dtype == dtype for p in jax.tree.leaves(params))
    assert len(traces) == 1
    assert int(state.count) == 5


def test_chain_with_stability_clip_on_nmf():
  policy = optax_greedy.load_policy()
  V = jax.random.uniform(jax.random.key(2), (20, 30))
  params = nmf.init(jax.random.key(3), V, 4)
  max_rate = lambda p: nmf.stability_bounds(p, joint=True)
  tx = optax.chain(
      optax_greedy.stability_clip(
          max_rate, optax_greedy.learned_schedule(policy, max_rate,
                                                  budget=40),
          safety=0.5),
      optax.keep_params_nonnegative())
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(nmf.loss)(params, V)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state, value

  first = float(nmf.loss(params, V))
  for _ in range(40):
    params, state, _ = step(params, state)
    applied = optax.tree.get(state, "applied_learning_rate")
    bound = optax.tree.get(state, "bound")
    for k in ("W", "H"):
      assert float(applied[k]) <= 0.5 * float(bound[k]) * (1 + 1e-5)
  assert all(float(jnp.min(p)) >= 0 for p in jax.tree.leaves(params))
  assert float(nmf.loss(params, V)) < 0.5 * first


@pytest.mark.parametrize("direction", ["sgd", "adam"])
def test_with_sgd_and_adam_directions(direction):
  policy = optax_greedy.load_policy()
  target = jnp.asarray([1.0, -2.0, 3.0])
  loss_fn = lambda p: 0.5 * jnp.sum((p["x"] - target) ** 2)
  pre = (optax.identity() if direction == "sgd"
         else optax.scale_by_adam())
  rate = 1.0 if direction == "sgd" else 0.1
  tx = optax.chain(pre, optax_greedy.learned_schedule(policy, rate,
                                                      budget=200))
  params = {"x": jnp.zeros(3)}
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  for _ in range(200):
    params, state = step(params, state)
  assert float(loss_fn(params)) < 1e-2 * float(loss_fn({"x": jnp.zeros(3)}))
