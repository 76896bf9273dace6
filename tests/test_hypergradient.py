"""Hypergradient descent: reference conformance and HD-specific semantics.

The optax contract (jit, dtypes, lax.cond, MultiSteps, inject_hyperparams,
sharding, checkpoints) is checked for every transform in test_contract.py.
"""

import functools
import gzip
import json
import pathlib
import re

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
      tx = optax_greedy.hd_sgd(
          lr, hypergrad_lr=hypergrad_lr,
          momentum=momentum if with_momentum else None, nesterov=nesterov,
          rule="additive")
    else:
      tx = optax_greedy.hd_adam(
          lr, hypergrad_lr=hypergrad_lr, b1=b1, b2=b2,
          eps_placement=eps_placement, rule="additive")
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


def _per_leaf(rate, params):
  """A rate (a scalar or a dict like the params) as one value per entry."""
  return {k: np.broadcast_to(rate[k] if isinstance(rate, dict) else rate,
                             np.shape(p)) for k, p in params.items()}


# ---------------------------------------------------------------- the rule


def test_first_steps_by_hand():
  lr, beta = 0.1, 0.01
  g0, g1, g2 = _grads(0), _grads(1), _grads(2)
  params = _params()
  for granularity in GRANULARITIES:
    tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, granularity=granularity, min_lr=None,
                             rule="additive")
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
    jax.tree.map(
        lambda r, e: np.testing.assert_allclose(r, e, rtol=1e-5),
        _per_leaf(optax.tree.get(state, "learning_rate"), params),
        {k: np.broadcast_to(np.asarray(v, np.float32), np.shape(params[k]))
         for k, v in rates2.items()})


def test_groups_share_one_rate_over_their_leaves():
  # Two leaves in one group: one hypergradient summed over both, one value
  # stored in each leaf's entry.
  lr, beta = 0.1, 0.01
  params = {"w": jnp.zeros(3), "b": jnp.zeros(()), "c": jnp.zeros(2)}
  grads = [{"w": _grads(k)["w"], "b": _grads(k)["b"],
            "c": jnp.asarray([1.0, -2.0]) * (k + 1)} for k in range(3)]
  tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, rule="additive",
                           granularity={"w": "x", "b": "x", "c": "y"})
  state = tx.init(params)
  for g in grads:
    _, state = tx.update(g, state, params)
  rate = optax.tree.get(state, "learning_rate")
  assert jax.tree.structure(rate) == jax.tree.structure(params)
  x = lr + beta * sum(
      float(jnp.vdot(grads[k + 1][n], grads[k][n]))
      for k in range(2) for n in ("w", "b"))
  y = lr + beta * sum(float(jnp.vdot(grads[k + 1]["c"], grads[k]["c"]))
                      for k in range(2))
  np.testing.assert_allclose([rate["w"], rate["b"], rate["c"]], [x, x, y],
                             rtol=1e-6)
  assert float(rate["w"]) == float(rate["b"])


def test_multiplicative_rule_by_hand():
  lr, beta = 0.1, 0.5
  g0, g1 = _grads(0), _grads(1)
  params = _params()
  cos = _vdot(g1, g0) / np.sqrt(_vdot(g0, g0) * _vdot(g1, g1))
  tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, rule="multiplicative")
  state = tx.init(params)
  _, state = tx.update(g0, state, params)
  assert float(state.learning_rate) == pytest.approx(lr)
  _, state = tx.update(g1, state, params)
  assert float(state.learning_rate) == pytest.approx(lr * (1 + beta * cos),
                                                     rel=1e-5)
  # Per parameter, the cosine of one coordinate is the sign of g1 * g0.
  tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, rule="multiplicative",
                           granularity="per_parameter")
  state = tx.init(params)
  _, state = tx.update(g0, state, params)
  _, state = tx.update(g1, state, params)
  for k in g0:
    np.testing.assert_allclose(
        state.learning_rate[k],
        lr * (1 + beta * np.sign(np.asarray(g1[k] * g0[k]))), rtol=1e-6)


# Leaf shapes for each way a leaf's sums are taken: blocks of 8 rows of
# 128, 2 and 1 lanes, and sizes that are not a multiple of 8.
SUMMATION_SHAPES = {"lanes_128": (64, 32), "lanes_2": (2000, 3),
                    "lanes_1": (3, 3, 5, 8), "odd": (33, 31), "vector": (7,)}


@pytest.mark.parametrize("granularity", ["global", "per_tensor"])
def test_multiplicative_rule_by_hand_on_every_leaf_shape(granularity):
  """The cosine in float64 NumPy against the compiled rule's, on leaves
  that take every summation path."""
  lr, beta = 0.1, 0.5
  rng = np.random.default_rng(0)
  params = {k: jnp.zeros(s) for k, s in SUMMATION_SHAPES.items()}
  g0, g1 = ({k: rng.normal(size=s).astype(np.float32)
             for k, s in SUMMATION_SHAPES.items()} for _ in range(2))

  def cosine(keys):
    a, b = (np.concatenate([np.float64(g[k]).ravel() for k in keys])
            for g in (g1, g0))
    return a @ b / np.sqrt((a @ a) * (b @ b))

  tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, rule="multiplicative",
                           granularity=granularity)
  update = jax.jit(tx.update)
  state = tx.init(params)
  _, state = update(g0, state, params)
  _, state = update(g1, state, params)
  if granularity == "global":
    expected = {k: lr * (1 + beta * cosine(list(params))) for k in params}
  else:
    expected = {k: lr * (1 + beta * cosine([k])) for k in params}
  got = _per_leaf(state.learning_rate, {k: 0.0 for k in params})
  for k in params:
    assert float(got[k]) == pytest.approx(expected[k], rel=1e-6), k


def test_inner_state_is_optax_adams():
  """Around Adam the moments are optax.scale_by_adam's, to the last place,
  with signed zeros, huge and tiny gradients (the hypergradient only orders
  the direction's update after the new rates)."""
  params = {k: jnp.zeros(s) for k, s in SUMMATION_SHAPES.items()}
  rng = np.random.default_rng(1)

  def grads(k):
    g = {name: rng.normal(size=s).astype(np.float32) * 10.0 ** (3 * k - 6)
         for name, s in SUMMATION_SHAPES.items()}
    g["odd"][0, :4] = [0.0, -0.0, 3e38, -1e-38]
    return g

  hd, plain = optax_greedy.hd_adam(1e-3), optax.scale_by_adam()
  hd_update, plain_update = jax.jit(hd.update), jax.jit(plain.update)
  s_hd, s_plain = hd.init(params), plain.init(params)
  for k in range(5):
    g = grads(k)
    _, s_hd = hd_update(g, s_hd, params)
    _, s_plain = plain_update(g, s_plain, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-7),
                 s_hd.inner_state, s_plain)


def test_default_rule_is_multiplicative_with_the_documented_beta():
  cases = [(optax_greedy.hd_sgd, "global", 0.05),
           (optax_greedy.hd_adam, "per_tensor", 0.05),
           (optax_greedy.hd_sgd, "per_parameter", 0.01)]
  for make, granularity, beta in cases:
    rates = _train(make(0.05, granularity=granularity), 30)[3]
    explicit = _train(make(0.05, hypergrad_lr=beta, granularity=granularity,
                           rule="multiplicative"), 30)[3]
    jax.tree.map(np.testing.assert_array_equal, rates, explicit)
  # The paper's rule is one argument away, with the paper's beta.
  for make, beta in ((optax_greedy.hd_sgd, 1e-3), (optax_greedy.hd_adam,
                                                    1e-7)):
    np.testing.assert_array_equal(
        _train(make(0.05, rule="additive"), 30)[3],
        _train(make(0.05, hypergrad_lr=beta, rule="additive"), 30)[3])
  with pytest.raises(ValueError, match="hypergrad_lr"):
    optax_greedy.hypergradient(optax.identity(), 0.1, rule="additive")


def test_multiplicative_rule_ignores_the_gradient_scale():
  # Adam with eps=0 moves the same way for loss and 1000 * loss; the cosine
  # is scale-free, so the multiplicative rates agree too. The additive
  # hypergradient g . d scales with the loss, so its rates differ.
  def rates_for(scale, rule):
    tx = optax_greedy.hd_adam(0.05, hypergrad_lr=0.1, eps=0.0, rule=rule)
    _, (_, rates, _) = _run(tx, lambda p: scale * _quadratic(p), _params(),
                            30)
    return np.asarray(rates)
  np.testing.assert_allclose(rates_for(1e3, "multiplicative"),
                             rates_for(1.0, "multiplicative"), rtol=1e-4)
  assert not np.allclose(rates_for(1e3, "additive"),
                         rates_for(1.0, "additive"), rtol=1e-2)


@pytest.mark.parametrize("momentum, nesterov", [(None, False), (0.9, False),
                                                (0.9, True)])
def test_zero_hypergrad_lr_is_sgd(momentum, nesterov):
  grads = [_grads(k) for k in range(5)]
  params = _params()
  plain = optax.sgd(0.1, momentum=momentum, nesterov=nesterov)
  tx = optax_greedy.hd_sgd(0.1, hypergrad_lr=0.0, momentum=momentum,
                           nesterov=nesterov)
  s_plain, s_hd = plain.init(params), tx.init(params)
  for g in grads:
    expected, s_plain = plain.update(g, s_plain, params)
    got, s_hd = tx.update(g, s_hd, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 got, expected)


def test_zero_hypergrad_lr_is_optax_adam():
  params = _params()
  plain, tx = optax.adam(0.1), optax_greedy.hd_adam(0.1, hypergrad_lr=0.0)
  s_plain, s_hd = plain.init(params), tx.init(params)
  for k in range(5):
    expected, s_plain = plain.update(_grads(k), s_plain, params)
    got, s_hd = tx.update(_grads(k), s_hd, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 got, expected)
  # Adam's own state: optax.scale_by_adam's, nothing else params-sized.
  assert jax.tree.structure(s_hd.inner_state) == jax.tree.structure(
      s_plain[0])


def _rates_over(tx, loss, params, steps=40):
  return _run(tx, loss, params, steps)[1][1]


def test_granularities_agree_where_they_coincide():
  lr, beta = 0.05, 0.01
  # One scalar parameter: one rate whatever the granularity.
  scalar_loss = lambda p: jnp.cosh(p - 2.0) + 0.1 * p ** 3  # noqa: E731
  x = jnp.asarray(0.5)
  for rule in ("additive", "multiplicative"):
    hd = functools.partial(optax_greedy.hd_sgd, lr, hypergrad_lr=beta,
                           rule=rule)
    expected = _rates_over(hd(), scalar_loss, x)
    for granularity in ("per_tensor", "per_parameter", lambda p: "all"):
      got = _rates_over(hd(granularity=granularity), scalar_loss, x)
      np.testing.assert_allclose(got, expected, rtol=1e-6)
  hd = functools.partial(optax_greedy.hd_sgd, lr, hypergrad_lr=beta,
                         rule="additive")
  # One leaf: per_tensor is global.
  vec_loss = lambda p: jnp.sum(jnp.cosh(p - jnp.arange(3.0)))  # noqa: E731
  v = jnp.zeros(3)
  np.testing.assert_allclose(
      _rates_over(hd(granularity="per_tensor"), vec_loss, v),
      _rates_over(hd(), vec_loss, v), rtol=1e-6)
  # One label for every leaf (a prefix, a full tree, a callable) is global.
  expected = _rates_over(hd(), _quadratic, _params())
  for labels in ({"w": "one", "b": "one"}, lambda p: "one"):
    got = _rates_over(hd(granularity=labels), _quadratic, _params())
    for leaf in jax.tree.leaves(got):
      np.testing.assert_allclose(leaf, expected, rtol=1e-6)
  # One label per leaf is per_tensor.
  per_leaf = _rates_over(hd(granularity={"w": "w", "b": "b"}), _quadratic,
                         _params())
  per_tensor = _rates_over(hd(granularity="per_tensor"), _quadratic,
                           _params())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               per_leaf, per_tensor)


# ------------------------------------------- recomputing d_{t-1} (memory)


def _params_sized(state, params):
  n = sum(p.size for p in jax.tree.leaves(params))
  return sum(leaf.size for leaf in jax.tree.leaves(state)) // n


@pytest.mark.parametrize("rule, beta", [("additive", 1e-2),
                                        ("multiplicative", 0.1)])
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
@pytest.mark.parametrize("name", ["adam", "momentum", "nesterov"])
def test_recomputed_previous_direction_matches_the_stored_one(
    name, granularity, rule, beta):
  # hd_adam and hd_sgd(momentum) recompute d_{t-1} from the moments; the
  # generic transform stores it. Both give the same rates and updates.
  kwargs = dict(granularity=granularity, rule=rule)
  if name == "adam":
    recomputed = optax_greedy.hd_adam(0.05, hypergrad_lr=beta, **kwargs)
    stored = optax_greedy.hypergradient(optax.scale_by_adam(), 0.05,
                                        hypergrad_lr=beta, **kwargs)
    extra = 2  # mu and nu, nothing else
  else:
    nesterov = name == "nesterov"
    recomputed = optax_greedy.hd_sgd(0.05, hypergrad_lr=beta, momentum=0.9,
                                     nesterov=nesterov, **kwargs)
    stored = optax_greedy.hypergradient(optax.trace(0.9, nesterov=nesterov),
                                        0.05, hypergrad_lr=beta, **kwargs)
    extra = 2 if nesterov else 1  # (a copy of d_{t-1} and) the trace
  params = _params()
  s_re = recomputed.init(params)
  assert (s_re.prev_direction is None) == (name != "nesterov")
  # The rates: the one applied and the next one, params-sized per parameter.
  rates = (s_re.learning_rate, s_re.next_learning_rate)
  assert _params_sized(
      s_re._replace(learning_rate=None, next_learning_rate=None),
      params) == extra
  if granularity == "global":
    per_rate = 1
  elif granularity == "per_parameter":
    per_rate = sum(p.size for p in jax.tree.leaves(params))
  else:  # One scalar per leaf.
    per_rate = len(jax.tree.leaves(params))
  assert sum(r.size for r in jax.tree.leaves(rates)) == 2 * per_rate
  grads = jax.tree.map(lambda *g: jnp.stack(g), *[_grads(k) for k in range(8)])

  def run(tx):
    def step(state, g):
      updates, state = tx.update(g, state, params)
      return state, (updates, state.learning_rate)
    return jax.jit(lambda s: jax.lax.scan(step, s, grads)[1])(
        tx.init(params))

  # Equal up to float32 rounding (the recomputation orders its operations
  # for speed).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5),
               run(recomputed), run(stored))


def _params_sized_copies(tx, shape=(256, 256)):
  """How many copies of a params-sized array the compiled program of four
  ``update`` + ``apply_updates`` steps under ``lax.scan`` makes."""
  params = {"w": jnp.zeros(shape), "b": jnp.zeros(shape[-1:])}
  grads = jax.tree.map(lambda p: jnp.ones((4,) + p.shape), params)

  def run(params, state, grads):
    def step(carry, g):
      p, s = carry
      updates, s = tx.update(g, s, p)
      return (optax.apply_updates(p, updates), s), None
    return jax.lax.scan(step, (params, state), grads)[0]

  hlo = jax.jit(run).lower(params, tx.init(params), grads).compile()
  dims = ",".join(map(str, shape))
  return len(re.findall(rf"= f32\[{dims}\]\{{[0-9,]*\}} copy\(",
                        hlo.as_text()))


# Momentum per parameter is the documented exception: XLA recomputes those
# rates inside each kernel that reads them, and copies the trace and rates.
@pytest.mark.parametrize("name, granularity", [
    ("adam", "global"), ("adam", "per_tensor"), ("adam", "per_parameter"),
    ("adam", GRANULARITIES[-1]), ("momentum", "global"),
    ("momentum", "per_tensor"), ("momentum", GRANULARITIES[-1])],
                         ids=lambda x: x if isinstance(x, str) else "groups")
def test_state_is_updated_in_place_as_the_directions_own(name, granularity):
  """The hypergradient reads the direction's old state (d_{t-1}); the state
  is still updated in place in a training loop: the compiled loop copies no
  more params-sized arrays than the plain optimizer's, plus the carried
  per-parameter rates (two arrays since 0.2.0, the one applied and the next
  one: at most four copies)."""
  if name == "adam":
    hd = optax_greedy.hd_adam(1e-3, granularity=granularity)
    plain = optax.adam(1e-3)
  else:
    hd = optax_greedy.hd_sgd(1e-3, momentum=0.9, granularity=granularity)
    plain = optax.sgd(1e-3, momentum=0.9)
  extra = 4 if granularity == "per_parameter" else 0
  assert _params_sized_copies(hd) <= _params_sized_copies(plain) + extra


def test_sgd_without_momentum_stores_the_previous_gradient():
  params = _params()
  tx = optax_greedy.hd_sgd(0.1)
  state = tx.init(params)
  _, state = tx.update(_grads(0), state, params)
  jax.tree.map(np.testing.assert_array_equal, state.prev_direction,
               _grads(0))


# --------------------------------------------- the learning_rate field


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
def test_learning_rate_is_the_rate_applied_by_the_last_update(granularity):
  params = _params()
  tx = optax_greedy.hd_adam(0.05, hypergrad_lr=0.1, granularity=granularity)
  state = tx.init(params)
  # Before any update: the initial rate, a prefix of the params.
  for leaf in jax.tree.leaves(_per_leaf(state.learning_rate, params)):
    np.testing.assert_array_equal(leaf, np.float32(0.05))
  if granularity != "global":
    assert jax.tree.structure(state.learning_rate) == jax.tree.structure(
        params)
  adam = optax.scale_by_adam()
  s_adam = adam.init(params)
  for k in range(6):
    updates, state = tx.update(_grads(k), state, params)
    direction, s_adam = adam.update(_grads(k), s_adam, params)
    # updates = -learning_rate * direction, with the rate now in the state.
    rate = _per_leaf(optax.tree.get(state, "learning_rate"), params)
    jax.tree.map(
        lambda u, r, d: np.testing.assert_allclose(u, -r * d, rtol=1e-6),
        updates, rate, direction)
  assert not all(np.all(leaf == np.float32(0.05))
                 for leaf in jax.tree.leaves(rate))


@pytest.mark.parametrize("rule", ["additive", "multiplicative"])
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
def test_a_written_rate_is_where_the_next_update_continues(granularity,
                                                           rule):
  # A rate written into next_learning_rate is where the next hypergradient
  # step starts from (a projection); one written into learning_rate, the
  # record, changes nothing.
  beta = 0.01 if rule == "additive" else 0.3
  params = _params()
  tx = optax_greedy.hd_sgd(0.1, hypergrad_lr=beta, granularity=granularity, rule=rule)
  state = tx.init(params)
  _, state = tx.update(_grads(0), state, params)
  written = jax.tree.map(lambda r: jnp.full_like(r, 0.02),
                         state.next_learning_rate)
  if granularity != "global":  # A different value per leaf, even in a group.
    written = {"w": written["w"], "b": written["b"] * 2}
  _, baseline = tx.update(_grads(1), state, params)
  _, recorded = tx.update(
      _grads(1), optax.tree.set(state, learning_rate=written), params)
  jax.tree.map(np.testing.assert_array_equal, recorded.learning_rate,
               baseline.learning_rate)
  state = optax.tree.set(state, next_learning_rate=written)
  _, state = tx.update(_grads(1), state, params)
  g0, g1 = _grads(0), _grads(1)
  if granularity == "global":
    h = {k: _vdot(g1, g0) for k in g0}
    norms = {k: np.sqrt(_vdot(g1, g1) * _vdot(g0, g0)) for k in g0}
  elif granularity == "per_parameter":
    h = {k: np.asarray(g1[k] * g0[k]) for k in g0}
    norms = {k: np.abs(h[k]) for k in g0}
  else:
    h = {k: float(jnp.vdot(g1[k], g0[k])) for k in g0}
    norms = {k: np.sqrt(float(jnp.vdot(g1[k], g1[k])
                              * jnp.vdot(g0[k], g0[k]))) for k in g0}
  start = _per_leaf(written, params)
  for k in g0:
    expected = (start[k] + beta * h[k] if rule == "additive"
                else start[k] * (1 + beta * h[k] / norms[k]))
    np.testing.assert_allclose(
        _per_leaf(state.learning_rate, params)[k], expected, rtol=1e-5)


# ------------------------------------------------------ bounds and guards


def test_min_lr_keeps_the_rate_non_negative():
  # Too large a rate on a stiff quadratic: every step overshoots, g . d < 0
  # and the additive rule drives the rate down through zero.
  def run(**kwargs):
    tx = optax_greedy.hd_sgd(1.2, hypergrad_lr=0.05, rule="additive", **kwargs)
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
  tx = optax_greedy.hd_sgd(lr, hypergrad_lr=beta, granularity=granularity,
                           rule="additive")
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
    w_rate = lambda r: r if granularity == "global" else r["w"]  # noqa
    assert float(w_rate(rates[2])) == float(w_rate(rates[1]))
    assert float(w_rate(rates[3])) == float(w_rate(rates[1]))
    expected = float(w_rate(rates[3])) + beta * (
        _vdot(_grads(4), _grads(3)) if granularity == "global"
        else float(jnp.vdot(_grads(4)["w"], _grads(3)["w"])))
    assert float(w_rate(rates[4])) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("make", [
    lambda: optax_greedy.hd_sgd(0.1, hypergrad_lr=0.01, momentum=0.9),
    lambda: optax_greedy.hd_adam(0.1, hypergrad_lr=0.1, granularity="per_tensor")],
    ids=["momentum", "adam"])
def test_non_finite_gradient_in_the_moments_freezes_the_rate(make):
  # d_{t-1} is recomputed from the moments, which stay NaN for good.
  params = _params()
  tx = make()
  state = tx.init(params)
  for k in range(3):
    _, state = tx.update(_grads(k), state, params)
  before = state.learning_rate
  _, state = tx.update(jax.tree.map(lambda g: g * np.nan, _grads(3)), state,
                       params)
  for k in range(4, 8):
    _, state = tx.update(_grads(k), state, params)
  jax.tree.map(np.testing.assert_array_equal, state.learning_rate, before)


def test_apply_if_finite_skips_the_whole_step():
  params = _params()
  tx = optax.apply_if_finite(optax_greedy.hd_adam(0.1, hypergrad_lr=0.1), 3)
  clean = optax_greedy.hd_adam(0.1, hypergrad_lr=0.1)
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


def test_rate_dtype_defaults_to_float32_at_least():
  params = _params(jnp.bfloat16)
  for granularity in GRANULARITIES:
    tx = optax_greedy.hd_adam(0.1, granularity=granularity)
    updates, state = tx.update(_grads(0, jnp.bfloat16), tx.init(params),
                               params)
    assert all(leaf.dtype == jnp.float32
               for leaf in jax.tree.leaves(state.learning_rate))
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(updates))
  tx = optax_greedy.hd_sgd(0.1, granularity="per_parameter",
                           rate_dtype=jnp.bfloat16)
  state = tx.init(params)
  updates, state = tx.update(_grads(0, jnp.bfloat16), state, params)
  assert all(leaf.dtype == jnp.bfloat16
             for leaf in jax.tree.leaves((state.learning_rate, updates)))


# ------------------------------------------------------------- composition


def test_exactly_one_learning_rate_in_state():
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax_greedy.hd_adam(1e-3))
  state = tx.init(_params())
  assert len(optax.tree.get_all_with_path(state, "learning_rate")) == 1
  assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-3)


def test_direction_with_a_learning_rate_is_refused():
  tx = optax_greedy.hypergradient(
      optax.inject_hyperparams(optax.sgd)(learning_rate=1.0), 0.1, hypergrad_lr=1e-3)
  with pytest.raises(ValueError, match="direction"):
    tx.init(_params())


_DIRECTIONS = {
    "identity": (optax.identity, 0.05),
    "trace": (lambda: optax.trace(0.9), 0.01),
    "adam": (optax.scale_by_adam, 0.05),
    "lion": (optax.scale_by_lion, 0.05),
}


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GRANULARITY_IDS)
@pytest.mark.parametrize("name", list(_DIRECTIONS))
def test_converges_on_quadratic_with_the_defaults(name, granularity):
  make, lr = _DIRECTIONS[name]
  tx = optax_greedy.hypergradient(make(), lr, granularity=granularity)
  params, _, losses, _ = _train(tx, 400)
  assert float(losses[-1]) < 1e-4 * float(losses[0])
  for leaf in jax.tree.leaves(params):
    np.testing.assert_allclose(leaf, 3.0, atol=2e-2)


# ------------------------------------------------ optax.inject_hyperparams


@pytest.mark.parametrize("make, kwargs", [
    (optax_greedy.hd_sgd, dict(hypergrad_lr=0.1)),
    (optax_greedy.hd_sgd, dict(hypergrad_lr=0.1, momentum=0.0)),
    (optax_greedy.hd_sgd, dict(momentum=0.9, granularity="per_tensor")),
    (optax_greedy.hd_sgd, dict(momentum=0.9, nesterov=True)),
    (optax_greedy.hd_sgd, dict(hypergrad_lr=1e-3, momentum=0.5,
                               rule="additive", min_lr=0.01)),
    (optax_greedy.hd_adam, dict(hypergrad_lr=0.1, b1=0.8,
                                granularity="per_parameter")),
    (optax_greedy.hd_adam, dict(granularity={"w": "a", "b": "a"},
                                eps_placement="reference")),
], ids=["sgd", "momentum0", "momentum", "nesterov", "additive", "adam",
        "adam-groups"])
def test_inject_hyperparams_matches_the_plain_call(make, kwargs):
  params = _params()
  plain = make(0.05, **kwargs)
  injected = optax.inject_hyperparams(make)(learning_rate=0.05, **kwargs)
  s_plain, s_inj = plain.init(params), injected.init(params)
  assert (jax.tree.structure(s_inj.inner_state)
          == jax.tree.structure(s_plain))
  update = jax.jit(injected.update)
  for k in range(5):
    expected, s_plain = plain.update(_grads(k), s_plain, params)
    got, s_inj = update(_grads(k), s_inj, params)
    # Traced hyperparameters round differently from Python constants.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5),
                 (got, s_inj.inner_state), (expected, s_plain))


def test_inject_hyperparams_names_static_arguments():
  def labels(params):
    return {"w": "a", "b": "b"} if isinstance(params, dict) else "?"
  with pytest.raises(ValueError, match="granularity.*static_args"):
    optax.inject_hyperparams(optax_greedy.hd_sgd)(
        learning_rate=0.1, granularity=labels).init(_params())
  tx = optax.inject_hyperparams(optax_greedy.hd_sgd, static_args=(
      "granularity",))(learning_rate=0.1, granularity=labels)
  assert set(tx.init(_params()).inner_state.learning_rate) == {"w", "b"}


def test_inject_hyperparams_schedules_beta():
  tx = optax.inject_hyperparams(optax_greedy.hd_sgd)(
      learning_rate=0.05, hypergrad_lr=optax.linear_schedule(0.1, 0.0, 100),
      momentum=0.5, granularity="per_tensor")
  # optax.tree.get would also find the hyperparameter "learning_rate".
  _, _, losses, rates = _train(
      tx, 300, rate_of=lambda s: s.inner_state.learning_rate)
  assert float(losses[-1]) < 1e-4 * float(losses[0])
  # beta reaches zero at update 100 (count 100): the rates freeze there.
  for leaf in jax.tree.leaves(rates):
    assert float(leaf[99]) != float(leaf[0])
    np.testing.assert_array_equal(leaf[100:], leaf[99])


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, name", [
    (dict(hypergrad_lr=-1e-3), "hypergrad_lr"),
    (dict(learning_rate=-0.1), "learning_rate"),
    (dict(learning_rate="1e-3"), "learning_rate must be a number"),
    (dict(hypergrad_lr="1e-3"), "hypergrad_lr must be a number"),
    (dict(min_lr="0"), "min_lr must be a number"),
    (dict(max_lr=[1.0]), "max_lr must be a number"),
    (dict(granularity="per_layer"), "granularity"),
    (dict(granularity=None), "granularity"),
    (dict(granularity=3), "granularity"),
    (dict(min_lr=0.05, max_lr=0.01), "min_lr"),
    (dict(learning_rate=1.0, max_lr=0.5), "learning_rate"),
    (dict(rule="exponential"), "rule"),
    (dict(rule="multiplicative", hypergrad_lr=1.0), "hypergrad_lr"),
    (dict(rule="multiplicative", learning_rate=0.0), "learning_rate"),
    (dict(rule="additive", hypergrad_lr=None), "hypergrad_lr"),
])
def test_invalid_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 0.1, "hypergrad_lr": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    optax_greedy.hypergradient(optax.identity(), **kwargs)


@pytest.mark.parametrize("make, kwargs, name", [
    (optax_greedy.hd_sgd, dict(momentum=-0.5), "momentum"),
    (optax_greedy.hd_sgd, dict(momentum="0.9"), "momentum must be a number"),
    (optax_greedy.hd_sgd, dict(nesterov=True), "nesterov"),
    (optax_greedy.hd_sgd, dict(nesterov=True, momentum=0.0), "nesterov"),
    (optax_greedy.hd_sgd, dict(nesterov=1, momentum=0.9), "nesterov"),
    (optax_greedy.hd_sgd, dict(hypergrad_lr=-1.0), "hypergrad_lr"),
    (optax_greedy.hd_sgd, dict(learning_rate="0.1"), "learning_rate"),
    (optax_greedy.hd_adam, dict(b1=1.0), "b1"),
    (optax_greedy.hd_adam, dict(b2=-0.1), "b2"),
    (optax_greedy.hd_adam, dict(b2="0.999"), "b2 must be a number"),
    (optax_greedy.hd_adam, dict(eps=-1e-8), "eps"),
    (optax_greedy.hd_adam, dict(eps_placement="torch"), "eps_placement"),
    (optax_greedy.hd_adam, dict(granularity="layer"), "granularity"),
])
def test_invalid_alias_hyperparameters_raise(make, kwargs, name):
  kwargs = {"learning_rate": 0.1, "hypergrad_lr": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    make(**kwargs)


@pytest.mark.parametrize("make", [optax_greedy.hd_sgd, optax_greedy.hd_adam])
def test_misspelt_keyword_names_the_wrapper(make):
  with pytest.raises(TypeError, match=make.__name__):
    make(0.1, hypergrad_rate=1e-3)


def test_zero_initial_rate_is_allowed_and_grows():
  tx = optax_greedy.hd_sgd(0.0, hypergrad_lr=1e-3, rule="additive")
  _, _, losses, rates = _train(tx, 300)
  assert float(rates[1]) > 0
  assert float(losses[-1]) < 1e-4 * float(losses[0])


@pytest.mark.parametrize("granularity", [
    "global", "per_tensor", lambda params: {"w": "a", "b": "a"}])
def test_every_reduction_gives_the_same_rates(granularity):
  """How the sums are computed (by backend and sharding) changes only the
  order of additions: the rates agree to float32 rounding."""
  rates = {}
  for reduction in ("auto", "blocked", "per_term", "concatenated"):
    tx = optax_greedy.hd_adam(0.05, hypergrad_lr=0.1,
                              granularity=granularity, reduction=reduction)
    rates[reduction] = _train(tx, 20)[3]
  for reduction, got in rates.items():
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5,
                                   err_msg=reduction), got, rates["blocked"])
  with pytest.raises(ValueError, match="reduction must be one of"):
    optax_greedy.hd_adam(0.05, reduction="fast")
