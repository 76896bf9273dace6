"""Trains the learned NMF schedule shipped in optax_greedy/policies/.

Evolution strategies (see ``optax_greedy._rl_env``) on a tiny flax MLP that
picks the learning rate as a fraction of NMF's stability bound, over a
vmapped batch of random synthetic stochastic-NMF problems. Deterministic for
a seed; the shipped policy is::

  python examples/train_nmf_policy.py --seed 0 \
      --out optax_greedy/policies/nmf_policy.npz

(364 s on 2 shared CPU cores, about 30k env steps/s). ``--iterations 3`` is a smoke
test.
"""

import argparse
import time

import jax

from optax_greedy import _learned
from optax_greedy import _rl_env


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--iterations", type=int,
                      default=_rl_env.ESConfig().iterations)
  parser.add_argument("--out", default="nmf_policy.npz")
  args = parser.parse_args(argv)
  config = _rl_env.ESConfig(iterations=args.iterations)
  print(f"devices={jax.devices()} config={config}", flush=True)

  def log(i, info):
    if i % 10 == 0 or i == config.iterations - 1:
      print(f"iter {i:4d} mean return {info['mean_fitness']:.3f} max"
            f" {info['max_fitness']:.3f} {info['seconds']:.2f}s"
            f" ({info['env_steps_per_s']:.0f} env steps/s)", flush=True)

  start = time.perf_counter()
  policy, history = _rl_env.train_es(args.seed, config, log=log)
  seconds = time.perf_counter() - start
  steps = sum(h["env_steps_per_s"] * h["seconds"] for h in history)
  print(f"trained in {seconds:.0f}s, {steps:.3g} env steps"
        f" ({steps / seconds:.0f}/s including compilation)", flush=True)
  held_out = _rl_env.evaluate_policy(policy, seed=10_000 + args.seed,
                                     config=config)
  print(f"held-out synthetic problems: {held_out}", flush=True)
  _learned.save_policy(args.out, policy, seed=args.seed,
                       iterations=config.iterations,
                       train_seconds=round(seconds, 1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
