"""Tests of optax_greedy.nmf and optax_greedy.stability_clip.

Expected values come from mathematics: the bounds are compared with the
eigenvalues of Hessians computed by ``jax.hessian``, and the tightness test
runs projected gradient descent just below and just above the bound.
"""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy
from optax_greedy import nmf


def _planted(key, m=12, n=9, r=3):
  """A zero-residual problem whose factors are strictly positive.

  ``W*`` and ``H*`` are tiled identities plus 0.2 (``W*`` plus a uniform
  [0, 0.3) jitter): full rank and well conditioned, so ``V = W* H*`` is
  fitted exactly by an interior point: the minimiser over one factor (the other fixed) is the
  unconstrained least-squares solution, strictly positive, and the
  non-negativity projection is inactive near it.
  """
  w_true = (jnp.tile(jnp.eye(r), (m // r, 1)) + 0.2
            + 0.3 * jax.random.uniform(key, (m, r)))
  h_true = jnp.tile(jnp.eye(r), (1, n // r)) + 0.2
  return w_true, h_true, w_true @ h_true


def _projected_gd(loss_fn, x0, rate, steps):
  """Losses of ``x <- max(x - rate * grad, 0)``, before each step."""
  def step(x, _):
    value, grad = jax.value_and_grad(loss_fn)(x)
    return jnp.maximum(x - rate * grad, 0.0), value
  x, values = jax.lax.scan(step, x0, None, length=steps)
  return values, x


def _top_block_curvature(params, V, block, columns=None):
  """Largest eigenvalue of the Hessian of :func:`nmf.loss` in ``block``
  (the other factor fixed), from ``jax.hessian``."""
  other = "H" if block == "W" else "W"

  def block_loss(x):
    return nmf.loss({block: x, other: params[other]}, V, columns)

  hessian = jax.jit(jax.hessian(block_loss))(params[block])
  size = params[block].size
  return np.linalg.eigvalsh(np.asarray(hessian).reshape(size, size))[-1]


@pytest.mark.parametrize("block", ["W", "H"])
def test_bound_equals_two_over_top_hessian_eigenvalue(block):
  key_w, key_h = jax.random.split(jax.random.key(0))
  params = {"W": jax.random.uniform(key_w, (7, 3)),
            "H": jax.random.uniform(key_h, (3, 5))}
  top = _top_block_curvature(params, jnp.ones((7, 5)), block)
  bound = nmf.stability_bounds(params)[block]
  np.testing.assert_allclose(bound, 2.0 / top, rtol=1e-4)


def test_joint_bound_is_tight_at_a_zero_residual_fit():
  w_true, h_true, V = _planted(jax.random.key(1), m=6, n=6, r=2)
  params = {"W": w_true, "H": h_true}
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  hessian = jax.jit(jax.hessian(lambda x: nmf.loss(unravel(x), V)))(flat)
  top = np.linalg.eigvalsh(np.asarray(hessian))[-1]
  bounds = nmf.stability_bounds(params, joint=True)
  np.testing.assert_allclose(bounds["W"], 2.0 / top, rtol=1e-4)
  np.testing.assert_allclose(bounds["H"], 2.0 / top, rtol=1e-4)


def test_minibatch_bounds_hold_for_every_batch():
  key_w, key_h = jax.random.split(jax.random.key(2))
  params = {"W": jax.random.uniform(key_w, (5, 2)),
            "H": jax.random.uniform(key_h, (2, 6))}
  b, n = 2, 6
  bounds = nmf.stability_bounds(params, batch_size=b)
  full = nmf.stability_bounds(params)
  worst_w = 0.0
  for i in range(n):
    for j in range(i + 1, n):
      h_b = params["H"][:, [i, j]]
      worst_w = max(worst_w, np.linalg.eigvalsh(n / b * h_b @ h_b.T)[-1])
  # Safe for every batch, and no more than the worst case's top column norms.
  assert bounds["W"] <= 2.0 / worst_w * (1 + 1e-5)
  assert bounds["W"] <= full["W"] * (1 + 1e-6)
  # The H columns of a batch see exactly n / b times W^T W.
  np.testing.assert_allclose(bounds["H"], b / n * full["H"], rtol=1e-5)
  # The full batch gives the full-batch bound.
  np.testing.assert_allclose(
      nmf.stability_bounds(params, batch_size=n)["W"], full["W"], rtol=1e-6)


@pytest.mark.parametrize("block", ["W", "H"])
def test_batch_bound_is_exact_for_the_minibatch_loss(block):
  key_w, key_h = jax.random.split(jax.random.key(4))
  params = {"W": jax.random.uniform(key_w, (5, 2)),
            "H": jax.random.uniform(key_h, (2, 8))}
  columns = jnp.array([1, 4, 6])
  top = _top_block_curvature(params, jnp.ones((5, 8)), block, columns)
  bound = nmf.stability_bounds(params, columns=columns)[block]
  np.testing.assert_allclose(bound, 2.0 / top, rtol=1e-4)


def test_bound_args_pass_the_batch_to_the_bound():
  key_w, key_h = jax.random.split(jax.random.key(5))
  params = {"W": jax.random.uniform(key_w, (5, 2)),
            "H": jax.random.uniform(key_h, (2, 8))}
  V = jnp.ones((5, 8))
  columns = jnp.array([0, 3])
  tx = optax_greedy.stability_clip(nmf.stability_bounds, 100.0,
                                   bound_args=("columns",))
  state = tx.init(params)
  grads = jax.grad(nmf.loss)(params, V, columns)
  _, state = jax.jit(tx.update)(grads, state, params, columns=columns)
  expected = nmf.stability_bounds(params, columns=columns)
  for name in ("W", "H"):
    np.testing.assert_allclose(state.bound[name], expected[name], rtol=1e-5)
    np.testing.assert_allclose(optax.tree.get(state, "learning_rate")[name],
                               0.9 * expected[name], rtol=1e-4)
  with pytest.raises(ValueError, match="columns"):
    tx.update(grads, state, params)


@pytest.mark.parametrize("block", ["W", "H"])
def test_bound_is_tight_for_projected_gradient_descent(block):
  """0.97x the bound converges monotonically to the optimum, 1.03x does not.

  The optimum is interior (see ``_planted``), so near it projected descent
  is plain gradient descent on a quadratic: the error along the Hessian's
  top eigenvector is multiplied by ``1 - 2c`` per step for a rate ``c``
  times the bound, i.e. by -0.94 (shrinks) or -1.06 (grows).
  """
  with jax.enable_x64(True):
    key, key_init = jax.random.split(jax.random.key(3))
    w_true, h_true, V = _planted(key)
    w_true, h_true, V = (x.astype(jnp.float64) for x in (w_true, h_true, V))
    truth = {"W": w_true, "H": h_true}
    other = "H" if block == "W" else "W"
    start = truth[block] * jax.random.uniform(
        key_init, truth[block].shape, jnp.float64, 0.5, 1.5)
    bound = nmf.stability_bounds(truth)[block]

    def block_loss(x):
      return nmf.loss({block: x, other: truth[other]}, V)

    losses, finals = jax.vmap(
        lambda rate: _projected_gd(block_loss, start, rate, 600))(
            jnp.array([0.97, 1.03]) * bound)
    (below, above), x_below = np.asarray(losses), finals[0]
  # Monotone down to float64 round-off (the loss ends near 1e-28).
  assert np.all(np.diff(below) <= 1e-20 * below[0]), "not monotone"
  assert below[-1] < 1e-12 * below[0]
  np.testing.assert_allclose(x_below, truth[block], rtol=1e-6)
  # Above the bound the loss ends far from the optimum's 0 and above start.
  assert not np.all(np.diff(above) <= 0)
  assert above[-1] > below[0]


def _fit(tx, params, V, steps, columns_fn=None):
  """Runs ``steps`` jitted updates; returns params, state, losses."""
  state = tx.init(params)

  def step(carry, i):
    params, state = carry
    columns = None if columns_fn is None else columns_fn(i)
    value, grads = jax.value_and_grad(nmf.loss)(params, V, columns)
    updates, state = tx.update(grads, state, params, value=value)
    return (optax.apply_updates(params, updates), state), value

  (params, state), values = jax.jit(
      lambda c: jax.lax.scan(step, c, jnp.arange(steps)))((params, state))
  return params, state, values


@pytest.fixture(scope="module")
def digits():
  V = nmf.digits_matrix()[:300].T  # 64 pixels x 300 images
  return V, nmf.init(jax.random.key(0), V, rank=6)


@pytest.mark.parametrize("controller", ["constant", "greedy"])
def test_clipped_never_diverges_up_to_100x_bound(digits, controller):
  V, params = digits
  batch = 50
  max_rate = functools.partial(nmf.stability_bounds, joint=True,
                               batch_size=batch)
  bound = float(min(jax.tree.leaves(max_rate(params))))
  n = V.shape[1]

  def columns_fn(i):
    return jax.random.choice(jax.random.fold_in(jax.random.key(1), i), n,
                             (batch,), replace=False)

  def run(multiplier):
    rate = multiplier * bound
    if controller == "constant":
      clipped = optax_greedy.stability_clip(max_rate, rate)
    else:
      clipped = optax_greedy.stability_clip(
          max_rate, inner=optax_greedy.greedy_lr(rate))
    tx = optax.chain(clipped,
                     optax.keep_params_nonnegative())
    return _fit(tx, params, V, 100, columns_fn)

  final, state, values = jax.vmap(run)(jnp.array([1.0, 3.0, 10.0, 100.0]))
  assert np.all(np.isfinite(np.asarray(values)))
  for leaf in jax.tree.leaves(final):
    assert np.all(np.isfinite(leaf)) and np.all(np.asarray(leaf) >= 0)
  errors = jax.vmap(nmf.relative_error, (0, None))(final, V)
  assert np.all(np.asarray(errors) < float(nmf.relative_error(params, V)))
  applied = optax.tree.get(state, "learning_rate")
  caps = jax.tree.map(lambda b: 0.9 * b, optax.tree.get(state, "bound"))
  for a, c in zip(jax.tree.leaves(applied), jax.tree.leaves(caps)):
    assert np.all(np.asarray(a) <= np.asarray(c) * (1 + 1e-5))


def test_unclipped_fails_above_the_bound(digits):
  """Control for the test above: without the clip, constant rates above the
  bound wipe the factors out (3x: the projection zeroes them, relative error
  1) or overflow (10x)."""
  V, params = digits
  bound = float(min(jax.tree.leaves(
      nmf.stability_bounds(params, joint=True))))

  def run(rate):
    tx = optax.chain(optax.sgd(rate), optax.keep_params_nonnegative())
    final, _, values = _fit(tx, params, V, 100)
    return nmf.relative_error(final, V), values[-1]

  errors, last = jax.vmap(run)(jnp.array([3.0, 10.0]) * bound)
  assert float(errors[0]) > 0.99
  assert not np.isfinite(float(last[1]))


def test_applied_rate_is_the_schedule_capped_at_the_bound(digits):
  V, params = digits
  schedule = optax.cosine_decay_schedule(0.05, 40)
  tx = optax_greedy.stability_clip(nmf.stability_bounds, schedule,
                                   safety=0.5)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(3):
    grads = jax.grad(nmf.loss)(params, V)
    updates, state = update(grads, state, params)
    bounds = nmf.stability_bounds(params)
    for name in ("W", "H"):
      expected = min(float(schedule(t)), 0.5 * float(bounds[name]))
      np.testing.assert_allclose(optax.tree.get(state, "learning_rate")[name],
                                 expected, rtol=1e-4)
      np.testing.assert_allclose(updates[name], -expected * grads[name],
                                 rtol=1e-4, atol=1e-7)
    params = optax.apply_updates(params, updates)


def test_composes_with_greedy_lr(digits):
  V, params = digits
  caps = jax.tree.map(lambda b: 0.9 * b, nmf.stability_bounds(params))
  tx = optax.chain(
      optax_greedy.stability_clip(nmf.stability_bounds,
                                  inner=optax_greedy.greedy_lr(1.0)),
      optax.keep_params_nonnegative())
  state = tx.init(params)
  # Before the first update: greedy_lr's 1.0, capped for each block.
  for name in ("W", "H"):
    np.testing.assert_allclose(optax.tree.get(state, "learning_rate")[name],
                               caps[name], rtol=1e-5)
  value, grads = jax.value_and_grad(nmf.loss)(params, V)
  updates, state = jax.jit(tx.update)(grads, state, params, value=value)
  for name in ("W", "H"):
    np.testing.assert_allclose(optax.tree.get(state, "learning_rate")[name],
                               caps[name], rtol=1e-5)
  # greedy_lr saw the value (its state is reached through the wrapper).
  assert int(optax.tree.get(state, "GreedyLRState").count) == 1
  assert all(np.all(np.asarray(p) >= 0)
             for p in jax.tree.leaves(optax.apply_updates(params, updates)))


def test_hypergradient_keeps_its_own_rate_under_the_cap(digits):
  """The capped rate is recorded in the state's ``learning_rate``; the
  hypergradient's own rate (``next_learning_rate``) is not changed by the
  cap, so its next step starts from the uncapped rate:
  ``alpha_2 = alpha_1 + beta g_2.g_1`` and each block applies
  ``min(alpha_2, c_b)`` (one global rate over the blocks W and H)."""
  V, params = digits
  beta = 8e-7
  tx = optax_greedy.stability_clip(
      nmf.stability_bounds,
      inner=optax_greedy.hypergradient(optax.identity(), 1.0,
                                       hypergrad_lr=beta, rule="additive"))
  state = tx.init(params)
  update = jax.jit(tx.update)
  grads, caps, applied, own = [], [], [], []
  for _ in range(2):
    caps.append({k: 0.9 * float(b)
                 for k, b in nmf.stability_bounds(params).items()})
    grads.append(jax.grad(nmf.loss)(params, V))
    updates, state = update(grads[-1], state, params)
    applied.append({k: float(r) for k, r in
                    optax.tree.get(state, "learning_rate").items()})
    own.append(float(optax.tree.get(state, "next_learning_rate")))
    for name in ("W", "H"):
      np.testing.assert_allclose(updates[name],
                                 -applied[-1][name] * grads[-1][name],
                                 rtol=1e-5, atol=1e-8)
    params = optax.apply_updates(params, updates)
  # Step 1: the initial rate 1.0 is far above both caps (h_1 = 0).
  assert own[0] == 1.0
  for name in ("W", "H"):
    np.testing.assert_allclose(applied[0][name], caps[0][name], rtol=1e-5)
  h = sum(float(jnp.sum(grads[1][k] * grads[0][k])) for k in ("W", "H"))
  alpha = 1.0 + beta * h
  np.testing.assert_allclose(own[1], alpha, rtol=1e-5)
  for name in ("W", "H"):
    np.testing.assert_allclose(applied[1][name], min(alpha, caps[1][name]),
                               rtol=1e-4)


def _recorded_rate(rate):
  """A rate-setter with the given (per-element) rate in its state."""
  return optax.GradientTransformationExtraArgs(
      lambda params: {"learning_rate": rate},
      lambda updates, state, params=None, **extra: (
          jax.tree.map(lambda u, r: -r * u, updates, rate),
          {"learning_rate": rate}))


def test_per_element_rates_are_capped_elementwise():
  params = {"w": jnp.ones(3)}
  rate = {"w": jnp.array([0.05, 0.2, 0.5])}
  tx = optax_greedy.stability_clip(lambda p: jnp.asarray(0.3),
                                   inner=_recorded_rate(rate), safety=0.9)
  state = tx.init(params)
  grads = {"w": jnp.array([1.0, -2.0, 4.0])}
  updates, state = jax.jit(tx.update)(grads, state, params)
  expected = jnp.array([0.05, 0.2, 0.27])
  np.testing.assert_allclose(optax.tree.get(state, "learning_rate")["w"],
                             expected, rtol=1e-6)
  np.testing.assert_allclose(updates["w"], -expected * grads["w"], rtol=1e-6)


def test_max_update_every_and_dtype():
  params = {"W": jnp.full((4, 2), 1.0, jnp.bfloat16),
            "H": jnp.full((2, 3), 1.0, jnp.bfloat16)}
  V = jnp.full((4, 3), 5.0, jnp.bfloat16)
  tx = optax_greedy.stability_clip(nmf.stability_bounds, 1.0, every=3,
                                   max_update=0.01)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(nmf.loss)(p, V), s, p))
  bounds_seen = []
  for _ in range(5):
    updates, state = step(params, state)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(updates)
               ) <= float(jnp.bfloat16(0.01))
    bounds_seen.append(float(state.bound["W"]))
    params = optax.apply_updates(params, updates)
  # Recomputed at updates 0 and 3 only.
  assert bounds_seen[0] == bounds_seen[1] == bounds_seen[2]
  assert bounds_seen[3] != bounds_seen[2]
  assert bounds_seen[3] == bounds_seen[4]


def test_scalar_bound_and_zero_gradient():
  params = {"a": jnp.ones(3), "b": jnp.zeros(2)}
  tx = optax_greedy.stability_clip(lambda p: jnp.asarray(0.1), 1.0,
                                   safety=1.0)
  state = tx.init(params)
  grads = {"a": jnp.ones(3), "b": jnp.zeros(2)}
  update = jax.jit(tx.update)
  updates, state = update(grads, state, params)
  np.testing.assert_allclose(updates["a"], -0.1 * jnp.ones(3), rtol=1e-6)
  np.testing.assert_array_equal(updates["b"], 0.0)
  # All-zero gradients: zero updates, the rate is still the capped one.
  updates, state = update(jax.tree.map(jnp.zeros_like, grads), state, params)
  assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
  np.testing.assert_allclose(optax.tree.get(state, "learning_rate"), 0.1)


def test_number_max_rate_is_a_constant_cap():
  """``max_rate=0.1`` caps exactly as ``max_rate=lambda p: 0.1``."""
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  grads = {"a": jnp.full(3, 2.0), "b": jnp.ones(2)}
  number = optax_greedy.stability_clip(0.1, 1.0, safety=0.5)
  state = number.init(params)
  updates, state = number.update(grads, state, params)
  # min(1.0, 0.5 * 0.1) = 0.05, by hand.
  np.testing.assert_allclose(updates["a"], -0.05 * 2.0 * np.ones(3),
                             rtol=1e-6)
  np.testing.assert_allclose(optax.tree.get(state, "learning_rate"), 0.05,
                             rtol=1e-6)


def test_init_loss_and_relative_error():
  V = nmf.digits_matrix()
  assert V.shape == (1797, 64) and float(V.min()) >= 0
  assert float(V.max()) <= 1.0
  params = nmf.init(jax.random.key(0), V, rank=5)
  assert params["W"].shape == (1797, 5) and params["H"].shape == (5, 64)
  assert all(float(x.min()) >= 0 for x in params.values())
  # Scaled to the data: E[WH] = mean(V), so the mean product is close to it.
  np.testing.assert_allclose(jnp.mean(params["W"] @ params["H"]),
                             jnp.mean(V), rtol=0.1)
  residual = V - params["W"] @ params["H"]
  np.testing.assert_allclose(nmf.loss(params, V),
                             0.5 * jnp.sum(residual ** 2), rtol=1e-5)
  np.testing.assert_allclose(
      nmf.relative_error(params, V),
      jnp.linalg.norm(residual) / jnp.linalg.norm(V), rtol=1e-5)
  # The column minibatch estimate is unbiased: averaged over a partition of
  # the columns into equal batches it is the full loss.
  parts = jnp.arange(64).reshape(4, 16)
  estimate = jnp.mean(jnp.stack([nmf.loss(params, V, c) for c in parts]))
  np.testing.assert_allclose(estimate, nmf.loss(params, V), rtol=1e-5)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
  with pytest.raises(ImportError, match=r"optax_greedy\[examples\]"):
    nmf.digits_matrix()


@pytest.mark.parametrize("call, match", [
    (lambda: nmf.init(jax.random.key(0), jnp.ones((4, 3)), 0), "rank"),
    (lambda: nmf.init(jax.random.key(0), -jnp.ones((4, 3)), 2), "non-negative"),
    (lambda: nmf.init(jax.random.key(0), jnp.ones(4), 2), "2-D"),
    (lambda: nmf.loss({"W": jnp.ones((4, 2)), "H": jnp.ones((3, 3))},
                      jnp.ones((4, 3))), "rank"),
    (lambda: nmf.loss({"W": jnp.ones((4, 2)), "H": jnp.ones((2, 3))},
                      jnp.ones((5, 3))), "V must have shape"),
    (lambda: nmf.stability_bounds({"W": jnp.ones((4, 2))}), "params"),
    (lambda: nmf.stability_bounds(
        {"W": jnp.ones((4, 2)), "H": jnp.ones((2, 3))}, batch_size=4),
     "batch_size"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         safety=0.0), "safety"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         safety=1.5), "safety"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         every=0), "every"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         max_update=0.0), "max_update"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, -1.0),
     "learning_rate"),
    (lambda: optax_greedy.stability_clip(0.0, 1.0), r"max_rate must be in"),
    (lambda: optax_greedy.stability_clip("0.1", 1.0),
     "max_rate must be a number or a callable"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, "1e-3"),
     "learning_rate must be a number"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         safety="0.9"),
     "safety must be a number"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         every=2.0), "every"),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, 1.0,
                                         bound_args="columns"), "bound_args"),
    (lambda: nmf.stability_bounds(
        {"W": jnp.ones((4, 2)), "H": jnp.ones((2, 3))}, batch_size=2,
        columns=jnp.arange(2)), "not both"),
    (lambda: optax_greedy.stability_clip(
        nmf.stability_bounds, inner=optax.sgd(0.1)).init(
            {"W": jnp.ones((4, 2)), "H": jnp.ones((2, 3))}),
     "exactly one field named 'learning_rate'"),
    # One name, one meaning: a transform goes in inner=, a number in
    # learning_rate=, and exactly one of them.
    (lambda: optax_greedy.stability_clip(
        nmf.stability_bounds, optax_greedy.greedy_lr(1.0)),
     "pass a rate-setting transform as inner="),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds, inner=1.0),
     "for a number or a schedule pass learning_rate="),
    (lambda: optax_greedy.stability_clip(nmf.stability_bounds),
     "exactly one of learning_rate="),
    (lambda: optax_greedy.stability_clip(
        nmf.stability_bounds, 1.0, inner=optax_greedy.greedy_lr(1.0)),
     "exactly one of learning_rate="),
    (lambda: optax_greedy.stability_clip(
        lambda p: {"X": 1.0, "Y": 2.0}, 1.0).init(
            {"W": jnp.ones(2), "H": jnp.ones(2)}), "prefix"),
])
def test_bad_arguments_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
