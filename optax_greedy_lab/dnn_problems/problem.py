"""What a deep-network training problem is: its arrays, its family, the
training distribution's sizes, and the policy's features."""

from typing import Any, Callable, NamedTuple

import jax

import optax_greedy
from optax_greedy import policy as _policy

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
    families: the names of the training families
      (:data:`optax_greedy_lab.dnn_problems.FAMILIES`).
    envelope: the step budget's envelope the policy acts inside, an
      :class:`optax_greedy.Envelope`; ``optax_greedy.NO_ENVELOPE`` (the
      default): none, the policy alone.
    baseline_peaks: the reward's baseline is the best cosine annealing
      over these multiples of the problem's peak rate (best final
      validation loss and best final training loss, each over the runs):
      ``(1.0,)`` is cosine at the same peak, ``(0.5, 1.0, 2.0)`` a cosine
      tuned on a grid of three peaks.
  """

  problems: int = 4
  max_steps: int = 160
  min_budget: int = 40
  max_batch: int = 32
  adam_peaks: tuple = (1e-3, 3e-2)
  momentum_peaks: tuple = (1e-2, 3e-1)
  label_noise: float = 0.2
  train_weight: float = 0.5
  families: tuple = ("mlp", "cnn")
  envelope: tuple = optax_greedy.NO_ENVELOPE
  baseline_peaks: tuple = (1.0,)
