"""The argument conventions every factory follows (since 0.2.0).

After the rate, arguments are keyword-only; the ``greedy_*`` and ``hd_*``
aliases take every argument of the optax alias they wrap, by the same name
and with the same default; a positional call that used to mean something
else raises a ``TypeError`` naming the keyword to use; a rate that is not a
finite number is refused by name.
"""

import inspect

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_greedy as og

# Each alias and the optax alias it wraps.
TWINS = [(og.greedy_sgd, optax.sgd), (og.greedy_adam, optax.adam),
         (og.greedy_adamw, optax.adamw), (og.hd_sgd, optax.sgd),
         (og.hd_adam, optax.adam)]
# Every factory and how many arguments it takes by position.
FACTORIES = [(og.greedy_lr, 1), (og.greedy_sgd, 1), (og.greedy_adam, 1),
             (og.greedy_adamw, 1), (og.hypergradient, 2), (og.hd_sgd, 1),
             (og.hd_adam, 1), (og.learned_schedule, 2),
             (og.stability_clip, 2), (og.budget_schedule, 1)]


@pytest.mark.parametrize("factory, positional", FACTORIES,
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_arguments_after_the_rate_are_keyword_only(factory, positional):
  params = list(inspect.signature(factory).parameters.values())
  kinds = [p.kind for p in params]
  assert kinds[:positional] == [inspect.Parameter.POSITIONAL_OR_KEYWORD
                               ] * positional
  assert all(k == inspect.Parameter.KEYWORD_ONLY for k in kinds[positional:])


@pytest.mark.parametrize("alias, twin", TWINS,
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_aliases_take_the_optax_aliases_arguments(alias, twin):
  ours = inspect.signature(alias).parameters
  for name, param in inspect.signature(twin).parameters.items():
    assert name in ours, f"{alias.__name__} lacks {twin.__name__}'s {name}"
    assert ours[name].default == param.default, name


@pytest.mark.parametrize("call, keyword", [
    (lambda: og.greedy_adamw(1e-3, 0.9, 0.999, 1e-8, 1e-2),
     "weight_decay=0.01"),
    (lambda: og.greedy_adam(1e-3, 0.8), "b1=0.8"),
    (lambda: og.greedy_sgd(0.1, 0.9), "momentum=0.9"),
    (lambda: og.hd_sgd(0.1, 0.9), "momentum=0.9"),
    (lambda: og.hd_adam(1e-3, 0.8, 0.99), "b2=0.99"),
    (lambda: og.hypergradient(optax.identity(), 0.1, 1e-3),
     "hypergrad_lr=0.001"),
    (lambda: og.budget_schedule(1e-3, 100), "total_steps=100"),
])
def test_a_positional_call_names_the_keyword(call, keyword):
  with pytest.raises(TypeError, match=keyword):
    call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("make", [
    og.greedy_lr, og.greedy_adam, og.hd_sgd, og.hd_adam,
    lambda lr: og.hypergradient(optax.identity(), lr),
    lambda lr: og.stability_clip(1.0, lr),
    lambda lr: og.budget_schedule(lr, total_steps=10)])
def test_a_rate_that_is_not_finite_is_refused_by_name(make, bad):
  with pytest.raises(ValueError, match=r"learning_rate must be in \(0, inf\),"
                     r" got learning_rate=-?(nan|inf)"):
    make(bad)


def test_learned_schedule_refuses_an_infinite_max_rate():
  with pytest.raises(ValueError,
                     match=r"max_rate must be in \(0, inf\), got max_rate=inf"):
    og.learned_schedule(og.load_policy("dnn"), float("inf"), total_steps=5)


def _updates(tx, steps=4):
  params = {"w": jnp.linspace(-1.0, 1.0, 6)}
  state = tx.init(params)
  out = []
  for t in range(steps):
    grads = {"w": jnp.cos(params["w"] * (t + 1))}
    updates, state = tx.update(grads, state, params, value=None)
    params = optax.apply_updates(params, updates)
    out.append(updates["w"])
  return np.stack(out)


@pytest.mark.parametrize("kwargs", [dict(nesterov=True),
                                    dict(mu_dtype=jnp.bfloat16),
                                    dict(eps_root=1e-3)])
def test_adam_arguments_mean_what_they_mean_in_optax(kwargs):
  # GreedyLR without observations and HD with beta = 0 keep the rate: the
  # updates are optax.adam's.
  expected = _updates(optax.adam(1e-2, **kwargs))
  np.testing.assert_allclose(_updates(og.greedy_adam(1e-2, **kwargs)),
                             expected, rtol=1e-6)
  np.testing.assert_allclose(
      _updates(og.hd_adam(1e-2, hypergrad_lr=0.0, **kwargs)), expected,
      rtol=1e-5)


def test_accumulator_dtype_is_the_momentum_buffers():
  for tx in (og.greedy_sgd(0.1, momentum=0.9,
                          accumulator_dtype=jnp.bfloat16),
             og.hd_sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)):
    trace = optax.tree.get(tx.init({"w": jnp.zeros(3)}), "trace")
    assert trace["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(
      _updates(og.greedy_sgd(0.1, momentum=0.9,
                             accumulator_dtype=jnp.bfloat16)),
      _updates(optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)),
      rtol=1e-6)


def test_two_chained_controllers_are_named_in_the_rate_message():
  tx = optax.chain(og.greedy_adam(1e-3), og.greedy_lr(1e-3))
  with pytest.raises(ValueError, match="multiply their rates"):
    og.get_learning_rate(tx.init({"w": jnp.zeros(2)}))
  with pytest.raises(ValueError, match="a rate of its own"):
    og.hypergradient(og.greedy_adam(1e-3), 1e-3).init({"w": jnp.zeros(2)})
