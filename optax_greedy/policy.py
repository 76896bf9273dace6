"""The policy of a learned schedule: a tiny ``tanh`` MLP in plain jax.numpy.

A :class:`Policy` maps a vector of named, scale-free features (see
:data:`KNOWN_FEATURES`) to a fraction in ``[MIN_FRACTION, 1]`` of the largest
rate the user allows. Its weights are a pytree (so evolution strategies can
``vmap`` over a population of them); the names of its features are static
metadata, recorded in its file and checked when it is read.

This module is what a learned schedule needs at run time, and what a
trainer needs to write a policy: reading the shipped policies
(:func:`load_policy`, also ``optax_greedy.load_policy``), making, saving
and evaluating one (:func:`init_policy`, :func:`save_policy`,
:func:`policy_fraction`, :func:`policy_features`). Training lives in the
separate lab package, ``optax_greedy_lab`` (``pip install
"optax_greedy[train]"``), which the core never imports.
"""

import contextlib
import dataclasses
import functools
import importlib.resources
import json
import os
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from optax_greedy import _budget
from optax_greedy._features import KNOWN_FEATURES
from optax_greedy._features import clean_features
from optax_greedy._features import policy_features

#: Version of the policy file format written by :func:`save_policy`.
POLICY_VERSION = 1
#: Smallest fraction of ``max_rate`` a policy can choose.
MIN_FRACTION = 1e-3
#: The policies shipped in ``optax_greedy/policies/``, by name.
SHIPPED = {"nmf": "nmf_policy.npz", "dnn": "dnn_policy.npz"}


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["layers"],
                   meta_fields=["features", "envelope"])
@dataclasses.dataclass(frozen=True)
class Policy:
  """A policy: ``fraction = m + (1 - m) * sigmoid(mlp(features))``.

  ``m`` is :data:`MIN_FRACTION`; the MLP has ``tanh`` hidden layers and a
  linear output. A pytree whose leaves are the weights (``features`` and
  ``envelope`` are static), so ``jax.vmap``, ``jax.jit`` and
  ``ravel_pytree`` work on it.

  Attributes:
    layers: a list of ``{"kernel": [n_in, n_out], "bias": [n_out]}``, from
      ``len(features)`` inputs to 1 output.
    features: the names of the input features, in order (a tuple of
      :data:`KNOWN_FEATURES`).
    envelope: the step budget's envelope the policy is meant to act
      inside -- the one it was trained in, or one chosen by evaluation (its
      file's :func:`policy_config` says which) --
      an :class:`optax_greedy.Envelope` (``optax_greedy.NO_ENVELOPE``:
      none, the policy alone), or ``None`` where unknown.
      :func:`optax_greedy.learned_schedule` warns when it is used with
      another one.
  """

  layers: list
  features: tuple
  envelope: Optional[_budget.Envelope] = None

  @property
  def hidden(self) -> tuple:
    """The widths of the hidden layers."""
    return tuple(int(layer["bias"].shape[0]) for layer in self.layers[:-1])


# Users meet the class as optax_greedy.policy.Policy (in signatures,
# reprs and help()), its public home.
Policy.__module__ = "optax_greedy.policy"


def policy_fraction(policy: Policy, features: ArrayLike) -> jax.Array:
  """The fraction of ``max_rate`` chosen by ``policy`` for ``features``.

  Features are cleaned by :func:`clean_features` first, and a non-finite
  output (only possible with non-finite weights) becomes 1, so the result is
  finite and in ``[MIN_FRACTION, 1]`` for any input.

  Args:
    policy: a :class:`Policy`.
    features: array ``[..., len(policy.features)]``.

  Returns:
    Array ``[...]`` of fractions (float32).
  """
  x = clean_features(features)
  for layer in policy.layers[:-1]:
    x = jnp.tanh(x @ layer["kernel"] + layer["bias"])
  z = (x @ policy.layers[-1]["kernel"] + policy.layers[-1]["bias"])[..., 0]
  fraction = MIN_FRACTION + (1.0 - MIN_FRACTION) * jax.nn.sigmoid(z)
  return jnp.where(jnp.isfinite(fraction), fraction, 1.0)


def init_policy(key: jax.Array, features: tuple[str, ...] = KNOWN_FEATURES[:5],
                hidden: tuple[int, ...] = (8, 8),
                envelope: Optional[tuple[float, float, str]] = None
                ) -> Policy:
  """A random :class:`Policy` (LeCun-normal kernels, zero biases).

  Args:
    key: a JAX random key.
    features: the names of its input features (from :data:`KNOWN_FEATURES`).
    hidden: the widths of its hidden layers.
    envelope: the envelope it will be trained inside (:class:`Policy`).
  """
  envelope = _check_envelope("init_policy", envelope)
  features = tuple(features)
  _check_features("init_policy", features)
  widths = (len(features),) + tuple(hidden) + (1,)
  layers = []
  for key, n_in, n_out in zip(jax.random.split(key, len(widths) - 1),
                              widths[:-1], widths[1:]):
    layers.append({
        "kernel": jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in),
        "bias": jnp.zeros([n_out], jnp.float32)})
  return Policy(layers=layers, features=features, envelope=envelope)


def _check_features(where, features):
  unknown = [f for f in features if f not in KNOWN_FEATURES]
  if unknown or not features or len(set(features)) != len(features):
    raise ValueError(
        f"{where}: features {features}; expected distinct names from"
        f" {KNOWN_FEATURES}.")


def _check_envelope(where, envelope):
  """``envelope`` as an :class:`optax_greedy.Envelope`, or ``None``."""
  if envelope is None:
    return None
  try:
    ramp, decay, shape = envelope
    envelope = _budget.Envelope(float(ramp), float(decay), str(shape))
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{where}: envelope {envelope!r}; expected (ramp_fraction,"
        " decay_fraction, decay_shape) or None.") from error
  if not (0 <= envelope[0] and 0 <= envelope[1]
          and envelope[0] + envelope[1] <= 1):
    raise ValueError(
        f"{where}: envelope {envelope!r}; expected fractions >= 0 whose sum"
        " is <= 1.")
  return envelope


def save_policy(path: Union[str, "os.PathLike[str]"], policy: Policy, *,
                config: Optional[dict] = None, **metadata: Any) -> None:
  """Writes ``policy`` as a versioned ``.npz`` read by :func:`load_policy`.

  The file holds ``version`` (:data:`POLICY_VERSION`), ``features`` (the
  names, in order), ``kernel_i`` / ``bias_i`` per layer, ``envelope``
  (the policy's training envelope as JSON, ``null`` where unknown),
  ``config`` (the training configuration as JSON, ``{}`` if not given) and
  ``meta_<key>`` for each metadata entry.

  Args:
    path: the file to write.
    policy: a :class:`Policy`.
    config: how the policy was trained, a JSON-serialisable dict (e.g. the
      evolution strategy's and the environment's settings, the seed, the
      package version); read back by :func:`policy_config`.
    **metadata: extra scalars or strings stored alongside (seed, steps...).
  """
  arrays = {"version": np.asarray(POLICY_VERSION),
            "features": np.asarray(policy.features),
            "envelope": np.asarray(json.dumps(policy.envelope)),
            "config": np.asarray(json.dumps(config or {}, sort_keys=True))}
  for i, layer in enumerate(policy.layers):
    arrays[f"kernel_{i}"] = np.asarray(layer["kernel"], np.float32)
    arrays[f"bias_{i}"] = np.asarray(layer["bias"], np.float32)
  arrays.update({f"meta_{k}": np.asarray(v) for k, v in metadata.items()})
  np.savez(path, **arrays)


def _resolve(name_or_path):
  """``(path as given, a context manager yielding a real path)``."""
  if isinstance(name_or_path, str) and name_or_path in SHIPPED:
    ref = (importlib.resources.files("optax_greedy") / "policies"
           / SHIPPED[name_or_path])
    return importlib.resources.as_file(ref)
  if not os.path.exists(name_or_path):
    raise ValueError(
        f"load_policy: {name_or_path!r} is neither a shipped policy"
        f" ({', '.join(map(repr, SHIPPED))}) nor an existing file.")
  return contextlib.nullcontext(name_or_path)


def policy_config(name_or_path: Union[str, "os.PathLike[str]"]) -> dict:
  """The training configuration recorded in a policy file.

  Args:
    name_or_path: a shipped policy's name or a ``.npz`` path.

  Returns:
    The ``config`` dict given to :func:`save_policy` (``{}`` for a file
    that records none), with ``"envelope"`` added: the training envelope
    ``[ramp_fraction, decay_fraction, decay_shape]`` or ``None``.
  """
  with _resolve(name_or_path) as path:
    with np.load(path, allow_pickle=False) as data:
      config = json.loads(str(data["config"])) if "config" in data else {}
      envelope = (json.loads(str(data["envelope"])) if "envelope" in data
                  else None)
  return {**config, "envelope": envelope}


def load_policy(name_or_path: Union[str, "os.PathLike[str]"], *,
                features: Optional[tuple] = None) -> Policy:
  """Reads a policy: a shipped one by name, or a file.

  Args:
    name_or_path: ``"nmf"`` (the NMF policy, trained inside NMF's
      stability bound), ``"dnn"`` (the deep-network policy, a fraction
      of a peak rate, meant for the step budget's default envelope),
      or a path to a ``.npz`` written by :func:`save_policy`. Required:
      there is no default policy (before 0.2.0 no argument meant
      ``"nmf"``).
    features: if given, the feature names the file must list, in order
      (e.g. those an environment feeds).

  Returns:
    A :class:`Policy` (its ``envelope`` is the one recorded in the file,
    ``None`` if the file records none).

  Raises:
    ValueError: if the file's version is not :data:`POLICY_VERSION`, its
      features are not known names (or not ``features``), its envelope is
      malformed, or its layer shapes do not chain from ``len(features)``
      inputs to 1 output. The message names the file and what was
      expected.
  """
  if name_or_path is None:
    raise ValueError(
        "load_policy needs a policy: a shipped name"
        f" ({', '.join(map(repr, SHIPPED))}) or a path to a .npz file, got"
        " name_or_path=None.")
  with _resolve(name_or_path) as path:
    with np.load(path, allow_pickle=False) as data:
      files = dict(data)
  version = int(files["version"]) if "version" in files else None
  if version != POLICY_VERSION:
    raise ValueError(
        f"policy file {path}: version {version}, expected {POLICY_VERSION}"
        " (retrain it with optax_greedy_lab).")
  names = tuple(str(f) for f in files.get("features", ()))
  _check_features(f"policy file {path}", names)
  if features is not None and names != tuple(features):
    raise ValueError(
        f"policy file {path}: features {names}; expected {tuple(features)}.")
  features = names
  try:
    envelope = (json.loads(str(files["envelope"])) if "envelope" in files
                else None)
  except json.JSONDecodeError:
    envelope = str(files["envelope"])
  envelope = _check_envelope(f"policy file {path}", envelope)
  layers = []
  width = len(features)
  while f"kernel_{len(layers)}" in files:
    i = len(layers)
    kernel, bias = files[f"kernel_{i}"], files.get(f"bias_{i}")
    if (kernel.ndim != 2 or kernel.shape[0] != width or bias is None
        or bias.shape != (kernel.shape[1],)):
      raise ValueError(
          f"policy file {path}: layer {i} has kernel {kernel.shape} and bias"
          f" {None if bias is None else bias.shape}; expected kernel"
          f" ({width}, k) and bias (k,).")
    # Concrete arrays even when read inside a traced function (a policy
    # cached there must not hold the trace's values).
    with jax.ensure_compile_time_eval():
      layers.append({"kernel": jnp.asarray(kernel, jnp.float32),
                     "bias": jnp.asarray(bias, jnp.float32)})
    width = kernel.shape[1]
  if len(layers) < 2 or width != 1:
    raise ValueError(
        f"policy file {path}: {len(layers)} layers ending in width {width};"
        " expected at least 2 layers and 1 output.")
  return Policy(layers=layers, features=features, envelope=envelope)
