"""Train a Flax NNX MLP on scikit-learn's digits with GreedyLR.

The main job of the README: a real training run on data that ships with
scikit-learn (8x8 images of handwritten digits, 1797 samples, no download).
It prints the loss and the learning rate as training goes, and ends with the
test accuracy.

Two ways to feed GreedyLR:

* ``--feed train`` (default): every step observes the minibatch loss; the
  default ``smooth=True`` averages it over the last 50 steps.
* ``--feed validation``: every ``--eval-every`` steps, the validation loss is
  observed, with the recipe documented for that feed (``smooth=False``: it
  is already an average; ``patience=1, factor=0.9``: there are few
  observations); the steps in between pass ``value=None`` and keep the rate.

GreedyLR is told the step budget (``total_steps``): it ramps its rate up
over the first 5% of the steps and decays it to zero over the last 20%,
reacting to the loss in between.

    python examples/train_digits.py --steps 2000 --learning-rate 1e-3
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import optax_greedy


class MLP(nnx.Module):
  """Two hidden layers of ``width`` units with ReLU."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.hidden1 = nnx.Linear(64, width, rngs=rngs)
    self.hidden2 = nnx.Linear(width, width, rngs=rngs)
    self.out = nnx.Linear(width, 10, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.hidden1(x))
    x = jax.nn.relu(self.hidden2(x))
    return self.out(x)


def load_splits(seed: int):
  """Digits scaled to [0, 1], split 60/20/20 into train/validation/test."""
  images, labels = load_digits(return_X_y=True)
  images = (images / 16.0).astype(np.float32)
  x_train, x_rest, y_train, y_rest = train_test_split(
      images, labels, test_size=0.4, random_state=seed, stratify=labels)
  x_val, x_test, y_val, y_test = train_test_split(
      x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
  return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def cross_entropy(model, x, y):
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
  """One step; GreedyLR observes this minibatch's loss (feed a)."""
  loss, grads = nnx.value_and_grad(cross_entropy)(model, x, y)
  optimizer.update(model, grads, value=loss)
  return loss


@nnx.jit
def train_step_given(model, optimizer, x, y, value):
  """One step; GreedyLR observes ``value``, or nothing if it is None (feed b).

  ``None`` and an array compile once each: two programs in all.
  """
  loss, grads = nnx.value_and_grad(cross_entropy)(model, x, y)
  optimizer.update(model, grads, value=value)
  return loss


@nnx.jit
def evaluate(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=2000,
                      help="training steps (minibatches)")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="images per minibatch")
  parser.add_argument("--learning-rate", type=float, default=1e-3,
                      help="GreedyLR-Adam's initial rate")
  parser.add_argument("--width", type=int, default=128,
                      help="units of each of the two hidden layers")
  parser.add_argument("--feed", choices=("train", "validation"),
                      default="train",
                      help="what GreedyLR observes: every minibatch loss, or"
                      " the validation loss once per evaluation")
  parser.add_argument("--eval-every", type=int, default=100,
                      help="evaluate on the validation split (and print)"
                      " every this many steps")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the split, the model and the minibatches")
  args = parser.parse_args(argv)

  (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_splits(args.seed)
  model = MLP(args.width, rngs=nnx.Rngs(args.seed))
  if args.feed == "train":
    tx = optax_greedy.greedy_adam(args.learning_rate, total_steps=args.steps)
  else:  # Already an average, and observed only a few times: react faster.
    tx = optax_greedy.greedy_adam(args.learning_rate, smooth=False,
                                  patience=1, factor=0.9,
                                  total_steps=args.steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  rng = np.random.default_rng(args.seed)
  val_loss = None
  for step in range(1, args.steps + 1):
    batch = rng.choice(len(x_train), args.batch_size, replace=False)
    x, y = x_train[batch], y_train[batch]
    if args.feed == "train":
      loss = train_step(model, optimizer, x, y)
    else:  # The validation loss, on the step right after it was measured.
      loss = train_step_given(model, optimizer, x, y, val_loss)
    val_loss = None
    if step % args.eval_every == 0 or step == args.steps:
      val_loss, val_acc = evaluate(model, x_val, y_val)
      rate = optax.tree.get(optimizer.opt_state, "learning_rate")
      print(f"step {step:5d}  train loss {float(loss):.4f}  val loss "
            f"{float(val_loss):.4f}  val acc {float(val_acc):.3f}  "
            f"lr {float(rate[...]):.3e}", flush=True)
  test_loss, test_acc = evaluate(model, x_test, y_test)
  print(f"test loss {float(test_loss):.4f}  test accuracy {float(test_acc):.4f}")
  return float(test_acc)


if __name__ == "__main__":
  main()
