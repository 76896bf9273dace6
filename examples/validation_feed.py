"""GreedyLR fed the validation loss every k steps, inside one jitted scan.

GreedyLR as its authors describe it adapts to the *validation* loss, once per
evaluation. With :func:`optax_greedy.validation_feed` that is one line of a
``lax.scan`` training step::

    updates, state = tx.update(grads, state, params,
        **optax_greedy.validation_feed(t, every, lambda: val_loss(params)))

It evaluates the validation loss only on every ``every``-th step (under
``lax.cond``) and passes ``observe=False`` on the others, which keeps the
rate. The whole run is one compiled program.

The data are scikit-learn's 8x8 digits (no download), split 60/20/20 into
training, validation (read only by GreedyLR) and test (read by nobody until
the end). The script trains the same MLP from the same initialisation three
times -- GreedyLR on the validation feed, GreedyLR on the per-step training
loss (its defaults), and Adam with a cosine schedule -- and prints the final
training, validation and test losses of each.

    python examples/validation_feed.py --steps 600 --every 30
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import optax_greedy


def load_splits(seed):
  """Digits scaled to [0, 1], split 60/20/20 into train/validation/test."""
  images, labels = load_digits(return_X_y=True)
  images = (images / 16.0).astype(np.float32)
  x_train, x_rest, y_train, y_rest = train_test_split(
      images, labels, test_size=0.4, random_state=seed, stratify=labels)
  x_val, x_test, y_val, y_test = train_test_split(
      x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
  return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def init_mlp(key, width):
  """A 64-width-10 ReLU MLP, LeCun-normal weights, zero biases."""
  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (64, width)) / 8.0,
      "b1": jnp.zeros(width),
      "w2": jax.random.normal(k2, (width, 10)) / np.sqrt(width),
      "b2": jnp.zeros(10),
  }


def loss_fn(params, x, y):
  hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
  logits = hidden @ params["w2"] + params["b2"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train(tx, params, splits, batches, every, feed):
  """The whole run in one compiled scan; returns the final params and the
  learning rate applied at every step (NaN for a transform without one)."""
  (x_train, y_train), (x_val, y_val), _ = (
      tuple(jnp.asarray(a) for a in split) for split in splits)

  def step(carry, inputs):
    params, state = carry
    t, batch = inputs
    loss, grads = jax.value_and_grad(loss_fn)(
        params, x_train[batch], y_train[batch])
    if feed == "validation":
      feed_args = optax_greedy.validation_feed(
          t, every, lambda: loss_fn(params, x_val, y_val))
    elif feed == "train":
      feed_args = {"value": loss}
    else:
      feed_args = {}
    updates, state = tx.update(grads, state, params, **feed_args)
    rate = optax.tree.get(state, "learning_rate", jnp.nan)  # NaN: no field
    return (optax.apply_updates(params, updates), state), rate

  run = jax.jit(lambda params: jax.lax.scan(
      step, (params, tx.init(params)),
      (jnp.arange(len(batches)), batches)))
  (params, _), rates = run(params)
  return params, np.asarray(rates)


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=600,
                      help="training steps (minibatches)")
  parser.add_argument("--every", type=int, default=30,
                      help="evaluate the validation loss and feed it to"
                      " GreedyLR after every this many steps")
  parser.add_argument("--learning-rate", type=float, default=3e-3,
                      help="initial (and peak) learning rate of every run")
  parser.add_argument("--patience", type=int, default=1,
                      help="GreedyLR's patience on the validation feed:"
                      " a change needs more than this many evaluations in a"
                      " row that improve (or do not); 1 and --factor 0.9 are"
                      " the recipe of bench/greedy_feeds.py")
  parser.add_argument("--factor", type=float, default=0.9,
                      help="GreedyLR's factor on the validation feed")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="minibatch size")
  parser.add_argument("--width", type=int, default=128,
                      help="hidden units of the MLP")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the split, initialisation and batches")
  args = parser.parse_args(argv)

  splits = load_splits(args.seed)
  (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
  params = init_mlp(jax.random.key(args.seed), args.width)
  batches = np.random.default_rng(args.seed).integers(
      0, len(x_train), (args.steps, args.batch_size))
  lr = args.learning_rate
  runs = {
      "GreedyLR, validation feed": (
          optax_greedy.greedy_adam(lr, patience=args.patience,
                                   factor=args.factor, smooth=False),
          "validation"),
      "GreedyLR, training feed": (optax_greedy.greedy_adam(lr), "train"),
      "Adam, cosine schedule": (
          optax.adam(optax.cosine_decay_schedule(lr, args.steps)), None),
  }
  results = {}
  for name, (tx, feed) in runs.items():
    final, rates = train(tx, params, splits, batches, args.every, feed)
    losses = {split: float(loss_fn(final, x, y)) for split, (x, y) in (
        ("train", (x_train, y_train)), ("val", (x_val, y_val)),
        ("test", (x_test, y_test)))}
    results[name] = (losses, rates)
    rate = "" if feed is None else f"  final lr {rates[-1]:.3g}"
    print(f"{name:26s} train {losses['train']:.4f}  val {losses['val']:.4f}"
          f"  test {losses['test']:.4f}{rate}", flush=True)
  return results


if __name__ == "__main__":
  main()
