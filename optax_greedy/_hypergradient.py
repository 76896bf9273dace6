"""Hypergradient descent: the learning rate learns itself, as optax transforms.

Reference: Baydin, Cornish, Martinez Rubio, Schmidt, Wood, "Online Learning
Rate Adaptation with Hypergradient Descent", ICLR 2018 (arXiv:1703.04782).
The authors' implementation is gbaydin/hypergradient-descent (PyTorch
``SGDHD`` and ``AdamHD``); one ``update`` call is one reference ``step()``.
"""

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from optax_greedy import _checks

_GRANULARITIES = ("global", "per_tensor", "per_parameter")
_GROUPS = "groups"


class HypergradientState(NamedTuple):
  """State of :func:`hypergradient`; every leaf is an array.

  Attributes:
    learning_rate: the rate(s) applied by the last update: a scalar
      (``"global"``), a params-shaped tree of scalars (``"per_tensor"``), a
      params-shaped tree (``"per_parameter"``), or a dict from group label to
      scalar (groups).
    prev_direction: the direction ``d_{t-1}`` of the last update (params'
      structure and dtypes), zero before the first update.
    inner_state: the state of the wrapped direction transform.
  """

  learning_rate: Any
  prev_direction: optax.Updates
  inner_state: optax.OptState


def _granularity_kind(granularity) -> str:
  """``granularity``'s kind; raises ``ValueError`` if it is none of them."""
  if isinstance(granularity, str) or granularity is None:
    _checks.check_choice("granularity", granularity, _GRANULARITIES)
    return granularity
  if callable(granularity):
    return _GROUPS
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(granularity)):
    raise ValueError(
        "granularity must be one of "
        f"{', '.join(map(repr, _GRANULARITIES))}, a pytree of group labels or"
        f" a callable returning one, got granularity={granularity!r}."
    )
  return _GROUPS


def _full_labels(granularity, tree):
  """Group label of every leaf of ``tree`` (the labels may be a prefix)."""
  labels = granularity(tree) if callable(granularity) else granularity
  return jax.tree.map(
      lambda label, sub: jax.tree.map(lambda _: label, sub), labels, tree)


def _scalar_rate_dtype(params, rate_dtype):
  if rate_dtype is not None:
    return jnp.dtype(rate_dtype)
  return functools.reduce(
      jnp.promote_types,
      [jnp.asarray(p).dtype for p in jax.tree.leaves(params)], jnp.float32)


def _leaf_rate_dtype(leaf, rate_dtype):
  if rate_dtype is not None:
    return jnp.dtype(rate_dtype)
  return jnp.promote_types(jnp.asarray(leaf).dtype, jnp.float32)


def hypergradient(
    direction: optax.GradientTransformation,
    learning_rate: Any,
    hypergrad_lr: Any,
    *,
    granularity: Union[str, Any, Callable[[Any], Any]] = "global",
    rule: str = "additive",
    min_lr: Optional[Any] = 0.0,
    max_lr: Optional[Any] = None,
    rate_dtype: Optional[Any] = None,
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
    \alpha_{t,k} &= \operatorname{clip}\big(\alpha_{t-1,k} + \beta\, h_{t,k},
      \ \texttt{min\_lr},\ \texttt{max\_lr}\big)
      \qquad (\texttt{rule="additive"}) \\
    \alpha_{t,k} &= \operatorname{clip}\Big(\alpha_{t-1,k}\,\big(1 + \beta\,
      \tfrac{h_{t,k}}{\lVert g_{t,k}\rVert\, \lVert d_{t-1,k}\rVert}\big),
      \ \texttt{min\_lr},\ \texttt{max\_lr}\Big)
      \qquad (\texttt{rule="multiplicative"}) \\
    u_t &= -\alpha_t\, d_t,

  with :math:`d_{-1} = 0` (the first update keeps the initial rate) and
  :math:`\beta` = ``hypergrad_lr``. The multiplicative rule uses the cosine
  between ``g_t`` and ``d_{t-1}`` instead of their dot product, so its step
  does not depend on the gradients' scale; with ``0 <= beta < 1`` the factor
  lies in ``[1 - beta, 1 + beta]`` and the rate never changes sign (a zero
  norm counts as cosine 0).

  Granularity (which parameters share a rate ``k``):

  * ``"global"``: one rate; ``h`` is summed over every parameter (the paper's
    and the reference's rule). The sum is a plain ``jnp.sum`` per leaf added
    over leaves, so sharded parameters are reduced in place, not gathered.
  * ``"per_tensor"``: one rate per leaf of the params tree.
  * ``"per_parameter"``: one rate per parameter (``alpha`` has the params'
    shapes, ``h`` is elementwise). With ``"multiplicative"`` the cosine of
    one coordinate is the sign of ``g_i d_i``.
  * a pytree of labels (the params' structure, or a prefix of it) or a
    callable ``params -> labels``, as :func:`optax.partition` takes: one rate
    per label. Under :func:`optax.inject_hyperparams`, name a callable in
    ``static_args``.

  ``hypergrad_lr`` multiplies a sum over the parameters sharing a rate, so a
  good value shrinks as the groups grow: ``"per_parameter"`` usually wants a
  larger ``beta`` than ``"global"``.

  Guard: where the new rate would be non-finite (a NaN or infinite gradient,
  an overflowing hypergradient), the rate keeps its previous value: the
  hypergradient step is skipped for the affected rates (elementwise for
  ``"per_parameter"``) and the rate is never NaN. The non-finite direction is
  still stored, so the next step's hypergradient is skipped too, and the
  update itself is not guarded: wrap the transform in
  :func:`optax.apply_if_finite` to skip such steps altogether.

  Bounds: by default the rate is clipped at ``min_lr=0``. The reference lets
  it go negative, which turns descent into ascent once a noisy hypergradient
  overshoots; a zero rate still recovers, since ``d_{t-1}`` is stored whether
  or not it was applied. Pass ``min_lr=None`` for the reference's unbounded
  rule.

  Memory: the previous direction (one params-sized copy, params' dtypes) plus
  the rates (one params-sized copy in ``rate_dtype`` for
  ``"per_parameter"``, a few scalars otherwise), on top of ``direction``'s
  own state.

  Args:
    direction: the optax transform that turns gradients into the direction
      ``d_t`` (no learning rate: :func:`optax.identity`,
      :func:`optax.trace`, :func:`optax.scale_by_adam`,
      :func:`optax.scale_by_lion`, ...). Its state must not contain a field
      named ``learning_rate`` (``optax.tree.get`` must find one rate).
    learning_rate: the initial rate ``alpha_0`` >= 0 (> 0 for the
      multiplicative rule, which cannot leave zero); a scalar for every
      granularity.
    hypergrad_lr: ``beta`` >= 0, the hypergradient step size (``beta = 0``
      gives ``direction`` with a constant rate). For the multiplicative rule
      ``beta`` is in ``[0, 1)``.
    granularity: ``"global"`` (default, the reference's), ``"per_tensor"``,
      ``"per_parameter"``, a labels pytree or a callable (see above).
    rule: ``"additive"`` (default, the reference's) or ``"multiplicative"``.
    min_lr: lower bound of the rate, default 0 (see above); ``None`` for none.
    max_lr: upper bound of the rate, default ``None`` (none): the
      hypergradient already lowers a rate that makes the loss oscillate.
    rate_dtype: dtype of the rates. Default ``None``: the params' dtype
      widened to at least float32 (the widest over the params for scalar
      rates), because a float16/bfloat16 rate cannot resolve steps below
      1/1000 (1/256) of itself and would not adapt; pass ``jnp.bfloat16`` to
      halve the per-parameter rates' memory for bfloat16 models.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`HypergradientState`; ``optax.tree.get(state, "learning_rate")``
    gives the rate(s). Updates keep the dtype of the incoming updates.

  Example:
    >>> import jax.numpy as jnp, optax, optax_greedy
    >>> tx = optax_greedy.hypergradient(
    ...     optax.scale_by_adam(), 1e-3, 1e-7, granularity="per_tensor")
    >>> params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> optax.tree.get(state, "learning_rate")["w"].shape
    ()
  """
  kind = _granularity_kind(granularity)
  _checks.check_choice("rule", rule, ("additive", "multiplicative"))
  multiplicative = rule == "multiplicative"
  _checks.check_range("learning_rate", learning_rate, 0,
                      low_open=multiplicative)
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
  direction = optax.with_extra_args_support(direction)

  def labels_of(tree):
    return _full_labels(granularity, tree) if kind == _GROUPS else None

  def init_rates(params):
    if kind == "per_parameter":
      # full_like: the rates take the params' sharding.
      return jax.tree.map(
          lambda p: jnp.full_like(p, learning_rate,
                                  _leaf_rate_dtype(p, rate_dtype)), params)
    if kind == "per_tensor":
      return jax.tree.map(
          lambda p: jnp.asarray(learning_rate, _leaf_rate_dtype(p, rate_dtype)),
          params)
    rate = jnp.asarray(learning_rate, _scalar_rate_dtype(params, rate_dtype))
    if kind == "global":
      return rate
    return {label: rate for label in jax.tree.leaves(labels_of(params))}

  def rate_per_leaf(rates, tree, labels):
    """The rate of each leaf of ``tree`` (broadcastable to it)."""
    if kind == "global":
      return jax.tree.map(lambda _: rates, tree)
    if kind == _GROUPS:
      return jax.tree.map(lambda label: rates[label], labels)
    return rates

  def reduce(products, labels):
    """Sums elementwise ``products`` down to the rates' granularity."""
    if kind == "per_parameter":
      return products
    sums = jax.tree.map(jnp.sum, products)
    if kind == "per_tensor":
      return sums
    if kind == "global":
      return sum(jax.tree.leaves(sums))
    totals = {}
    for label, total in zip(jax.tree.leaves(labels), jax.tree.leaves(sums)):
      totals[label] = totals[label] + total if label in totals else total
    return totals

  def init_fn(params):
    inner_state = direction.init(params)
    if optax.tree.get_all_with_path(inner_state, "learning_rate"):
      raise ValueError(
          "direction's state has a field named 'learning_rate', so"
          " optax.tree.get(state, 'learning_rate') would be ambiguous; pass"
          " a direction without a learning rate (e.g. optax.scale_by_adam"
          " rather than optax.adam).")
    return HypergradientState(
        learning_rate=init_rates(params),
        prev_direction=optax.tree.zeros_like(params),
        inner_state=inner_state,
    )

  def new_rates(grads, state, labels):
    rates = state.learning_rate
    per_leaf = rate_per_leaf(rates, grads, labels)

    def dot(a, b):
      return reduce(jax.tree.map(
          lambda x, y, r: x.astype(r.dtype) * y.astype(r.dtype), a, b,
          per_leaf), labels)

    h = dot(grads, state.prev_direction)
    if multiplicative:
      g_sq, d_sq = dot(grads, grads), dot(state.prev_direction,
                                          state.prev_direction)
      candidate = jax.tree.map(
          lambda a, gd, gg, dd: a * (1 + hypergrad_lr * jnp.where(
              (gg > 0) & (dd > 0), gd / (jnp.sqrt(gg) * jnp.sqrt(dd)), 0)),
          rates, h, g_sq, d_sq)
    else:
      candidate = jax.tree.map(lambda a, hk: a + hypergrad_lr * hk, rates, h)

    def guard(new, old):
      new = jnp.where(jnp.isfinite(new), new, old)
      if min_lr is not None or max_lr is not None:
        new = jnp.clip(new, min_lr, max_lr)
      return new.astype(old.dtype)

    return jax.tree.map(guard, candidate, rates)

  def update_fn(updates, state, params=None, **extra_args):
    labels = labels_of(updates)
    rates = new_rates(updates, state, labels)
    directions, inner_state = direction.update(
        updates, state.inner_state, params, **extra_args)
    new_updates = jax.tree.map(
        lambda d, r, g: (-r * d.astype(r.dtype)).astype(g.dtype),
        directions, rate_per_leaf(rates, updates, labels), updates)
    stored = jax.tree.map(lambda d, old: d.astype(old.dtype), directions,
                          state.prev_direction)
    return new_updates, HypergradientState(
        learning_rate=rates, prev_direction=stored, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def hd_sgd(
    learning_rate: Any,
    hypergrad_lr: Any,
    momentum: Any = 0.0,
    nesterov: bool = False,
    *,
    granularity: Union[str, Any, Callable[[Any], Any]] = "global",
    rule: str = "additive",
    min_lr: Optional[Any] = 0.0,
    max_lr: Optional[Any] = None,
    rate_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD-HD and SGDN-HD: SGD (with momentum) with a hypergradient rate.

  The direction is the one SGD applies, after momentum:

  .. math::

    v_t = \mu\, v_{t-1} + g_t, \qquad
    d_t = g_t \ (\mu = 0), \quad v_t \ (\text{momentum}), \quad
    g_t + \mu\, v_t \ (\text{Nesterov}),

  and :math:`h_t = g_t \cdot d_{t-1}`, as the reference ``SGDHD``
  (momentum without dampening, ``v_0 = g_0``). For L2 weight decay as the
  reference's ``weight_decay``, chain :func:`optax.add_decayed_weights`
  before it: the decayed gradient then enters both ``d_t`` and ``h_t``.

  Args:
    learning_rate: the initial rate, >= 0.
    hypergrad_lr: ``beta`` >= 0 (the reference's ``hypergrad_lr``).
    momentum: ``mu`` in [0, 1), default 0 (plain SGD-HD, no momentum
      buffer).
    nesterov: Nesterov momentum (SGDN-HD); needs ``momentum > 0``.
    granularity, rule, min_lr, max_lr, rate_dtype: as in
      :func:`hypergradient` (defaults ``"global"``, ``"additive"``, 0,
      ``None``, ``None``).

  Returns:
    ``hypergradient(optax.trace(momentum, nesterov), ...)``, or
    ``hypergradient(optax.identity(), ...)`` for ``momentum=0``.

  Example:
    >>> tx = hd_sgd(0.01, 1e-3, momentum=0.9, nesterov=True)
  """
  _checks.check_range("momentum", momentum, 0, 1, high_open=True)
  no_momentum = _checks.is_concrete(momentum) and momentum == 0
  if nesterov and no_momentum:
    raise ValueError("nesterov=True requires momentum > 0, got momentum=0.")
  if no_momentum:
    inner = optax.identity()
  else:
    inner = optax.trace(decay=momentum, nesterov=nesterov)
  return hypergradient(
      inner, learning_rate, hypergrad_lr, granularity=granularity, rule=rule,
      min_lr=min_lr, max_lr=max_lr, rate_dtype=rate_dtype)


def _scale_by_adam_reference_eps(b1, b2, eps, eps_root):
  """Adam's direction with ``eps`` added before bias correction.

  ``m_hat / (sqrt(v_hat + eps_root) + eps / sqrt(1 - b2**t))``, which is the
  reference's (and PyTorch's) ``step_size * m / (sqrt(v) + eps)``.
  """

  def init_fn(params):
    return optax.ScaleByAdamState(
        count=jnp.zeros([], jnp.int32),
        mu=optax.tree.zeros_like(params),
        nu=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    eps_hat = eps / jnp.sqrt(1 - b2**count)
    directions = jax.tree.map(
        lambda m, v: m / (jnp.sqrt(v + eps_root) + eps_hat.astype(m.dtype)),
        mu_hat, nu_hat)
    return directions, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def hd_adam(
    learning_rate: Any,
    hypergrad_lr: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    eps_placement: str = "optax",
    granularity: Union[str, Any, Callable[[Any], Any]] = "global",
    rule: str = "additive",
    min_lr: Optional[Any] = 0.0,
    max_lr: Optional[Any] = None,
    rate_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam-HD: Adam with a hypergradient rate.

  The direction is Adam's bias-corrected step and the hypergradient uses the
  previous one, as the reference ``AdamHD``:

  .. math::

    d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon},
    \qquad h_t = g_t \cdot d_{t-1}.

  With ``hypergrad_lr=0`` this is :func:`optax.adam` with a constant rate.

  Args:
    learning_rate: the initial rate, >= 0.
    hypergrad_lr: ``beta`` >= 0; ``h`` is a sum of ``|g|``-sized terms,
      hence values far smaller than for SGD-HD.
    b1, b2: Adam's decay rates in [0, 1), defaults 0.9 and 0.999.
    eps: Adam's ``eps`` >= 0, default 1e-8.
    eps_root: added to ``v_hat`` under the square root, >= 0, default 0.
    eps_placement: ``"optax"`` (default: ``eps`` added after bias correction,
      as :func:`optax.scale_by_adam`) or ``"reference"`` (``eps`` added to
      the uncorrected ``sqrt(v)``, as PyTorch and the reference, i.e.
      ``eps / sqrt(1 - b2**t)`` after correction). The two differ only
      where ``sqrt(v_hat)`` is comparable to ``eps``.
    granularity, rule, min_lr, max_lr, rate_dtype: as in
      :func:`hypergradient` (defaults ``"global"``, ``"additive"``, 0,
      ``None``, ``None``).

  Returns:
    ``hypergradient(optax.scale_by_adam(b1, b2, eps, eps_root), ...)`` (or
    its reference-``eps`` twin).

  Example:
    >>> tx = hd_adam(1e-3, 1e-7, eps_placement="reference")
  """
  _checks.check_range("b1", b1, 0, 1, high_open=True)
  _checks.check_range("b2", b2, 0, 1, high_open=True)
  _checks.check_range("eps", eps, 0)
  _checks.check_range("eps_root", eps_root, 0)
  _checks.check_choice("eps_placement", eps_placement, ("optax", "reference"))
  if eps_placement == "optax":
    inner = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
  else:
    inner = _scale_by_adam_reference_eps(b1, b2, eps, eps_root)
  return hypergradient(
      inner, learning_rate, hypergrad_lr, granularity=granularity, rule=rule,
      min_lr=min_lr, max_lr=max_lr, rate_dtype=rate_dtype)
