"""Stochastic NMF of scikit-learn's digits, with rates at the stability bound.

Factors the digits (as a 64 x 1797 matrix, one image per column) into
non-negative ``W`` (64 x rank) and ``H`` (rank x 1797) by projected SGD on
minibatches of columns, and compares learning-rate schedules at the same
step budget:

* a constant rate 3x the stability bound (it blows up);
* a constant rate at the bound, and a cosine decay from it;
* ``greedy_lr`` from the bound;
* ``greedy_lr`` from 10x the bound inside ``stability_clip``, which caps the
  rate at 0.9x the bound of each minibatch, recomputed every step.

The bound (see ``optax_greedy.nmf.stability_bounds``) is 2 / (the largest
curvature of the minibatch loss), from two rank x rank eigenvalue problems.
Prints the final relative error ||V - WH|| / ||V|| of each and saves a plot
of the error and the learning rate over the steps.

    python examples/nmf_digits.py --steps 300 --out nmf_digits.png

Reference: "Efficient learning rate schedules for stochastic non-negative
matrix factorization via reinforcement learning", ICLR 2023 Tiny Papers.
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import optax_greedy
from optax_greedy import nmf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def optimizers(bound, steps):
  """Name -> (transform, ``rate(state, t)``: the rate that update ``t``,
  which ended in ``state``, applied to ``W``)."""
  clipped = optax_greedy.stability_clip(
      # Both factors move in every step: the joint bound; exact for the
      # step's minibatch, passed to update() as columns=...
      functools.partial(nmf.stability_bounds, joint=True),
      inner=optax_greedy.greedy_lr(10 * bound),
      safety=0.9,
      bound_args=("columns",),
  )
  cosine = optax.cosine_decay_schedule(bound, steps)
  return {
      "constant 3x bound": (optax.sgd(3 * bound), lambda state, t: 3 * bound),
      "constant at bound": (optax.sgd(bound), lambda state, t: bound),
      "cosine": (optax.sgd(cosine), lambda state, t: cosine(t)),
      # optax_greedy's states hold the rate their last update applied (after
      # the cap, under stability_clip).
      "greedy_lr": (optax_greedy.greedy_lr(bound),
                    lambda state, t: optax.tree.get(state, "learning_rate")),
      "greedy_lr + stability_clip": (
          clipped,
          lambda state, t: optax.tree.get(state, "learning_rate")["W"]),
  }


def train(V, tx, rate_of, steps, batch_size, rank, seed, eval_every=10):
  """Projected SGD; returns the errors every ``eval_every`` steps and rates."""
  tx = optax.chain(tx, optax.keep_params_nonnegative())
  params = nmf.init(jax.random.key(seed), V, rank)
  state = tx.init(params)
  n = V.shape[1]
  rng = np.random.default_rng(seed)

  @jax.jit
  def step(params, state, columns):
    value, grads = jax.value_and_grad(nmf.loss)(params, V, columns)
    updates, state = tx.update(grads, state, params, value=value,
                               columns=columns)
    return optax.apply_updates(params, updates), state

  errors, rates = [float(nmf.relative_error(params, V))], []
  for t in range(steps):
    columns = jnp.asarray(rng.choice(n, batch_size, replace=False))
    params, state = step(params, state, columns)
    rates.append(float(rate_of(state, t)))
    if (t + 1) % eval_every == 0:
      errors.append(float(nmf.relative_error(params, V)))
  return np.array(errors), np.array(rates)


def main(argv=None):
  """Runs the comparison; returns name -> (errors every 10 steps, rates)."""
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=300,
                      help="SGD steps of each schedule")
  parser.add_argument("--batch-size", type=int, default=256,
                      help="images (columns of V) per minibatch")
  parser.add_argument("--rank", type=int, default=16,
                      help="inner dimension r of W (64 x r) and H (r x 1797)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the initial factors and the minibatches")
  parser.add_argument("--out", default="nmf_digits.png",
                      help="where to save the figure (PNG)")
  args = parser.parse_args(argv)

  V = nmf.digits_matrix().T  # 64 pixels x 1797 images
  start = nmf.init(jax.random.key(args.seed), V, args.rank)
  bounds = nmf.stability_bounds(start, joint=True, batch_size=args.batch_size)
  bound = float(bounds["W"])
  print(f"V: {V.shape}, rank {args.rank}, batch {args.batch_size}; "
        f"bound at init {bound:.3g} (joint, any batch)")

  eval_every = 10
  results = {}
  fig, (ax_err, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
  for name, (tx, rate_of) in optimizers(bound, args.steps).items():
    errors, rates = train(V, tx, rate_of, args.steps, args.batch_size,
                          args.rank, args.seed, eval_every)
    results[name] = (errors, rates)
    final = errors[-1]
    print(f"{name:28s} final relative error "
          f"{final if np.isfinite(final) and final < 1 else 'failed'}")
    ax_err.plot(np.arange(len(errors)) * eval_every,
                np.where(np.isfinite(errors), errors, np.nan), label=name)
    ax_lr.plot(rates, label=name)
  ax_lr.axhline(0.9 * bound, color="k", ls=":", lw=1,
                label="0.9 x bound at init (any batch)")
  ax_err.set(xlabel="step", ylabel="||V - WH|| / ||V||", yscale="log",
             ylim=(0.2, 1.5), title="reconstruction error")
  ax_lr.set(xlabel="step", ylabel="rate applied to W", yscale="log",
            title="learning rate")
  ax_err.legend(fontsize=8)
  ax_lr.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=100)
  print(f"saved {args.out}")
  return results


if __name__ == "__main__":
  main()
