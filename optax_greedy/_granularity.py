"""Which parameters share a hypergradient rate (the ``granularity``), and
the dtype of the rates."""

import functools

import jax
import jax.numpy as jnp

GRANULARITIES = ("global", "per_tensor", "per_parameter")
GROUPS = "groups"


def kind(granularity) -> str:
  """``granularity``'s kind; raises ``ValueError`` if it is none of them."""
  if hasattr(granularity, "dtype"):
    # What optax.inject_hyperparams passes for a callable it took for a
    # schedule.
    raise ValueError(
        f"granularity must be a string, a pytree of labels or a callable, got"
        f" the array {granularity!r}; under optax.inject_hyperparams, name a"
        " callable granularity in static_args=('granularity',).")
  if isinstance(granularity, str) or granularity is None:
    if granularity not in GRANULARITIES:
      raise ValueError(
          "granularity must be one of "
          f"{', '.join(map(repr, GRANULARITIES))}, a pytree of group labels"
          f" or a callable returning one, got granularity={granularity!r}"
          " (under optax.inject_hyperparams, a callable granularity must be"
          " named in static_args=('granularity',)).")
    return granularity
  if callable(granularity):
    return GROUPS
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(granularity)):
    raise ValueError(
        "granularity must be one of "
        f"{', '.join(map(repr, GRANULARITIES))}, a pytree of group labels or"
        f" a callable returning one, got granularity={granularity!r}.")
  return GROUPS


def full_labels(granularity, tree):
  """Group label of every leaf of ``tree`` (the labels may be a prefix)."""
  labels = granularity(tree) if callable(granularity) else granularity
  return jax.tree.map(
      lambda label, sub: jax.tree.map(lambda _: label, sub), labels, tree)


def scalar_rate_dtype(params, rate_dtype):
  if rate_dtype is not None:
    return jnp.dtype(rate_dtype)
  return functools.reduce(
      jnp.promote_types,
      [jnp.asarray(p).dtype for p in jax.tree.leaves(params)], jnp.float32)


def leaf_rate_dtype(leaf, rate_dtype):
  if rate_dtype is not None:
    return jnp.dtype(rate_dtype)
  return jnp.promote_types(jnp.asarray(leaf).dtype, jnp.float32)
