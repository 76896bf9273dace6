"""GreedyLR: conformance with the reference, the rule, the API, bad input.

The generic optax contract (jit without recompilation, dtypes, lax.cond,
MultiSteps, partition, sharding, checkpoints) is checked for every transform
of the library in test_contract.py; this file keeps what is GreedyLR's own.
"""

import functools
import gzip
import importlib.util
import inspect
import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy

REFERENCE = pathlib.Path(__file__).parent / "reference"
WRAPPERS = (optax_greedy.greedy_sgd, optax_greedy.greedy_adam,
            optax_greedy.greedy_adamw)


def _load(name):
  with gzip.open(REFERENCE / name, "rt") as f:
    return json.load(f)


def _ours(config):
  """greedy_lr's keywords for a reference ``config`` (reference names)."""
  config = dict(config)
  config["min_change"] = config.pop("eps")
  config.pop("verbose", None)
  return config


# --- Conformance ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _compiled_run(config_items):
  """One jit-compiled scan per distinct configuration."""
  config = _ours(dict(config_items))
  tx = optax_greedy.greedy_lr(config.pop("lr"), **config)
  params = jnp.zeros(2)

  def run(values):
    def step(state, value):
      _, state = tx.update(params, state, params, value=value)
      return state, (state.learning_rate, state.next_learning_rate)
    return jax.lax.scan(step, tx.init(params), values)[1]

  return jax.jit(run)


@pytest.mark.parametrize(
    "case", _load("greedy_lr_trajectories.json.gz")["cases"],
    ids=lambda case: case["name"])
def test_matches_reference_trajectories(case):
  with jax.enable_x64(True):
    run = _compiled_run(tuple(sorted(case["config"].items())))
    applied, upcoming = run(jnp.asarray(case["values"], jnp.float64))
    assert upcoming.dtype == jnp.float64
    expected = np.asarray(case["learning_rates"])
    np.testing.assert_allclose(upcoming, expected, rtol=1e-9, atol=0)
    # learning_rate is the rate each update applied: the initial rate, then
    # the reference's rate after the previous step.
    np.testing.assert_allclose(
        applied, np.concatenate([[case["config"]["lr"]], expected[:-1]]),
        rtol=1e-9, atol=0)


def _corpus_groups():
  """The recorded corpus, grouped by the arguments that shape the program."""
  corpus = _load("greedy_lr_corpus.json.gz")
  groups = {}
  for case in corpus["cases"]:
    config = case["config"]
    key = (config["mode"], config["threshold_mode"],
           config["window_size"] if config["smooth"] else 0)
    groups.setdefault(key, []).append(case)
  return sorted(groups.items())


def _expand(rate_changes, length):
  rates = np.empty(length)
  for (step, rate), (end, _) in zip(
      rate_changes, rate_changes[1:] + [[length, None]]):
    rates[step:end] = rate
  return rates


@pytest.mark.parametrize("key, cases", _corpus_groups(),
                         ids=lambda x: "-".join(map(str, x))
                         if isinstance(x, tuple) else "")
def test_matches_reference_corpus(key, cases):
  """Replays the differential tester's recorded corpus (float64, rtol 1e-9).

  Numeric hyperparameters are vmapped, so each group compiles once. An
  unbounded ``min_lr`` / ``max_lr`` is run as 0 / inf (the values the
  reference got); the structural ``None`` path is covered by the tester.
  """
  mode, threshold_mode, window = key
  steps = max(len(case["values"]) for case in cases)
  values = np.zeros((len(cases), steps))
  observed = np.zeros((len(cases), steps), bool)
  numbers = {name: np.zeros(len(cases)) for name in (
      "lr", "factor", "patience", "threshold", "cooldown", "warmup",
      "min_lr", "max_lr", "eps", "reset_start")}
  for row, case in enumerate(cases):
    values[row, :len(case["values"])] = case["values"]
    observed[row, :len(case["values"])] = True
    for name in numbers:
      numbers[name][row] = case["config"][name]
  numbers["min_lr"] = np.nan_to_num(numbers["min_lr"], nan=0.0)
  numbers["max_lr"] = np.where(np.isnan(numbers["max_lr"]), np.inf,
                               numbers["max_lr"])

  def run(n, values, observed):
    tx = optax_greedy.greedy_lr(
        n["lr"], mode=mode, factor=n["factor"],
        patience=n["patience"].astype(jnp.int32), threshold=n["threshold"],
        threshold_mode=threshold_mode,
        cooldown=n["cooldown"].astype(jnp.int32),
        warmup=n["warmup"].astype(jnp.int32), min_lr=n["min_lr"],
        max_lr=n["max_lr"], min_change=n["eps"], smooth=window > 0,
        window_size=max(window, 1),
        reset_start=n["reset_start"].astype(jnp.int32))
    params = jnp.zeros([])

    def step(state, inputs):
      _, state = tx.update(params, state, params, value=inputs[0],
                           observe=inputs[1])
      return state, state.next_learning_rate
    return jax.lax.scan(step, tx.init(params), (values, observed))[1]

  with jax.enable_x64(True):
    numbers = {k: jnp.asarray(np.asarray(v, float)) for k, v in
               numbers.items()}
    rates = np.asarray(jax.jit(jax.vmap(run))(numbers, values, observed))
  for row, case in enumerate(cases):
    length = len(case["values"])
    np.testing.assert_allclose(
        rates[row, :length], _expand(case["rate_changes"], length),
        rtol=1e-9, atol=0, err_msg=case["name"])


def test_corpus_is_large_and_says_where_it_came_from():
  corpus = _load("greedy_lr_corpus.json.gz")
  assert len(corpus["cases"]) >= 500
  assert corpus["reference"]["transformers"] == "5.23.0"
  assert "greedy_lr_differential.py" in corpus["command"]


def test_raised_rate_is_the_correctly_rounded_quotient():
  # XLA multiplies by the reciprocal of a constant factor, one ulp off the
  # quotient in about half the cases; the rule compares rates with min_lr
  # exactly, so the rate must be Python's lr / factor / factor / ...
  with jax.enable_x64(True):
    tx = optax_greedy.greedy_lr(1e-3, factor=0.7, patience=0, smooth=False,
                                max_lr=None)
    params = jnp.zeros([])

    def step(state, value):
      _, state = tx.update(params, state, params, value=value)
      return state, state.next_learning_rate
    rates = jax.jit(lambda v: jax.lax.scan(step, tx.init(params), v)[1])(
        -jnp.arange(60.0))
  expected, rate = [], 1e-3
  for _ in range(60):
    rate = rate / 0.7
    expected.append(rate)
  assert np.asarray(rates).tolist() == expected


# --- The rule ---------------------------------------------------------------


def _observe(tx, values, state=None):
  params = jnp.zeros(())
  state = tx.init(params) if state is None else state
  step = jax.jit(tx.update)
  for value in values:
    _, state = step(params, state, params, value=value)
  return state


def test_learning_rate_is_the_rate_applied_by_the_last_update():
  # patience=0: the first observation improves on best=inf, so the rate
  # rises at once; the update returned by that call still uses the old rate.
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False, max_lr=1.0)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  assert float(state.learning_rate) == pytest.approx(0.1)
  assert float(state.next_learning_rate) == pytest.approx(0.1)
  updates, state = tx.update(params, state, params, value=1.0)
  np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3), rtol=1e-6)
  np.testing.assert_allclose(state.learning_rate, 0.1, rtol=1e-6)
  np.testing.assert_allclose(state.next_learning_rate, 0.1 / 0.95, rtol=1e-6)
  updates, state = tx.update(params, state, params, value=0.5)
  np.testing.assert_allclose(updates["w"], -(0.1 / 0.95) * np.ones(3),
                             rtol=1e-6)
  np.testing.assert_allclose(state.learning_rate, 0.1 / 0.95, rtol=1e-6)


def test_overwritten_learning_rate_does_not_steer_the_controller():
  # stability_clip writes the rate it applied into learning_rate; GreedyLR
  # keeps its own rate in next_learning_rate.
  tx = optax_greedy.greedy_lr(0.1, smooth=False)
  params = jnp.ones(2)
  state = _observe(tx, [1.0])
  state = optax.tree.set(state, learning_rate=jnp.asarray(1e-5))
  updates, state = tx.update(params, state, params, value=1.0)
  np.testing.assert_allclose(updates, -0.1 * np.ones(2), rtol=1e-6)
  assert float(state.learning_rate) == pytest.approx(0.1)


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
    rates.append(float(state.next_learning_rate))
  assert rates == [1.0, 0.5, 0.25, 0.25, 1.0, 1.0]


def test_cooldown_of_the_resetting_decrease_still_holds():
  # As the reference: step() sets the cooldown after _reduce_lr returns, even
  # when that decrease reset the controller. Hand-traced: rates 1 -> 0.5 =
  # min_lr (step 2, cooldown 2: steps 3, 4 held), step 5 decreases at min_lr
  # and resets (reset_start=2), then steps 6, 7 are held, step 8 improves.
  tx = optax_greedy.greedy_lr(1.0, factor=0.5, patience=0, min_lr=0.5,
                              max_lr=1.0, smooth=False, reset_start=2,
                              cooldown=2)
  state = _observe(tx, [1.0, 2.0])
  assert float(state.next_learning_rate) == 0.5
  assert int(state.reset_counter) == 1
  state = _observe(tx, [3.0, 4.0, 5.0], state)
  assert float(state.next_learning_rate) == 1.0
  assert int(state.cooldown_counter) == 2
  assert float(state.best) == np.inf
  state = _observe(tx, [0.0, 0.0], state)
  assert float(state.best) == np.inf
  state = _observe(tx, [0.0], state)
  assert float(state.best) == 0.0


def test_defaults_bound_the_rate_relative_to_learning_rate():
  tx = optax_greedy.greedy_lr(1e-4, smooth=False, patience=0)
  up = _observe(tx, [-float(k) for k in range(200)])
  down = _observe(tx, [float(k) for k in range(200)])
  np.testing.assert_allclose(up.next_learning_rate, 1e-3, rtol=1e-5)
  np.testing.assert_allclose(down.next_learning_rate, 1e-6, rtol=1e-5)


def test_none_bounds_mean_unbounded():
  tx = optax_greedy.greedy_lr(1e-4, smooth=False, patience=0, min_lr=None,
                              max_lr=None, reset_start=1)
  up = _observe(tx, [-float(k) for k in range(100)])
  down = _observe(tx, [float(k) for k in range(100)])
  np.testing.assert_allclose(up.next_learning_rate, 1e-4 / 0.95**100,
                             rtol=1e-4)
  # One increase (the first value beats best=inf), then 99 decreases; no
  # lower bound: never at min_lr, so reset_start=1 never resets.
  np.testing.assert_allclose(down.next_learning_rate, 1e-4 * 0.95**98,
                             rtol=1e-4)


def test_default_bounds_read_as_what_they_mean():
  signature = inspect.signature(optax_greedy.greedy_lr)
  assert repr(signature.parameters["min_lr"].default) == "learning_rate / 100"
  assert repr(signature.parameters["max_lr"].default) == "10 * learning_rate"
  assert repr(signature.parameters["window_size"].default) == "50"


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
  assert float(poisoned.next_learning_rate) < float(clean.next_learning_rate)
  assert all(np.all(np.isfinite(np.asarray(leaf)))
             for leaf in jax.tree.leaves(poisoned)
             if jnp.issubdtype(leaf.dtype, jnp.floating))
  # Later finite values work as before: the window mean 1.5 beats best 2.5.
  after = _observe(tx, [1.0], state=poisoned)
  assert float(after.best) == pytest.approx((3.0 + 2.0 + 1.0) / 3)


def test_value_none_and_observe_false_keep_the_controller():
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False)
  params = {"w": jnp.ones(2)}
  state = _observe(tx, [1.0, 0.5])
  rate = float(state.next_learning_rate)
  updates, same = tx.update(params, state, params, value=None)
  np.testing.assert_allclose(updates["w"], -rate * np.ones(2), rtol=1e-6)
  expected = state._replace(learning_rate=state.next_learning_rate)
  jax.tree.map(np.testing.assert_array_equal, same, expected)
  step = jax.jit(functools.partial(tx.update, params=params))
  _, held = step(params, state, value=0.1, observe=jnp.asarray(False))
  _, moved = step(params, state, value=0.1, observe=jnp.asarray(True))
  jax.tree.map(np.testing.assert_array_equal, held, expected)
  assert int(moved.count) == int(state.count) + 1
  assert float(moved.next_learning_rate) > rate


def test_validation_loss_once_per_evaluation():
  # Observe only every 5th step; the steps between keep the rate.
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False)
  params = jnp.zeros(())
  state = tx.init(params)
  step = jax.jit(tx.update)
  rates = []
  for t in range(20):
    value = 10.0 - t if t % 5 == 4 else None
    _, state = step(params, state, params, value=value)
    rates.append(float(state.next_learning_rate))
  assert int(state.count) == 4
  assert len(set(rates[4:9])) == 1 and rates[4] > rates[3]


def test_noisy_scan_stays_within_bounds_and_converges():
  tx = optax_greedy.greedy_sgd(0.01)
  params = {"w": jnp.ones(3)}

  def loss_fn(params):
    return jnp.sum((params["w"] - 3.0) ** 2)

  def step(carry, key):
    params, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    noisy = loss + 0.1 * jax.random.normal(key)
    updates, state = tx.update(grads, state, params, value=noisy)
    rate = optax.tree.get(state, "learning_rate")
    return (optax.apply_updates(params, updates), state), rate

  keys = jax.random.split(jax.random.key(0), 5_000)
  (params, state), rates = jax.jit(
      lambda c: jax.lax.scan(step, c, keys))((params, tx.init(params)))
  assert int(optax.tree.get(state, "count")) == 5_000
  assert float(rates.min()) >= 1e-4 * (1 - 1e-5)
  assert float(rates.max()) <= 0.1 * (1 + 1e-5)
  np.testing.assert_allclose(params["w"], 3.0, atol=1e-2)


def test_vmap_over_initial_rates():
  def final_rate(lr):
    tx = optax_greedy.greedy_lr(lr, smooth=False, patience=0)
    return _observe(tx, [3.0, 2.0, 1.0]).next_learning_rate

  rates = jax.jit(jax.vmap(final_rate))(jnp.asarray([0.1, 0.01, 0.001]))
  # Three improvements with patience 0: three increases by 1 / 0.95.
  np.testing.assert_allclose(
      rates, np.array([0.1, 0.01, 0.001]) / 0.95**3, rtol=1e-5)


# --- Wrappers and inject_hyperparams -----------------------------------------


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w.__name__)
def test_wrappers_spell_out_every_greedy_lr_keyword(wrapper):
  params = inspect.signature(wrapper).parameters
  assert all(p.kind != p.VAR_KEYWORD for p in params.values())
  for name, param in inspect.signature(
      optax_greedy.greedy_lr).parameters.items():
    assert params[name].default is param.default, name
  with pytest.raises(TypeError, match=wrapper.__name__):
    wrapper(0.1, patiense=3)


def test_adam_eps_and_min_change_are_distinct():
  tx = optax_greedy.greedy_adam(1e-3, eps=1e-3, min_change=0.5, patience=0,
                                smooth=False)
  state = _observe(tx, [3.0, 2.0, 1.0])
  # Every change (about 5e-5) is below min_change: the rate stays.
  assert float(optax.tree.get(state, "next_learning_rate")) == pytest.approx(
      1e-3)
  with pytest.raises(ValueError, match="min_change"):
    optax_greedy.greedy_adam(1e-3, min_change=-1.0)
  with pytest.raises(ValueError, match="eps"):
    optax_greedy.greedy_adam(1e-3, eps=-1.0)


@pytest.mark.parametrize("make, name", [
    (lambda: optax_greedy.greedy_sgd(0.1, nesterov=True), "momentum"),
    (lambda: optax_greedy.greedy_sgd(0.1, momentum=0.0, nesterov=True),
     "momentum"),
    (lambda: optax_greedy.greedy_sgd(0.1, momentum=1.0), "momentum"),
    (lambda: optax_greedy.greedy_adam(1e-3, b1=1.0), "b1"),
    (lambda: optax_greedy.greedy_adam(1e-3, b2=-0.1), "b2"),
    (lambda: optax_greedy.greedy_adamw(1e-3, b1=1.5), "b1"),
    (lambda: optax_greedy.greedy_adamw(1e-3, weight_decay=-1.0),
     "weight_decay"),
    (lambda: optax_greedy.greedy_adam("1e-3"), "learning_rate"),
    (lambda: optax_greedy.greedy_sgd("0.1"), "learning_rate"),
    (lambda: optax_greedy.greedy_lr(0.1, factor="0.9"), "factor"),
    (lambda: optax_greedy.greedy_lr(0.1, min_lr="0"), "min_lr"),
    (lambda: optax_greedy.greedy_sgd(0.1, momentum="0.9"), "momentum"),
])
def test_wrappers_refuse_bad_input_naming_the_argument(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_string_rate_names_a_number():
  with pytest.raises(ValueError, match="learning_rate must be a number"):
    optax_greedy.greedy_adam("1e-3")


def _train_steps(tx, steps=5):
  params = {"w": jnp.linspace(-1.0, 1.0, 4), "b": jnp.ones(())}
  state = tx.init(params)

  @jax.jit
  def step(params, state, t):
    loss, grads = jax.value_and_grad(
        lambda p: jnp.sum((p["w"] - 3.0) ** 2) + p["b"] ** 2)(params)
    updates, state = tx.update(grads, state, params, value=loss + 0.0 * t)
    return optax.apply_updates(params, updates), state, updates

  all_updates = []
  for t in range(steps):
    params, state, updates = step(params, state, t)
    all_updates.append(updates)
  return all_updates, state


@pytest.mark.parametrize("make, kwargs", [
    (optax_greedy.greedy_sgd, dict(learning_rate=0.05)),
    (optax_greedy.greedy_sgd, dict(learning_rate=0.05, momentum=0.9)),
    (optax_greedy.greedy_adam, dict(learning_rate=1e-2)),
    (optax_greedy.greedy_adamw, dict(learning_rate=1e-2)),
], ids=["sgd", "momentum", "adam", "adamw"])
def test_inject_hyperparams_matches_the_plain_call(make, kwargs):
  kwargs = dict(kwargs, patience=0, smooth=False)
  plain_updates, plain = _train_steps(make(**kwargs))
  injected_updates, injected = _train_steps(
      optax.inject_hyperparams(make)(**kwargs))
  assert (jax.tree.structure(injected.inner_state)
          == jax.tree.structure(plain))
  # float32: Adam's traced b1, b2 round a little differently from constants.
  for a, b in zip(plain_updates, injected_updates):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4), a,
                 b)
  np.testing.assert_allclose(
      optax.tree.get(injected.inner_state, "learning_rate"),
      optax.tree.get(plain, "learning_rate"), rtol=1e-6)


def test_inject_hyperparams_with_the_default_window():
  tx = optax.inject_hyperparams(optax_greedy.greedy_adam)(learning_rate=1e-3)
  _, state = _train_steps(tx, steps=2)
  assert "window_size" not in state.hyperparams
  assert optax.tree.get(state.inner_state, "window").shape == (50,)


def test_traced_window_size_says_to_make_it_static():
  tx = optax.inject_hyperparams(optax_greedy.greedy_adam)(
      learning_rate=1e-3, window_size=10)
  with pytest.raises(ValueError, match="static_args"):
    tx.init({"w": jnp.ones(2)})
  tx = optax.inject_hyperparams(
      optax_greedy.greedy_adam, static_args=("window_size",))(
          learning_rate=1e-3, window_size=10)
  _, state = _train_steps(tx, steps=2)
  assert optax.tree.get(state.inner_state, "window").shape == (10,)


# --- Feeding the value -------------------------------------------------------


def test_missing_value_warns_once_and_explicit_none_is_silent():
  tx = optax_greedy.greedy_adam(1e-3)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  with pytest.warns(UserWarning, match="value=None") as record:
    jax.jit(tx.update)(params, state, params)
    tx.update(params, state, params)
  assert len(record) == 1
  # Attributed to the user's line, not to optax's or JAX's internals.
  assert record[0].filename == __file__
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    optax_greedy.greedy_adam(1e-3).update(params, state, params, value=None)
    optax_greedy.greedy_adam(1e-3).update(params, state, params, value=1.0)


@pytest.mark.parametrize("value", [jnp.ones(3), [1.0, 2.0], np.ones((1,))])
def test_vector_value_is_refused(value):
  tx = optax_greedy.greedy_lr(0.1)
  params = jnp.ones(2)
  with pytest.raises(ValueError, match="value must be a scalar loss"):
    tx.update(params, tx.init(params), params, value=value)


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
    (dict(min_change=-1e-8), "min_change"),
    (dict(min_lr=-1e-3), "min_lr"),
    (dict(max_lr=-1e-3), "max_lr"),
    (dict(min_lr=1.0, max_lr=0.1), "min_lr"),
    (dict(min_lr=5.0), "min_lr"),
    (dict(mode="minimum"), "mode"),
    (dict(threshold_mode="relative"), "threshold_mode"),
    (dict(window_size=0), "window_size"),
    (dict(window_size=2.5), "window_size"),
    (dict(reset_start=0), "reset_start"),
])
def test_invalid_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 0.1, **kwargs}
  with pytest.raises(ValueError, match=name):
    optax_greedy.greedy_lr(**kwargs)


def test_window_size_is_only_checked_with_smoothing():
  optax_greedy.greedy_lr(0.1, smooth=False, window_size=0)


def test_validation_feed_observes_every_k_steps_in_a_scan():
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False)
  params = jnp.zeros([])

  def step(state, t):
    # The "validation loss" falls with t: every observation improves.
    feed = optax_greedy.validation_feed(t, 5, lambda: 100.0 - t)
    _, state = tx.update(params, state, params, **feed)
    return state, (feed["value"], feed["observe"], state.next_learning_rate)

  state, (values, observed, rates) = jax.jit(
      lambda: jax.lax.scan(step, tx.init(params), jnp.arange(20)))()
  np.testing.assert_array_equal(np.flatnonzero(observed), [4, 9, 14, 19])
  np.testing.assert_array_equal(values[observed], [96.0, 91.0, 86.0, 81.0])
  assert int(state.count) == 4
  # The rate changes only at the evaluations: one increase each.
  changes = np.flatnonzero(np.diff(rates)) + 1
  np.testing.assert_array_equal(changes, [4, 9, 14, 19])
  np.testing.assert_allclose(rates[3], 0.1, rtol=1e-6)
  np.testing.assert_allclose(rates[4], 0.1 / 0.95, rtol=1e-6)
  np.testing.assert_allclose(rates[-1], 0.1 / 0.95**4, rtol=1e-5)


@pytest.mark.parametrize("every", [0, 2.5, True])
def test_validation_feed_needs_a_positive_int(every):
  with pytest.raises(ValueError, match="every"):
    optax_greedy.validation_feed(0, every, lambda: 1.0)


@pytest.mark.slow
def test_validation_feed_example_runs():
  path = pathlib.Path(__file__).parents[1] / "examples" / "validation_feed.py"
  spec = importlib.util.spec_from_file_location("validation_feed", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  results = module.main(["--steps", "60", "--every", "10", "--width", "16"])
  for losses, rates in results.values():
    assert all(np.isfinite(v) for v in losses.values())
    assert rates.shape == (60,)
  # The validation feed observed 6 times; its rate moved only then.
  _, rates = results["GreedyLR, validation feed"]
  assert set(np.flatnonzero(np.diff(rates)) + 1) <= {10, 20, 30, 40, 50}
