"""Hypergradient descent: the learning rate learns itself, as optax transforms.

Reference: Baydin, Cornish, Martinez Rubio, Schmidt, Wood, "Online Learning
Rate Adaptation with Hypergradient Descent", ICLR 2018 (arXiv:1703.04782).
The authors' implementation is gbaydin/hypergradient-descent (PyTorch
``SGDHD`` and ``AdamHD``); one ``update`` call is one reference ``step()``.
"""

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike
import optax

from optax_greedy import _budget
from optax_greedy import _checks
from optax_greedy import _granularity
from optax_greedy import _hd_directions
from optax_greedy import _xla_numerics

_GROUPS = _granularity.GROUPS


class HypergradientState(NamedTuple):
  """State of :func:`hypergradient`; every leaf is an array.

  Attributes:
    learning_rate: the rate(s) applied by the most recent update (before the
      first update, the rate the first update would apply): a scalar
      (``"global"``), a tree of scalars with the params' structure
      (``"per_tensor"`` and groups, where the leaves of a group hold the
      same value), or a params-shaped tree (``"per_parameter"``). Always a
      prefix of the params' tree, so it can be broadcast leaf by leaf. A
      record: overwriting it (as :func:`optax_greedy.stability_clip` does)
      changes no later update.
    prev_direction: the direction ``d_{t-1}`` of the last update (params'
      structure and dtypes, zero before the first update), or ``None`` when
      the direction's own state determines it (:func:`hd_adam`,
      :func:`hd_sgd` with non-Nesterov momentum), which then recompute it.
    inner_state: the state of the wrapped direction transform.
    next_learning_rate: the hypergradient's own rate(s), same structure as
      ``learning_rate``, from which the next update takes its hypergradient
      step; without ``total_steps`` equal to ``learning_rate`` after every
      update, with it ``learning_rate`` is this times the budget's envelope.
      A value written here between updates is where the next update
      continues from.
    step: with ``total_steps``, the number of updates; ``None`` without it.
  """

  learning_rate: Any
  prev_direction: Optional[optax.Updates]
  inner_state: optax.OptState
  next_learning_rate: Any
  step: Optional[jax.Array] = None


# The multiplicative rule's default ``hypergrad_lr``, by granularity, chosen
# by the benchmark's hypergradient-defaults study (see the README).
_MULTIPLICATIVE_DEFAULT = {"global": 0.05, "per_tensor": 0.05, _GROUPS: 0.05,
                           "per_parameter": 0.01}


def hypergradient_around(
    direction: _hd_directions.Direction,
    learning_rate,
    *,
    hypergrad_lr,
    granularity,
    rule,
    min_lr,
    max_lr,
    rate_dtype,
    additive_default,
    reduction,
    total_steps,
    envelope,
) -> optax.GradientTransformationExtraArgs:
  """:func:`hypergradient` around a direction that may recompute ``d_{t-1}``.

  ``direction.previous``, when not ``None``, recomputes ``d_{t-1}`` from the
  direction's state instead of storing it. ``additive_default`` is the
  additive rule's default ``hypergrad_lr`` (``None``: required).
  ``total_steps`` and ``envelope`` are the step budget's
  (:func:`optax_greedy._budget.controller`).
  """
  kind = _granularity.kind(granularity)
  _checks.check_choice("reduction", reduction, _xla_numerics.REDUCTIONS)
  _checks.check_choice("rule", rule, ("additive", "multiplicative"))
  multiplicative = rule == "multiplicative"
  if hypergrad_lr is None:
    hypergrad_lr = (_MULTIPLICATIVE_DEFAULT[kind] if multiplicative
                    else additive_default)
    if hypergrad_lr is None:
      raise ValueError(
          "hypergrad_lr is required with rule='additive' (its scale depends"
          " on the gradients'), got hypergrad_lr=None.")
  for name, value in (("learning_rate", learning_rate),
                      ("hypergrad_lr", hypergrad_lr), ("min_lr", min_lr),
                      ("max_lr", max_lr)):
    if value is not None or name in ("learning_rate", "hypergrad_lr"):
      _checks.check_number(name, value)
  if hasattr(rate_dtype, "shape"):
    _checks.check_static("rate_dtype", rate_dtype, "a dtype or None", ())
  _checks.check_range("learning_rate", learning_rate, 0,
                      low_open=multiplicative, finite=True)
  _checks.check_range("hypergrad_lr", hypergrad_lr, 0, 1 if multiplicative
                      else None, high_open=multiplicative)
  concrete = _checks.is_concrete
  if concrete(min_lr) and concrete(max_lr) and min_lr > max_lr:
    raise ValueError(
        f"min_lr must be <= max_lr={max_lr!r}, got min_lr={min_lr!r}.")
  _checks.check_range(
      "learning_rate", learning_rate,
      min_lr if concrete(min_lr) else None,
      max_lr if concrete(max_lr) else None)
  transform = optax.with_extra_args_support(direction.transform)
  previous = direction.previous

  def labels_of(tree):
    return _granularity.full_labels(granularity, tree) if kind == _GROUPS else None

  def init_rates(params):
    if kind == "per_parameter":
      # full_like: the rates take the params' sharding.
      return jax.tree.map(
          lambda p: jnp.full_like(p, learning_rate,
                                  _granularity.leaf_rate_dtype(p, rate_dtype)), params)
    if kind == "global":
      return jnp.asarray(learning_rate, _granularity.scalar_rate_dtype(params, rate_dtype))
    return jax.tree.map(
        lambda p: jnp.asarray(learning_rate, _granularity.leaf_rate_dtype(p, rate_dtype)),
        params)

  def per_leaf(rates, tree):
    """The rate of each leaf of ``tree`` (broadcastable to it)."""
    if kind == "global":
      return jax.tree.map(lambda _: rates, tree)
    return rates

  def init_fn(params):
    inner_state = transform.init(params)
    if optax.tree.get_all_with_path(inner_state, "learning_rate"):
      raise ValueError(
          "direction's state has a field named 'learning_rate': it applies"
          " a rate of its own, which the hypergradient's would multiply"
          " (and optax.tree.get(state, 'learning_rate') would be"
          " ambiguous); pass a direction without a learning rate (e.g."
          " optax.scale_by_adam rather than optax.adam or greedy_adam).")
    rates = init_rates(params)
    prev_direction = (optax.tree.zeros_like(params) if previous is None
                      else None)
    return HypergradientState(
        learning_rate=rates, prev_direction=prev_direction,
        inner_state=inner_state, next_learning_rate=rates)

  def new_rates(grads, prev, rates, labels):
    """The rates of this update: one hypergradient step from ``rates``."""
    if kind == "per_parameter":
      def step(r, g, d):
        gd = g.astype(r.dtype) * d.astype(r.dtype)
        if multiplicative:  # The cosine of one coordinate is sign(g d).
          return r * (1 + hypergrad_lr * jnp.sign(gd))
        return r + hypergrad_lr * gd
      candidate = jax.tree.map(step, rates, grads, prev)
    else:
      g_leaves, treedef = jax.tree.flatten(grads)
      d_leaves = treedef.flatten_up_to(prev)
      r_leaves = (treedef.flatten_up_to(rates) if kind != "global"
                  else [rates] * len(g_leaves))
      # The leaves that share each rate: all, one each, or a group's.
      if kind == "global":
        shared = [list(range(len(g_leaves)))]
      elif kind == _GROUPS:
        by_label = {}
        for i, label in enumerate(treedef.flatten_up_to(labels)):
          by_label.setdefault(label, []).append(i)
        shared = list(by_label.values())
      else:
        shared = [[i] for i in range(len(g_leaves))]
      sums: list[Any] = [None] * len(g_leaves)
      for members in shared:
        parts = _xla_numerics.shared_sums(
            [g_leaves[i] for i in members], [d_leaves[i] for i in members],
            r_leaves[members[0]].dtype, multiplicative, reduction)
        for i in members:
          sums[i] = parts
      if kind == "global":
        sums, r_leaves = sums[:1], [rates]

      def shared_step(r, parts):
        parts = [x.astype(r.dtype) for x in parts]
        if multiplicative:
          gd, gg, dd = parts
          cosine = jnp.where((gg > 0) & (dd > 0),
                             gd / (jnp.sqrt(gg) * jnp.sqrt(dd)), 0)
          return r * (1 + hypergrad_lr * cosine)
        return r + hypergrad_lr * parts[0]

      candidate = [shared_step(r, parts) for r, parts in zip(r_leaves, sums)]
      candidate = (candidate[0] if kind == "global"
                   else treedef.unflatten(candidate))

    def guard(new, old):
      new = jnp.where(jnp.isfinite(new), new, old)
      if min_lr is not None or max_lr is not None:
        new = jnp.clip(new, min_lr, max_lr)
      return new.astype(old.dtype)

    return jax.tree.map(guard, candidate, rates)

  def react(updates, state, params=None, **extra_args):
    """One hypergradient step from the rates ``next_learning_rate``."""
    del params, extra_args
    own = state.next_learning_rate

    def step():
      prev = (state.prev_direction if previous is None
              else previous(state.inner_state))
      return new_rates(updates, prev, own, labels_of(updates))

    if direction.started is not None and kind == "per_parameter":
      # No step before the first update (d_{-1} = 0).
      rates = _xla_numerics.computed_once(
          direction.started(state.inner_state), step, lambda: own)
    else:
      rates = step()
    return state._replace(next_learning_rate=rates)

  def apply(updates, state, rates, params=None, **extra_args):
    """``-rates * d_t``, the direction run after the rates are read."""
    leaf_rates = per_leaf(rates, updates)
    directions, inner_state = transform.update(
        _xla_numerics.after(updates, leaf_rates), state.inner_state, params,
        **extra_args)
    new_updates = jax.tree.map(
        lambda d, r, g: (-r * d.astype(r.dtype)).astype(g.dtype),
        directions, leaf_rates, updates)
    stored = None if previous is not None else jax.tree.map(
        lambda d, old: d.astype(old.dtype), directions, state.prev_direction)
    return new_updates, state._replace(prev_direction=stored,
                                       inner_state=inner_state)

  return _budget.controller(
      init_fn, react, lambda state: state.next_learning_rate,
      total_steps=total_steps, envelope=envelope, apply=apply)


@_checks.keyword_only_after(2, ("hypergrad_lr",))
@_checks.envelope_keywords
def hypergradient(
    direction: optax.GradientTransformation,
    learning_rate: ArrayLike,
    *,
    hypergrad_lr: Optional[ArrayLike] = None,
    granularity: Union[str, Any, Callable[[Any], Any]] = "global",
    rule: str = "multiplicative",
    min_lr: Optional[ArrayLike] = 0.0,
    max_lr: Optional[ArrayLike] = None,
    rate_dtype: Optional[DTypeLike] = None,
    reduction: str = "auto",
    total_steps: Optional[int] = None,
    envelope: _budget.Envelope = _budget.DEFAULT_ENVELOPE,
) -> optax.GradientTransformationExtraArgs:
  r"""Applies ``-alpha_t * d_t``, with rates tuned online by hypergradients.

  ``direction`` produces ``d_t`` from the gradient ``g_t`` (e.g.
  :func:`optax.identity` for SGD, :func:`optax.trace` for momentum,
  :func:`optax.scale_by_adam` for Adam). Since
  :math:`\theta_t = \theta_{t-1} - \alpha\, d_{t-1}`, the derivative of the
  loss with respect to the rate is :math:`-g_t \cdot d_{t-1}`, and one step
  of gradient descent on the rate (the *hypergradient* step) is taken before
  the rate is used:

  .. math::

    h_{t,k} &= \textstyle\sum_{i \in k} g_{t,i}\, d_{t-1,i}
      \qquad (\text{the sum over the parameters } i
      \text{ that share rate } k) \\
    \alpha_{t,k} &= \operatorname{clip}\Big(\alpha_{t-1,k}\,\big(1 + \beta\,
      \tfrac{h_{t,k}}{\lVert g_{t,k}\rVert\, \lVert d_{t-1,k}\rVert}\big),
      \ \texttt{min\_lr},\ \texttt{max\_lr}\Big)
      \qquad (\texttt{rule="multiplicative"}, \text{ the default}) \\
    \alpha_{t,k} &= \operatorname{clip}\big(\alpha_{t-1,k} + \beta\, h_{t,k},
      \ \texttt{min\_lr},\ \texttt{max\_lr}\big)
      \qquad (\texttt{rule="additive"}, \text{ the paper's}) \\
    u_t &= -\alpha_t\, d_t,

  with :math:`d_{-1} = 0` (the first update keeps the initial rate) and
  :math:`\beta` = ``hypergrad_lr``. The multiplicative rule uses the cosine
  between ``g_t`` and ``d_{t-1}`` instead of their dot product, so its step
  depends neither on the gradients' scale nor on the size of the groups:
  with ``0 <= beta < 1`` the factor lies in ``[1 - beta, 1 + beta]`` and the
  rate never changes sign (a zero norm counts as cosine 0). The additive
  rule's ``h`` scales with the gradients and the number of parameters that
  share a rate, so its ``beta`` must be tuned per problem; it is the rule of
  Baydin et al. and of their reference implementation.

  Default ``hypergrad_lr`` (``None``): for the multiplicative rule 0.05
  (``"per_parameter"``: 0.01, since there every step moves each rate by a
  factor ``1 +- beta``), chosen on a benchmark of small problems with SGD,
  momentum and Adam and checked on held-out ones (the README has the
  numbers): untuned, they beat the paper's additive rule with its
  ``beta``. The additive rule has no scale-free default: it needs
  ``hypergrad_lr`` (:func:`hd_sgd` and :func:`hd_adam` default to the
  paper's values).

  Granularity (which parameters share a rate ``k``):

  * ``"global"``: one rate; ``h`` is summed over every parameter (the paper's
    and the reference's rule). Sharded parameters are reduced in place, not
    gathered (see ``reduction``).
  * ``"per_tensor"``: one rate per leaf of the params tree.
  * ``"per_parameter"``: one rate per parameter (``alpha`` has the params'
    shapes, ``h`` is elementwise). With ``"multiplicative"`` the cosine of
    one coordinate is the sign of ``g_i d_i``.
  * a pytree of labels (the params' structure, or a prefix of it) or a
    callable ``params -> labels``, as :func:`optax.partition` takes: one rate
    per label, stored once per leaf (the leaves of a label hold the same
    value). Under :func:`optax.inject_hyperparams`, name a callable in
    ``static_args``.

  The state's ``learning_rate`` is the rate applied by the most recent
  update (the initial rate before any), a record; the rate the next
  hypergradient step starts from is ``next_learning_rate``, the same name
  as in :func:`optax_greedy.greedy_lr`. A value written into
  ``next_learning_rate`` between updates is where the rate continues from
  (for groups each leaf continues from its own stored value, with its
  group's step); one written into ``learning_rate`` changes nothing.

  Guard: where the new rate would be non-finite (a NaN or infinite gradient,
  an overflowing hypergradient), the rate keeps its previous value: the
  hypergradient step is skipped for the affected rates (elementwise for
  ``"per_parameter"``) and the rate is never NaN. The non-finite direction
  stays the previous direction, so the next step's hypergradient is skipped
  too, and the update itself is not guarded: wrap the transform in
  :func:`optax.apply_if_finite` to skip such steps altogether.

  Bounds: by default the rate is clipped at ``min_lr=0``. The reference lets
  it go negative, which turns descent into ascent once a noisy hypergradient
  overshoots; with the additive rule a zero rate still recovers, since
  ``d_{t-1}`` is kept whether or not it was applied (the multiplicative rule
  cannot leave zero). Pass ``min_lr=None`` for the reference's unbounded
  rule.

  Memory and passes: this function stores the previous direction (one
  params-sized copy, params' dtypes) on top of ``direction``'s own state,
  plus the rates, twice (the one applied and the next one: two
  params-sized copies in ``rate_dtype`` for ``"per_parameter"``, one
  scalar per leaf at most otherwise). Scalar rates
  add one reduction that reads the gradient and ``d_{t-1}`` (all three sums
  of the multiplicative rule in the same pass); per-parameter rates read
  and write the rate array. :func:`hd_adam` and :func:`hd_sgd` (momentum
  without Nesterov) recompute ``d_{t-1}`` from the moments instead of
  storing it: no params-sized memory beyond Adam's (momentum's) own state
  except the per-parameter rates. How the reductions are computed depends
  on the backend and on each leaf's sharding (see the README's cost
  section); the values do not.

  Args:
    direction: the optax transform that turns gradients into the direction
      ``d_t`` (no learning rate: :func:`optax.identity`,
      :func:`optax.trace`, :func:`optax.scale_by_adam`,
      :func:`optax.scale_by_lion`, ...). Its state must not contain a field
      named ``learning_rate`` (``optax.tree.get`` must find one rate).
    learning_rate: the initial rate ``alpha_0``, a number >= 0 (> 0 for the
      multiplicative rule, which cannot leave zero); one for every
      granularity.
    hypergrad_lr: ``beta``, the hypergradient step size (``beta = 0`` gives
      ``direction`` with a constant rate): in ``[0, 1)`` for the
      multiplicative rule (default ``None``: 0.05, 0.01 per parameter),
      >= 0 and required for the additive rule.
    granularity: ``"global"`` (default, the reference's), ``"per_tensor"``,
      ``"per_parameter"``, a labels pytree or a callable (see above).
    rule: ``"multiplicative"`` (default, scale-free) or ``"additive"`` (the
      reference's).
    min_lr: lower bound of the rate, default 0 (see above); ``None`` for
      none.
    max_lr: upper bound of the rate, default ``None`` (none): the
      hypergradient already lowers a rate that makes the loss oscillate.
    rate_dtype: dtype of the rates. Default ``None``: the params' dtype
      widened to at least float32 (the widest over the params for a global
      rate), because a float16/bfloat16 rate cannot resolve steps below
      1/1000 (1/256) of itself and would not adapt; pass ``jnp.bfloat16`` to
      halve the per-parameter rates' memory for bfloat16 models.
    reduction: how the sums of a scalar rate are computed: ``"auto"``
      (default: by the backend and each leaf's sharding), ``"blocked"``
      (vectorised on CPU), ``"per_term"`` (reduces sharded leaves in place)
      or ``"concatenated"`` (one reduction over all the leaves of a rate,
      for accelerators). The values are the same up to the order of
      floating-point additions; only the speed differs.
    total_steps: the run's number of updates, or ``None`` (the default: no
      budget). With a number, the rate applied is the hypergradient's rate
      times an envelope that ramps up over the first ``ramp_fraction`` of
      the budget and decays to zero over the last ``decay_fraction`` (shape
      ``decay_shape``) of ``envelope``; the hypergradient steps only in
      between, and continues from its own rate (``next_learning_rate`` in
      the state).
    envelope: an :class:`optax_greedy.Envelope` (used only with
      ``total_steps``); default ``Envelope()`` (0.05, 0.2, ``"linear"``).
      See :func:`optax_greedy.budget_schedule`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`HypergradientState`; ``optax.tree.get(state, "learning_rate")``
    gives the rate(s) applied by the last update and ``optax.tree.get(state,
    "next_learning_rate")`` the rate(s) the next one steps from. Updates keep the dtype of the incoming updates.

  Example:
    >>> import jax.numpy as jnp, optax, optax_greedy
    >>> tx = optax_greedy.hypergradient(
    ...     optax.scale_by_lion(), 1e-3, granularity="per_tensor")
    >>> params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> optax.tree.get(state, "learning_rate")["w"].shape
    ()

  References:
    Baydin et al., `Online Learning Rate Adaptation with Hypergradient
    Descent <https://arxiv.org/abs/1703.04782>`_, ICLR 2018.
  """
  return hypergradient_around(
      _hd_directions.Direction(direction), learning_rate,
      hypergrad_lr=hypergrad_lr, granularity=granularity, rule=rule,
      min_lr=min_lr, max_lr=max_lr, rate_dtype=rate_dtype,
      additive_default=None, reduction=reduction, total_steps=total_steps,
      envelope=envelope)
