"""How the hypergradient's sums are computed: the choices that depend on the
backend and on each leaf's sharding, in one place.

The hypergradient of a scalar rate needs, over the parameters that share
it, ``sum(g d)`` and, for the multiplicative rule, ``sum(g g)`` and
``sum(d d)``. The values do not depend on how they are computed (up to the
order of floating-point additions); the speed does, and differently on each
backend:

* ``"blocked"`` (CPU): one reduction per leaf with several outputs, whose
  elements, in memory order, are added in blocks of 8 rows of up to 128
  lanes first. XLA's CPU backend emits a reduction to a scalar as scalar
  code (it keeps the sequential order of floating-point additions), and
  does not merge sibling reductions; adding the 8 rows of each block lane by
  lane gives it independent sums it vectorises, in one pass over the leaf.
* ``"per_term"``: one ``jnp.sum`` per term and leaf. XLA's partitioner
  reduces a sharded leaf in place (partial sums and an all-reduce of
  scalars), where a reshape into blocks could gather it: the choice for
  sharded leaves on every backend.
* ``"concatenated"`` (GPU, TPU): the terms of all leaves that share a rate
  are flattened, concatenated and reduced at once. On an accelerator each
  leaf's reduction is a kernel of its own, and launching one per leaf costs
  more than the arithmetic for models of hundreds of leaves; XLA fuses the
  concatenation into the reduction's input.

``"auto"`` (the default) takes ``"per_term"`` where a leaf may be sharded
over several devices, else ``"blocked"`` on CPU and ``"concatenated"``
elsewhere. The backend is the leaf's platform where the leaf is concrete,
else the one its abstract mesh names, else JAX's default backend; a traced
leaf of an unsharded computation on a machine with several devices counts
as possibly sharded (nothing at trace time says otherwise), and so does a
leaf on a mesh with automatic axes of more than one device (the partitioner
may split it without its type saying so).
"""

import math
from typing import Sequence

import jax
import jax.core
import jax.numpy as jnp

REDUCTIONS = ("auto", "blocked", "per_term", "concatenated")
# "blocked" adds _BLOCK consecutive rows of at most _LANES elements first.
_BLOCK = 8
_LANES = 128


def _platform(leaf) -> str:
  """The platform (``"cpu"``, ``"gpu"``, ``"tpu"``) a leaf lives on."""
  if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
    return next(iter(leaf.devices())).platform
  mesh = jax.typeof(leaf).sharding.mesh
  platform = getattr(getattr(mesh, "abstract_device", None), "platform",
                     None) if not mesh.empty else None
  return platform or jax.default_backend()


def _may_be_sharded(leaf) -> bool:
  """Whether a leaf may be split over several devices."""
  if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
    return not leaf.sharding.is_fully_replicated
  sharding = jax.typeof(leaf).sharding
  mesh = sharding.mesh
  if mesh.empty:
    return jax.device_count() > 1
  if any(axis is not None for axis in sharding.spec):
    return True
  # The partitioner may split a leaf over a mesh's automatic axes without
  # its type saying so.
  return any(kind == jax.sharding.AxisType.Auto and size > 1
             for kind, size in zip(mesh.axis_types, mesh.axis_sizes))


def choose(reduction: str, leaves: Sequence[jax.Array]) -> str:
  """The reduction for ``leaves`` (one rate's leaves): ``reduction``
  itself, or what ``"auto"`` means for them (module doc)."""
  if reduction != "auto":
    return reduction
  if any(_may_be_sharded(leaf) for leaf in leaves):
    return "per_term"
  if _platform(leaves[0]) == "cpu":
    return "blocked"
  return "concatenated"


def _variadic_sum(operands, axes, dtype):
  zero = jnp.zeros([], dtype)
  return jax.lax.reduce(operands, (zero,) * len(operands),
                        lambda x, y: tuple(a + b for a, b in zip(x, y)),
                        axes)


def _blocked(terms, dtype):
  """The sums of one leaf's terms, by blocks of ``_BLOCK`` rows (module
  doc); a leaf whose size is not a multiple of ``_BLOCK`` is reduced
  directly."""
  size = terms[0].size
  if size % _BLOCK:
    return _variadic_sum(terms, tuple(range(terms[0].ndim)), dtype)
  lanes = math.gcd(size // _BLOCK, _LANES)
  blocks = tuple(t.reshape(-1, _BLOCK, lanes) for t in terms)
  return tuple(jnp.sum(p) for p in _variadic_sum(blocks, (1,), dtype))


def shared_sums(grads, directions, dtype, cosine, reduction):
  """The sums over several leaves that share one rate.

  Args:
    grads, directions: lists of the leaves ``g`` and ``d_{t-1}``.
    dtype: the dtype of the sums.
    cosine: whether to add ``sum(g g)`` and ``sum(d d)`` to ``sum(g d)``.
    reduction: one of :data:`REDUCTIONS`.

  Returns:
    ``(sum(g d),)`` or ``(sum(g d), sum(g g), sum(d d))``, scalars in
    ``dtype``.
  """
  reduction = choose(reduction, grads)
  terms = []
  for g, d in zip(grads, directions):
    g, d = g.astype(dtype), d.astype(dtype)
    terms.append((g * d, g * g, d * d) if cosine else (g * d,))
  if reduction == "concatenated":
    flat = tuple(jnp.concatenate([t[i].reshape(-1) for t in terms])
                 for i in range(len(terms[0])))
    return _variadic_sum(flat, (0,), dtype)
  per_leaf = [tuple(jnp.sum(x) for x in t) if reduction == "per_term"
              else _blocked(t, dtype) for t in terms]
  return tuple(sum(parts) for parts in zip(*per_leaf))


def after(updates, rates):
  """``updates`` times 1, a 1 computed from ``rates`` (leafwise).

  The direction's state is then updated after the new rates, so after the
  hypergradient has read the old state, and XLA updates the moments in
  place instead of first copying them (one copy of each per step
  otherwise; ``optimization_barrier`` does not order this on CPU). It
  applies on every backend: the copies are inserted by XLA's
  backend-independent copy insertion. ``1 + 0 r`` is 1 for every finite
  ``r``, and a non-finite rate gives 1 too, so the values are the
  gradients' (XLA may round the direction's arithmetic differently in the
  last place, as any change of fusion may).
  """
  def one_times(g, r):
    one = jnp.where(jnp.isfinite(r), 1 + 0 * r, 1)
    return g * one.astype(g.dtype)
  return jax.tree.map(one_times, updates, rates)
