"""The step budget (``total_steps``): the envelope and how each family uses it.

Expected values come from the envelope's definition, written out by hand
here (not from the implementation): with ``T`` updates, ``R`` ramp and
``D`` decay updates, update ``t`` (0-based) is scaled by
``min(1, (t + 1) / (R + 1)) * s(max(0, (t - (T - D)) / D))``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy


def _expected_scale(t, total=100, ramp=5, decay=20, shape="linear"):
  t = min(t, total - 1)
  p = max(0.0, (t - (total - decay)) / decay)
  s = {"linear": 1 - p, "1-sqrt": 1 - np.sqrt(p),
       "cosine": 0.5 * (1 + np.cos(np.pi * p))}[shape]
  return min(1.0, (t + 1) / (ramp + 1)) * s


@pytest.mark.parametrize("shape", ["linear", "1-sqrt", "cosine"])
def test_budget_schedule_is_the_envelope(shape):
  schedule = optax_greedy.budget_schedule(
      2.0, total_steps=100, envelope=optax_greedy.Envelope(0.05, 0.2, shape))
  for t in (0, 1, 4, 5, 50, 79, 80, 81, 90, 99, 100, 1000):
    np.testing.assert_allclose(float(schedule(t)),
                               2.0 * _expected_scale(t, shape=shape),
                               rtol=1e-5, err_msg=f"update {t}")
  # By hand, linear: the first update 2/6, the ramp's last 2 * 5/6, the
  # last update 2 * 1/20, kept past the budget.
  if shape == "linear":
    np.testing.assert_allclose(
        [float(schedule(t)) for t in (0, 4, 5, 99, 150)],
        [1 / 3, 5 / 3, 2.0, 0.1, 0.1], rtol=1e-6)


def _trace(tx, steps, value_fn=lambda t: 1.0 / (t + 1.0)):
  """``steps`` updates on a 3-vector with gradient 1 and value
  ``value_fn(t)``; returns the rate field and the state after each."""
  params = jnp.zeros(3)

  def step(state, t):
    updates, state = tx.update(jnp.ones(3), state, params,
                               value=value_fn(t))
    return state, (updates[0], optax.tree.get(state, "learning_rate"),
                   state)

  _, (updates, rates, states) = jax.jit(
      lambda s: jax.lax.scan(step, s, jnp.arange(steps)))(tx.init(params))
  return updates, rates, states


def test_greedy_lr_applies_its_rate_times_the_envelope():
  # An always-improving value with patience 0 raises the rate at every
  # observation; it observes only between the ramp (5 updates) and the
  # decay (the last 20 of 100).
  tx = optax_greedy.greedy_lr(0.1, patience=0, factor=0.5, smooth=False,
                              max_lr=None, total_steps=100)
  updates, rates, states = _trace(tx, 110)
  own = np.asarray(states.next_learning_rate)
  count = np.asarray(states.count)
  np.testing.assert_array_equal(count[:5], 0)
  np.testing.assert_array_equal(count[5:80], np.arange(1, 76))
  np.testing.assert_array_equal(count[80:], 75)
  # The rate applied by update t: the rate in force before it (0.1 doubled
  # once per earlier observation) times the envelope.
  before = 0.1 * 2.0 ** np.concatenate([[0], count[:-1]])
  expected = before * np.array([_expected_scale(t) for t in range(110)])
  np.testing.assert_allclose(np.asarray(rates), expected, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(updates), -expected, rtol=1e-6)
  np.testing.assert_allclose(own[-1], 0.1 * 2.0 ** 75, rtol=1e-6)
  # Past the budget the last update's rate is kept.
  np.testing.assert_allclose(np.asarray(rates)[99:],
                             np.asarray(rates)[99], rtol=0)


def test_without_a_budget_nothing_changes():
  """total_steps=None: the reference's rule and state, no step counter."""
  plain = optax_greedy.greedy_lr(0.1, patience=1)
  state = plain.init(jnp.zeros(3))
  assert state.step is None
  hd = optax_greedy.hd_adam(0.1).init(jnp.zeros(3))
  assert hd.step is None


def test_an_empty_envelope_is_the_controller_alone():
  """Zero ramp and zero decay: the same rates as without a budget."""
  values = lambda t: jnp.sin(t) + 1.0 / (t + 1.0)  # noqa: E731
  for make in (
      lambda **kw: optax_greedy.greedy_lr(0.1, patience=1, smooth=False,
                                          **kw),
      lambda **kw: optax_greedy.hypergradient(optax.identity(), 0.1,
                                              granularity="per_tensor", **kw)):
    _, plain, _ = _trace(make(), 40, values)
    _, budgeted, _ = _trace(make(total_steps=40,
                                 envelope=optax_greedy.NO_ENVELOPE), 40,
                            values)
    np.testing.assert_allclose(np.asarray(budgeted), np.asarray(plain),
                               rtol=1e-6)


def test_hypergradient_rates_hold_still_outside_the_reacting_phase():
  """The hypergradient's own rate moves only between ramp and decay; the
  rate applied is that rate times the envelope."""
  params = {"w": jnp.linspace(-1.0, 1.0, 4)}
  loss = lambda p: jnp.sum(jnp.cosh(p["w"] - 0.3))  # noqa: E731
  tx = optax_greedy.hd_sgd(0.2, hypergrad_lr=0.2, total_steps=20,
                           envelope=optax_greedy.Envelope(0.2, 0.3))

  def step(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, updates), s), (s.next_learning_rate, s.learning_rate)

  _, (own, applied) = jax.lax.scan(step, (params, tx.init(params)), None,
                                   length=25)
  own, applied = np.asarray(own), np.asarray(applied)
  # Ramp: updates 0..3 (R = 4); decay: updates 14..19 (D = 6).
  np.testing.assert_array_equal(own[:4], np.float32(0.2))
  assert np.all(own[4:14] != np.float32(0.2))
  np.testing.assert_array_equal(own[14:], own[13])
  scales = [_expected_scale(t, 20, 4, 6) for t in range(25)]
  np.testing.assert_allclose(applied, own * scales, rtol=1e-6)


def test_learned_schedule_scales_the_policy_by_the_envelope():
  policy = optax_greedy.load_policy("dnn")
  tx = optax_greedy.learned_schedule(policy, 0.1, total_steps=100)
  _, rates, states = _trace(tx, 100)
  expected = (0.1 * np.asarray(states.fraction)
              * [_expected_scale(t) for t in range(100)])
  np.testing.assert_allclose(np.asarray(rates), expected, rtol=1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda: optax_greedy.greedy_adam(1e-3, total_steps=0), ValueError,
     r"total_steps must be in \[1, inf\)"),
    (lambda: optax_greedy.hd_adam(1e-3, total_steps=10.5), ValueError,
     "total_steps must be an integer"),
    (lambda: optax_greedy.greedy_lr(1e-3, total_steps="100"), ValueError,
     "total_steps must be an integer"),
    (lambda: optax_greedy.greedy_lr(
        1e-3, total_steps=10, envelope=optax_greedy.Envelope(1.0)),
     ValueError, r"ramp_fraction must be in \[0, 1\)"),
    (lambda: optax_greedy.hypergradient(
        optax.identity(), 1e-3, total_steps=10,
        envelope=optax_greedy.Envelope(decay_fraction=-0.1)),
     ValueError, r"decay_fraction must be in \[0, 1\]"),
    (lambda: optax_greedy.greedy_sgd(
        1e-3, total_steps=10, envelope=optax_greedy.Envelope(0.5, 0.6)),
     ValueError, "ramp_fraction \\+ decay_fraction must be <= 1"),
    (lambda: optax_greedy.hd_sgd(
        1e-3, total_steps=10, envelope=optax_greedy.Envelope(decay_shape="exp")),
     ValueError, "decay_shape must be one of"),
    (lambda: optax_greedy.budget_schedule(0.0, total_steps=10), ValueError,
     r"learning_rate must be in \(0, inf\)"),
    (lambda: optax_greedy.learned_schedule(
        optax_greedy.load_policy("dnn"), 0.1, total_steps=None), ValueError,
     "learned_schedule needs total_steps"),
    (lambda: optax_greedy.learned_schedule(
        optax_greedy.load_policy("dnn"), 0.1, budget=100), TypeError,
     "pass total_steps=100"),
    (lambda: optax_greedy.greedy_adam(1e-3, total_steps=10,
                                      decay_shape="cosine"), TypeError,
     r"pass envelope=optax_greedy.Envelope\(decay_shape='cosine'\)"),
    (lambda: optax_greedy.hd_adam(1e-3, total_steps=10, ramp_fraction=0.1,
                                  decay_fraction=0.3), TypeError,
     r"Envelope\(ramp_fraction=0.1, decay_fraction=0.3\)"),
    (lambda: optax_greedy.greedy_lr(1e-3, envelope=(0.1, 0.2)), ValueError,
     "envelope must be an optax_greedy.Envelope"),
])
def test_bad_budgets_raise(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_budget_under_inject_hyperparams():
  """total_steps may be a traced hyperparameter: the same updates."""
  params = jnp.zeros(3)
  plain = optax_greedy.greedy_adam(0.01, total_steps=20, patience=1)
  injected = optax.inject_hyperparams(optax_greedy.greedy_adam,
                                      static_args=("window_size",))(
                                          0.01, total_steps=20, patience=1)
  for tx in (plain, injected):
    state = tx.init(params)
    for t in range(25):
      updates, state = tx.update(jnp.ones(3) * (t + 1), state, params,
                                 value=1.0 / (t + 1))
    if tx is plain:
      expected = updates
  np.testing.assert_allclose(updates, expected, rtol=1e-5)


def test_short_budgets_behave_as_documented():
  """budget_schedule's docstring: total_steps=2 has no ramp and no decay,
  total_steps=10 no ramp and a 2-update decay ending at half the rate."""
  two = optax_greedy.budget_schedule(1.0, total_steps=2)
  np.testing.assert_allclose([float(two(t)) for t in range(3)], [1.0] * 3)
  ten = optax_greedy.budget_schedule(1.0, total_steps=10)
  np.testing.assert_allclose([float(ten(t)) for t in range(10)],
                             [1.0] * 9 + [0.5], rtol=1e-6)
  thirty = optax_greedy.budget_schedule(1.0, total_steps=30)
  np.testing.assert_allclose([float(thirty(t)) for t in (0, 1, 2, 29)],
                             [1 / 3, 2 / 3, 1.0, 1 / 6], rtol=1e-6)
  # The controllers react over the whole of a 2-update budget.
  tx = optax_greedy.greedy_lr(0.1, patience=0, smooth=False, total_steps=2)
  state = tx.init(jnp.zeros(1))
  for value in (2.0, 1.0):
    _, state = tx.update(jnp.ones(1), state, value=value)
  assert int(state.count) == 2
