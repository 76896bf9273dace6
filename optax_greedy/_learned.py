"""Learned schedules: a small policy sets the rate as a fraction of a bound.

A learning-rate schedule is a policy: from what an optimizer can observe
(the loss, the update, the step) it picks the next rate. Following the
reinforcement-learning study behind GreedyLR (Amazon, "Efficient learning
rate schedules for stochastic non-negative matrix factorization via
reinforcement learning", ICLR 2023 Tiny Papers), the policy here does not
pick the rate itself but a *fraction in (0, 1] of a stability bound*, so no
output of the policy can break stability: the bound is the safety layer and
the policy only decides how much of it to use.

The policy is a tiny MLP (:class:`PolicyMLP`, flax.linen) on five
scale-free features, computed by :func:`policy_features` (see its docstring). A
policy trained on stochastic NMF ships with the package (``policies/``) and
is read by :func:`load_policy`; ``examples/train_nmf_policy.py`` trains it.
"""

import importlib.resources
from typing import Any, Callable, NamedTuple, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_greedy import _checks

#: Version of the policy file format read by :func:`load_policy`.
POLICY_VERSION = 1
#: Names of the policy's input features, in order (see :func:`policy_features`).
FEATURES = ("log_loss_ratio", "loss_slope", "log_grad_norm_ratio",
            "fraction", "budget_used")
#: Smallest fraction of the bound the policy can choose.
MIN_FRACTION = 1e-3
# Every feature is clipped to [-_FEATURE_CLIP, _FEATURE_CLIP].
_FEATURE_CLIP = 10.0
_SHIPPED = "nmf_policy.npz"


class PolicyMLP(nn.Module):
  """The policy: features -> fraction of the bound in [MIN_FRACTION, 1].

  ``fraction = MIN_FRACTION + (1 - MIN_FRACTION) * sigmoid(mlp(features))``
  with a ``tanh`` MLP of ``len(hidden)`` hidden layers. Non-finite outputs
  (only possible with non-finite weights) become 1, the bound itself.

  Attributes:
    hidden: widths of the hidden layers. Default (8, 8): 129 weights,
      enough for a schedule that depends on progress and time, few enough
      for evolution strategies.
  """

  hidden: tuple = (8, 8)

  @nn.compact
  def __call__(self, features):
    x = features
    for width in self.hidden:
      x = jnp.tanh(nn.Dense(width)(x))
    z = nn.Dense(1)(x)[..., 0]
    fraction = MIN_FRACTION + (1.0 - MIN_FRACTION) * jax.nn.sigmoid(z)
    return jnp.where(jnp.isfinite(fraction), fraction, 1.0)


class LearnedScheduleState(NamedTuple):
  """State of :func:`learned_schedule`; every field is an array.

  Attributes:
    learning_rate: the rate applied by the last update (a scalar, or a tree
      shaped like ``max_rate(params)``).
    fraction: the fraction of the bound applied by the last update.
    log_loss0: log of the first finite loss observed (NaN before).
    log_loss: exponential moving average of the log loss (NaN before).
    slope: moving average of the per-step change of ``log_loss``.
    log_grad_norm0: log of the first finite update norm (NaN before).
    log_grad_norm: moving average of the log update norm (NaN before).
    count: number of updates so far (``optax.safe_increment``).
  """

  learning_rate: Any
  fraction: jax.Array
  log_loss0: jax.Array
  log_loss: jax.Array
  slope: jax.Array
  log_grad_norm0: jax.Array
  log_grad_norm: jax.Array
  count: jax.Array


def policy_features(state: LearnedScheduleState, budget) -> jax.Array:
  r"""The policy's five features, each finite and in [-10, 10].

  .. math::

    x = \big(\bar\ell_t - \ell_0,\;
      T \cdot \bar s_t / 10,\;
      \bar g_t - g_0,\;
      f_{t-1},\;
      t / T\big)

  where :math:`\bar\ell_t` is the moving average of the log loss,
  :math:`\ell_0` the first log loss, :math:`\bar s_t` the moving average of
  the per-step change of :math:`\bar\ell` (times the budget :math:`T` it is
  the log-loss change the run would make at its current speed, /10),
  :math:`\bar g_t, g_0` the same for the log norm of the incoming updates,
  :math:`f_{t-1}` the last fraction and :math:`t/T` the budget used. All
  are invariant to the scale of the loss, of the parameters and of the
  bound. NaN becomes 0 and +/-inf the clip value.

  Args:
    state: the schedule's state after observing the current loss.
    budget: the run's number of steps ``T``.

  Returns:
    A float32 vector of length 5, ordered as :data:`FEATURES`.
  """
  budget = jnp.asarray(budget, jnp.float32)
  raw = jnp.stack([
      state.log_loss - state.log_loss0,
      budget * state.slope / 10.0,
      state.log_grad_norm - state.log_grad_norm0,
      state.fraction,
      state.count / budget,
  ]).astype(jnp.float32)
  raw = jnp.nan_to_num(raw, nan=0.0, posinf=_FEATURE_CLIP,
                       neginf=-_FEATURE_CLIP)
  return jnp.clip(raw, -_FEATURE_CLIP, _FEATURE_CLIP)


def policy_fraction(policy_params, features) -> jax.Array:
  """The fraction of the bound chosen by the policy for ``features``.

  Non-finite features are cleaned as in :func:`policy_features` first, so the result
  is finite and in [MIN_FRACTION, 1] for any input.

  Args:
    policy_params: the MLP's parameters (``{"params": ...}`` of
      :class:`PolicyMLP`, as :func:`load_policy` returns).
    features: array ``[..., 5]``.

  Returns:
    Array ``[...]`` of fractions.
  """
  features = jnp.nan_to_num(
      jnp.asarray(features, jnp.float32), nan=0.0, posinf=_FEATURE_CLIP,
      neginf=-_FEATURE_CLIP)
  features = jnp.clip(features, -_FEATURE_CLIP, _FEATURE_CLIP)
  return PolicyMLP(hidden=policy_hidden(policy_params)).apply(
      policy_params, features)


def _ema(decay, old, new):
  """Moving average that starts at the first value (``old`` NaN)."""
  return jnp.where(jnp.isnan(old), new, decay * old + (1.0 - decay) * new)


def learned_schedule(
    policy_params: Any,
    max_rate: Union[float, Callable[[Any], Any]],
    *,
    budget: int,
    decay: float = 0.9,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates by ``-fraction_t * max_rate(params_t)``, a learned rate.

  Each call ``update(updates, state, params, value=loss)`` observes ``loss``
  (the loss at ``params``) and the norm of ``updates``, computes the
  features of :func:`policy_features`, asks the policy for

  .. math::

    f_t = \pi_\theta(x_t) \in [10^{-3}, 1], \qquad
    \text{lr}_t = f_t \cdot \texttt{max\_rate}(\text{params}_t),

  and returns ``-lr_t * updates``. With ``max_rate`` a stability bound no
  policy output can exceed it. The shipped policy was trained with
  ``max_rate = lambda p: nmf.stability_bounds(p, joint=True)`` (SGD on
  column minibatches); for other models pass the largest rate you would
  allow. To also cap at ``safety * bound`` (e.g. a minibatch bound) and
  clip single updates, wrap it:
  ``stability_clip(max_rate, learned_schedule(...))``. ``value=None``
  keeps the last fraction (the bound is still recomputed) and observes
  nothing.

  Reference: "Efficient learning rate schedules for stochastic non-negative
  matrix factorization via reinforcement learning", ICLR 2023 Tiny Papers
  (Amazon), which learns the schedule within the NMF stability bound.

  Args:
    policy_params: parameters of :class:`PolicyMLP` (``load_policy()`` for
      the shipped NMF policy). May be traced (the training script vmaps
      over a population of them).
    max_rate: the rate that a fraction of 1 means: a number, or a function
      of the current params returning a scalar or a tree that is a prefix of
      the params (per-block rates, e.g. ``{"W": bW, "H": bH}``).
    budget: the number of steps of the run, >= 1; the policy sees the
      fraction used. The shipped policy was trained at budgets 80-200.
    decay: of the moving averages of log loss, its slope and the log update
      norm, in [0, 1). Default 0.9 (the training script's): about 10 steps
      of memory, enough to average minibatch noise.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`LearnedScheduleState`; ``optax.tree.get(state, "fraction")`` and
    ``optax.tree.get(state, "learning_rate")`` are the last fraction and
    rate.

  Example:
    >>> import jax, optax, optax_greedy
    >>> from optax_greedy import nmf
    >>> V = jax.random.uniform(jax.random.key(0), (20, 30))
    >>> params = nmf.init(jax.random.key(1), V, 4)
    >>> bound = lambda p: nmf.stability_bounds(p, joint=True)
    >>> tx = optax.chain(
    ...     optax_greedy.learned_schedule(
    ...         optax_greedy.load_policy(), bound, budget=100),
    ...     optax.keep_params_nonnegative())
    >>> state = tx.init(params)
    >>> value, grads = jax.value_and_grad(nmf.loss)(params, V)
    >>> updates, state = tx.update(grads, state, params, value=value)
    >>> params = optax.apply_updates(params, updates)
  """
  _checks.check_range("budget", budget, 1)
  _checks.check_range("decay", decay, 0, 1, high_open=True)
  callable_rate = callable(max_rate)
  if not callable_rate:
    _checks.check_range("max_rate", max_rate, 0, low_open=True)

  def rate_tree(params):
    if not callable_rate:
      return jnp.asarray(max_rate, jnp.float32)
    if params is None:
      raise ValueError(
          "learned_schedule: max_rate is a function of the params, so"
          " update() needs params=...")
    return jax.tree.map(lambda b: jnp.asarray(b, jnp.float32),
                        max_rate(params))

  def init_fn(params):
    nan = jnp.asarray(jnp.nan, jnp.float32)
    bound = rate_tree(params)
    return LearnedScheduleState(
        learning_rate=jax.tree.map(jnp.zeros_like, bound),
        fraction=jnp.ones([], jnp.float32),
        log_loss0=nan, log_loss=nan, slope=jnp.zeros([], jnp.float32),
        log_grad_norm0=nan, log_grad_norm=nan,
        count=jnp.zeros([], jnp.int32))

  def observed(state, updates, value):
    log_loss = jnp.log(jnp.asarray(value, jnp.float32))
    log_norm = jnp.log(optax.tree.norm(updates).astype(jnp.float32))
    ok_loss = jnp.isfinite(log_loss)
    ok_norm = jnp.isfinite(log_norm)
    new_log_loss = _ema(decay, state.log_loss, log_loss)
    step = jnp.where(jnp.isnan(state.log_loss), 0.0,
                     new_log_loss - state.log_loss)
    state = state._replace(
        log_loss0=jnp.where(jnp.isnan(state.log_loss0) & ok_loss, log_loss,
                            state.log_loss0),
        log_loss=jnp.where(ok_loss, new_log_loss, state.log_loss),
        slope=jnp.where(ok_loss, decay * state.slope + (1 - decay) * step,
                        state.slope),
        log_grad_norm0=jnp.where(
            jnp.isnan(state.log_grad_norm0) & ok_norm, log_norm,
            state.log_grad_norm0),
        log_grad_norm=jnp.where(
            ok_norm, _ema(decay, state.log_grad_norm, log_norm),
            state.log_grad_norm),
    )
    fraction = policy_fraction(policy_params, policy_features(state, budget))
    return state._replace(fraction=fraction.astype(jnp.float32))

  def update_fn(updates, state, params=None, *, value=None, observe=True,
                **extra_args):
    del extra_args
    if value is not None:
      new_state = observed(state, updates, value)
      if observe is not True:
        new_state = optax.tree.where(observe, new_state, state)
      state = new_state
    bound = rate_tree(params)
    rate = jax.tree.map(lambda b: state.fraction * b, bound)
    updates = jax.tree.map(
        lambda r, sub: jax.tree.map(lambda u: (-r * u).astype(u.dtype), sub),
        rate, updates)
    state = state._replace(learning_rate=rate,
                           count=optax.safe_increment(state.count))
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def init_policy(key, hidden: tuple = (8, 8)) -> Any:
  """Random parameters of :class:`PolicyMLP` (``{"params": ...}``)."""
  return PolicyMLP(hidden=tuple(hidden)).init(
      key, jnp.zeros([len(FEATURES)], jnp.float32))


def save_policy(path, policy_params, **metadata) -> None:
  """Writes ``policy_params`` as a versioned ``.npz`` for :func:`load_policy`.

  Args:
    path: the file to write.
    policy_params: parameters of :class:`PolicyMLP`.
    **metadata: extra scalars or strings stored alongside (seed, steps...).
  """
  layers = policy_params["params"]
  arrays = {"version": np.asarray(POLICY_VERSION),
            "features": np.asarray(FEATURES)}
  for i in range(len(layers)):
    arrays[f"kernel_{i}"] = np.asarray(layers[f"Dense_{i}"]["kernel"])
    arrays[f"bias_{i}"] = np.asarray(layers[f"Dense_{i}"]["bias"])
  arrays.update({f"meta_{k}": np.asarray(v) for k, v in metadata.items()})
  np.savez(path, **arrays)


def load_policy(path: Optional[Any] = None) -> Any:
  """Reads a policy file; without ``path``, the NMF policy shipped here.

  Args:
    path: a ``.npz`` written by :func:`save_policy`, or ``None`` for the
      package's ``policies/nmf_policy.npz`` (trained by
      ``examples/train_nmf_policy.py``).

  Returns:
    ``{"params": {"Dense_i": {"kernel", "bias"}}}`` for :class:`PolicyMLP`;
    its hidden widths are ``policy_hidden(params)``.

  Raises:
    ValueError: if the file's version is not :data:`POLICY_VERSION`, its
      features are not :data:`FEATURES`, or the layer shapes do not chain
      from 5 features to 1 output.
  """
  if path is None:
    ref = importlib.resources.files("optax_greedy") / "policies" / _SHIPPED
    with importlib.resources.as_file(ref) as real:
      return load_policy(real)
  with np.load(path, allow_pickle=False) as data:
    files = dict(data)
  version = int(files["version"]) if "version" in files else None
  if version != POLICY_VERSION:
    raise ValueError(
        f"policy file {path}: version {version}, expected {POLICY_VERSION}"
        " (retrain with examples/train_nmf_policy.py).")
  features = tuple(str(f) for f in files.get("features", ()))
  if features != FEATURES:
    raise ValueError(
        f"policy file {path}: features {features}, expected {FEATURES}.")
  layers = {}
  width = len(FEATURES)
  i = 0
  while f"kernel_{i}" in files:
    kernel, bias = files[f"kernel_{i}"], files.get(f"bias_{i}")
    if (kernel.ndim != 2 or kernel.shape[0] != width or bias is None
        or bias.shape != (kernel.shape[1],)):
      raise ValueError(
          f"policy file {path}: layer {i} has kernel {kernel.shape} and bias"
          f" {None if bias is None else bias.shape}; expected kernel"
          f" ({width}, k) and bias (k,).")
    layers[f"Dense_{i}"] = {"kernel": jnp.asarray(kernel, jnp.float32),
                            "bias": jnp.asarray(bias, jnp.float32)}
    width = kernel.shape[1]
    i += 1
  if i < 2 or width != 1:
    raise ValueError(
        f"policy file {path}: {i} layers ending in width {width}; expected"
        " at least 2 layers and 1 output.")
  return {"params": layers}


def policy_hidden(policy_params) -> tuple:
  """The hidden widths of a :class:`PolicyMLP`'s parameters."""
  layers = policy_params["params"]
  return tuple(int(layers[f"Dense_{i}"]["kernel"].shape[1])
               for i in range(len(layers) - 1))
