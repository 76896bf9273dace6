"""The run settings a problem draws (see the package docstring): its rows
and their split, its label noise, direction, peak rate, minibatch size,
budget and initialisation scale, and its network's sizes."""

import math

import jax
import jax.numpy as jnp

from optax_greedy_lab.dnn_problems.problem import DNNProblem


def loguniform(key, low, high):
  """A log-uniform draw in ``[low, high]``."""
  return jnp.exp(jax.random.uniform(key, [], minval=math.log(low),
                                    maxval=math.log(high)))


def split_and_run(key, config, n, x, y, out_mask, regression, arch,
                  min_rows, label_noise=True):
  """The common part of every problem: rows, split, noise and run settings.

  ``n`` rows of ``x``/``y`` are valid; a random subset of at least
  ``min_rows`` of them is used, three quarters for training.
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
  noise = noise if label_noise else 0.0
  flip = jax.random.uniform(keys[3], [rows]) < noise
  random_label = jax.random.randint(keys[4], [rows], 0, classes.astype(int))
  noisy = jax.nn.one_hot(random_label, y.shape[-1])
  if label_noise:
    y = jnp.where(flip[:, None] & ~regression, noisy, y)
  adam = jax.random.bernoulli(keys[5])
  peak = jnp.where(adam, loguniform(keys[6], *config.adam_peaks),
                   loguniform(keys[6], *config.momentum_peaks))
  return DNNProblem(
      x=x, y=y, out_mask=out_mask, regression=regression, order=order,
      n_train=n_train, n_val=used - n_train,
      batch_size=jax.random.randint(keys[7], [], 8, config.max_batch + 1),
      budget=jax.random.randint(keys[8], [], config.min_budget,
                                config.max_steps + 1),
      peak=peak, adam=adam,
      init_scale=loguniform(jax.random.fold_in(key, 1), 0.5, 2.0),
      arch=arch)


def mlp_arch(key, in_dims, dims, max_width, max_depth):
  """An MLP's masks: ``in_dims`` of ``dims`` inputs, a width in
  ``8..max_width``, a depth in ``1..max_depth``, tanh or ReLU."""
  keys = jax.random.split(key, 3)
  width = jax.random.randint(keys[0], [], 8, max_width + 1)
  return {"in": (jnp.arange(dims) < in_dims).astype(jnp.float32),
          "units": (jnp.arange(max_width) < width).astype(jnp.float32),
          "depth": jax.random.randint(keys[1], [], 1, max_depth + 1),
          "tanh": jax.random.bernoulli(keys[2])}


def cnn_arch(key, max_channels):
  """A CNN's channel masks: ``2..max_channels`` channels in each
  convolution."""
  k1, k2 = jax.random.split(key)
  c1 = jax.random.randint(k1, [], 2, max_channels + 1)
  c2 = jax.random.randint(k2, [], 2, max_channels + 1)
  return {"c1": (jnp.arange(max_channels) < c1).astype(jnp.float32),
          "c2": (jnp.arange(max_channels) < c2).astype(jnp.float32)}


def char_lm_arch(key, max_layers):
  """A causal transformer's depth: ``1..max_layers`` blocks."""
  return {"layers": jax.random.randint(key, [], 1, max_layers + 1)}
