"""The grid's tasks: data that ships with installed packages, no downloads.

A :class:`Task` is a few pure functions: ``train_loss(params, data, sample,
variant)`` is the loss on one draw of the sampling stream (minibatch indices,
or gradient noise), ``eval_loss(params, data, variant)`` the deterministic
held-out loss. ``variant`` is a scalar the runner vmaps over (the noise level
of the analytic functions; unused, 0, by the learned models), so several
noise levels share one compiled program.

The sampling stream and the initial parameters are drawn outside the compiled
programs (NumPy and one small jit per task): random-number kernels dominate
XLA's compile time on CPU, and the same stream for every controller makes
the comparisons paired (common random numbers).
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.core import data as D
from bench.core import models as M


@dataclasses.dataclass(frozen=True)
class Task:
  """One benchmark problem.

  Attributes:
    name: short name used in the tables.
    init: ``init(key) -> params``.
    stream: ``stream(rng, steps) -> array`` with one sample per step, from a
      ``numpy.random.Generator``.
    train_loss: ``train_loss(params, data, sample, variant) -> scalar``, the
      minibatch loss on one sample of the stream.
    eval_loss: ``eval_loss(params, data, variant) -> scalar``, the held-out
      (or noise-free) loss used for every comparison.
    data: arrays passed to the losses (arguments, not compile-time constants).
    steps: the step budget, the same for every controller.
    lr_low: base optimizer -> smallest initial rate of the grid; the grid is
      ``n`` rates log-spaced over a 31.6x span (:meth:`lrs`).
    variants: values of ``variant``; rows are named ``name/noise=v`` when
      there is more than one.
    lr_bound: ``params -> rate``, the largest stable rate of plain gradient
      descent where one is known (``2 / lambda_max`` of the Hessian), for
      the stability-clipped rows; ``None`` elsewhere.
    eval_correct: for classification tasks, ``eval_correct(params, data)
      -> bool[n]``, which held-out examples the model classifies correctly
      (for accuracy and negative flip rates); ``None`` elsewhere.
  """

  name: str
  init: Callable[[jax.Array], Any]
  stream: Callable[[np.random.Generator, int], np.ndarray]
  train_loss: Callable[..., jax.Array]
  eval_loss: Callable[..., jax.Array]
  data: Any
  steps: int
  lr_low: dict
  variants: tuple = (0.0,)
  lr_bound: Any = None
  eval_correct: Any = None

  def lrs(self, base, n):
    """``n`` initial rates for ``base``, log-spaced from ``lr_low`` to
    ``10**1.5 * lr_low`` (a 31.6x span)."""
    if n == 1:
      return (self.lr_low[base] * 10 ** 0.75,)
    low = self.lr_low[base]
    return tuple(float(x) for x in np.geomspace(low, 10 ** 1.5 * low, n))

  def variant_name(self, variant):
    if len(self.variants) == 1:
      return self.name
    return f"{self.name}/noise={variant:g}"


# ----------------------------------------------------------------- digits ---


def _classifier_task(name, module, lr_low, steps, batch_size=64,
                     image=False):
  data = D.digits_standardised()
  if image:
    data = {k: (v.reshape(-1, 8, 8, 1) if k.startswith("x") else v)
            for k, v in data.items()}

  def xent(params, x, y):
    logits = module.apply(params, x)
    return optax.losses.softmax_cross_entropy_with_integer_labels(
        logits, y).mean()

  def stream(rng, steps):
    return rng.integers(0, len(data["y_train"]), (steps, batch_size),
                        dtype=np.int32)

  def train_loss(params, data, idx, variant):
    del variant
    return xent(params, data["x_train"][idx], data["y_train"][idx])

  def eval_loss(params, data, variant):
    del variant
    return xent(params, data["x_eval"], data["y_eval"])

  def init(key):
    return module.init(key, data["x_train"][:1])

  def eval_correct(params, data):
    logits = module.apply(params, data["x_eval"])
    return jnp.argmax(logits, -1) == data["y_eval"]

  return Task(name, init, stream, train_loss, eval_loss, data, steps, lr_low,
              eval_correct=eval_correct)


class _CNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(M.Conv3x3(8)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(M.Conv3x3(16)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def logreg(steps):
  return _classifier_task(
      "logreg", nn.Dense(10), steps=steps,
      lr_low={"sgd": 0.03, "momentum": 0.003, "adam": 1e-3})


def mlp(steps):
  return _classifier_task(
      "mlp", M.MLP(), steps=steps,
      lr_low={"sgd": 0.01, "momentum": 0.001, "adam": 1e-4})


def cnn(steps):
  return _classifier_task(
      "cnn", _CNN(), steps=steps, image=True, batch_size=32,
      lr_low={"sgd": 0.01, "momentum": 0.001, "adam": 1e-4})


# ------------------------------------------------------------ char LM -------

# Standard-library modules whose source is the corpus: a fixed list, so the
# text is the same on every install of one Python version.
TEXT_MODULES = ("textwrap", "string", "heapq", "bisect", "fnmatch",
                "functools", "contextlib", "json.decoder", "json.encoder",
                "shlex", "glob", "colorsys")
VOCAB = 128  # ASCII; other characters are mapped to "?".


def charlm(steps, length=32, batch_size=8, eval_windows=32):
  """Next-character prediction on standard-library source."""
  codes = D.module_sources(TEXT_MODULES, 120_000)
  split = int(0.9 * len(codes))
  train, held = codes[:split], codes[split:]
  starts = np.linspace(0, len(held) - length - 2, eval_windows).astype(int)
  eval_seqs = np.stack([held[s:s + length + 1] for s in starts])
  module = M.CharTransformer(length=length, vocab=VOCAB)
  data = {"train": train, "eval": eval_seqs}

  def xent(params, seqs):
    logits = module.apply(params, seqs[:, :-1])
    return optax.losses.softmax_cross_entropy_with_integer_labels(
        logits, seqs[:, 1:]).mean()

  def stream(rng, steps):
    return rng.integers(0, len(train) - length - 1, (steps, batch_size),
                        dtype=np.int32)

  def train_loss(params, data, starts, variant):
    del variant
    idx = starts[:, None] + jnp.arange(length + 1)
    return xent(params, data["train"][idx])

  def eval_loss(params, data, variant):
    del variant
    return xent(params, data["eval"])

  def init(key):
    return module.init(key, jnp.zeros((1, length), jnp.int32))

  return Task("charlm", init, stream, train_loss, eval_loss, data, steps,
              lr_low={"sgd": 0.03, "momentum": 0.003, "adam": 3e-4})


# -------------------------------------------------------- noisy analytic ---


def _noisy(name, f, init, dim, steps, lr_low, variants):
  """``train_loss = f(p) + sigma * <xi, p>``, xi ~ N(0, I): the gradient gets
  additive Gaussian noise of scale ``sigma`` (the variant); ``eval = f(p)``.
  The stability bound is ``2 / lambda_max(hessian f(p))`` at the current
  point (exact and constant for the quadratic, local for Rosenbrock)."""

  def lr_bound(params):
    return 2.0 / jnp.linalg.eigvalsh(jax.hessian(f)(params))[-1]


  def stream(rng, steps):
    return rng.standard_normal((steps, dim), dtype=np.float32)

  def train_loss(params, data, xi, variant):
    del data
    return f(params) + variant * jnp.vdot(xi, params)

  def eval_loss(params, data, variant):
    del data, variant
    return f(params)

  return Task(name, init, stream, train_loss, eval_loss, {}, steps, lr_low,
              variants, lr_bound)


def quadratic(steps, dim=20):
  """``0.5 * sum_i h_i x_i^2``, curvatures log-spaced in [0.01, 1]."""
  h = jnp.logspace(-2, 0, dim)

  def f(x):
    return 0.5 * jnp.sum(h * x ** 2)

  def init(key):
    return jax.random.normal(key, (dim,))

  return _noisy("quadratic", f, init, dim, steps,
                {"sgd": 0.05, "momentum": 0.005,
                 "adam": 3e-3}, (0.0, 0.1, 1.0))


def rosenbrock(steps):
  """``(1 - x)^2 + 100 (y - x^2)^2`` from near (-1.5, 2)."""

  def f(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

  def init(key):
    return jnp.array([-1.5, 2.0]) + 0.1 * jax.random.normal(key, (2,))

  return _noisy("rosenbrock", f, init, 2, steps,
                {"sgd": 3e-5, "momentum": 3e-6,
                 "adam": 1e-3}, (0.0, 1.0, 10.0))


FACTORIES = {"logreg": logreg, "mlp": mlp, "cnn": cnn, "charlm": charlm,
             "quadratic": quadratic, "rosenbrock": rosenbrock}
