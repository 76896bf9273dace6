r"""A JAX-native environment of small deep-network training problems.

A *problem* (:class:`DNNProblem`) is one training run: a network of a
family (:class:`Family`), a data set split into training and validation
rows, a minibatch size, a step budget, a peak rate, an initialisation scale
and a direction (Adam, or SGD with momentum 0.9 as ``optax.trace``). An
*episode* (:func:`run_episode`) trains the network for the budget with the
rate set by a rate transform -- :func:`optax_greedy.learned_schedule` with a
policy, or a baseline schedule -- and reports the final training and
validation losses. Everything is ``jit``-compiled and ``vmap``-ped: one ES
update runs ``population x problems`` episodes of each family as one
program, problems of a family padded to one shape (unused units, channels,
classes, rows and steps are masked, so a padded problem trains exactly as
the smaller one).

**Families** (:data:`TRAINING_FAMILIES`, the policy's training
distribution):

* ``mlp``: 1-3 hidden layers of width 8-32, ReLU or tanh, on
  scikit-learn's digits, iris or wine (standardised), or on a synthetic
  teacher-student task (a random MLP labels Gaussian inputs of dimension
  4-64 for 2-10 classes, or gives 1-4 regression targets);
* ``cnn``: two 3x3 convolutions (2-8 channels) and a dense head on 8x8
  images: digits, or Gaussian images labelled by a random teacher CNN.

Every problem draws its rows used (a subset), a label-noise rate (0-20%),
a minibatch size (8-32), a budget (``min_budget``..``max_steps``), a peak
rate (Adam ``[1e-3, 3e-2]``, momentum ``[1e-2, 3e-1]``, log-uniform) and an
initialisation scale (``x [0.5, 2]``). 25% of the rows are validation rows.

:data:`HELD_OUT_FAMILIES` are never trained on: a next-character MLP and a
tiny attention block on the docstrings of Python's standard library, and
MLPs on scikit-learn's breast-cancer data.

**Observation**: the scale-free features of :data:`FEATURES` (see
:func:`optax_greedy.learning.policy_features`), from the minibatch loss and
the direction's norm. **Action**: the fraction of the peak rate.

**Reward** (:func:`fitness`): on each problem, the policy's episode is
compared with cosine annealing at the same peak rate, on the same
initialisation and minibatches (common random numbers):

.. math::

  d_{\text{val}} = \log L^{\cos}_{\text{val}} - \log L^{\pi}_{\text{val}},
  \quad
  d_{\text{train}} = \log L^{\cos}_{\text{train}} - \log L^{\pi}_{\text{train}},
  \quad
  r = \rho(d_{\text{val}}) + \tfrac12 \rho(d_{\text{train}}),

with :math:`\rho(d) = c + \min(c, 0)`, :math:`c = \text{clip}(d, -0.5,
0.5)`: a log ratio, so every problem counts the same whatever its loss
scale; losses are weighed twice as much as wins (the goal is to be equal
or better on most problems, not better on average); the training term is
the credit for training progress.

Data sets need scikit-learn, imported when first used
(``pip install optax_greedy[examples]``).
"""

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy
from optax_greedy import _policy
from optax_greedy.learning import es

#: The features of the deep-network policy.
FEATURES = _policy.KNOWN_FEATURES
#: Its hidden widths.
HIDDEN = (16, 16)
#: Largest number of classes / regression targets of any problem.
MAX_OUT = 10


class DNNProblem(NamedTuple):
  """One training run, padded to its family's shapes (arrays only).

  Attributes:
    x: ``[rows, ...]`` inputs (padded rows are zero).
    y: ``[rows, MAX_OUT]`` one-hot labels, or regression targets.
    out_mask: ``[MAX_OUT]`` 1.0 for the classes / targets in use.
    regression: whether the loss is the mean squared error (else the
      cross-entropy).
    order: ``[rows]`` row order: training rows first, then validation rows,
      then padding.
    n_train, n_val: the numbers of training and validation rows.
    batch_size: the minibatch size (<= the family's ``max_batch``).
    budget: the number of steps.
    peak: the peak rate (the policy's ``max_rate``).
    adam: whether the direction is Adam (else SGD with momentum 0.9).
    init_scale: multiplies the initial weights.
    arch: the family's masks (units, channels, depth, activation).
  """

  x: jax.Array
  y: jax.Array
  out_mask: jax.Array
  regression: jax.Array
  order: jax.Array
  n_train: jax.Array
  n_val: jax.Array
  batch_size: jax.Array
  budget: jax.Array
  peak: jax.Array
  adam: jax.Array
  init_scale: jax.Array
  arch: Any


class Family(NamedTuple):
  """A family of networks and data, with the shapes of its padding.

  Attributes:
    name: its name.
    sample: ``(key, config) -> DNNProblem``.
    init: ``(key, problem) -> params``.
    apply: ``(params, x, arch) -> outputs [batch, MAX_OUT]``.
  """

  name: str
  sample: Callable
  init: Callable
  apply: Callable


class EnvConfig(NamedTuple):
  """The training distribution's sizes (defaults: the shipped policy's).

  Attributes:
    problems: problems of each family per ES update.
    max_steps: the length of an episode's scan (the largest budget).
    min_budget: the smallest budget.
    max_batch: the largest minibatch.
    adam_peaks, momentum_peaks: ranges of the log-uniform peak rates.
    label_noise: the largest fraction of labels replaced by random ones
      (each problem draws its fraction uniformly below it).
    train_weight: the weight of the training-loss term of the reward.
  """

  problems: int = 4
  max_steps: int = 160
  min_budget: int = 40
  max_batch: int = 32
  adam_peaks: tuple = (1e-3, 3e-2)
  momentum_peaks: tuple = (1e-2, 3e-1)
  label_noise: float = 0.2
  train_weight: float = 0.5


# ---------------------------------------------------------------- data


@functools.lru_cache(maxsize=None)
def tabular(name: str):
  """A scikit-learn data set, standardised: ``(x [n, d], labels [n])``."""
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "optax_greedy.learning.dnn_problems needs scikit-learn for its data"
        " sets: pip install 'optax_greedy[examples]'") from error
  x, labels = getattr(datasets, f"load_{name}")(return_X_y=True)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  return x.astype(np.float32), labels.astype(np.int32)


_ALPHABET = "abcdefghijklmnopqrstuvwxyz .,;:'()-\n"


@functools.lru_cache(maxsize=None)
def stdlib_text() -> str:
  """Lower-cased docstrings of Python standard-library modules (~40k chars)."""
  import importlib  # pylint: disable=g-import-not-at-top
  names = ("argparse", "collections", "json", "textwrap", "string",
           "random", "statistics", "fractions", "decimal", "heapq",
           "bisect", "functools", "itertools", "pathlib", "shutil",
           "subprocess", "logging", "threading", "csv", "datetime")
  docs = []
  for name in names:
    module = importlib.import_module(name)
    docs.append(module.__doc__ or "")
    for attr in sorted(vars(module)):
      doc = getattr(getattr(module, attr), "__doc__", None)
      if attr.startswith("_") or not isinstance(doc, str):
        continue
      docs.append(doc)
  return " ".join(" ".join(docs).lower().split())


def char_windows(context: int, count: int, seed: int):
  """``count`` windows of ``context`` character ids and the next id.

  Characters outside a 36-letter alphabet share one id (vocabulary 37).
  """
  lookup = {c: i for i, c in enumerate(_ALPHABET)}
  ids = np.asarray([lookup.get(c, len(_ALPHABET)) for c in stdlib_text()],
                   np.int32)
  starts = np.random.default_rng(seed).integers(
      0, len(ids) - context - 1, count)
  windows = ids[starts[:, None] + np.arange(context + 1)]
  return windows[:, :-1], windows[:, -1]


def _padded(x, labels, rows, dims):
  """Pads ``x`` to ``[rows, dims]`` and labels to ``[rows]``."""
  out = np.zeros((rows, dims), np.float32)
  out[:x.shape[0], :x.shape[1]] = x
  lab = np.zeros(rows, np.int32)
  lab[:len(labels)] = labels
  return out, lab


def _loguniform(key, low, high):
  return jnp.exp(jax.random.uniform(key, [], minval=math.log(low),
                                    maxval=math.log(high)))


def _split_and_run(key, config, n, x, y, out_mask, regression, arch,
                   min_rows):
  """The common part of every problem: rows, split, noise and run settings.

  ``n`` rows of ``x``/``y`` are valid; a random subset of at least
  ``min_rows`` of them is used, 75% for training.
  """
  keys = jax.random.split(key, 9)
  used = jax.random.randint(keys[0], [], jnp.minimum(min_rows, n), n + 1)
  rows = x.shape[0]
  scores = jax.random.uniform(keys[1], [rows])
  scores = jnp.where(jnp.arange(rows) < used, scores, 2.0)
  order = jnp.argsort(scores)
  n_train = (3 * used) // 4
  # Label noise: a fraction of the labels replaced by random classes.
  classes = jnp.sum(out_mask)
  noise = jax.random.uniform(keys[2], [], maxval=config.label_noise)
  flip = jax.random.uniform(keys[3], [rows]) < noise
  random_label = jax.random.randint(keys[4], [rows], 0, classes.astype(int))
  noisy = jax.nn.one_hot(random_label, y.shape[-1])
  y = jnp.where(flip[:, None] & ~regression, noisy, y)
  adam = jax.random.bernoulli(keys[5])
  peak = jnp.where(adam, _loguniform(keys[6], *config.adam_peaks),
                   _loguniform(keys[6], *config.momentum_peaks))
  return DNNProblem(
      x=x, y=y, out_mask=out_mask, regression=regression, order=order,
      n_train=n_train, n_val=used - n_train,
      batch_size=jax.random.randint(keys[7], [], 8, config.max_batch + 1),
      budget=jax.random.randint(keys[8], [], config.min_budget,
                                config.max_steps + 1),
      peak=peak, adam=adam,
      init_scale=_loguniform(jax.random.fold_in(key, 1), 0.5, 2.0),
      arch=arch)


# ---------------------------------------------------------------- MLPs


def _dense_init(key, n_in, n_out, fan_in, in_mask, out_mask):
  w = jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(fan_in)
  return {"w": w * in_mask[:, None] * out_mask[None, :],
          "b": jnp.zeros([n_out])}


def _activation(x, tanh):
  return jnp.where(tanh, jnp.tanh(x), jax.nn.relu(x))


def mlp_family(name="mlp", sources=("digits", "iris", "wine", "teacher"),
               max_width=32, max_depth=3, dims=64, rows=1797) -> Family:
  """MLPs on tabular data sets or a teacher-student task (see module doc).

  Args:
    name: the family's name.
    sources: scikit-learn data set names and/or ``"teacher"``.
    max_width, max_depth: the padded width and number of hidden layers
      (each problem draws width ``8..max_width``, depth ``1..max_depth``).
    dims, rows: the padded input dimension and number of rows.
  """
  data = [_padded(*tabular(s), rows, dims) for s in sources
          if s != "teacher"]
  sizes = [len(tabular(s)[1]) for s in sources if s != "teacher"]
  classes = [int(tabular(s)[1].max()) + 1 for s in sources
             if s != "teacher"]
  with_teacher = "teacher" in sources
  xs = jnp.asarray(np.stack([d[0] for d in data])) if data else None
  labels = jnp.asarray(np.stack([d[1] for d in data])) if data else None

  def arch_of(key, in_dims):
    keys = jax.random.split(key, 3)
    width = jax.random.randint(keys[0], [], 8, max_width + 1)
    return {"in": (jnp.arange(dims) < in_dims).astype(jnp.float32),
            "units": (jnp.arange(max_width) < width).astype(jnp.float32),
            "depth": jax.random.randint(keys[1], [], 1, max_depth + 1),
            "tanh": jax.random.bernoulli(keys[2])}

  def teacher(key):
    keys = jax.random.split(key, 6)
    in_dims = jax.random.randint(keys[0], [], 4, dims + 1)
    in_mask = (jnp.arange(dims) < in_dims).astype(jnp.float32)
    x = jax.random.normal(keys[1], (rows, dims)) * in_mask
    w1 = jax.random.normal(keys[2], (dims, 32)) / jnp.sqrt(in_dims)
    w2 = jax.random.normal(keys[3], (32, MAX_OUT)) * 2.0
    out = jnp.tanh(x @ w1) @ w2
    regression = jax.random.bernoulli(keys[4], 0.3)
    count = jnp.where(regression, jax.random.randint(keys[5], [], 1, 5),
                      jax.random.randint(keys[5], [], 2, MAX_OUT + 1))
    out_mask = (jnp.arange(MAX_OUT) < count).astype(jnp.float32)
    label = jnp.argmax(jnp.where(out_mask > 0, out, -jnp.inf), axis=1)
    y = jnp.where(regression, out * out_mask / 2.0,
                  jax.nn.one_hot(label, MAX_OUT))
    return x, y, out_mask, regression, in_dims

  def sample(key, config):
    keys = jax.random.split(key, 4)
    n_sources = len(data) + int(with_teacher)
    source = jax.random.randint(keys[0], [], 0, n_sources)
    if data:
      pick = jnp.minimum(source, len(data) - 1)
      x_d = xs[pick]
      y_d = jax.nn.one_hot(labels[pick], MAX_OUT)
      c_d = jnp.asarray(classes)[pick]
      n_d = jnp.asarray(sizes)[pick]
      in_d = jnp.asarray([tabular(s)[0].shape[1] for s in sources
                          if s != "teacher"])[pick]
      mask_d = (jnp.arange(MAX_OUT) < c_d).astype(jnp.float32)
    if with_teacher:
      x_t, y_t, mask_t, reg_t, in_t = teacher(keys[1])
      n_t = jnp.asarray(rows)
    if data and with_teacher:
      is_t = source == len(data)
      pick_t = lambda a, b: jnp.where(is_t, a, b)
      x, y, out_mask = pick_t(x_t, x_d), pick_t(y_t, y_d), pick_t(mask_t,
                                                                   mask_d)
      regression, n, in_dims = reg_t & is_t, pick_t(n_t, n_d), pick_t(in_t,
                                                                       in_d)
    elif data:
      x, y, out_mask, regression, n, in_dims = (
          x_d, y_d, mask_d, jnp.asarray(False), n_d, in_d)
    else:
      x, y, out_mask, regression, n, in_dims = x_t, y_t, mask_t, reg_t, n_t, in_t
    return _split_and_run(keys[2], config, n, x, y, out_mask, regression,
                          arch_of(keys[3], in_dims), min_rows=120)

  def init(key, problem):
    arch = problem.arch
    keys = jax.random.split(key, max_depth + 1)
    fan_in = jnp.sum(arch["in"])
    width = jnp.sum(arch["units"])
    layers = [_dense_init(keys[0], dims, max_width, fan_in, arch["in"],
                          arch["units"])]
    for i in range(1, max_depth):
      layers.append(_dense_init(keys[i], max_width, max_width, width,
                                arch["units"], arch["units"]))
    layers.append(_dense_init(keys[-1], max_width, MAX_OUT, width,
                              arch["units"], jnp.ones([MAX_OUT])))
    return jax.tree.map(lambda w: w * problem.init_scale, layers)

  def apply(params, x, arch):
    h = _activation(x @ params[0]["w"] + params[0]["b"], arch["tanh"])
    h = h * arch["units"]
    for i in range(1, max_depth):
      new = _activation(h @ params[i]["w"] + params[i]["b"], arch["tanh"])
      h = jnp.where(i < arch["depth"], new * arch["units"], h)
    return h @ params[-1]["w"] + params[-1]["b"]

  return Family(name, sample, init, apply)


# ---------------------------------------------------------------- CNNs


def _patches(x):
  """3x3 'same' patches of ``[batch, h, w, c]`` -> ``[batch, h, w, 9c]``."""
  h, w = x.shape[1], x.shape[2]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, i:i + h, j:j + w]
                          for i in range(3) for j in range(3)], axis=-1)


def cnn_family(name="cnn", sources=("digits", "teacher"), max_channels=8,
               rows=1797) -> Family:
  """Small CNNs on 8x8 images (see the module docstring).

  Two 3x3 convolutions (``c1, c2`` channels, each ``2..max_channels``) with
  ReLU, 2x2 average pooling between them, global average pooling and a
  dense head; convolutions are matrix products of patches (cheap under
  ``vmap``).
  """
  x_digits, y_digits = _padded(*tabular("digits"), rows, 64)
  x_digits = jnp.asarray(x_digits.reshape(rows, 8, 8, 1))
  y_digits = jax.nn.one_hot(jnp.asarray(y_digits), MAX_OUT)
  with_digits, with_teacher = "digits" in sources, "teacher" in sources

  def arch_of(key):
    k1, k2 = jax.random.split(key)
    c1 = jax.random.randint(k1, [], 2, max_channels + 1)
    c2 = jax.random.randint(k2, [], 2, max_channels + 1)
    return {"c1": (jnp.arange(max_channels) < c1).astype(jnp.float32),
            "c2": (jnp.arange(max_channels) < c2).astype(jnp.float32)}

  def init_raw(key, arch, scale):
    keys = jax.random.split(key, 3)
    c = max_channels
    w1 = jax.random.normal(keys[0], (9, c)) / 3.0 * arch["c1"]
    w2 = (jax.random.normal(keys[1], (9 * c, c))
          / jnp.sqrt(9 * jnp.sum(arch["c1"])))
    w2 = w2 * jnp.tile(arch["c1"], 9)[:, None] * arch["c2"][None, :]
    w3 = (jax.random.normal(keys[2], (c, MAX_OUT))
          / jnp.sqrt(jnp.sum(arch["c2"]))) * arch["c2"][:, None]
    params = [{"w": w1, "b": jnp.zeros([c])}, {"w": w2, "b": jnp.zeros([c])},
              {"w": w3, "b": jnp.zeros([MAX_OUT])}]
    return jax.tree.map(lambda w: w * scale, params)

  def apply(params, x, arch):
    h = jax.nn.relu(_patches(x) @ params[0]["w"] + params[0]["b"])
    h = h * arch["c1"]
    b, hh, ww, c = h.shape
    h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
    h = jax.nn.relu(_patches(h) @ params[1]["w"] + params[1]["b"])
    h = (h * arch["c2"]).mean(axis=(1, 2))
    return h @ params[2]["w"] + params[2]["b"]

  def sample(key, config):
    keys = jax.random.split(key, 5)
    arch = arch_of(keys[0])
    x_t = jax.random.normal(keys[1], (rows, 8, 8, 1))
    full = {"c1": jnp.ones([max_channels]), "c2": jnp.ones([max_channels])}
    logits = apply(init_raw(keys[2], full, 3.0), x_t, full)
    classes = jax.random.randint(keys[3], [], 2, MAX_OUT + 1)
    mask_t = (jnp.arange(MAX_OUT) < classes).astype(jnp.float32)
    y_t = jax.nn.one_hot(jnp.argmax(jnp.where(mask_t > 0, logits, -jnp.inf),
                                    axis=1), MAX_OUT)
    if with_digits and with_teacher:
      is_t = jax.random.bernoulli(keys[4])
    else:
      is_t = jnp.asarray(with_teacher)
    x = jnp.where(is_t, x_t, x_digits)
    y = jnp.where(is_t, y_t, y_digits)
    out_mask = jnp.where(is_t, mask_t, jnp.ones([MAX_OUT]))
    n = jnp.where(is_t, rows, len(tabular("digits")[1]))
    return _split_and_run(jax.random.fold_in(key, 7), config, n, x, y,
                          out_mask, jnp.asarray(False), arch, min_rows=300)

  def init(key, problem):
    return init_raw(key, problem.arch, problem.init_scale)

  return Family(name, sample, init, apply)


# ---------------------------------------------------------------- sequences


def sequence_family(name, attention: bool, context=8, embed=16, width=64,
                    windows=4000, seed=0) -> Family:
  """Next-character models on standard-library text (held out).

  ``attention=False``: an MLP on the concatenated embeddings of the last
  ``context`` characters. ``attention=True``: a single-head attention block
  (with positional embeddings and a residual MLP) whose last position
  predicts the next character. Each problem uses a random subset of (at
  least half of) ``windows`` windows. The outputs are the 37 character ids
  (not :data:`MAX_OUT`).
  """
  ids, nxt = char_windows(context, windows, seed)
  vocab = len(_ALPHABET) + 1
  x_all = jnp.asarray(ids)
  y_all = jax.nn.one_hot(jnp.asarray(nxt), vocab)

  def init(key, problem):
    keys = jax.random.split(key, 8)
    n = lambda k, shape, fan: jax.random.normal(k, shape) / math.sqrt(fan)
    params = {"embed": n(keys[0], (vocab, embed), 1.0)}
    if attention:
      params.update(
          pos=n(keys[1], (context, embed), 1.0),
          q=n(keys[2], (embed, embed), embed),
          k=n(keys[3], (embed, embed), embed),
          v=n(keys[4], (embed, embed), embed),
          w1=n(keys[5], (embed, width), embed), b1=jnp.zeros([width]),
          w2=n(keys[6], (width, embed), width))
      params["out"] = n(keys[7], (embed, vocab), embed)
    else:
      params.update(w1=n(keys[5], (context * embed, width), context * embed),
                    b1=jnp.zeros([width]),
                    out=n(keys[7], (width, vocab), width))
    params["bias"] = jnp.zeros([vocab])
    return jax.tree.map(lambda w: w * problem.init_scale, params)

  def apply(params, x, arch):
    del arch
    e = params["embed"][x]
    if attention:
      e = e + params["pos"]
      q = e[:, -1] @ params["q"]
      scores = jnp.einsum("be,bte->bt", q, e @ params["k"]) / math.sqrt(embed)
      h = e[:, -1] + jnp.einsum("bt,bte->be", jax.nn.softmax(scores),
                                e @ params["v"])
      h = h + jax.nn.relu(h @ params["w1"] + params["b1"]) @ params["w2"]
    else:
      h = jax.nn.relu(e.reshape(e.shape[0], -1) @ params["w1"]
                      + params["b1"])
    return h @ params["out"] + params["bias"]

  def sample(key, config):
    return _split_and_run(key, config, jnp.asarray(windows), x_all, y_all,
                          jnp.ones([vocab]), jnp.asarray(False), {},
                          min_rows=windows // 2)

  return Family(name, sample, init, apply)


def training_families():
  """The families the shipped policy was trained on."""
  return (mlp_family(), cnn_family())


def held_out_families():
  """Families never seen in training (for :mod:`bench.dnn_policy_task`)."""
  return (sequence_family("char_mlp", attention=False),
          sequence_family("attention", attention=True),
          mlp_family("mlp_breast_cancer", sources=("breast_cancer",),
                     max_width=64, dims=30, rows=569))


# ---------------------------------------------------------------- episodes


def _losses(outputs, y, out_mask, regression):
  """Per-row loss: cross-entropy over the used classes, or masked MSE."""
  logits = jnp.where(out_mask > 0, outputs, -1e9)
  xent = -jnp.sum(y * jax.nn.log_softmax(logits), axis=-1)
  mse = jnp.sum(out_mask * (outputs - y) ** 2, axis=-1) / jnp.sum(out_mask)
  return jnp.where(regression, mse, xent)


def _mean_loss(family, params, problem, rows, weights):
  out = family.apply(params, problem.x[rows], problem.arch)
  losses = _losses(out, problem.y[rows], problem.out_mask, problem.regression)
  return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1)


def split_losses(family, params, problem):
  """Full training and validation losses (means over their rows)."""
  positions = jnp.arange(problem.x.shape[0])
  per_row = _losses(family.apply(params, problem.x[problem.order],
                                 problem.arch),
                    problem.y[problem.order], problem.out_mask,
                    problem.regression)
  train = positions < problem.n_train
  val = (positions >= problem.n_train) & (
      positions < problem.n_train + problem.n_val)
  mean = lambda m: jnp.sum(jnp.where(m, per_row, 0)) / jnp.maximum(
      jnp.sum(m), 1)
  return mean(train), mean(val)


def direction(adam) -> optax.GradientTransformation:
  """Adam (``adam`` true) or SGD with momentum 0.9 (``optax.trace``).

  ``adam`` may be traced: both are computed and one is selected.
  """
  first, second = optax.scale_by_adam(), optax.trace(decay=0.9)
  if isinstance(adam, bool):
    return first if adam else second

  def init_fn(params):
    return first.init(params), second.init(params)

  def update_fn(updates, state, params=None):
    a, state_a = first.update(updates, state[0], params)
    b, state_b = second.update(updates, state[1], params)
    return optax.tree.where(adam, a, b), (state_a, state_b)

  return optax.GradientTransformation(init_fn, update_fn)


def cosine_optimizer(problem):
  """The baseline: the direction, then cosine annealing from the peak to 0."""
  return optax.chain(
      direction(problem.adam),
      optax.scale_by_schedule(lambda t: -problem.peak * 0.5 * (1 + jnp.cos(
          jnp.pi * jnp.minimum(t / problem.budget, 1.0)))))


def learned_optimizer(policy):
  """``problem -> optimizer``: the direction, then the policy's schedule."""
  return lambda problem: optax.chain(
      direction(problem.adam),
      optax_greedy.learned_schedule(policy, problem.peak,
                                    total_steps=problem.budget,
                                    ramp_fraction=0.0, decay_fraction=0.0))


def _applied_rate(state):
  """The state's ``learning_rate`` (NaN unless it has exactly one)."""
  try:
    rate = optax.tree.get(state, "learning_rate", default=jnp.nan)
  except KeyError:  # Several, e.g. two alternatives run side by side.
    return jnp.asarray(jnp.nan)
  return jnp.mean(jnp.asarray(jax.tree.leaves(rate)[0], jnp.float32))


def run_episode(family: Family, problem: DNNProblem, optimizer, key, *,
                max_steps: int, max_batch: int, checkpoints: int = 1):
  """Trains ``family``'s network on ``problem``; returns its losses.

  Args:
    family: the :class:`Family`.
    problem: a :class:`DNNProblem` of that family.
    optimizer: ``problem -> optax transform`` (e.g. :func:`cosine_optimizer`,
      ``learned_optimizer(policy)``); its ``update`` receives ``value=`` the
      minibatch loss.
    key: initialisation and minibatches (share it across compared runs).
    max_steps: the scan's length, ``>= problem.budget`` (steps past the
      budget are no-ops).
    max_batch: the padded minibatch size (``>= problem.batch_size``).
    checkpoints: record the full losses this many times, after every
      ``max_steps // checkpoints`` steps (it must divide ``max_steps``).

  Returns:
    ``{"train": [checkpoints], "val": [checkpoints], "loss": [max_steps],
    "rates": [max_steps]}``: full training and validation losses at each
    checkpoint (the last is the final one), the minibatch losses and the
    state's ``learning_rate`` after each step (NaN if it has none).
  """
  tx = optax.with_extra_args_support(optimizer(problem))
  key_init, key_steps = jax.random.split(key)
  params = family.init(key_init, problem)
  state = tx.init(params)
  batch_mask = (jnp.arange(max_batch) < problem.batch_size).astype(
      jnp.float32)

  def step(carry, t):
    params, state = carry
    picks = jax.random.randint(jax.random.fold_in(key_steps, t),
                               [max_batch], 0, problem.n_train)
    rows = problem.order[picks]
    value, grads = jax.value_and_grad(
        lambda p: _mean_loss(family, p, problem, rows, batch_mask))(params)
    updates, new_state = tx.update(grads, state, params, value=value)
    new_params = optax.apply_updates(params, updates)
    active = t < problem.budget
    keep = lambda new, old: optax.tree.where(active, new, old)
    return (keep(new_params, params), keep(new_state, state)), (
        value, jnp.where(active, _applied_rate(new_state), jnp.nan))

  per_chunk = max_steps // checkpoints

  def chunk(carry, c):
    carry, (values, rates) = jax.lax.scan(
        step, carry, c * per_chunk + jnp.arange(per_chunk))
    return carry, (split_losses(family, carry[0], problem), values, rates)

  _, (losses, values, rates) = jax.lax.scan(
      chunk, (params, state), jnp.arange(checkpoints))
  return {"train": losses[0], "val": losses[1],
          "loss": values.reshape(-1), "rates": rates.reshape(-1)}


def _log_ratio(baseline, candidate):
  """``log(baseline / candidate)``; non-finite losses count as huge."""
  clean = lambda l: jnp.log(jnp.where(jnp.isfinite(l) & (l > 0), l, 1e6))
  return clean(baseline) - clean(candidate)


def reward(baseline, candidate, train_weight=0.5):
  """The reward of one episode against the baseline's (module docstring)."""
  rho = lambda d: jnp.clip(d, -0.5, 0.5) + jnp.minimum(jnp.clip(d, -0.5, 0.5),
                                                       0)
  return (rho(_log_ratio(baseline["val"][-1], candidate["val"][-1]))
          + train_weight * rho(_log_ratio(baseline["train"][-1],
                                 candidate["train"][-1])))


def fitness(policies, key, families, config: EnvConfig = EnvConfig()):
  """Mean reward of each member over the same problems of every family.

  For each family, ``config.problems`` problems are drawn; on each, the
  cosine baseline runs once and every member of the population runs its
  policy (``vmap`` over members inside ``vmap`` over problems, so the data
  is not copied per member), with the same initialisation and minibatches.

  Args:
    policies: a Policy whose leaves have a leading ``members`` axis.
    key: draws the problems, initialisations and minibatches.
    families: the :class:`Family` tuple.
    config: an :class:`EnvConfig`.

  Returns:
    ``(fitness [members], info)`` for
    :func:`optax_greedy.learning.es.train_es`; ``info`` has the fraction of
    problems where the member is at least as good as cosine (within 1%) on
    the validation loss (``val_equal_or_better``).
  """
  rewards, equal_or_better = [], []
  run = functools.partial(run_episode, max_steps=config.max_steps,
                          max_batch=config.max_batch)
  for i, family in enumerate(families):
    keys = jax.random.split(jax.random.fold_in(key, i), 2 * config.problems)
    problems = jax.vmap(lambda k: family.sample(k, config))(
        keys[:config.problems])

    def per_problem(problem, k, family=family):
      base = run(family, problem, cosine_optimizer, k)
      members = jax.vmap(lambda policy: run(
          family, problem, learned_optimizer(policy), k))(policies)
      ratio = _log_ratio(base["val"][-1], members["val"][:, -1])
      return jax.vmap(lambda m: reward(base, m, config.train_weight))(
          members), ratio >= -0.01

    r, ok = jax.vmap(per_problem)(problems, keys[config.problems:])
    rewards.append(r)
    equal_or_better.append(ok)
  rewards = jnp.concatenate(rewards)           # [problems, members]
  ok = jnp.concatenate(equal_or_better)
  return jnp.mean(rewards, axis=0), {
      "val_equal_or_better": jnp.mean(ok.astype(jnp.float32), axis=0)}


def cosine_policy(key, features=FEATURES, hidden=HIDDEN, steps=2000):
  """A policy fitted to cosine annealing, ``f = (1 + cos(pi t / T)) / 2``.

  The starting point of ES training: episodes of this policy tie with the
  baseline, so ES searches for improvements from cosine rather than from a
  random schedule. Fitted by Adam on the log fraction, with the features
  other than ``budget_used`` drawn at random (so it learns to ignore them).

  Returns:
    ``(policy, final fit loss)``.
  """
  key_init, key_fit = jax.random.split(key)
  policy = _policy.init_policy(key_init, features, hidden)
  used = features.index("budget_used")
  adam = optax.adam(1e-2)

  def loss(policy, key):
    x = jax.random.normal(key, (512, len(features)))
    t = jax.random.uniform(jax.random.fold_in(key, 1), (512,))
    x = x.at[:, used].set(t)
    target = jnp.clip(0.5 * (1 + jnp.cos(jnp.pi * t)), _policy.MIN_FRACTION,
                      1.0)
    pred = _policy.policy_fraction(policy, x)
    return jnp.mean((jnp.log(pred) - jnp.log(target)) ** 2)

  @jax.jit
  def step(policy, state, key):
    value, grads = jax.value_and_grad(loss)(policy, key)
    updates, state = adam.update(grads, state)
    return optax.apply_updates(policy, updates), state, value

  state = adam.init(policy)
  for i in range(steps):
    policy, state, value = step(policy, state, jax.random.fold_in(key_fit, i))
  return policy, float(value)


#: ES hyperparameters of the shipped policy.
ES_CONFIG = es.ESConfig(iterations=130, pairs=8, sigma=0.05,
                        learning_rate=0.01)


def train(seed: int, es_config: es.ESConfig = ES_CONFIG,
          config: EnvConfig = EnvConfig(), *, families=None, log=None,
          checkpoint=None, imitation_steps=2000):
  """Trains the deep-network policy: cosine imitation, then ES.

  Deterministic for a seed.

  Args:
    seed: the only source of randomness.
    es_config: an :class:`~optax_greedy.learning.es.ESConfig`.
    config: an :class:`EnvConfig`.
    families: the training families (default :func:`training_families`).
    log, checkpoint: as in :func:`optax_greedy.learning.es.train_es`.
    imitation_steps: steps of :func:`cosine_policy` before ES.

  Returns:
    ``(policy, history)`` as :func:`optax_greedy.learning.es.train_es`.
  """
  families = training_families() if families is None else families
  initial, _ = cosine_policy(jax.random.fold_in(jax.random.key(seed), 1),
                             steps=imitation_steps)
  return es.train_es(seed, lambda p, k: fitness(p, k, families, config),
                     initial, es_config, log=log, checkpoint=checkpoint)
