"""A 1-D CNN on MNIST-1D (Greydanus, 2020): 40-sample signals of ten
digit templates, shifted, scaled, sheared and noised, generated locally by
the ``mnist1d`` package (the ``[bench]`` extra; no download).

50,000 examples are drawn with a fixed seed and cut into 40,000 training,
5,000 validation and 5,000 test examples: enough training data that 2,000
steps of 128 (6.4 epochs) do not memorise it, and held-out sets large
enough that a ratio of test losses is stable to about 1%. The signals
carry more noise than the package's defaults (correlated noise 0.35
instead of 0.25, independent noise 0.05 instead of 0.02): with the
defaults this 196k-parameter CNN reaches 99.4% test accuracy on 40,000
examples (measured: a saturated task again), with these about 90%, with
its training loss well above zero, so the task separates optimisers.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from bench.core import workload as W

STEPS = 2000
SIZES = {"cpu": {"examples": 50_000, "batch": 128},
         "gpu": {"examples": 50_000, "batch": 128}}
SPLITS = (40_000, 5_000, 5_000)
SEED = 0
NOISE = {"corr_noise_scale": 0.35, "iid_noise_scale": 0.05}
# Factors of 3, as the sweep's x1/3 and x3 (which then reuse grid runs).
PEAKS = tuple(3e-3 * 3.0 ** k for k in (-2, -1, 0, 1, 2))


class Conv1d(nn.Module):
  """A 'SAME' 1-D convolution of odd ``width`` as a dense layer on the
  shifted copies of the input (im2col, as :class:`bench.core.models.
  Conv3x3`)."""
  features: int
  width: int

  @nn.compact
  def __call__(self, x):
    n, half = x.shape[1], self.width // 2
    xp = jnp.pad(x, ((0, 0), (half, half), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + n] for i in range(self.width)],
                              -1)
    return nn.Dense(self.features)(patches)


class CNN1d(nn.Module):
  """conv 32 (width 5), conv 64, pool, conv 128, pool, dense 128, dense
  10 (``channels``: other widths for these four layers)."""
  channels: tuple = (32, 64, 128, 128)

  @nn.compact
  def __call__(self, x):
    c1, c2, c3, hidden = self.channels
    x = x[..., None]
    x = nn.relu(Conv1d(c1, 5)(x))
    x = nn.relu(Conv1d(c2, 3)(x))
    x = nn.avg_pool(x, (2,), strides=(2,))
    x = nn.relu(Conv1d(c3, 3)(x))
    x = nn.avg_pool(x, (2,), strides=(2,))
    x = nn.relu(nn.Dense(hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


@functools.lru_cache(maxsize=None)
def splits(examples=SIZES["cpu"]["examples"], seed=SEED):
  """``(train, valid, test)`` as ``(signals float32 [n, 40], labels int32
  [n])``, :data:`SPLITS` scaled to ``examples``."""
  try:
    from mnist1d import data as mnist1d_data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("the MNIST-1D workload needs the mnist1d package: pip "
                      "install 'optax_greedy[bench]'") from e
  args = mnist1d_data.get_dataset_args()
  args.num_samples, args.seed, args.train_split = examples, seed, 1.0
  for key, value in NOISE.items():
    setattr(args, key, value)
  ds = mnist1d_data.make_dataset(args)
  x, y = ds["x"].astype(np.float32), ds["y"].astype(np.int32)
  sizes = np.asarray(SPLITS) * len(y) // sum(SPLITS)
  bounds = np.cumsum(np.concatenate([[0], sizes]))
  return tuple((x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def make(steps=STEPS, size="cpu", eval_every=100, examples=None):
  """The MNIST-1D workload (``examples``: fewer, for the smoke test)."""
  s = SIZES[size]
  return build("mnist1d", splits(examples or s["examples"]),
               CNN1d.channels, s["batch"], steps, eval_every, size=size,
               note="{} generated examples")


def build(name, data, channels, batch, steps, eval_every, size="cpu",
          note="{} examples"):
  """A :class:`bench.core.workload.Workload` of :class:`CNN1d` at
  ``channels`` on ``data`` (``(train, valid, test)`` of :func:`splits`),
  ``batch`` examples a step; ``note``'s ``{}`` receives the split sizes."""
  train, valid, test = data
  module = CNN1d(channels)

  def loss(params, inputs, targets):
    return W.xent(module.apply(params, inputs), targets)

  def sample(rng, n):
    return rng.integers(0, len(train[1]), (n, batch), dtype=np.int32)

  sizes = " / ".join(f"{len(y):,}" for _, y in data)
  return W.Workload(
      name, lambda key: module.init(key, train[0][:1]), loss, W.take,
      train, valid, test, sample, steps, eval_every, peaks=PEAKS, size=size,
      note=f"{note.format(sizes)}, batch {batch}")
