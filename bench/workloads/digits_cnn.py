"""CNN on scikit-learn's digits, 1197 / 300 / 300 images: a saturated task
(the tuned baseline gets 0.998 test accuracy), kept as a fast smoke of the
workloads study, not in its headline."""

import flax.linen as nn
import numpy as np

from bench.core import data as D
from bench.core import models as M
from bench.core import workload as W

STEPS = 1000
PEAKS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


class CNN(nn.Module):
  """conv 32, conv 64, pool, conv 128, pool, dense 256, dense 10 (3x3
  'SAME' convolutions as im2col + dense, :class:`bench.core.models.Conv3x3`:
  the same function, about 15x less CPU time than XLA's CPU convolution
  here)."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(M.Conv3x3(32)(x))
    x = nn.relu(M.Conv3x3(64)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(M.Conv3x3(128)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


def make(steps=STEPS, size="cpu", eval_every=50, batch=64):
  """The digits CNN (one size)."""
  del size
  train, valid, test = D.digits_images((1197, 300, 300))
  module = CNN()

  def loss(params, inputs, targets):
    return W.xent(module.apply(params, inputs), targets)

  def sample(rng, n):
    return rng.integers(0, len(train[1]), (n, batch), dtype=np.int32)

  return W.Workload(
      "cnn", lambda key: module.init(key, train[0][:1]), loss, W.take, train,
      valid, test, sample, steps, eval_every, peaks=PEAKS,
      note="digits is the largest image set shipped with an installed "
           "package; 8x8 images")
