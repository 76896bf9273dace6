"""GreedyLR with a Flax Linen ``TrainState``.

``TrainState.apply_gradients`` calls ``tx.update(grads, opt_state, params)``
and has no way to pass the loss. The clean way is a three-line subclass whose
``apply_gradients`` takes the observed value and forwards it; everything else
(``step``, ``params``, ``opt_state``, checkpointing) stays the TrainState's.

    python examples/linen_train_state.py --steps 500
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from sklearn.datasets import load_digits

import optax_greedy


class GreedyTrainState(train_state.TrainState):
  """A TrainState whose ``apply_gradients`` forwards ``value`` to ``tx``."""

  def apply_gradients(self, *, grads, value=None, **kwargs):
    updates, opt_state = self.tx.update(
        grads, self.opt_state, self.params, value=value)
    return self.replace(
        step=self.step + 1, params=optax.apply_updates(self.params, updates),
        opt_state=opt_state, **kwargs)

  @property
  def learning_rate(self):
    return optax.tree.get(self.opt_state, "learning_rate")


class MLP(nn.Module):
  width: int = 128

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(10)(x)


@jax.jit
def train_step(state, x, y):
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads, value=loss), loss


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=500,
                      help="training steps (minibatches of 64 images)")
  parser.add_argument("--learning-rate", type=float, default=0.05,
                      help="GreedyLR's initial rate (SGD, momentum 0.9)")
  parser.add_argument("--log-every", type=int, default=100,
                      help="print the loss and rate every this many steps")
  args = parser.parse_args(argv)

  images, labels = load_digits(return_X_y=True)
  images = (images / 16.0).astype(np.float32)
  x_train, y_train = images[:1500], labels[:1500]
  x_test, y_test = images[1500:], labels[1500:]

  model = MLP()
  params = model.init(jax.random.key(0), x_train[:1])["params"]
  state = GreedyTrainState.create(
      apply_fn=model.apply, params=params,
      tx=optax_greedy.greedy_sgd(args.learning_rate, momentum=0.9))
  rng = np.random.default_rng(0)
  for step in range(1, args.steps + 1):
    batch = rng.choice(len(x_train), 64, replace=False)
    state, loss = train_step(state, x_train[batch], y_train[batch])
    if step % args.log_every == 0:
      print(f"step {step:5d}  loss {float(loss):.4f}  "
            f"lr {float(state.learning_rate):.3e}", flush=True)
  logits = model.apply({"params": state.params}, x_test)
  accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y_test))
  print(f"test accuracy {accuracy:.4f}")
  return accuracy


if __name__ == "__main__":
  main()
