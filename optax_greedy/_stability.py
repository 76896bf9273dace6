"""Caps a learning rate at a stability bound computed from the parameters.

Reference: "Efficient learning rate schedules for stochastic non-negative
matrix factorization via reinforcement learning", ICLR 2023 Tiny Papers
(Amazon): initialise and clip the rate at the stability bound, and cap how
far any parameter moves in one update.
"""

import numbers
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import optax

from optax_greedy import _checks


class StabilityClipState(NamedTuple):
  """State of :func:`stability_clip`; every field is an array (or a pytree).

  Attributes:
    bound: ``max_rate(params)`` as last computed (before ``safety``), one
      scalar per parameter block.
    count: number of updates (``optax.safe_increment``).
    inner_state: the wrapped rate-setter's state. Its ``learning_rate`` field
      holds the rate actually applied by the last update, after the cap.
  """

  bound: Any
  count: jax.Array
  inner_state: Any


class ScheduledRateState(NamedTuple):
  """State of the rate-setter that :func:`stability_clip` builds from a
  number or a schedule.

  Attributes:
    learning_rate: the rate applied by the last update (before the first:
      the rate the first update would apply).
    count: number of updates (``optax.safe_increment``).
  """

  learning_rate: Any
  count: jax.Array


def _scheduled_rate(learning_rate) -> optax.GradientTransformationExtraArgs:
  """``u = -learning_rate(count) * d``, recording the rate in its state.

  The ``learning_rate`` field is a record: each update recomputes the rate
  from the number or schedule, whatever the field holds.
  """
  schedule = learning_rate if callable(learning_rate) else (
      lambda count: learning_rate)

  def rate_at(count):
    return jnp.asarray(schedule(count), jnp.result_type(float))

  def init_fn(params):
    del params
    count = jnp.zeros([], jnp.int32)
    return ScheduledRateState(learning_rate=rate_at(count), count=count)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    rate = rate_at(state.count)
    updates = jax.tree.map(lambda u: (-rate * u).astype(u.dtype), updates)
    return updates, ScheduledRateState(
        learning_rate=rate,
        count=jnp.asarray(optax.safe_increment(state.count)))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _read_rate(inner_state):
  """The wrapped state's single ``learning_rate`` field, or ``ValueError``."""
  found = optax.tree.get_all_with_path(inner_state, "learning_rate")
  if len(found) != 1:
    raise ValueError(
        "stability_clip reads the rate from the wrapped transform's state,"
        " which must have exactly one field named 'learning_rate' (the rate"
        f" of its last update); found {len(found)}. Pass a number, a schedule"
        " or a rate-setting transform of optax_greedy (greedy_lr,"
        " hypergradient, learned_schedule).")
  return found[0][1]


def _on_common_blocks(rates, caps, params):
  """``rates`` and ``caps`` (both prefixes of ``params``) on one structure.

  The structure is the finer of the two: the other one's leaves are repeated
  over the blocks they cover (the params' full structure where neither is
  finer).
  """
  rate_tree, cap_tree = jax.tree.structure(rates), jax.tree.structure(caps)
  if rate_tree == cap_tree:
    return rates, caps
  if jax.tree_util.treedef_is_leaf(rate_tree):
    return jax.tree.map(lambda c: rates, caps), caps
  if jax.tree_util.treedef_is_leaf(cap_tree):
    return rates, jax.tree.map(lambda r: caps, rates)
  return jax.tree.broadcast(rates, params), jax.tree.broadcast(caps, params)


def stability_clip(
    max_rate: Union[ArrayLike, Callable[..., Any]],
    learning_rate: Optional[optax.ScalarOrSchedule] = None,
    *,
    inner: Optional[optax.GradientTransformation] = None,
    safety: ArrayLike = 0.9,
    every: int = 1,
    max_update: Optional[ArrayLike] = None,
    bound_args: tuple[str, ...] = (),
) -> optax.GradientTransformationExtraArgs:
  r"""Applies a learning rate, capped per block at ``safety * max_rate(params)``.

  The rate comes from ``learning_rate`` (a number or an optax schedule) or
  from ``inner``, a rate-setting transform of this library
  (:func:`optax_greedy.greedy_lr`, :func:`optax_greedy.hypergradient` and
  its wrappers, :func:`optax_greedy.learned_schedule`); pass exactly one.
  This transform runs it on the
  incoming direction (the gradient, or the output of a preconditioner placed
  before it), reads the rate :math:`\eta` it applied from the
  ``learning_rate`` field of its new state (a scalar, or a tree that is a
  prefix of the params, down to one rate per element), and rescales the
  update so that no block's rate exceeds its cap:

  .. math::

    c_b = \texttt{safety}\cdot\texttt{max\_rate(params)}_b, \qquad
    u \leftarrow u \cdot \min\!\big(1, c_b / \eta\big)
    \quad (\text{elementwise for per-element rates}),

  then, with ``max_update``, clips every entry to
  ``[-max_update, max_update]``. A block is a leaf of ``max_rate``'s output,
  which must be a prefix of the params' tree: a scalar (one bound for all),
  ``{"W": ..., "H": ...}`` for :func:`optax_greedy.nmf.stability_bounds`, or
  one bound per leaf. The bound is recomputed from the current params every
  ``every`` updates (and kept in between); a NaN or negative bound stops
  the block (cap 0).

  The rate applied, :math:`\min(\eta, c_b)`, is written back into the wrapped
  state's ``learning_rate`` field, so ``optax.tree.get(state,
  "learning_rate")`` is the rate actually applied, on the finer of the
  rate's and the caps' blocks. That field is a record in every family: the
  wrapped transform keeps its own rate (``next_learning_rate`` in
  :func:`optax_greedy.greedy_lr` and :func:`optax_greedy.hypergradient`,
  the fraction in :func:`optax_greedy.learned_schedule`) and the cap
  applies to each update.

  Keep the factors non-negative by adding :func:`optax.keep_params_nonnegative`
  after this transform (it replaces ``u`` by ``-p`` where ``p + u < 0``,
  i.e. it projects ``p + u`` onto ``p >= 0``, which
  :func:`optax.projections.projection_non_negative` does to params).

  Args:
    max_rate: the largest allowed rate: a number > 0 (one cap for every
      parameter), or ``params -> bounds``, the largest stable rate per block,
      e.g. :func:`optax_greedy.nmf.stability_bounds` (or a
      ``functools.partial`` of it with ``joint=True`` / ``batch_size=b``);
      pure jnp, jit-safe. The same name and meaning as in
      :func:`optax_greedy.learned_schedule`.
    learning_rate: the rate to cap, a number > 0 or a schedule
      ``count -> rate``; or ``None`` with ``inner``.
    inner: the transform that sets the rate to cap, or ``None`` with
      ``learning_rate``: its state has exactly one field named
      ``learning_rate`` holding the rate of its last update, and its
      ``update`` receives the extra arguments (e.g. ``value=loss`` for
      ``greedy_lr``). Put preconditioners (momentum, Adam) before this
      transform, not inside ``inner``.
    safety: the fraction of the bound allowed, in (0, 1]. Default 0.9: a
      margin for the bound being computed from the params before the step
      and, in stochastic settings, for noise.
    every: recompute the bound every ``every >= 1`` updates (default 1;
      larger saves the eigenvalue computations on big models).
    max_update: if given (> 0), the largest change of any single parameter
      in one update (default ``None``: no elementwise cap). The recorded
      rate is the one before this clip.
    bound_args: names of extra keyword arguments of ``update`` that are also
      passed to ``max_rate`` (default none), for bounds that depend on the
      step's data: ``bound_args=("columns",)`` with ``update(...,
      columns=B)`` and :func:`optax_greedy.nmf.stability_bounds` gives the
      bound exact for minibatch ``B``. ``init`` calls ``max_rate(params)``
      alone, so those arguments need defaults.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`StabilityClipState`; ``optax.tree.get(state, "learning_rate")``
    is the rate applied by the last update (before the first update, the
    capped initial rate) and ``optax.tree.get(state, "bound")`` the bound.

  Raises:
    ValueError: if both or neither of ``learning_rate`` and ``inner`` are
      given, or a transform is passed as ``learning_rate``; at ``init``, if
      ``inner``'s state has no field (or more than one) named
      ``learning_rate``.

  Example:
    >>> import functools, jax, optax, optax_greedy
    >>> from optax_greedy import nmf
    >>> V = jax.random.uniform(jax.random.key(0), (20, 30))
    >>> params = nmf.init(jax.random.key(1), V, rank=4)
    >>> bounds = functools.partial(nmf.stability_bounds, joint=True)
    >>> tx = optax.chain(
    ...     optax_greedy.stability_clip(
    ...         bounds, inner=optax_greedy.greedy_lr(1.0)),
    ...     optax.keep_params_nonnegative())
    >>> state = tx.init(params)
    >>> value, grads = jax.value_and_grad(nmf.loss)(params, V)
    >>> updates, state = tx.update(grads, state, params, value=value)
    >>> params = optax.apply_updates(params, updates)
    >>> rates = optax.tree.get(state, "learning_rate")  # {"W": ..., "H": ...}
    >>> bool(rates["W"] <= 0.9 * optax.tree.get(state, "bound")["W"])
    True
  """
  if not callable(max_rate):
    _checks.check_number("max_rate", max_rate,
                         " or a callable params -> bounds")
    _checks.check_range("max_rate", max_rate, 0, low_open=True)
    constant_rate = max_rate
    max_rate = lambda params, **_: constant_rate  # noqa: E731
  _checks.check_number("safety", safety)
  _checks.check_range("safety", safety, 0, 1, low_open=True)
  _checks.check_integer("every", every, 1)
  if max_update is not None:
    _checks.check_number("max_update", max_update)
    _checks.check_range("max_update", max_update, 0, low_open=True)
  if isinstance(bound_args, str) or not all(
      isinstance(k, str) for k in bound_args):
    raise ValueError(
        f"bound_args must be a tuple of names, got bound_args={bound_args!r}.")
  if isinstance(learning_rate, optax.GradientTransformation):
    raise ValueError(
        "learning_rate takes a number or a schedule; pass a rate-setting"
        " transform as inner=, e.g. stability_clip(max_rate,"
        " inner=greedy_lr(1.0)).")
  if (learning_rate is None) == (inner is None):
    raise ValueError(
        "stability_clip needs exactly one of learning_rate= (a number or a"
        " schedule) and inner= (a rate-setting transform), got"
        f" learning_rate={learning_rate!r}, inner={inner!r}.")
  if inner is not None:
    if not isinstance(inner, optax.GradientTransformation):
      raise ValueError(
          "inner must be a rate-setting transform (e.g. greedy_lr(1.0));"
          f" for a number or a schedule pass learning_rate=, got"
          f" inner={inner!r}.")
    inner = optax.with_extra_args_support(inner)
  else:
    if not callable(learning_rate):
      _checks.check_number("learning_rate", learning_rate,
                           " > 0 or a schedule")
      _checks.check_range("learning_rate", learning_rate, 0, low_open=True,
                      finite=True)
    inner = _scheduled_rate(learning_rate)

  def bounds_of(params, **kwargs):
    bounds = max_rate(params, **kwargs)
    try:
      jax.tree.map(lambda b, p: None, bounds, params)
    except ValueError as error:
      raise ValueError(
          "max_rate(params) must return a pytree whose structure is a prefix"
          f" of the params' (one scalar per block): {error}") from error
    return bounds

  def capped(rates, bounds, params):
    """The scale of each block's update and the rate it then applies."""
    caps = jax.tree.map(lambda b: jnp.where(b >= 0, safety * b, 0), bounds)
    rates, caps = _on_common_blocks(rates, caps, params)
    over = jax.tree.map(lambda r, c: r > c, rates, caps)
    scales = jax.tree.map(
        lambda o, r, c: jnp.where(o, c.astype(r.dtype) / r, 1).astype(r.dtype),
        over, rates, caps)
    applied = jax.tree.map(
        lambda o, r, c: jnp.where(o, c.astype(r.dtype), r), over, rates, caps)
    return scales, applied

  def init_fn(params):
    bounds = jax.tree.map(
        lambda b: jnp.asarray(b, jnp.result_type(float, b)),
        bounds_of(params))
    inner_state = inner.init(params)
    _, applied = capped(_read_rate(inner_state), bounds, params)
    return StabilityClipState(
        bound=bounds,
        count=jnp.zeros([], jnp.int32),
        inner_state=optax.tree.set(inner_state, learning_rate=applied),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
          "stability_clip computes its bound from the params: pass"
          " params=... to update().")
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
    # The wrapped transform's own record had its structure, which the capped
    # record may not have (it is on the finer of the rate's and the caps'
    # blocks); no transform reads its record, so a placeholder of the own
    # structure stands in (and XLA drops it).
    own = _read_rate(jax.eval_shape(inner.init, params))
    inner_state = optax.tree.set(
        state.inner_state,
        learning_rate=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), own))
    updates, inner_state = inner.update(updates, inner_state, params,
                                        **extra_args)
    scales, applied = capped(_read_rate(inner_state), bounds, params)
    updates = jax.tree.map(
        lambda s, block: jax.tree.map(lambda u: (u * s).astype(u.dtype), block),
        scales, updates)
    if max_update is not None:
      limit = jnp.asarray(max_update)
      updates = optax.tree.clip(updates, -limit, limit)
    new_state = StabilityClipState(
        bound=bounds,
        count=jnp.asarray(optax.safe_increment(state.count)),
        inner_state=optax.tree.set(inner_state, learning_rate=applied),
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
