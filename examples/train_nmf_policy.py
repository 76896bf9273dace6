"""Trains a learned NMF schedule (the policy shipped as ``load_policy("nmf")``).

Evolution strategies (:mod:`optax_greedy_lab.es`) on a tiny MLP that
picks the learning rate as a fraction of NMF's stability bound, over a
vmapped batch of random synthetic stochastic-NMF problems
(:mod:`optax_greedy_lab.nmf_problems`). Deterministic for a seed::

  python examples/train_nmf_policy.py --seed 0

writes ``out/nmf_policy.npz`` (about 6 minutes on 2 shared CPU cores; the
shipped file came from the same command when the policy was a Flax module,
whose initial weights were drawn differently);
``--iterations 3`` is a smoke test. The default output never overwrites the
shipped policy: to ship a new one, copy the file over
``optax_greedy/policies/nmf_policy.npz`` and rerun the tests and
``python -m bench learned-nmf``.
"""

import argparse
import pathlib
import time

import jax

from optax_greedy import policy as policy_lib
from optax_greedy_lab import nmf_problems


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--seed", type=int, default=0,
                      help="the only source of randomness")
  parser.add_argument("--iterations", type=int,
                      default=nmf_problems.ES_CONFIG.iterations,
                      help="evolution-strategies updates")
  parser.add_argument("--out", default="out/nmf_policy.npz",
                      help="where to write the policy")
  args = parser.parse_args(argv)
  es_config = nmf_problems.ES_CONFIG._replace(iterations=args.iterations)
  print(f"devices={jax.devices()} es={es_config}", flush=True)

  def log(i, info):
    if i % 10 == 0 or i == es_config.iterations - 1:
      print(f"iter {i:4d} mean return {info['mean_fitness']:.3f} max"
            f" {info['max_fitness']:.3f} {info['seconds']:.2f}s", flush=True)

  start = time.perf_counter()
  policy, _ = nmf_problems.train(args.seed, es_config, log=log)
  seconds = time.perf_counter() - start
  print(f"trained in {seconds:.0f}s", flush=True)
  held_out = nmf_problems.evaluate_policy(policy, seed=10_000 + args.seed)
  print(f"held-out synthetic problems: {held_out}", flush=True)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  policy_lib.save_policy(out, policy, seed=args.seed,
                       iterations=es_config.iterations,
                       train_seconds=round(seconds, 1))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
