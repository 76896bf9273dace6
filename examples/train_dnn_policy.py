"""Trains the learned deep-network schedule (shipped as ``load_policy("dnn")``).

The policy picks the rate as a fraction of the peak rate the user gives,
from scale-free features of the minibatch loss and the update norm. It
starts as an imitation of cosine annealing
(:func:`optax_greedy.learning.dnn_problems.cosine_policy`), then evolution
strategies (:mod:`optax_greedy.learning.es`) improve it on random MLPs and
small CNNs (:mod:`optax_greedy.learning.dnn_problems`), rewarded by the
final validation and training losses relative to cosine annealing at the
same peak rate on the same problem. Deterministic for a seed::

  python examples/train_dnn_policy.py --seed 0

writes ``out/dnn_policy.npz`` (and a checkpoint every 10 updates, with the
history in ``out/dnn_policy_history.json``). The default output never
overwrites the shipped policy: to ship a new one, copy the file over
``optax_greedy/policies/dnn_policy.npz``, then run the tests and
``python -m bench dnn-policy``. ``--iterations 2 --problems 1
--max-steps 40`` is a smoke test.
"""

import argparse
import json
import pathlib
import time

import jax

from optax_greedy import learning
from optax_greedy.learning import dnn_problems


def main(argv=None):
  defaults = dnn_problems.ES_CONFIG
  env = dnn_problems.EnvConfig()
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--seed", type=int, default=0,
                      help="the only source of randomness")
  parser.add_argument("--iterations", type=int, default=defaults.iterations,
                      help="evolution-strategies updates")
  parser.add_argument("--pairs", type=int, default=defaults.pairs,
                      help="antithetic pairs per update")
  parser.add_argument("--problems", type=int, default=env.problems,
                      help="problems of each family per update")
  parser.add_argument("--max-steps", type=int, default=env.max_steps,
                      help="largest budget (the episodes' length)")
  parser.add_argument("--label-noise", type=float, default=env.label_noise,
                      help="largest fraction of random labels")
  parser.add_argument("--train-weight", type=float, default=env.train_weight,
                      help="weight of the training loss in the reward")
  parser.add_argument("--out", default="out/dnn_policy.npz",
                      help="where to write the policy")
  args = parser.parse_args(argv)
  es_config = defaults._replace(iterations=args.iterations, pairs=args.pairs)
  config = env._replace(problems=args.problems, max_steps=args.max_steps,
                        min_budget=min(env.min_budget, args.max_steps),
                        label_noise=args.label_noise,
                        train_weight=args.train_weight)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  print(f"devices={jax.devices()} es={es_config} env={config}", flush=True)
  start = time.perf_counter()
  history = []
  meta = dict(seed=args.seed, pairs=args.pairs, problems=args.problems,
              max_steps=args.max_steps, label_noise=args.label_noise,
              train_weight=args.train_weight)

  def log(i, info):
    history.append(info)
    print(f"iter {i:4d} fitness mean {info['mean_fitness']:+.4f} max"
          f" {info['max_fitness']:+.4f} val>=cosine"
          f" {info['val_equal_or_better']:.2f} {info['seconds']:.1f}s"
          f" (elapsed {time.perf_counter() - start:.0f}s)", flush=True)

  def checkpoint(i, policy):
    if (i + 1) % 10 == 0:
      learning.save_policy(out.with_name(f"{out.stem}_iter{i + 1}.npz"),
                           policy, iterations=i + 1, **meta)

  policy, _ = dnn_problems.train(args.seed, es_config, config, log=log,
                                 checkpoint=checkpoint)
  seconds = time.perf_counter() - start
  learning.save_policy(out, policy, iterations=es_config.iterations,
                       train_seconds=round(seconds, 1), **meta)
  out.with_name(out.stem + "_history.json").write_text(
      json.dumps(history, indent=1))
  print(f"trained in {seconds:.0f}s; wrote {out}", flush=True)
  return policy, history


if __name__ == "__main__":
  main()
