"""A sweep of initial learning rates as one compiled program (``jax.vmap``).

Every hyperparameter of ``greedy_lr`` may be a traced value, so building the
optimizer inside a ``vmap``-ed function trains one model per initial rate in a
single XLA program: one compilation, all runs in parallel.

    python examples/vmap_sweep.py --steps 300
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import optax_greedy


def train(learning_rate, x, y, steps, key):
  """Softmax regression on digits with GreedyLR-Adam; returns losses, rates."""
  params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  tx = optax_greedy.greedy_adam(learning_rate)

  def loss_fn(params, xb, yb):
    logits = xb @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def step(carry, key):
    params, state = carry
    batch = jax.random.choice(key, x.shape[0], (64,), replace=False)
    loss, grads = jax.value_and_grad(loss_fn)(params, x[batch], y[batch])
    updates, state = tx.update(grads, state, params, value=loss)
    rate = optax.tree.get(state, "learning_rate")
    return (optax.apply_updates(params, updates), state), (loss, rate)

  keys = jax.random.split(key, steps)
  _, (losses, rates) = jax.lax.scan(step, (params, tx.init(params)), keys)
  return losses, rates


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=300,
                      help="training steps of each of the six runs")
  args = parser.parse_args(argv)
  images, labels = load_digits(return_X_y=True)
  x = jnp.asarray(images / 16.0, jnp.float32)
  y = jnp.asarray(labels)
  initial_rates = jnp.asarray([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
  sweep = jax.jit(jax.vmap(train, in_axes=(0, None, None, None, None)),
                  static_argnums=3)
  losses, rates = sweep(initial_rates, x, y, args.steps, jax.random.key(0))
  for lr0, loss, rate in zip(initial_rates, losses, rates):
    print(f"initial lr {float(lr0):.0e}: final loss (mean of last 20) "
          f"{float(np.mean(loss[-20:])):.4f}, final lr {float(rate[-1]):.3e}")
  return np.asarray(losses), np.asarray(rates)


if __name__ == "__main__":
  main()
