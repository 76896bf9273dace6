"""Hypergradient descent: reference conformance, the optax contract, math."""

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
             / "hypergradient_trajectories.json.gz")
GRANULARITIES = ("global", "per_tensor", "per_parameter",
                 {"w": "a", "b": "b"})
GRANULARITY_IDS = ("global", "per_tensor", "per_parameter", "groups")


def _reference_cases():
  with gzip.open(REFERENCE, "rt") as f:
    return json.load(f)["cases"]


def _reference_loss(problem, data):
  """The reference's objectives (see the reference README)."""
  if problem == "logreg":
    def loss(params):
      z = data["X"] @ params[0]
      return jnp.mean(jnp.logaddexp(0.0, z) - data["y"] * z)
  elif problem == "quadratic":
    def loss(params):
      x = params[0]
      return 0.5 * x @ data["Q"] @ x - data["b"] @ x
  else:
    assert problem == "linear_two_tensors", problem
    def loss(params):
      w, b = params
      return 0.5 * jnp.mean((data["X"] @ w + b - data["Y"]) ** 2)
  return loss


@functools.lru_cache(maxsize=None)
def _compiled_reference_run(problem, optimizer, with_momentum, nesterov,
                            eps_placement, steps):
  """One compiled run per kind of case; the numbers are traced arguments."""
  def run(data, params, lr, hypergrad_lr, momentum, b1, b2):
    if optimizer == "sgd_hd":
      tx = optax_greedy.hd_sgd(lr, hypergrad_lr,
                               momentum if with_momentum else 0.0, nesterov)
    else:
      tx = optax_greedy.hd_adam(lr, hypergrad_lr, b1, b2,
                                eps_placement=eps_placement)
    return _run(tx, _reference_loss(problem, data), params, steps)[1]
  return jax.jit(run)


def _learning_rate(state):
  return optax.tree.get(state, "learning_rate")


def _run(tx, loss, params, steps, rate_of=_learning_rate):
  """Losses before, rates and params after every step (one compiled scan)."""
  def step(carry, _):
    params, state = carry
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), (value, rate_of(state), params)

  return jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
      (params, tx.init(params)))


def _conformance_params():
  for case in _reference_cases():
    if case["optimizer"] == "sgd_hd":
      yield pytest.param(case, None, 1e-6, id=case["name"])
    else:
      yield pytest.param(case, "reference", 1e-6,
                         id=case["name"] + "-reference_eps")
      yield pytest.param(case, "optax", 2e-3, id=case["name"] + "-optax_eps")


@pytest.mark.parametrize("case, eps_placement, rtol",
                         list(_conformance_params()))
def test_matches_reference_trajectories(case, eps_placement, rtol):
  with jax.enable_x64(True):
    config = case["config"]
    momentum = config.get("momentum", 0.0)
    run = _compiled_reference_run(
        case["problem"], case["optimizer"], momentum != 0,
        config.get("nesterov", False), eps_placement,
        len(case["learning_rates"]))
    as_f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    losses, rates, trajectory = run(
        {k: as_f64(v) for k, v in case["data"].items()},
        [as_f64(p) for p in case["init"]],
        *map(as_f64, (config["lr"], config["hypergrad_lr"], momentum,
                      *config.get("betas", (0.9, 0.999)))))
    assert rates.dtype == jnp.float64
    np.testing.assert_allclose(rates, case["learning_rates"], rtol=rtol,
                               atol=0)
    np.testing.assert_allclose(losses, case["losses"], rtol=rtol, atol=1e-12)
    for k, leaf in enumerate(trajectory):
      expected = np.asarray([step[k] for step in case["params"]])
      np.testing.assert_allclose(leaf, expected, rtol=rtol, atol=1e-12)


# A problem with two leaves of different curvature, for everything else.
def _quadratic(params):
  return (jnp.sum((params["w"] - 3.0) ** 2)
          + 2.0 * jnp.sum((params["b"] - 3.0) ** 2))


def _params(dtype=jnp.float32):
  return {"w": jnp.zeros(3, dtype), "b": jnp.zeros((), dtype)}


def _train(tx, steps, **kwargs):
  (params, state), (losses, rates, _) = _run(tx, _quadratic, _params(), steps,
                                             **kwargs)
  return params, state, losses, rates


def _grads(seed, dtype=jnp.float32):
  w, b = np.random.default_rng(seed).normal(size=2)
  return {"w": jnp.asarray([w, -w, 2 * w], dtype), "b": jnp.asarray(b, dtype)}


def _vdot(a, b):
  return sum(float(jnp.vdot(x, y)) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------- the rule


def test_first_steps_by_hand():
  lr, beta = 0.1, 0.01
  g0, g1, g2 = _grads(0), _grads(1), _grads(2)
  params = _params()
  for granularity in GRANULARITIES:
    tx = optax_greedy.hd_sgd(lr, beta, granularity=granularity, min_lr=None)
    state = tx.init(params)
    updates, state = tx.update(g0, state, params)
    # d_{-1} = 0: the first step keeps the initial rate.
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -lr * g), updates,
                 g0)
    rate1 = {k: lr + beta * np.asarray(g1[k] * g0[k]) for k in g0}
    rate2 = {k: rate1[k] + beta * np.asarray(g2[k] * g1[k]) for k in g0}
    if granularity == "global":
      rate1 = lr + beta * _vdot(g1, g0)
      rate2 = rate1 + beta * _vdot(g2, g1)
      rates1, rates2 = {"w": rate1, "b": rate1}, {"w": rate2, "b": rate2}
    elif granularity == "per_parameter":
      rates1, rates2 = rate1, rate2
    else:  # One rate per leaf, whether from per_tensor or one label per leaf.
      rates1 = {k: lr + beta * float(jnp.vdot(g1[k], g0[k])) for k in g0}
      rates2 = {k: rates1[k] + beta * float(jnp.vdot(g2[k], g1[k]))
                for k in g0}
    for grads, expected in ((g1, rates1), (g2, rates2)):
      updates, state = tx.update(grads, state, params)
      for k in grads:
        np.testing.assert_allclose(
            updates[k], -np.asarray(expected[k]) * np.asarray(grads[k]),
            rtol=1e-5)
    rate = optax.tree.get(state, "learning_rate")
    if isinstance(granularity, dict):
      rate = {k: rate[label] for k, label in granularity.items()}
    elif granularity == "global":
      rate = {"w": rate, "b": rate}
    jax.tree.map(
        lambda r, e: np.testing.assert_allclose(r, e, rtol=1e-5), rate,
        {k: np.asarray(v, np.float32) for k, v in rates2.items()})


def test_multiplicative_rule_by_hand():
  lr, beta = 0.1, 0.5
  g0, g1 = _grads(0), _grads(1)
  params = _params()
  cos = _vdot(g1, g0) / np.sqrt(_vdot(g0, g0) * _vdot(g1, g1))
  tx = optax_greedy.hd_sgd(lr, beta, rule="multiplicative")
  state = tx.init(params)
  _, state = tx.update(g0, state, params)
  assert float(state.learning_rate) == pytest.approx(lr)
  _, state = tx.update(g1, state, params)
  assert float(state.learning_rate) == pytest.approx(lr * (1 + beta * cos),
                                                     rel=1e-5)
  # Per parameter, the cosine of one coordinate is the sign of g1 * g0.
  tx = optax_greedy.hd_sgd(lr, beta, rule="multiplicative",
                           granularity="per_parameter")
  state = tx.init(params)
  _, state = tx.update(g0, state, params)
  _, state = tx.update(g1, state, params)
  for k in g0:
    np.testing.assert_allclose(
        state.learning_rate[k],
        lr * (1 + beta * np.sign(np.asarray(g1[k] * g0[k]))), rtol=1e-6)


def test_multiplicative_rule_ignores_the_gradient_scale():
  # Adam with eps=0 moves the same way for loss and 1000 * loss; the cosine
  # is scale-free, so the multiplicative rates agree too. The additive
  # hypergradient g . d scales with the loss, so its rates differ.
  def rates_for(scale, rule):
    tx = optax_greedy.hd_adam(0.05, 0.1, eps=0.0, rule=rule)
    _, (_, rates, _) = _run(tx, lambda p: scale * _quadratic(p), _params(),
                            30)
    return np.asarray(rates)
  np.testing.assert_allclose(rates_for(1e3, "multiplicative"),
                             rates_for(1.0, "multiplicative"), rtol=1e-4)
  assert not np.allclose(rates_for(1e3, "additive"),
                         rates_for(1.0, "additive"), rtol=1e-2)


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False),
                                                (0.9, True)])
def test_zero_hypergrad_lr_is_sgd(momentum, nesterov):
  grads = [_grads(k) for k in range(5)]
  params = _params()
  plain = optax.sgd(0.1, momentum=momentum or None, nesterov=nesterov)
  tx = optax_greedy.hd_sgd(0.1, 0.0, momentum, nesterov)
  s_plain, s_hd = plain.init(params), tx.init(params)
  for g in grads:
    expected, s_plain = plain.update(g, s_plain, params)
    got, s_hd = tx.update(g, s_hd, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 got, expected)


def test_zero_hypergrad_lr_is_optax_adam():
  params = _params()
  plain, tx = optax.adam(0.1), optax_greedy.hd_adam(0.1, 0.0)
  s_plain, s_hd = plain.init(params), tx.init(params)
  for k in range(5):
    expected, s_plain = plain.update(_grads(k), s_plain, params)
    got, s_hd = tx.update(_grads(k), s_hd, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 got, expected)


def _rates_over(tx, loss, params, steps=40):
  return _run(tx, loss, params, steps)[1][1]


def test_granularities_agree_where_they_coincide():
  lr, beta = 0.05, 0.01
  # One scalar parameter: one rate whatever the granularity.
  scalar_loss = lambda p: jnp.cosh(p - 2.0) + 0.1 * p ** 3  # noqa: E731
  x = jnp.asarray(0.5)
  expected = _rates_over(optax_greedy.hd_sgd(lr, beta), scalar_loss, x)
  for granularity in ("per_tensor", "per_parameter", lambda p: "all"):
    got = _rates_over(optax_greedy.hd_sgd(lr, beta, granularity=granularity),
                      scalar_loss, x)
    got = got["all"] if isinstance(got, dict) else got
    np.testing.assert_allclose(got, expected, rtol=1e-6)
  # One leaf: per_tensor is global.
  vec_loss = lambda p: jnp.sum(jnp.cosh(p - jnp.arange(3.0)))  # noqa: E731
  v = jnp.zeros(3)
  np.testing.assert_allclose(
      _rates_over(optax_greedy.hd_sgd(lr, beta, granularity="per_tensor"),
                  vec_loss, v),
      _rates_over(optax_greedy.hd_sgd(lr, beta), vec_loss, v), rtol=1e-6)
  # One label for every leaf (a prefix, a full tree, a callable) is global.
  expected = _rates_over(optax_greedy.hd_sgd(lr, beta), _quadratic, _params())
  # (A callable may return a prefix: here the root, "one".)
  for labels in ({"w": "one", "b": "one"}, lambda p: "one"):
    tx = optax_greedy.hd_sgd(lr, beta, granularity=labels)
    np.testing.assert_allclose(
        _rates_over(tx, _quadratic, _params())["one"], expected, rtol=1e-6)
  # One label per leaf is per_tensor.
  per_leaf = _rates_over(optax_greedy.hd_sgd(
      lr, beta, granularity={"w": "w", "b": "b"}), _quadratic, _params())
  per_tensor = _rates_over(optax_greedy.hd_sgd(
      lr, beta, granularity="per_tensor"), _quadratic, _params())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               per_leaf, per_tensor)


# ------------------------------------------------------ bounds and guards


def test_min_lr_keeps_the_rate_non_negative():
  # Too large a rate on a stiff quadratic: every step overshoots, g . d < 0
  # and the additive rule drives the rate down through zero.
  def run(**kwargs):
    tx = optax_greedy.hd_sgd(1.2, 0.05, **kwargs)
    return np.asarray(_train(tx, 60)[3])
  unbounded = run(min_lr=None)
  assert unbounded.min() < 0  # The reference's rule.
  bounded = run()
  assert bounded.min() >= 0
  capped = run(min_lr=0.1, max_lr=1.3)
  assert capped.min() >= 0.1 and capped.max() <= 1.3


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_never_poisons_the_rate(granularity, bad):
  lr, beta = 0.1, 0.01
  params = _params()
  tx = optax_greedy.hd_sgd(lr, beta, granularity=granularity)
  state = tx.init(params)
  poisoned = {"w": jnp.asarray([1.0, bad, 1.0]), "b": jnp.asarray(0.5)}
  rates = []
  for grads in [_grads(0), _grads(1), poisoned, _grads(3), _grads(4)]:
    _, state = tx.update(grads, state, params)
    rates.append(optax.tree.get(state, "learning_rate"))
  for rate in rates:
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(rate))
  # The poisoned step and the next one (whose d_{t-1} is poisoned) keep the
  # rates that saw the bad coordinate; the one after adapts again.
  if granularity == "per_parameter":
    assert float(rates[2]["w"][1]) == float(rates[1]["w"][1])
    assert float(rates[3]["w"][1]) == float(rates[1]["w"][1])
    assert float(rates[2]["w"][0]) != float(rates[1]["w"][0])
    assert float(rates[2]["b"]) != float(rates[1]["b"])
  else:
    w_rate = lambda r: (r if granularity == "global" else r["w"] if  # noqa
                        granularity == "per_tensor" else r["a"])
    assert float(w_rate(rates[2])) == float(w_rate(rates[1]))
    assert float(w_rate(rates[3])) == float(w_rate(rates[1]))
    expected = float(w_rate(rates[3])) + beta * (
        _vdot(_grads(4), _grads(3)) if granularity == "global"
        else float(jnp.vdot(_grads(4)["w"], _grads(3)["w"])))
    assert float(w_rate(rates[4])) == pytest.approx(expected, rel=1e-5)


def test_non_finite_gradient_with_momentum_freezes_the_rate():
  params = _params()
  tx = optax_greedy.hd_sgd(0.1, 0.01, momentum=0.9)
  state = tx.init(params)
  for k in range(3):
    _, state = tx.update(_grads(k), state, params)
  before = float(state.learning_rate)
  _, state = tx.update(jax.tree.map(lambda g: g * np.nan, _grads(3)), state,
                       params)
  for k in range(4, 8):  # The trace is NaN for good: the rate stays put.
    _, state = tx.update(_grads(k), state, params)
  assert float(state.learning_rate) == before


def test_apply_if_finite_skips_the_whole_step():
  params = _params()
  tx = optax.apply_if_finite(optax_greedy.hd_adam(0.1, 1e-3), 3)
  clean = optax_greedy.hd_adam(0.1, 1e-3)
  state, clean_state = tx.init(params), clean.init(params)
  update, clean_update = jax.jit(tx.update), jax.jit(clean.update)
  bad = jax.tree.map(lambda g: g * np.inf, _grads(0))
  for k, grads in enumerate([_grads(0), bad, _grads(1), _grads(2)]):
    updates, state = update(grads, state, params)
    if k != 1:
      expected, clean_state = clean_update(grads, clean_state, params)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                   updates, expected)
  np.testing.assert_allclose(optax.tree.get(state, "learning_rate"),
                             clean_state.learning_rate, rtol=1e-6)


# -------------------------------------------------------- optax contract


def test_exactly_one_learning_rate_in_state():
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax_greedy.hd_adam(1e-3, 1e-7))
  state = tx.init(_params())
  assert len(optax.tree.get_all_with_path(state, "learning_rate")) == 1
  assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-3)


def test_direction_with_a_learning_rate_is_refused():
  tx = optax_greedy.hypergradient(
      optax.inject_hyperparams(optax.sgd)(learning_rate=1.0), 0.1, 1e-3)
  with pytest.raises(ValueError, match="direction"):
    tx.init(_params())


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
def test_jit_does_not_recompile(granularity):
  traces = []
  tx = optax_greedy.hd_adam(1e-2, 1e-4, granularity=granularity)

  @jax.jit
  def step(params, state):
    traces.append(None)
    grads = jax.grad(_quadratic)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = _params()
  state = tx.init(params)
  for _ in range(3):
    params, state = step(params, state)
  assert len(traces) == 1


def test_scan_many_steps():
  tx = optax_greedy.hd_sgd(0.01, 1e-3, momentum=0.9,
                           granularity="per_parameter")
  params = _params()

  def step(carry, key):
    params, state = carry
    grads = jax.grad(_quadratic)(params)
    noise = jax.random.normal(key, (4,))
    grads = {"w": grads["w"] + 0.1 * noise[:3],
             "b": grads["b"] + 0.1 * noise[3]}
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), state.learning_rate

  keys = jax.random.split(jax.random.key(0), 2_000)
  (params, _), rates = jax.jit(lambda c: jax.lax.scan(step, c, keys))(
      (params, tx.init(params)))
  for leaf in jax.tree.leaves(rates):
    assert np.all(np.isfinite(leaf)) and np.all(leaf >= 0)
  for leaf in jax.tree.leaves(params):
    np.testing.assert_allclose(leaf, 3.0, atol=0.1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_dtypes_are_kept(dtype):
  with jax.enable_x64(dtype == "float64"):
    params = _params(jnp.dtype(dtype))
    grads = _grads(0, jnp.dtype(dtype))
    rate_dtype = jnp.float64 if dtype == "float64" else jnp.float32
    cases = [(optax_greedy.hd_sgd, g) for g in GRANULARITIES]
    for make, granularity in cases + [(optax_greedy.hd_adam, "per_parameter")]:
      tx = make(0.1, 1e-3, granularity=granularity)
      state = tx.init(params)
      update = lambda g, s: tx.update(g, s, params)  # noqa: B023,E731
      twice = jax.jit(lambda g, s: update(g, update(g, s)[1]))  # noqa: B023
      updates, new_state = twice(grads, state)
      for leaf in jax.tree.leaves(updates):
        assert leaf.dtype == jnp.dtype(dtype)
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
      for leaf in jax.tree.leaves(new_state.learning_rate):
        assert leaf.dtype == rate_dtype
      for leaf in jax.tree.leaves(new_state.prev_direction):
        assert leaf.dtype == jnp.dtype(dtype)
      # Fixed structure and dtypes: lax.cond accepts both arms.
      jax.eval_shape(lambda s: jax.lax.cond(  # noqa: B023
          True, lambda s: update(grads, s)[1], lambda s: s, s), state)
      jax.tree.map(lambda a, b: a.dtype == b.dtype or pytest.fail(
          f"{a.dtype} != {b.dtype}"), state, new_state)


def test_rate_dtype_override():
  params = _params(jnp.bfloat16)
  tx = optax_greedy.hd_sgd(0.1, 1e-3, granularity="per_parameter",
                           rate_dtype=jnp.bfloat16)
  state = tx.init(params)
  updates, state = tx.update(_grads(0, jnp.bfloat16), state, params)
  assert all(leaf.dtype == jnp.bfloat16
             for leaf in jax.tree.leaves((state.learning_rate, updates)))


_DIRECTIONS = {
    "identity": (optax.identity, 0.05, 1e-3),
    "trace": (lambda: optax.trace(0.9), 0.01, 1e-4),
    "nesterov": (lambda: optax.trace(0.9, nesterov=True), 0.01, 1e-4),
    "adam": (optax.scale_by_adam, 0.05, 1e-3),
    "lion": (optax.scale_by_lion, 0.05, 1e-2),
}


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
@pytest.mark.parametrize("name", list(_DIRECTIONS))
def test_converges_on_quadratic(name, granularity):
  make, lr, beta = _DIRECTIONS[name]
  tx = optax_greedy.hypergradient(make(), lr, beta, granularity=granularity)
  params, _, losses, _ = _train(tx, 400)
  assert float(losses[-1]) < 1e-4 * float(losses[0])
  for leaf in jax.tree.leaves(params):
    np.testing.assert_allclose(leaf, 3.0, atol=2e-2)


@pytest.mark.parametrize("name", ["identity", "adam", "lion"])
def test_multiplicative_converges_on_quadratic(name):
  make, lr, _ = _DIRECTIONS[name]
  tx = optax_greedy.hypergradient(make(), lr, 0.05, rule="multiplicative")
  params, _, losses, _ = _train(tx, 400)
  assert float(losses[-1]) < 1e-4 * float(losses[0])


def test_inside_multisteps():
  tx = optax.MultiSteps(optax_greedy.hd_sgd(0.05, 1e-3), every_k_schedule=2)
  _, state, losses, _ = _train(tx, 400)
  assert float(losses[-1]) < 1e-4 * float(losses[0])
  assert float(optax.tree.get(state, "learning_rate")) != 0.05


def test_inside_inject_hyperparams():
  tx = optax.inject_hyperparams(optax_greedy.hd_sgd)(
      learning_rate=0.05, hypergrad_lr=optax.linear_schedule(1e-3, 0.0, 100),
      momentum=0.5, granularity="per_tensor")
  params = _params()
  state = tx.init(params)
  _, state = jax.jit(tx.update)(_grads(0), state, params)
  assert float(state.hyperparams["hypergrad_lr"]) == pytest.approx(1e-3)
  # optax.tree.get would also find the hyperparameter "learning_rate".
  _, _, losses, rates = _train(
      tx, 300, rate_of=lambda s: s.inner_state.learning_rate)
  assert float(losses[-1]) < 1e-4 * float(losses[0])
  # beta reaches zero at update 100 (count 100): the rates freeze there.
  for leaf in jax.tree.leaves(rates):
    assert float(leaf[99]) != float(leaf[0])
    np.testing.assert_array_equal(leaf[100:], leaf[99])


def test_inside_partition():
  tx = optax.partition(
      {"hd": optax_greedy.hd_adam(0.05, 1e-3, granularity="per_tensor"),
       "frozen": optax.set_to_zero()},
      {"w": "hd", "b": "frozen"})
  params, _, _, _ = _train(tx, 400)
  np.testing.assert_allclose(params["w"], 3.0, atol=2e-2)
  assert float(params["b"]) == 0.0


def test_groups_inside_partition():
  tx = optax.partition(
      {"hd": optax_greedy.hd_sgd(0.05, 1e-3, granularity={"w": "x", "b": "y"}),
       "plain": optax.sgd(0.05)},
      {"w": "hd", "b": "plain"})
  params, state, _, _ = _train(tx, 400)
  for leaf in jax.tree.leaves(params):
    np.testing.assert_allclose(leaf, 3.0, atol=2e-2)
  assert set(optax.tree.get(state, "learning_rate")) == {"x"}


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, name", [
    (dict(hypergrad_lr=-1e-3), "hypergrad_lr"),
    (dict(learning_rate=-0.1), "learning_rate"),
    (dict(granularity="per_layer"), "granularity"),
    (dict(granularity=None), "granularity"),
    (dict(granularity=3), "granularity"),
    (dict(min_lr=0.5, max_lr=0.1), "min_lr"),
    (dict(learning_rate=1.0, max_lr=0.5), "learning_rate"),
    (dict(rule="exponential"), "rule"),
    (dict(rule="multiplicative", hypergrad_lr=1.0), "hypergrad_lr"),
    (dict(rule="multiplicative", learning_rate=0.0), "learning_rate"),
])
def test_invalid_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 0.1, "hypergrad_lr": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    optax_greedy.hypergradient(optax.identity(), **kwargs)


@pytest.mark.parametrize("make, kwargs, name", [
    (optax_greedy.hd_sgd, dict(momentum=-0.5), "momentum"),
    (optax_greedy.hd_sgd, dict(nesterov=True), "nesterov"),
    (optax_greedy.hd_sgd, dict(hypergrad_lr=-1.0), "hypergrad_lr"),
    (optax_greedy.hd_adam, dict(b1=1.0), "b1"),
    (optax_greedy.hd_adam, dict(b2=-0.1), "b2"),
    (optax_greedy.hd_adam, dict(eps=-1e-8), "eps"),
    (optax_greedy.hd_adam, dict(eps_placement="torch"), "eps_placement"),
    (optax_greedy.hd_adam, dict(granularity="layer"), "granularity"),
])
def test_invalid_alias_hyperparameters_raise(make, kwargs, name):
  kwargs = {"learning_rate": 0.1, "hypergrad_lr": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    make(**kwargs)


def test_zero_initial_rate_is_allowed_and_grows():
  tx = optax_greedy.hd_sgd(0.0, 1e-3)
  _, _, losses, rates = _train(tx, 300)
  assert float(rates[1]) > 0
  assert float(losses[-1]) < 1e-4 * float(losses[0])
