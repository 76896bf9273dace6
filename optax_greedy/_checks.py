"""Checks of hyperparameters and of ``update``'s ``value=``, shared by every
transform.

Every hyperparameter check looks only at concrete Python numbers: a traced
value (under ``optax.inject_hyperparams``, ``jax.vmap`` or ``jax.jit``)
passes through, so the transforms stay usable as functions of their
hyperparameters.
"""

import numbers
import warnings

import numpy as np


def is_concrete(value) -> bool:
  """True for a plain Python number (not a JAX array or tracer)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(name, value, low=None, high=None, *, low_open=False,
                high_open=False):
  """Raises ``ValueError`` naming ``name`` if a concrete ``value`` is outside.

  Args:
    name: the argument's name, as the user typed it.
    value: its value; non-concrete values are not checked.
    low, high: bounds (``None`` for unbounded).
    low_open, high_open: whether the bound itself is excluded.
  """
  if not is_concrete(value):
    return
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    raise ValueError(
        f"{name} must be in {left}{lo}, {hi}{right}, got {name}={value!r}."
    )


def check_choice(name, value, choices):
  """Raises ``ValueError`` naming ``name`` if ``value`` is not a choice."""
  if value not in choices:
    raise ValueError(
        f"{name} must be one of {', '.join(map(repr, choices))}, got"
        f" {name}={value!r}."
    )


def check_number(name, value, expected=""):
  """Raises ``ValueError`` naming ``name`` unless ``value`` is a number.

  A number is a Python or NumPy real (not a bool) or an array (possibly
  traced); a string such as ``"1e-3"`` is refused at once rather than
  failing inside the first update. ``expected`` completes the message
  (e.g. ``" or a callable"``).
  """
  if isinstance(value, bool) or not (
      isinstance(value, numbers.Real) or hasattr(value, "dtype")):
    raise ValueError(
        f"{name} must be a number{expected}, got {name}={value!r}.")


def check_momentum(momentum, nesterov):
  """``momentum`` is ``None`` or a number in [0, 1); Nesterov needs one > 0."""
  if momentum is not None:
    check_number("momentum", momentum)
    check_range("momentum", momentum, 0, 1, high_open=True)
  if nesterov and (momentum is None or (is_concrete(momentum)
                                        and momentum == 0)):
    raise ValueError(
        "nesterov=True requires momentum in (0, 1), got"
        f" momentum={momentum!r}.")


def check_adam(b1, b2, eps):
  """Adam's ``b1``, ``b2`` in [0, 1) and ``eps`` >= 0, all numbers."""
  for name, value in (("b1", b1), ("b2", b2)):
    check_number(name, value)
    check_range(name, value, 0, 1, high_open=True)
  check_number("eps", eps)
  check_range("eps", eps, 0)


def check_scalar_value(value):
  """Raises ``ValueError`` unless the ``value=`` of an update is a scalar."""
  shape = value.shape if hasattr(value, "shape") else np.shape(value)
  if tuple(shape) != ():
    raise ValueError(
        f"value must be a scalar loss, got an array of shape {tuple(shape)}.")


class Marker:
  """A default argument whose ``repr`` says what it stands for.

  ``optax.inject_hyperparams`` turns every numeric argument into a traced
  hyperparameter; a marker is not numeric, so a default that depends on other
  arguments (or sets a shape) stays static.
  """

  def __init__(self, text):
    self._text = text

  def __repr__(self):
    return self._text


#: The default of ``update``'s ``value=``: no loss was passed at all.
NO_VALUE = Marker("<no value>")


def warn_once_without_value(who, consequence):
  """A function to call when ``update`` got no ``value=``; warns once.

  Args:
    who: the transform, as the message names it.
    consequence: what goes wrong without a loss.
  """
  warned = []

  def warn():
    if not warned:
      warned.append(True)
      warnings.warn(
          f"{who}: update() was called without value=, so {consequence}."
          " Pass value=loss (e.g. tx.update(grads, state, params,"
          " value=loss)), or value=None to skip observing on purpose.",
          UserWarning, stacklevel=3)

  return warn
