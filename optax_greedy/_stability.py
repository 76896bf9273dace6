"""Caps a learning rate at a stability bound computed from the parameters.

Reference: "Efficient learning rate schedules for stochastic non-negative
matrix factorization via reinforcement learning", ICLR 2023 Tiny Papers
(Amazon): initialise and clip the rate at the stability bound, and cap how
far any parameter moves in one update.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from optax_greedy import _checks


class StabilityClipState(NamedTuple):
  """State of :func:`stability_clip`; every field is an array (or a pytree).

  Attributes:
    bound: ``max_rate(params)`` as last computed (before ``safety``), one
      scalar per parameter block.
    proposed_learning_rate: the rate the wrapped transform proposed in the
      last update, per block (measured, see :func:`stability_clip`).
    applied_learning_rate: the rate actually applied in the last update, per
      block: ``min(proposed, safety * bound)``.
    count: number of updates (``optax.safe_increment``).
    inner_state: the wrapped transform's state.
  """

  bound: Any
  proposed_learning_rate: Any
  applied_learning_rate: Any
  count: jax.Array
  inner_state: Any


def _block_rate(updates, directions):
  """``-<u, d> / <d, d>`` over all leaves of one block (0 where ``d = 0``).

  Both are divided by ``max |d|`` first so the squares cannot overflow.
  """
  u_leaves = jax.tree.leaves(updates)
  d_leaves = jax.tree.leaves(directions)
  dtype = jnp.result_type(jnp.float32, *u_leaves, *d_leaves)
  top = jnp.max(jnp.stack(
      [jnp.max(jnp.abs(d), initial=0).astype(dtype) for d in d_leaves]))
  top = jnp.where(top > 0, top, 1)
  # jnp.sum(a * b), not jnp.vdot: vdot flattens first, which gathers a
  # sharded parameter onto every device.
  along = sum(jnp.sum((u.astype(dtype) / top) * (d.astype(dtype) / top))
              for u, d in zip(u_leaves, d_leaves))
  norm = sum(jnp.sum(jnp.square(d.astype(dtype) / top)) for d in d_leaves)
  return jnp.where(norm > 0, -along / jnp.where(norm > 0, norm, 1), 0)


def stability_clip(
    max_rate: Callable[[Any], Any],
    learning_rate: Any,
    *,
    safety: Any = 0.9,
    every: int = 1,
    max_update: Optional[Any] = None,
    bound_args: tuple[str, ...] = (),
) -> optax.GradientTransformationExtraArgs:
  r"""Applies a learning rate, capped per block at ``safety * max_rate(params)``.

  ``learning_rate`` sets the rate: a number, an optax schedule, or any
  rate-setting transform (:func:`optax_greedy.greedy_lr`, a hypergradient
  transform, ``optax.inject_hyperparams(optax.sgd)(...)``). This transform
  runs it on the incoming direction ``d`` (the gradient, or the output of a
  preconditioner placed before it), reads the rate :math:`\eta` it proposes
  for each block :math:`b` from its output ``u`` (so any rate-setter works,
  whatever its state looks like; exact when ``u = -eta * d``, the
  gradient-weighted mean of the rates when they differ within a block), and
  rescales the block so the applied rate never exceeds the cap:

  .. math::

    \eta_b = -\frac{\langle u_b, d_b\rangle}{\langle d_b, d_b\rangle},
    \qquad c_b = \texttt{safety}\cdot\texttt{bound\_fn(params)}_b,
    \qquad u_b \leftarrow u_b \cdot \min\!\big(1, c_b / \eta_b\big)
    \ (\text{if } \eta_b > c_b),

  then, with ``max_update``, clips every entry to
  ``[-max_update, max_update]``. A block is a leaf of ``max_rate``'s output,
  which must be a prefix of the params' tree: a scalar (one bound for all),
  ``{"W": ..., "H": ...}`` for :func:`optax_greedy.nmf.stability_bounds`, or
  one bound per leaf. The bound is recomputed from the current params every
  ``every`` updates (and kept in between); a NaN or negative bound stops
  the block (cap 0). The wrapped transform keeps its own state and sees its
  own proposal, not the capped step.

  Keep the factors non-negative by adding :func:`optax.keep_params_nonnegative`
  after this transform (it replaces ``u`` by ``-p`` where ``p + u < 0``,
  i.e. it projects ``p + u`` onto ``p >= 0``, which
  :func:`optax.projections.projection_non_negative` does to params).

  Args:
    max_rate: ``params -> bounds``, the largest stable rate per block, e.g.
      :func:`optax_greedy.nmf.stability_bounds` (or a ``functools.partial``
      of it with ``joint=True`` / ``batch_size=b``); pure jnp, jit-safe.
    learning_rate: the proposed rate: a float > 0, a schedule
      ``count -> rate``, or a rate-setting
      :class:`optax.GradientTransformation` (whose ``update`` receives the
      extra arguments, e.g. ``value=loss`` for ``greedy_lr``).
    safety: the fraction of the bound allowed, in (0, 1]. Default 0.9: a
      margin for the bound being computed from the params before the step
      and, in stochastic settings, for noise.
    every: recompute the bound every ``every >= 1`` updates (default 1;
      larger saves the eigenvalue computations on big models).
    max_update: if given (> 0), the largest change of any single parameter
      in one update (default ``None``: no elementwise cap).
    bound_args: names of extra keyword arguments of ``update`` that are also
      passed to ``max_rate`` (default none), for bounds that depend on the
      step's data: ``bound_args=("columns",)`` with ``update(...,
      columns=B)`` and :func:`optax_greedy.nmf.stability_bounds` gives the
      bound exact for minibatch ``B``. ``init`` calls ``max_rate(params)``
      alone, so those arguments need defaults.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`StabilityClipState`; ``optax.tree.get(state, "bound")`` and
    ``optax.tree.get(state, "applied_learning_rate")`` are the bound and the
    rate used in the last update (pytrees of one scalar per block).

  Example:
    >>> import functools, jax, optax, optax_greedy
    >>> from optax_greedy import nmf
    >>> V = nmf.digits_matrix().T
    >>> params = nmf.init(jax.random.key(0), V, rank=8)
    >>> bounds = functools.partial(nmf.stability_bounds, joint=True)
    >>> tx = optax.chain(
    ...     optax_greedy.stability_clip(bounds, optax_greedy.greedy_lr(1.0)),
    ...     optax.keep_params_nonnegative())
    >>> state = tx.init(params)
    >>> value, grads = jax.value_and_grad(nmf.loss)(params, V)
    >>> updates, state = tx.update(grads, state, params, value=value)
    >>> params = optax.apply_updates(params, updates)
    >>> rates = optax.tree.get(state, "applied_learning_rate")
  """
  if not callable(max_rate):
    raise ValueError(f"max_rate must be callable, got max_rate={max_rate!r}.")
  _checks.check_range("safety", safety, 0, 1, low_open=True)
  if not isinstance(every, int) or isinstance(every, bool):
    raise ValueError(f"every must be an integer >= 1, got every={every!r}.")
  _checks.check_range("every", every, 1)
  if max_update is not None:
    _checks.check_range("max_update", max_update, 0, low_open=True)
  if isinstance(bound_args, str) or not all(
      isinstance(k, str) for k in bound_args):
    raise ValueError(
        f"bound_args must be a tuple of names, got bound_args={bound_args!r}.")
  if isinstance(learning_rate, optax.GradientTransformation):
    inner = optax.with_extra_args_support(learning_rate)
  else:
    if not callable(learning_rate):
      _checks.check_range("learning_rate", learning_rate, 0, low_open=True)
    inner = optax.with_extra_args_support(
        optax.scale_by_learning_rate(learning_rate))

  def bounds_of(params, **kwargs):
    bounds = max_rate(params, **kwargs)
    try:
      jax.tree.map(lambda b, p: None, bounds, params)
    except ValueError as error:
      raise ValueError(
          "max_rate(params) must return a pytree whose structure is a prefix"
          f" of the params' (one scalar per block): {error}") from error
    return bounds

  def init_fn(params):
    bounds = jax.tree.map(
        lambda b: jnp.asarray(b, jnp.result_type(float, b)),
        bounds_of(params))
    zeros = jax.tree.map(jnp.zeros_like, bounds)
    return StabilityClipState(
        bound=bounds,
        proposed_learning_rate=zeros,
        applied_learning_rate=zeros,
        count=jnp.zeros([], jnp.int32),
        inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    missing = [k for k in bound_args if k not in extra_args]
    if missing:
      raise ValueError(
          f"update() needs the keyword arguments {missing} named in"
          " bound_args.")
    bounds = jax.lax.cond(
        state.count % every == 0,
        lambda: jax.tree.map(
            lambda new, old: jnp.asarray(new).astype(old.dtype),
            bounds_of(params, **{k: extra_args[k] for k in bound_args}),
            state.bound),
        lambda: state.bound,
    )
    directions = updates
    updates, inner_state = inner.update(
        directions, state.inner_state, params, **extra_args)
    proposed = jax.tree.map(
        lambda b, u, d: _block_rate(u, d).astype(b.dtype),
        bounds, updates, directions)
    caps = jax.tree.map(
        lambda b: jnp.where(b >= 0, safety * b, 0).astype(b.dtype), bounds)
    scales = jax.tree.map(
        lambda eta, cap: jnp.where(eta > cap, cap / eta, 1).astype(eta.dtype),
        proposed, caps)
    updates = jax.tree.map(
        lambda s, block: jax.tree.map(lambda u: (u * s).astype(u.dtype), block),
        scales, updates)
    if max_update is not None:
      updates = optax.tree.clip(updates, -max_update, max_update)
    applied = jax.tree.map(jnp.multiply, proposed, scales)
    new_state = StabilityClipState(
        bound=bounds,
        proposed_learning_rate=proposed,
        applied_learning_rate=applied,
        count=optax.safe_increment(state.count),
        inner_state=inner_state,
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
