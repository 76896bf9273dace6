"""Every public transform of optax_greedy, as the contract tests build it.

``REGISTRY`` maps a name to an :class:`Entry`: how to build the transform
(a factory and its keyword arguments, so that ``optax.inject_hyperparams``
can build it too), the direction it scales (an optax transform computed
alongside, so that a test can check ``update == -learning_rate * direction``)
and the rate its state holds before the first update. ``test_contract.py``,
``test_sharding.py`` (through ``_sharded_check.py``) and
``test_checkpoint.py`` run every entry; a new transform joins all of them by
one line here.

Every entry works on the small MLP parameter tree of :func:`mlp_params`
(leaves ``w1``, ``b1``, ``w2``, ``b2``). The hyperparameters make the
interesting state change within a few steps: GreedyLR with ``patience=1``
and a 3-value window changes its rate and wraps its window, the
hypergradient rates move with ``hypergrad_lr`` large enough to be visible in
float32, and :func:`leaf_bounds` caps some leaves and not others.
"""

import dataclasses
import importlib.resources
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy as og

GREEDY = dict(patience=1, window_size=3, cooldown=1)
GROUPS = {"w1": "hidden", "b1": "hidden", "w2": "out", "b2": "out"}
# GreedyLR's window sets the shape of its state: never a traced value.
GREEDY_STATIC = ("window_size",)


def leaf_bounds(params):
  """A stability bound per leaf, ``1 / (1 + ||p||^2)``: a global reduction.

  At :func:`mlp_params` it caps ``w1`` (about 0.03) and ``w2`` (about 0.1)
  below a rate of 0.05 and leaves the zero biases (1.0) uncapped.
  """
  return jax.tree.map(lambda p: 1.0 / (1.0 + jnp.sum(p * p)), params)


def _capped(rate):
  """The rate of ``stability_clip(leaf_bounds, rate)`` before any update."""
  return lambda params: jax.tree.map(lambda b: jnp.minimum(rate, 0.9 * b),
                                     leaf_bounds(params))


def policy_names():
  """The policies shipped with the package (``nmf`` and ``dnn``)."""
  shipped = importlib.resources.files("optax_greedy") / "policies"
  return [name for name in ("nmf", "dnn")
          if any(f.name.startswith(name) for f in shipped.iterdir())]


# Rate-setters placed after a direction, as the README shows them. Each is a
# factory of keyword arguments, so inject_hyperparams can build it too.
def adam_greedy_lr(learning_rate, patience, window_size, cooldown):
  """``chain(scale_by_adam(), greedy_lr(...))``."""
  return optax.chain(
      optax.scale_by_adam(),
      og.greedy_lr(learning_rate, patience=patience, window_size=window_size,
                   cooldown=cooldown))


def momentum_clipped_greedy_lr(learning_rate, patience, window_size,
                               cooldown, total_steps=None):
  """Momentum, then GreedyLR capped at :func:`leaf_bounds`."""
  return optax.chain(
      optax.trace(0.9),
      og.stability_clip(leaf_bounds,
                        inner=og.greedy_lr(learning_rate, patience=patience,
                                           window_size=window_size,
                                           cooldown=cooldown,
                                           total_steps=total_steps)))


def adam_greedy_lr_probe(learning_rate, patience, window_size, cooldown,
                         total_steps, envelope):
  """GreedyLR-Adam with a budget, then the rate probe (told the same
  budget; the contract feeds no ``value_fn``, so it passes updates
  unchanged)."""
  return optax.chain(
      og.greedy_adam(learning_rate, patience=patience,
                     window_size=window_size, cooldown=cooldown,
                     total_steps=total_steps, envelope=envelope),
      og.rate_probe(total_steps, envelope=envelope))


def clipped_hd_sgd(learning_rate, hypergrad_lr):
  """SGD-HD (one global rate) capped at :func:`leaf_bounds` (per leaf)."""
  return og.stability_clip(
      leaf_bounds, inner=og.hd_sgd(learning_rate, hypergrad_lr=hypergrad_lr))


def adam_learned_schedule(policy, max_rate, total_steps):
  """``chain(scale_by_adam(), learned_schedule(load_policy(policy), ...))``."""
  return optax.chain(
      optax.scale_by_adam(),
      og.learned_schedule(og.load_policy(policy), max_rate, total_steps=total_steps))


@dataclasses.dataclass(frozen=True)
class Entry:
  """One transform of the registry.

  Attributes:
    factory: builds the transform from ``kwargs``.
    kwargs: its keyword arguments.
    direction: builds the optax transform whose output the transform scales
      by its rate (``update == -learning_rate * direction``).
    static_args: the arguments ``optax.inject_hyperparams`` must not trace.
    initial_rate: ``params -> rate`` before the first update; ``None``:
      ``kwargs["learning_rate"]``.
    update_is_direction: the update is ``direction``'s output itself, not
      the rate times it (a transform that learns a scale of its whole
      displacement, checked against the optax transform it is defined
      by).
  """

  factory: Callable[..., Any]
  kwargs: dict
  direction: Callable[[], Any] = optax.identity
  static_args: tuple = ()
  initial_rate: Optional[Callable[[Any], Any]] = None
  update_is_direction: bool = False

  def build(self):
    return self.factory(**self.kwargs)

  def rate_before_first_update(self, params):
    if self.initial_rate is None:
      return self.kwargs["learning_rate"]
    return self.initial_rate(params)


def _hd(direction, granularity, rule, hypergrad_lr):
  return Entry(og.hypergradient,
               dict(direction=direction(), learning_rate=0.02,
                    hypergrad_lr=hypergrad_lr, granularity=granularity,
                    rule=rule),
               direction)


# The step budget of the budget-aware entries: of the eight updates of the
# contract's trajectory, two ramp up, three react and three decay.
BUDGET = dict(total_steps=10, envelope=og.Envelope(0.2, 0.3))


def _budget_scale(update):
  """The envelope of :data:`BUDGET` at ``update``, from its definition."""
  ramp = jnp.minimum(1.0, (update + 1) / 3)
  return ramp * jnp.minimum(1.0, 1.0 - (update - 7) / 3)


def _mechanic_reference(learning_rate=0.01, headroom=100.0, start=1 / 6,
                        weight_decay=0.1):
  """``learned_scale``'s definition in optax's own pieces, its documented
  defaults: Mechanic around Adam at ``headroom`` times the rate times
  :data:`BUDGET`'s envelope, its scale started at ``start / headroom``,
  six betas."""
  rate = lambda count: headroom * learning_rate * _budget_scale(count)
  return optax.contrib.mechanize(
      optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(rate)),
      weight_decay=weight_decay, s_init=start / headroom, num_betas=6)


def _scale_free_reference(learning_rate=0.01, headroom=100.0, start=1 / 6,
                          weight_decay=0.1):
  """``learned_scale(decay_form="scale-free")`` from its definition:
  Mechanic without its own decay, fed the gradient plus
  ``weight_decay * |g| * params / |params|``, while its base optimizer
  (Adam at ``headroom`` times the rate times :data:`BUDGET`'s envelope)
  sees the gradient itself."""
  rate = lambda count: headroom * learning_rate * _budget_scale(count)
  base = optax.chain(optax.scale_by_adam(),
                     optax.scale_by_learning_rate(rate))

  def base_update(updates, state, params=None, *, gradient, **extra_args):
    del updates, extra_args
    return base.update(gradient, state, params)

  mechanic = optax.contrib.mechanize(
      optax.GradientTransformationExtraArgs(base.init, base_update),
      weight_decay=0.0, s_init=start / headroom, num_betas=6)

  def update(grads, state, params=None):
    pull = (weight_decay * optax.tree.norm(grads)
            / (optax.tree.norm(params) + 1e-8))
    pulled = jax.tree.map(lambda g, p: g + pull * p, grads, params)
    return mechanic.update(pulled, state, params, gradient=grads)

  return optax.GradientTransformation(mechanic.init, update)


_adam = optax.scale_by_adam
_momentum = lambda: optax.trace(0.9)
_nesterov = lambda: optax.trace(0.9, nesterov=True)

REGISTRY = {
    "greedy_lr": Entry(adam_greedy_lr, dict(learning_rate=0.01, **GREEDY),
                       _adam, GREEDY_STATIC),
    "greedy_sgd": Entry(og.greedy_sgd, dict(learning_rate=0.05, **GREEDY),
                        optax.identity, GREEDY_STATIC),
    "greedy_sgd_momentum": Entry(
        og.greedy_sgd, dict(learning_rate=0.05, momentum=0.9, **GREEDY),
        _momentum, GREEDY_STATIC),
    "greedy_sgd_nesterov": Entry(
        og.greedy_sgd, dict(learning_rate=0.05, momentum=0.9, nesterov=True,
                            **GREEDY), _nesterov, GREEDY_STATIC),
    "greedy_adam": Entry(og.greedy_adam, dict(learning_rate=0.01, **GREEDY),
                         _adam, GREEDY_STATIC),
    "greedy_adamw": Entry(
        og.greedy_adamw,
        dict(learning_rate=0.01, weight_decay=0.01, **GREEDY),
        lambda: optax.chain(optax.scale_by_adam(),
                            optax.add_decayed_weights(0.01)), GREEDY_STATIC),
    "hd_global": _hd(optax.identity, "global", "additive", 1e-2),
    "hd_per_tensor": _hd(_adam, "per_tensor", "additive", 1e-4),
    "hd_per_parameter": _hd(_momentum, "per_parameter", "additive", 1e-2),
    "hd_groups": _hd(optax.identity, GROUPS, "additive", 1e-2),
    "hd_global_multiplicative": _hd(_adam, "global", "multiplicative", 0.05),
    "hd_per_tensor_multiplicative": _hd(_adam, "per_tensor", "multiplicative",
                                        0.05),
    "hd_per_parameter_multiplicative": _hd(
        optax.identity, "per_parameter", "multiplicative", 0.05),
    "hd_groups_multiplicative": _hd(_momentum, GROUPS, "multiplicative",
                                    0.05),
    "hd_sgd": Entry(og.hd_sgd, dict(learning_rate=0.05)),
    "hd_sgd_nesterov": Entry(
        og.hd_sgd, dict(learning_rate=0.05, momentum=0.9, nesterov=True),
        _nesterov),
    "hd_adam": Entry(og.hd_adam, dict(learning_rate=0.01), _adam),
    # The budget-aware form of each family (total_steps).
    "greedy_adam_budget": Entry(
        og.greedy_adam, dict(learning_rate=0.01, **GREEDY, **BUDGET), _adam,
        GREEDY_STATIC, lambda params: 0.01 * _budget_scale(0)),
    "greedy_sgd_momentum_budget": Entry(
        og.greedy_sgd, dict(learning_rate=0.05, momentum=0.9, **GREEDY,
                            **BUDGET), _momentum, GREEDY_STATIC,
        lambda params: 0.05 * _budget_scale(0)),
    "greedy_adam_budget_probe": Entry(
        adam_greedy_lr_probe, dict(learning_rate=0.01, **GREEDY, **BUDGET),
        _adam, GREEDY_STATIC, lambda params: 0.01 * _budget_scale(0)),
    "hd_adam_budget": Entry(og.hd_adam, dict(learning_rate=0.01, **BUDGET),
                            _adam, initial_rate=lambda params: 0.01 / 3),
    "hd_per_parameter_budget": Entry(
        og.hypergradient,
        dict(direction=optax.identity(), learning_rate=0.02,
             hypergrad_lr=0.05, granularity="per_parameter", **BUDGET),
        initial_rate=lambda params: jax.tree.map(
            lambda p: jnp.full_like(p, 0.02 / 3), params)),
    "learned_scale": Entry(
        og.learned_scale, dict(learning_rate=0.01, **BUDGET),
        _mechanic_reference, initial_rate=lambda params: (
            0.01 / 6 * _budget_scale(0)),
        update_is_direction=True),
    "learned_scale_scale_free": Entry(
        og.learned_scale, dict(learning_rate=0.01, weight_decay=0.1,
                               decay_form="scale-free", **BUDGET),
        _scale_free_reference, ("decay_form",), initial_rate=lambda params: (
            0.01 / 6 * _budget_scale(0)),
        update_is_direction=True),
    "stability_clip_greedy_lr_budget": Entry(
        momentum_clipped_greedy_lr,
        dict(learning_rate=0.05, **GREEDY, total_steps=10),
        _momentum, GREEDY_STATIC, _capped(0.05)),
    "stability_clip": Entry(
        og.stability_clip, dict(max_rate=leaf_bounds, learning_rate=0.05),
        static_args=("max_rate",), initial_rate=_capped(0.05)),
    "stability_clip_greedy_lr": Entry(
        momentum_clipped_greedy_lr, dict(learning_rate=0.05, **GREEDY),
        _momentum, GREEDY_STATIC, _capped(0.05)),
    "stability_clip_hd_sgd": Entry(
        clipped_hd_sgd, dict(learning_rate=0.05, hypergrad_lr=1e-2),
        initial_rate=_capped(0.05)),
    **{f"learned_schedule_{policy}": Entry(
        adam_learned_schedule, dict(policy=policy, max_rate=0.01, total_steps=10),
        _adam, ("policy",), lambda params: 0.01)
       for policy in policy_names()},
}
# Transforms that cannot run on an explicit mesh, and why (test_sharding.py
# expects them to fail there; the multi-process test, on explicit meshes,
# leaves them out).
NO_EXPLICIT_MESH = dict.fromkeys(
    ("learned_scale", "learned_scale_scale_free"),
    "optax 0.2.8's mechanize contracts two sharded vectors with "
    "optax.tree.vdot, which explicit sharding refuses (ShardingTypeError: "
    "ambiguous output sharding)")
# Transforms whose compiled update moves parameter data between devices,
# and why.
GATHERS = dict.fromkeys(
    ("learned_scale", "learned_scale_scale_free"),
    "optax 0.2.8's mechanize computes its dot products with "
    "optax.tree.vdot, which ravels each leaf: the sharded leaves are "
    "gathered")
# Transforms whose sharded state test_sharding.py also saves and restores.
SHARDED_CHECKPOINTS = ("greedy_adam", "hd_global", "hd_per_parameter")


def build(name):
  """The transform called ``name``."""
  return REGISTRY[name].build()


def mlp_params(key, d_in=16, hidden=32, d_out=8):
  """A two-layer MLP's parameters (float32), scaled for a stable start."""
  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (d_in, hidden)) / jnp.sqrt(d_in),
      "b1": jnp.zeros(hidden),
      "w2": jax.random.normal(k2, (hidden, d_out)) / jnp.sqrt(hidden),
      "b2": jnp.zeros(d_out),
  }


def plain_dot(a, b, spec):
  """``a @ b``; ``spec`` (the output sharding) is ignored."""
  del spec
  return a @ b


def mlp_loss(params, x, y, dot=plain_dot):
  """Mean squared error of ``tanh(x w1 + b1) w2 + b2`` against ``y``.

  ``dot(a, b, spec)`` multiplies matrices; a sharded caller passes one that
  names the output sharding (explicit sharding needs it for the second,
  row-parallel product).
  """
  h = jnp.tanh(dot(x, params["w1"], ("data", "model")) + params["b1"])
  out = dot(h, params["w2"], ("data", None)) + params["b2"]
  return jnp.mean((out - y) ** 2)


def train_step(tx):
  """A jitted training step of ``tx`` on :func:`mlp_loss`, fed the loss:
  ``step(params, state, x, y) -> (params, state)``."""
  @jax.jit
  def step(params, state, x, y):
    value, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state
  return step


def batch(step, n=32, d_in=16, d_out=8):
  """A noisy regression minibatch for ``step`` (NumPy: no JAX compilation)."""
  rng = np.random.default_rng(step)
  teacher = np.random.default_rng(12345).normal(size=(d_in, d_out)) / 4
  x = rng.normal(size=(n, d_in)).astype(np.float32)
  noise = 0.1 * rng.normal(size=(n, d_out))
  return x, (np.sin(x @ teacher) + noise).astype(np.float32)
