"""Tests of learned schedules: the policy, its files, its training, the transform.

The generic optax contract (jit without recompilation, dtypes, lax.cond,
MultiSteps, inject_hyperparams, sharding, checkpoints) is checked for
``learned_schedule`` by tests/test_contract.py's registry.
"""

import pathlib
import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy
from optax_greedy import policy as policy_lib
from optax_greedy import nmf
from optax_greedy_lab import dnn_problems
from optax_greedy_lab import es
from optax_greedy_lab import nmf_problems

_POLICIES = pathlib.Path(optax_greedy.__file__).parent / "policies"


def _numpy_fraction(path, features):
  """The policy of an ``.npz`` file, evaluated with numpy alone."""
  files = np.load(path)
  x = np.asarray(features, np.float64)
  count = sum(1 for k in files if k.startswith("kernel_"))
  for i in range(count):
    x = x @ files[f"kernel_{i}"] + files[f"bias_{i}"]
    if i < count - 1:
      x = np.tanh(x)
  return 1e-3 + (1 - 1e-3) / (1 + np.exp(-x[..., 0]))


@pytest.mark.parametrize("name", ["nmf", "dnn"])
def test_shipped_policy_matches_numpy_on_its_stored_weights(name):
  policy = optax_greedy.load_policy(name)
  path = _POLICIES / f"{name}_policy.npz"
  assert policy.features == tuple(np.load(path)["features"])
  features = np.random.default_rng(0).uniform(
      -3, 3, (256, len(policy.features)))
  np.testing.assert_allclose(
      policy_lib.policy_fraction(policy, features),
      _numpy_fraction(path, features), rtol=1e-5, atol=1e-6)


def test_load_policy_needs_a_name():
  with pytest.raises(TypeError):
    optax_greedy.load_policy()  # pylint: disable=no-value-for-parameter
  with pytest.raises(ValueError, match="load_policy needs a policy: .*'nmf'"):
    optax_greedy.load_policy(None)
  nmf_policy = optax_greedy.load_policy("nmf")
  assert nmf_policy.features == nmf_problems.FEATURES
  assert nmf_policy.hidden == (8, 8)


def _extreme_features(key, count, width):
  """Random features, a quarter of the entries replaced by extremes."""
  normal = 3.0 * jax.random.normal(key, (count, width))
  specials = jnp.asarray([jnp.nan, jnp.inf, -jnp.inf, 1e30, -1e30, 0.0])
  pick = jax.random.randint(jax.random.fold_in(key, 1), normal.shape, 0, 6)
  replace = jax.random.uniform(jax.random.fold_in(key, 2), normal.shape) < .25
  return jnp.where(replace, specials[pick], normal)


def _policies():
  """The shipped policies and random ones with huge and non-finite weights."""
  policies = [optax_greedy.load_policy("nmf"), optax_greedy.load_policy("dnn")]
  for scale in (1.0, 1e3, 1e30):
    random = policy_lib.init_policy(jax.random.key(int(np.log10(scale))))
    policies.append(jax.tree.map(lambda w: scale * w, random))
  broken = policy_lib.init_policy(jax.random.key(7))
  broken.layers[0]["kernel"] = broken.layers[0]["kernel"].at[0, 0].set(
      jnp.nan)
  policies.append(broken)
  return policies


@pytest.mark.parametrize("index", range(6))
def test_policy_output_finite_and_inside_bound(index):
  policy = _policies()[index]
  features = _extreme_features(jax.random.key(index), 4096,
                               len(policy.features))
  fraction = np.asarray(policy_lib.policy_fraction(policy, features))
  assert fraction.shape == (4096,)
  assert np.all(np.isfinite(fraction))
  assert np.all(fraction >= policy_lib.MIN_FRACTION)
  assert np.all(fraction <= 1.0)


def test_policy_file_round_trip(tmp_path):
  policy = policy_lib.init_policy(
      jax.random.key(0), ("budget_used", "loss_noise"), hidden=(4,))
  path = tmp_path / "p.npz"
  policy_lib.save_policy(path, policy, seed=3)
  loaded = optax_greedy.load_policy(path)
  assert loaded.features == ("budget_used", "loss_noise")
  assert loaded.hidden == (4,)
  for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  assert int(np.load(path)["meta_seed"]) == 3


def test_loading_wrong_version_features_or_shape_fails_clearly(tmp_path):
  good = tmp_path / "good.npz"
  policy_lib.save_policy(good, policy_lib.init_policy(jax.random.key(0)))
  files = dict(np.load(good))

  def write(name, **changes):
    path = tmp_path / name
    np.savez(path, **{**files, **changes})
    return path

  with pytest.raises(ValueError, match=r"v2.npz: version 2, expected 1"):
    optax_greedy.load_policy(write("v2.npz", version=np.asarray(2)))
  with pytest.raises(ValueError, match=r"shape.npz: layer 0 has kernel \(4, 8\)"):
    optax_greedy.load_policy(write("shape.npz", kernel_0=np.zeros((4, 8))))
  with pytest.raises(ValueError, match=r"layer 1 .* bias \(3,\)"):
    optax_greedy.load_policy(write("bias.npz", bias_1=np.zeros(3)))
  with pytest.raises(ValueError, match=r"feat.npz: features \('x',\);"
                     r" expected distinct names from \('log_loss_ratio'"):
    optax_greedy.load_policy(write("feat.npz", features=np.asarray(["x"])))
  with pytest.raises(ValueError, match="1 output"):
    optax_greedy.load_policy(write("out.npz", kernel_2=np.zeros((8, 2)),
                                   bias_2=np.zeros(2)))
  with pytest.raises(ValueError, match="neither a shipped policy"):
    optax_greedy.load_policy("cnn")
  del files["version"]
  with pytest.raises(ValueError, match="version None, expected 1"):
    optax_greedy.load_policy(write("none.npz"))


def test_rate_stays_inside_max_rate_for_non_finite_losses_and_updates():
  bound = 0.37
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy("dnn"), bound,
                                     total_steps=20)
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
  V = jax.random.uniform(jax.random.key(0), (6, 9))
  params = nmf.init(jax.random.key(1), V, 3)
  max_rate = lambda p: nmf.stability_bounds(p, joint=True)
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy("nmf"),
                                     max_rate, total_steps=10)
  state = tx.init(params)
  value, grads = jax.value_and_grad(nmf.loss)(params, V)
  updates, state = tx.update(grads, state, params, value=value)
  fraction = float(optax.tree.get(state, "fraction"))
  assert policy_lib.MIN_FRACTION <= fraction <= 1.0
  # The joint bound is 2 / (lambda_max(H H^T) + lambda_max(W^T W)).
  lam_w = np.linalg.eigvalsh(np.asarray(params["H"] @ params["H"].T))[-1]
  lam_h = np.linalg.eigvalsh(np.asarray(params["W"].T @ params["W"]))[-1]
  bound = 2.0 / (lam_w + lam_h)
  for k in ("W", "H"):
    np.testing.assert_allclose(updates[k], -fraction * bound * grads[k],
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(state.learning_rate[k], fraction * bound,
                               rtol=1e-4)


def test_learning_rate_is_initial_then_applied_rate():
  policy = optax_greedy.load_policy("dnn")
  per_leaf = lambda p: {"a": 0.5, "b": 2.0 * jnp.max(p["b"])}
  params = {"a": jnp.ones(2), "b": jnp.full(3, 0.25)}
  tx = optax_greedy.learned_schedule(policy, per_leaf, total_steps=10)
  state = tx.init(params)
  # Before the first update: the initial rate, fraction 1 of max_rate.
  assert float(state.fraction) == 1.0
  np.testing.assert_allclose(state.learning_rate["a"], 0.5)
  np.testing.assert_allclose(state.learning_rate["b"], 0.5)
  grads = {"a": jnp.ones(2), "b": jnp.ones(3)}
  updates, state = tx.update(grads, state, params, value=2.0)
  f = float(state.fraction)
  np.testing.assert_allclose(state.learning_rate["a"], 0.5 * f, rtol=1e-6)
  np.testing.assert_allclose(updates["a"], -0.5 * f * np.ones(2), rtol=1e-6)
  np.testing.assert_allclose(updates["b"], -0.5 * f * np.ones(3), rtol=1e-6)
  fields = [k for k in state._fields if k == "learning_rate"]
  assert fields == ["learning_rate"]


def test_overwritten_learning_rate_is_informational():
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy("dnn"), 0.3,
                                     total_steps=10)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.ones(2)}, state, params, value=3.0)
  overwritten = optax.tree.set(state, learning_rate=jnp.asarray(1e-6))
  a, next_a = tx.update({"w": jnp.ones(2)}, state, params, value=2.5)
  b, next_b = tx.update({"w": jnp.ones(2)}, overwritten, params, value=2.5)
  np.testing.assert_array_equal(a["w"], b["w"])
  np.testing.assert_array_equal(next_a.learning_rate, next_b.learning_rate)


def test_features_are_scale_free():
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy("dnn"), 1.0,
                                     total_steps=30)
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


def test_value_none_keeps_fraction_silently_and_missing_value_warns_once():
  tx = optax_greedy.learned_schedule(optax_greedy.load_policy("nmf"), 2.0,
                                     total_steps=10)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.ones(2)}, state, params, value=3.0)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    updates, new = tx.update({"w": jnp.ones(2)}, state, params, value=None)
  assert float(new.fraction) == float(state.fraction)
  assert float(new.log_loss) == float(state.log_loss)
  np.testing.assert_allclose(updates["w"], -2.0 * float(state.fraction))
  step = jax.jit(lambda s: tx.update({"w": jnp.ones(2)}, s, params))
  with pytest.warns(UserWarning, match="value=None to skip"):
    _, missing = step(state)
  assert float(missing.fraction) == float(state.fraction)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    tx.update({"w": jnp.ones(2)}, state, params)  # Warned once already.


def test_bad_arguments_raise():
  policy = optax_greedy.load_policy("dnn")
  with pytest.raises(ValueError, match=r"total_steps must be in \[1, inf\)"):
    optax_greedy.learned_schedule(policy, 1.0, total_steps=0)
  with pytest.raises(ValueError, match=r"max_rate must be in \(0, inf\)"):
    optax_greedy.learned_schedule(policy, -1.0, total_steps=5)
  with pytest.raises(ValueError, match="max_rate must be a number"):
    optax_greedy.learned_schedule(policy, "1e-3", total_steps=5)
  with pytest.raises(ValueError, match="average_decay must be a number"):
    optax_greedy.learned_schedule(policy, 0.1, total_steps=5,
                                  average_decay="0.9")
  with pytest.raises(TypeError, match=r"pass average_decay=0\.8"):
    optax_greedy.learned_schedule(policy, 0.1, total_steps=5, decay=0.8)
  with pytest.raises(ValueError, match="policy must be a Policy"):
    optax_greedy.learned_schedule({"params": {}}, 0.1, total_steps=5)
  tx = optax_greedy.learned_schedule(policy, 0.1, total_steps=5)
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="value must be a scalar loss"):
    tx.update(params, tx.init(params), params, value=jnp.ones(3))
  tx = optax_greedy.learned_schedule(policy, nmf.stability_bounds, total_steps=5)
  factors = {"W": jnp.ones((2, 2)), "H": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="params"):
    tx.update(factors, tx.init(factors), None, value=1.0)


def test_nmf_training_run_is_deterministic_for_a_seed():
  config = nmf_problems.NMFConfig(problems=2, max_steps=12, min_budget=6,
                                  max_budget=12)
  es_config = es.ESConfig(iterations=2, pairs=2)
  policy_a, history_a = nmf_problems.train(3, es_config, config)
  policy_b, history_b = nmf_problems.train(3, es_config, config)
  assert len(history_a) == 2
  assert all(np.isfinite(h["mean_fitness"]) for h in history_a)
  assert [h["mean_fitness"] for h in history_a] == [
      h["mean_fitness"] for h in history_b]
  for a, b in zip(jax.tree.leaves(policy_a), jax.tree.leaves(policy_b)):
    np.testing.assert_array_equal(a, b)
  start = policy_lib.init_policy(jax.random.split(jax.random.key(3))[0],
                               nmf_problems.FEATURES)
  moved = sum(float(jnp.sum(jnp.abs(a - s))) for a, s in zip(
      jax.tree.leaves(policy_a), jax.tree.leaves(start)))
  assert moved > 0


def test_chain_with_stability_clip_on_nmf():
  V = jax.random.uniform(jax.random.key(2), (20, 30))
  params = nmf.init(jax.random.key(3), V, 4)
  max_rate = lambda p: nmf.stability_bounds(p, joint=True)
  tx = optax.chain(
      optax_greedy.stability_clip(
          max_rate, inner=optax_greedy.learned_schedule(
              optax_greedy.load_policy("nmf"), max_rate, total_steps=40),
          safety=0.5),
      optax.keep_params_nonnegative())
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(nmf.loss)(params, V)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  first = float(nmf.loss(params, V))
  for _ in range(40):
    params, state = step(params, state)
  assert all(float(jnp.min(p)) >= 0 for p in jax.tree.leaves(params))
  assert float(nmf.loss(params, V)) < 0.5 * first


@pytest.mark.parametrize("direction", ["sgd_momentum", "adam"])
def test_dnn_policy_after_adam_and_momentum_directions(direction):
  target = jnp.asarray([1.0, -2.0, 3.0])
  loss_fn = lambda p: 0.5 * jnp.sum((p["x"] - target) ** 2)
  pre = (optax.trace(decay=0.9) if direction == "sgd_momentum"
         else optax.scale_by_adam())
  rate = 0.1 if direction == "sgd_momentum" else 0.3
  tx = optax.chain(pre, optax_greedy.learned_schedule(
      optax_greedy.load_policy("dnn"), rate, total_steps=200))
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


def _tiny_family():
  return dnn_problems.mlp_family("tiny", sources=("iris",), max_width=8,
                                 max_depth=2, dims=4, rows=150)


def test_dnn_tiny_training_run_improves_on_the_cosine_start():
  config = dnn_problems.EnvConfig(problems=2, max_steps=12, min_budget=6,
                                  max_batch=8)
  es_config = es.ESConfig(iterations=2, pairs=2, sigma=0.05,
                          learning_rate=0.01)
  checkpoints = []
  policy, history = dnn_problems.train(
      1, es_config, config, families=(_tiny_family(),),
      checkpoint=lambda i, p: checkpoints.append(i), imitation_steps=50)
  assert checkpoints == [0, 1]
  assert policy.features == dnn_problems.FEATURES
  assert len(history) == 2
  for info in history:
    assert np.isfinite(info["mean_fitness"])
    assert np.isfinite(info["val_log_ratio"])
  start, _ = dnn_problems.imitation_policy(
      jax.random.fold_in(jax.random.key(1), 1), "cosine", steps=50)
  moved = sum(float(jnp.sum(jnp.abs(a - s))) for a, s in zip(
      jax.tree.leaves(policy), jax.tree.leaves(start)))
  assert moved > 0


def test_cosine_imitation_policy_follows_cosine_annealing():
  policy, fit = dnn_problems.imitation_policy(jax.random.key(0), "cosine",
                                              steps=400)
  assert fit < 0.05
  used = np.linspace(0, 0.9, 10)
  features = np.zeros((10, len(policy.features)))
  features[:, policy.features.index("budget_used")] = used
  expected = 0.5 * (1 + np.cos(np.pi * used))
  np.testing.assert_allclose(policy_lib.policy_fraction(policy, features),
                             expected, atol=0.1)


def test_reward_is_a_loss_averse_log_ratio():
  base = {"val": jnp.asarray([2.0]), "train": jnp.asarray([1.0])}
  same = dnn_problems.reward(base, base)
  better = dnn_problems.reward(
      base, {"val": jnp.asarray([1.0]), "train": jnp.asarray([1.0])})
  worse = dnn_problems.reward(
      base, {"val": jnp.asarray([4.0]), "train": jnp.asarray([1.0])})
  diverged = dnn_problems.reward(
      base, {"val": jnp.asarray([jnp.nan]), "train": jnp.asarray([jnp.inf])})
  assert float(same) == 0.0
  np.testing.assert_allclose(better, 0.5)  # clip(log 2, 0.5)
  np.testing.assert_allclose(worse, -1.0)  # twice clip(-log 2, -0.5)
  np.testing.assert_allclose(diverged, -1.5)


def test_padded_units_stay_zero_through_an_episode():
  family = _tiny_family()
  config = dnn_problems.EnvConfig(max_steps=15, min_budget=15, max_batch=8)
  problem = family.sample(jax.random.key(3), config)
  problem = problem._replace(
      arch={**problem.arch, "units": jnp.arange(8.0) < 5})
  params = family.init(jax.random.key(4), problem)
  policy = optax_greedy.load_policy("dnn")
  tx = dnn_problems.learned_optimizer(policy, policy.envelope)(problem)
  state = tx.init(params)
  loss = lambda p: jnp.mean(family.apply(p, problem.x[:16], problem.arch)**2)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  for _ in range(5):
    params, state = step(params, state)
  np.testing.assert_array_equal(params[0]["w"][:, 5:], 0)
  np.testing.assert_array_equal(params[1]["w"][5:], 0)
  np.testing.assert_array_equal(params[-1]["w"][5:], 0)


def test_a_policy_read_inside_a_traced_function_is_concrete():
  """Read while tracing (a benchmark builds its optimizer inside jit and
  caches the policy), the weights are arrays, not the trace's values."""
  found = []

  @jax.jit
  def f(x):
    found.append(optax_greedy.load_policy("dnn"))
    return x

  f(1.0)
  for leaf in jax.tree.leaves(found[0]):
    assert not isinstance(leaf, jax.core.Tracer)


# ------------------------------------------- training envelope and config ---


def test_policy_file_records_envelope_and_config(tmp_path):
  policy = policy_lib.init_policy(jax.random.key(0),
                                envelope=(0.05, 0.2, "linear"))
  path = tmp_path / "p.npz"
  policy_lib.save_policy(path, policy, config={"seed": 4, "env": {"a": [1]}})
  loaded = optax_greedy.load_policy(path)
  assert loaded.envelope == (0.05, 0.2, "linear")
  assert policy_lib.policy_config(path) == {
      "seed": 4, "env": {"a": [1]}, "envelope": [0.05, 0.2, "linear"]}
  # A file without them (as the first shipped ones) reads as unknown.
  files = dict(np.load(path))
  del files["envelope"], files["config"]
  np.savez(tmp_path / "old.npz", **files)
  assert optax_greedy.load_policy(tmp_path / "old.npz").envelope is None
  assert policy_lib.policy_config(tmp_path / "old.npz") == {"envelope": None}


def test_load_policy_checks_expected_features_and_envelope(tmp_path):
  path = tmp_path / "p.npz"
  policy_lib.save_policy(path, policy_lib.init_policy(jax.random.key(0)))
  expected = dnn_problems.FEATURES
  with pytest.raises(ValueError, match=r"p.npz: features \('log_loss_ratio',"
                     r".*\); expected \('log_loss_ratio'.*'loss_above_min'\)"):
    optax_greedy.load_policy(path, features=expected)
  files = dict(np.load(path))
  np.savez(tmp_path / "env.npz", **{**files, "envelope": np.asarray(
      "[0.9, 0.9, \"linear\"]")})
  with pytest.raises(ValueError, match=r"env.npz: envelope .*sum is <= 1"):
    optax_greedy.load_policy(tmp_path / "env.npz")


def test_shipped_dnn_policy_reads_with_the_environment_features():
  policy = optax_greedy.load_policy("dnn", features=dnn_problems.FEATURES)
  assert policy.features == dnn_problems.FEATURES


def test_learned_schedule_warns_outside_the_training_envelope():
  policy = policy_lib.init_policy(jax.random.key(0),
                                envelope=(0.05, 0.2, "linear"))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    optax_greedy.learned_schedule(policy, 0.1, total_steps=10)
  with pytest.warns(UserWarning, match="trained for the envelope"
                    " ramp_fraction=0.05, decay_fraction=0.2"):
    optax_greedy.learned_schedule(policy, 0.1, total_steps=10,
                                  envelope=optax_greedy.NO_ENVELOPE)
  alone = policy_lib.init_policy(jax.random.key(0),
                               envelope=optax_greedy.NO_ENVELOPE)
  with pytest.warns(UserWarning, match="decay_fraction=0.0"):
    optax_greedy.learned_schedule(alone, 0.1, total_steps=10)


def _es_run(tmp_path, iterations, state=None, config=None):
  saved = []
  fit = lambda p, k: (-jnp.sum(jax.vmap(lambda q: jnp.sum(
      jax.flatten_util.ravel_pytree(q)[0] ** 2))(p)) * jnp.ones(
          jax.tree.leaves(p)[0].shape[0]) + jax.random.normal(
              k, (jax.tree.leaves(p)[0].shape[0],)), {})
  initial = policy_lib.init_policy(jax.random.key(0), hidden=(3,))
  es_config = es.ESConfig(iterations=iterations, pairs=2)
  policy, _ = es.train_es(
      0, fit, initial, es_config, state=state,
      save=lambda s: es.save_state(tmp_path / "s.npz", s,
                                   config or {"run": 1}))
  return policy, initial, es_config


def test_es_resumes_exactly_and_refuses_another_config(tmp_path):
  full, initial, es_config = _es_run(tmp_path, 4)
  _es_run(tmp_path, 2)
  state = es.load_state(tmp_path / "s.npz", initial, es_config, {"run": 1})
  assert state.iteration == 2
  resumed, _, _ = _es_run(tmp_path, 4, state=state)
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"s.npz: written by a run of config"
                     r" \{\"run\": 1\}; expected \{\"run\": 2\}"):
    es.load_state(tmp_path / "s.npz", initial, es_config, {"run": 2})


@pytest.mark.parametrize("strategy", ["snes", "cma_es"])
def test_es_evosax_strategy_learns_and_resumes_exactly(tmp_path, strategy):
  pytest.importorskip("evosax", reason="evosax is the [train] extra")
  initial = policy_lib.init_policy(jax.random.key(0), hidden=(3,))
  flat = lambda p: jax.vmap(lambda q: jax.flatten_util.ravel_pytree(q)[0])(p)
  fit = lambda p, k: (-jnp.sum((flat(p) - 0.5) ** 2, axis=1), {})
  es_config = es.ESConfig(iterations=40, pairs=4, strategy=strategy)
  config = {"run": strategy}
  path = tmp_path / "s.npz"
  save = lambda s: es.save_state(path, s, config)
  full, history = es.train_es(0, fit, initial, es_config, save=save)
  # The quadratic's optimum is 0.5 in every weight: the population's mean
  # fitness improves by far more than the sampling noise.
  assert history[-1]["mean_fitness"] > 0.2 * history[0]["mean_fitness"]
  es.train_es(0, fit, initial, es_config._replace(iterations=15), save=save)
  state = es.load_state(path, initial, es_config, config)
  assert state.iteration == 15
  resumed, _ = es.train_es(0, fit, initial, es_config, state=state)
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_es_strategy_is_checked_and_evosax_missing_says_what_to_install(
    monkeypatch):
  initial = policy_lib.init_policy(jax.random.key(0), hidden=(3,))
  fit = lambda p, k: (jnp.zeros(jax.tree.leaves(p)[0].shape[0]), {})
  with pytest.raises(ValueError, match=r"strategy='pso'; expected one of"):
    es.train_es(0, fit, initial, es.ESConfig(iterations=1, strategy="pso"))
  monkeypatch.setitem(__import__("sys").modules, "evosax", None)
  with pytest.raises(ImportError, match=r"optax_greedy\[train\]"):
    es.train_es(0, fit, initial, es.ESConfig(iterations=1, strategy="snes"))


def test_char_lm_family_and_tuned_baseline_episode():
  family = dnn_problems.char_lm_family(context=8, embed=8, hidden=16,
                                       windows=64)
  config = dnn_problems.EnvConfig(problems=1, max_steps=8, min_budget=8,
                                  max_batch=4, baseline_peaks=(0.5, 1.0),
                                  envelope=(0.05, 0.2, "linear"))
  policy = dnn_problems.initial_policy(0, "constant", imitation_steps=20,
                                       envelope=config.envelope)
  policies = jax.tree.map(lambda w: jnp.stack([w, w]), policy)
  fitness, info = jax.jit(lambda p, k: dnn_problems.fitness(
      p, k, (family,), config))(policies, jax.random.key(0))
  assert fitness.shape == (2,)
  assert np.all(np.isfinite(fitness))
  assert fitness[0] == fitness[1]
  # The raw log ratio of every problem and member; the verdict is bench's.
  assert info["val_log_ratio"].shape == (1, 2)
  assert np.all(np.isfinite(info["val_log_ratio"]))
  assert info["val_log_ratio"][0, 0] == info["val_log_ratio"][0, 1]
