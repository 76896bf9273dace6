"""The transforms that the sharding and checkpoint tests run, by name.

Each entry builds a transform for the small MLP parameter tree of
:func:`mlp_params` (leaves ``w1``, ``b1``, ``w2``, ``b2``). Adding a transform
to both test files is one line here.

The hyperparameters are chosen so that the interesting state changes within a
few steps: GreedyLR with ``patience=1`` and a 3-value window changes its rate
and wraps its window, the hypergradient rates move with ``hypergrad_lr`` large
enough to be visible in float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy as og

GREEDY = dict(patience=1, window_size=3, cooldown=1)
GROUPS = {"w1": "hidden", "b1": "hidden", "w2": "out", "b2": "out"}


def leaf_bounds(params):
  """A stability bound per leaf, ``1 / (1 + ||p||^2)``: a global reduction."""
  return jax.tree.map(lambda p: 1.0 / (1.0 + jnp.sum(p * p)), params)


TRANSFORMS = {
    "greedy_lr": lambda: og.greedy_lr(0.05, **GREEDY),
    "greedy_sgd": lambda: og.greedy_sgd(0.05, momentum=0.9, **GREEDY),
    "greedy_adam": lambda: og.greedy_adam(0.01, **GREEDY),
    "greedy_adamw": lambda: og.greedy_adamw(0.01, weight_decay=0.01, **GREEDY),
    "hd_global": lambda: og.hypergradient(optax.identity(), 0.05, 1e-2),
    "hd_per_tensor": lambda: og.hypergradient(
        optax.scale_by_adam(), 0.01, 1e-4, granularity="per_tensor"),
    "hd_per_parameter": lambda: og.hypergradient(
        optax.trace(0.9), 0.05, 1e-2, granularity="per_parameter"),
    "hd_groups": lambda: og.hypergradient(
        optax.identity(), 0.05, 1e-2, granularity=GROUPS),
    "hd_multiplicative": lambda: og.hypergradient(
        optax.scale_by_adam(), 0.01, 0.05, granularity="per_tensor",
        rule="multiplicative"),
    "sgd_hd_nesterov": lambda: og.hd_sgd(0.05, 1e-2, momentum=0.9,
                                         nesterov=True),
    "hd_adam": lambda: og.hd_adam(0.01, 1e-4),
    "stability_clip_greedy": lambda: optax.chain(
        optax.trace(0.9),
        og.stability_clip(leaf_bounds, og.greedy_lr(0.05, **GREEDY),
                          safety=0.9, max_update=0.05)),
    "learned_schedule": lambda: optax.chain(
        optax.scale_by_adam(),
        og.learned_schedule(og.load_policy(), 0.01, budget=10)),
}
# Transforms whose sharded state test_sharding.py also saves and restores.
SHARDED_CHECKPOINTS = ("greedy_adam", "hd_global", "hd_per_parameter")


def build(name):
  """The transform called ``name``."""
  return TRANSFORMS[name]()


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


def batch(step, n=32, d_in=16, d_out=8):
  """A noisy regression minibatch for ``step`` (NumPy: no JAX compilation)."""
  rng = np.random.default_rng(step)
  teacher = np.random.default_rng(12345).normal(size=(d_in, d_out)) / 4
  x = rng.normal(size=(n, d_in)).astype(np.float32)
  noise = 0.1 * rng.normal(size=(n, d_out))
  return x, (np.sin(x @ teacher) + noise).astype(np.float32)
