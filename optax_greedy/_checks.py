"""Checks of hyperparameters and of ``update``'s ``value=``, shared by every
transform.

Every hyperparameter check looks only at concrete Python numbers: a traced
value (under ``optax.inject_hyperparams``, ``jax.vmap`` or ``jax.jit``)
passes through, so the transforms stay usable as functions of their
hyperparameters.
"""

import functools
import importlib.util
import inspect
import math
import numbers
import os
import sys
from typing import TypeGuard
import warnings

import numpy as np


def is_concrete(value: object) -> TypeGuard[float]:
  """True for a plain Python number (not a JAX array or tracer)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(name, value, low=None, high=None, *, low_open=False,
                high_open=False, finite=False):
  """Raises ``ValueError`` naming ``name`` if a concrete ``value`` is outside.

  NaN is in no range. Infinities pass an unbounded side unless ``finite``
  (a rate, where ``inf`` would make the parameters NaN at the first
  update).

  Args:
    name: the argument's name, as the user typed it.
    value: its value; non-concrete values are not checked.
    low, high: bounds (``None`` for unbounded).
    low_open, high_open: whether the bound itself is excluded.
    finite: refuse ``inf`` and ``-inf`` too.
  """
  if not is_concrete(value):
    return
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high or math.isnan(value) or (
      finite and math.isinf(value)):
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    raise ValueError(
        f"{name} must be in {left}{lo}, {hi}{right}, got {name}={value!r}.")


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


def check_integer(name, value, low=None):
  """Raises ``ValueError`` naming ``name`` unless ``value`` is an integer.

  An integer is a Python or NumPy integer (not a bool) or an integer array
  (possibly traced); concrete values must also be >= ``low``.
  """
  dtype = getattr(value, "dtype", None)
  if isinstance(value, bool) or not (
      isinstance(value, numbers.Integral)
      or (dtype is not None and np.issubdtype(dtype, np.integer))):
    raise ValueError(
        f"{name} must be an integer{'' if low is None else f' >= {low}'},"
        f" got {name}={value!r}.")
  if isinstance(value, numbers.Integral):
    check_range(name, int(value), low)


def check_static(name, value, accepted, kinds, sets="the structure of the"
                 " state"):
  """Raises ``ValueError`` unless ``value`` is a Python value of ``kinds``.

  For arguments that set shapes or structure, which a traced value cannot
  do. For a transform's argument (the default ``sets``) the message says
  how to keep it static under ``optax.inject_hyperparams``.

  Args:
    name: the argument's name, as the user typed it.
    value: its value.
    accepted: what is accepted, in words (e.g. ``"a Python int >= 1"``).
    kinds: a type or tuple of types ``value`` must be an instance of
      (``bool`` is refused unless it is named there).
    sets: what the argument sets, in words.
  """
  kinds = kinds if isinstance(kinds, tuple) else (kinds,)
  if isinstance(value, bool) and bool not in kinds or not isinstance(
      value, kinds):
    hint = (f" Under optax.inject_hyperparams, name it in"
            f" static_args=({name!r},)." if "state" in sets else "")
    raise ValueError(
        f"{name} sets {sets}, so it must be {accepted}, got"
        f" {name}={value!r}.{hint}")


def keyword_only_after(positional, meant, note=""):
  """Decorator: the factory takes its first ``positional`` arguments by
  position, the rest by keyword; more positional values raise a
  ``TypeError`` that names the keyword each of them needs.

  Since 0.2.0 every factory takes its arguments after the rate by keyword
  only (as optax's ``contrib`` transforms do), so that a value can never be
  read as another argument than the one meant: ``greedy_adamw``'s fifth
  positional was ``weight_decay`` where ``optax.adamw``'s is ``eps_root``.

  Args:
    positional: how many arguments are positional (the rate, and what
      comes before it).
    meant: the keywords that the extra positions stand for, in order: what
      the factory read there before 0.2.0, or the optax alias it mirrors.
    note: a sentence appended to the message (e.g. what the optax alias
      reads at the same positions).
  """
  def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      if len(args) > positional:
        extra = args[positional:]
        shown = [repr(a) if is_concrete(a) else "..."
                 for a in args[:positional]] + [
            f"{k}={v!r}" for k, v in zip(meant, extra)]
        raise TypeError(
            f"{fn.__name__}() takes {positional} positional argument"
            f"{'s' if positional > 1 else ''}, got {len(args)}: pass the rest"
            f" by keyword, e.g. {fn.__name__}({', '.join(shown)})."
            f"{' ' + note if note else ''}")
      return fn(*args, **kwargs)
    return wrapper
  return decorate


def renamed_keywords(**renamed):
  """Decorator: a keyword argument under its old name raises a
  ``TypeError`` that names the new one (``renamed``: old name -> new)."""
  def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      for old, new in renamed.items():
        if old in kwargs:
          raise TypeError(
              f"{fn.__name__}() has no argument {old}= any more: pass"
              f" {new}={kwargs[old]!r}.")
      return fn(*args, **kwargs)
    return wrapper
  return decorate


def takes_keywords_of(fn):
  """Decorator: the factory's ``**kwargs`` are ``fn``'s keyword-only
  arguments, every one of them (the defaults filled in), to pass on.

  The factory's signature (:func:`inspect.signature`, ``help()``, the docs)
  lists them after its own arguments, keyword-only, with ``fn``'s defaults
  (the same objects); a keyword that is in neither raises a ``TypeError``
  naming the factory. One list of ``fn``'s keywords, ``fn``'s own: the
  ``greedy_*`` aliases take :func:`optax_greedy.greedy_lr`'s this way, the
  ``hd_*`` ones :func:`optax_greedy.hypergradient`'s.

  Args:
    fn: the function whose keyword-only arguments the factory takes (those
      the factory declares itself are its own).
  """
  def decorate(factory):
    own = inspect.signature(factory)
    declared = [p for p in own.parameters.values()
                if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in declared}
    taken = [p for p in inspect.signature(fn).parameters.values()
             if p.kind is p.KEYWORD_ONLY and p.name not in names]
    signature = own.replace(parameters=declared + taken)

    @functools.wraps(factory)
    def wrapper(*args, **kwargs):
      try:
        bound = signature.bind(*args, **kwargs)
      except TypeError as error:
        raise TypeError(f"{factory.__name__}(): {error}") from None
      bound.apply_defaults()
      return factory(*bound.args, **bound.kwargs)
    setattr(wrapper, "__signature__", signature)
    # The signature is this one, not the source's (which autodoc's
    # preserve_defaults would read through __wrapped__ and find short).
    delattr(wrapper, "__wrapped__")
    return wrapper
  return decorate


def envelope_keywords(fn):
  """Decorator: ``ramp_fraction=``, ``decay_fraction=`` and
  ``decay_shape=``, separate keywords before 0.2.0, raise a ``TypeError``
  naming the one argument that holds them, ``envelope=Envelope(...)``."""
  members = ("ramp_fraction", "decay_fraction", "decay_shape")

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    given = [f"{k}={kwargs[k]!r}" for k in members if k in kwargs]
    if given:
      raise TypeError(
          f"{fn.__name__}() takes the step budget's envelope as one argument"
          f" since 0.2.0: pass envelope=optax_greedy.Envelope("
          f"{', '.join(given)}).")
    return fn(*args, **kwargs)
  return wrapper


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


def check_adam(b1, b2, eps, eps_root):
  """Adam's ``b1``, ``b2`` in [0, 1) and ``eps``, ``eps_root`` >= 0, all
  numbers."""
  for name, value in (("b1", b1), ("b2", b2)):
    check_number(name, value)
    check_range(name, value, 0, 1, high_open=True)
  for name, value in (("eps", eps), ("eps_root", eps_root)):
    check_number(name, value)
    check_range(name, value, 0)


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
          UserWarning, stacklevel=_callers_stacklevel())

  return warn


# Packages between the user's call and a transform's update: optax's chain
# and wrappers, JAX's tracing, and this package itself.
_LIBRARY_DIRS = tuple(
    os.path.dirname(spec.origin) + os.sep
    for spec in map(importlib.util.find_spec,
                    ("optax", "jax", "optax_greedy", "flax"))
    if spec is not None and spec.origin is not None)


def _callers_stacklevel():
  """The ``stacklevel`` of the first frame outside :data:`_LIBRARY_DIRS`
  (the user's line that called ``update``, possibly through optax, Flax or
  a jitted function), counted from the caller of this function."""
  frame, level = sys._getframe(2), 2  # pylint: disable=protected-access
  while frame is not None and frame.f_code.co_filename.startswith(
      _LIBRARY_DIRS):
    frame, level = frame.f_back, level + 1
  return level
