"""The one Workload interface: a model, its data, loss, budget and grid.

Every realistic workload of the benchmark (:mod:`bench.workloads`) is one
:class:`Workload`; the workloads study, the step-cost table and the
selection studies train it with the one loop (:mod:`bench.core.loop`,
through :func:`problem`).
"""

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
import optax

from bench.core import loop as L


@dataclasses.dataclass(frozen=True)
class Workload:
  """A model, its data and budget.

  Attributes:
    name: short name.
    init: ``init(key) -> params``.
    loss: ``loss(params, inputs, targets) -> (mean loss, correct [n])``.
    minibatch: ``minibatch(train, sample) -> (inputs, targets)``, the
      training examples of one row of :attr:`sample`.
    train: the training split's arrays (what :attr:`minibatch` reads).
    valid, test: ``(inputs, targets)`` of the validation and test splits.
    sample: ``sample(rng, steps) -> [steps, batch]``, one row per step.
    steps: training steps of every run.
    eval_every: steps between evaluations.
    peaks: the warmup-cosine peak grid the baseline is tuned on (extended
      by the study while its best point is at an edge).
    size: the size preset (``"cpu"`` or ``"gpu"``).
    note: what was cut to fit the budget.
  """

  name: str
  init: Callable[[Any], Any]
  loss: Callable[..., Any]
  minibatch: Callable[..., Any]
  train: Any
  valid: Any
  test: Any
  sample: Callable[[np.random.Generator, int], np.ndarray]
  steps: int
  eval_every: int
  peaks: tuple = (3e-4, 1e-3, 3e-3)
  size: str = "cpu"
  note: str = ""


def xent(logits, targets):
  """Mean softmax cross-entropy and per-example (per-token) correctness."""
  loss = optax.losses.softmax_cross_entropy_with_integer_labels(
      logits, targets).mean()
  correct = (jnp.argmax(logits, -1) == targets).reshape(-1)
  return loss, correct


def gather_windows(train, starts):
  """Windows of bytes from their start offsets: ``(inputs, targets)``."""
  codes, offsets = train
  seqs = codes[starts[:, None] + offsets]
  return seqs[:, :-1], seqs[:, 1:]


def take(train, idx):
  """Rows ``idx`` of ``(inputs, targets)``."""
  inputs, targets = train
  return inputs[idx], targets[idx]


def problem(workload):
  """The workload as the loop's :class:`bench.core.loop.Problem`: data are
  ``{"train", "valid", "test"}``; the evaluation loss is the validation
  loss, with the test loss and per-example correctness as extras."""
  def train_loss(params, data, sample):
    inputs, targets = workload.minibatch(data["train"], sample)
    return workload.loss(params, inputs, targets)[0]

  def evaluate(params, data):
    val, _ = workload.loss(params, *data["valid"])
    test, correct = workload.loss(params, *data["test"])
    return val, (test, correct)

  return L.Problem(train_loss, evaluate)
