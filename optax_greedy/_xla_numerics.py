"""Where XLA's compilation changes a value or a cost, and what this package
does about it: every backend-dependent trick of the package, in one place.

Each function answers one behaviour of XLA, on the backends its comment
names; the algorithm modules (``_greedy_lr.py``, ``_hypergradient.py``)
call these and otherwise read as their formulas.

* :func:`divide` (every backend): XLA rewrites a division by a constant as a
  multiplication by its reciprocal, which GreedyLR's exact comparisons with
  ``min_lr`` can see.
* :func:`shared_sums` and :func:`choose` (CPU, GPU/TPU, sharded leaves):
  how the hypergradient's sums over the parameters that share a rate are
  reduced. The values do not depend on it (up to the order of
  floating-point additions); the speed does, and differently on each
  backend:

  - ``"blocked"`` (CPU): one reduction per leaf with several outputs,
    whose elements, in memory order, are added in blocks of 8 rows of up
    to 128 lanes first. XLA's CPU backend emits a reduction to a scalar as
    scalar code (it keeps the sequential order of floating-point
    additions), and does not merge sibling reductions; adding the 8 rows of
    each block lane by lane gives it independent sums it vectorises, in one
    pass over the leaf.
  - ``"per_term"``: one ``jnp.sum`` per term and leaf. XLA's partitioner
    reduces a sharded leaf in place (partial sums and an all-reduce of
    scalars), where a reshape into blocks could gather it: the choice for
    sharded leaves on every backend.
  - ``"concatenated"`` (GPU, TPU): the terms of all leaves that share a
    rate are flattened, concatenated and reduced at once. On an
    accelerator each leaf's reduction is a kernel of its own, and
    launching one per leaf costs more than the arithmetic for models of
    hundreds of leaves; XLA fuses the concatenation into the reduction's
    input.

  ``"auto"`` (the default) takes ``"per_term"`` where a leaf may be sharded
  over several devices, else ``"blocked"`` on CPU and ``"concatenated"``
  elsewhere. The backend is the leaf's platform where the leaf is
  concrete, else the one its abstract mesh names, else JAX's default
  backend; a traced leaf of an unsharded computation on a machine with
  several devices counts as possibly sharded (nothing at trace time says
  otherwise), and so does a leaf on a mesh with automatic axes of more
  than one device (the partitioner may split it without its type saying
  so).
* :func:`after` (every backend): XLA's copy insertion copies a state it
  cannot prove is read before it is overwritten.
* :func:`computed_once` (CPU): XLA's CPU backend recomputes an elementwise
  value inside every fused loop that reads it rather than storing it.
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

  XLA (every backend: copy insertion is backend-independent) copies the
  direction's moments before updating them when nothing orders the update
  after the hypergradient's read of the old moments.

  The direction's state is then updated after the new rates, so after the
  hypergradient has read the old state, and XLA updates the moments in
  place instead of first copying them (one copy of each per step
  otherwise; ``optimization_barrier`` does not order this on CPU).
  ``1 + 0 r`` is 1 for every finite
  ``r``, and a non-finite rate gives 1 too, so the values are the
  gradients' (XLA may round the direction's arithmetic differently in the
  last place, as any change of fusion may).
  """
  def one_times(g, r):
    one = jnp.where(jnp.isfinite(r), 1 + 0 * r, 1)
    return g * one.astype(g.dtype)
  return jax.tree.map(one_times, updates, rates)


def computed_once(condition, compute, otherwise):
  """``compute()`` where the scalar ``condition`` holds, else
  ``otherwise()``, through :func:`jax.lax.cond`.

  XLA's CPU backend fuses an elementwise computation into each loop that
  reads its result and recomputes it there: per-parameter rates read by the
  update and stored in the state would be computed twice, with
  ``d_{t-1}`` read twice. A conditional's result is a buffer: it is
  computed once. (On an accelerator the conditional costs a branch and
  changes nothing else.)
  """
  return jax.lax.cond(condition, compute, otherwise)


def divide(numerator, denominator):
  """``numerator / denominator`` rounded correctly, as Python rounds it.

  XLA (every backend) rewrites a division by a constant as a multiplication
  by its reciprocal, one unit in the last place away from the quotient in
  about half the cases; GreedyLR compares rates with ``min_lr`` exactly, so
  that ulp can change a decision against its PyTorch reference. The
  candidates next to the fast quotient are compared by their exact
  residual ``numerator - q * denominator`` (Dekker's product).
  """
  dtype = numerator.dtype
  split = jnp.asarray(2.0 ** -(-(jnp.finfo(dtype).nmant + 1) // 2) + 1, dtype)

  def halves(x):
    scaled = split * x
    high = scaled - (scaled - x)
    return high, x - high

  def residual(q):
    product = q * denominator
    q_high, q_low = halves(q)
    d_high, d_low = halves(denominator)
    error = (((q_high * d_high - product) + q_high * d_low + q_low * d_high)
             + q_low * d_low)
    return jnp.abs((numerator - product) - error)

  quotient = numerator / denominator
  best, best_residual = quotient, residual(quotient)
  for candidate in (jnp.nextafter(quotient, -jnp.inf),
                    jnp.nextafter(quotient, jnp.inf)):
    candidate_residual = residual(candidate)
    closer = candidate_residual < best_residual
    best = jnp.where(closer, candidate, best)
    best_residual = jnp.where(closer, candidate_residual, best_residual)
  return best
