"""Trains the learned deep-network schedule (shipped as ``load_policy("dnn")``).

The policy picks the rate as a fraction of the peak rate the user gives,
from scale-free features of the minibatch loss and the update norm, inside
the step budget's envelope (a ramp over the first 5% of the steps, a linear
decay to zero over the last 20%: what ``learned_schedule(...,
total_steps=T)`` applies by default). It starts as an imitation of a fixed
schedule (:func:`optax_greedy_lab.dnn_problems.imitation_policy`),
then evolution strategies (:mod:`optax_greedy_lab.es`) improve it on
random MLPs, small CNNs and tiny transformer language models
(:mod:`optax_greedy_lab.dnn_problems`), rewarded by the final
validation and training losses relative to cosine annealing tuned over
three peak rates (half, one and two times the problem's peak) on the same
problem. Deterministic for a seed::

  python examples/train_dnn_policy.py --seed 0

writes ``out/dnn_policy.npz`` (its training configuration inside: see
``optax_greedy.policy.policy_config``), the history in
``out/dnn_policy_history.json`` and, after every update, the evolution
strategy's state in ``out/dnn_policy_state.npz``: stop it at any time and
run the same command with ``--resume`` to continue exactly where it
stopped (a state written with other settings is refused, naming the file
and the settings expected). A policy checkpoint is written every 10
updates. The default output never overwrites the shipped policy: to ship a
new one, copy the file over ``optax_greedy/policies/dnn_policy.npz``, then
run the tests and ``python -m bench dnn-policy``.

``--preset v1`` gives the first shipped policy's settings (MLPs and CNNs
with digits, no envelope, cosine start, reward against cosine at the same
peak, budgets 40-160). ``--iterations 2 --problems 1 --max-steps 40
--min-steps 20 --families mlp_tabular`` is a smoke test. ``--strategy snes``
(or ``cma_es``) trains with evosax's strategy instead of the hand-written
one (``pip install ".[train]"``).
"""

import argparse
import json
import pathlib
import subprocess
import time

import jax

import optax_greedy
from optax_greedy import policy as policy_lib
from optax_greedy_lab import dnn_problems
from optax_greedy_lab import es

ENVELOPE = optax_greedy.DEFAULT_ENVELOPE
#: The settings of the shipped policy, and of the first one (``v1``).
PRESETS = {
    "scale": dict(iterations=50, pairs=8, sigma=0.08, es_learning_rate=0.02,
                  problems=3, max_steps=320, min_steps=80,
                  families=["mlp_tabular", "cnn_teacher", "char_lm"],
                  envelope="on", baseline_peaks=[0.5, 1.0, 2.0],
                  start="constant", label_noise=0.2, train_weight=0.5,
                  strategy="antithetic"),
    "v1": dict(iterations=130, pairs=8, sigma=0.05, es_learning_rate=0.01,
               problems=4, max_steps=160, min_steps=40,
               families=["mlp", "cnn"], envelope="off",
               baseline_peaks=[1.0], start="cosine", label_noise=0.2,
               train_weight=0.5, strategy="antithetic"),
}


def _commit():
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True,
                          cwd=pathlib.Path(__file__).parent).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def parser(preset="scale"):
  """The flags; their defaults are ``preset``'s settings."""
  p = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--preset", choices=tuple(PRESETS), default="scale",
                 help="the settings every other flag defaults to")
  p.add_argument("--seed", type=int, default=0,
                 help="the only source of randomness")
  p.add_argument("--iterations", type=int,
                 help="evolution-strategies updates")
  p.add_argument("--pairs", type=int, help="antithetic pairs per update")
  p.add_argument("--sigma", type=float, help="ES perturbation scale")
  p.add_argument("--es-learning-rate", type=float,
                 help="Adam's rate on the ES gradient (antithetic only)")
  p.add_argument("--strategy", choices=es.STRATEGIES,
                 help="the evolution strategy: the hand-written antithetic"
                      " one, or evosax's SNES or CMA-ES (pip install"
                      " \".[train]\")")
  p.add_argument("--problems", type=int,
                 help="problems of each family per update")
  p.add_argument("--max-steps", type=int,
                 help="largest budget (the episodes' length)")
  p.add_argument("--min-steps", type=int, help="smallest budget")
  p.add_argument("--families", nargs="+",
                 choices=tuple(dnn_problems.FAMILIES),
                 help="training families")
  p.add_argument("--envelope", choices=("on", "off"),
                 help=f"act inside the step budget's envelope {ENVELOPE}"
                      " (on) or alone (off)")
  p.add_argument("--baseline-peaks", type=float, nargs="+",
                 help="the reward's cosine is the best over these"
                      " multiples of the peak")
  p.add_argument("--start", choices=tuple(dnn_problems.TARGETS),
                 help="the schedule imitated before ES")
  p.add_argument("--label-noise", type=float,
                 help="largest fraction of random labels")
  p.add_argument("--train-weight", type=float,
                 help="weight of the training loss in the reward")
  p.add_argument("--out", default="out/dnn_policy.npz",
                 help="where to write the policy")
  p.add_argument("--resume", action="store_true",
                 help="continue from the state next to --out")
  p.set_defaults(**PRESETS[preset])
  return p


def main(argv=None):
  preset, _ = parser().parse_known_args(argv)
  args = parser(preset.preset).parse_args(argv)
  s = {key: getattr(args, key) for key in PRESETS[args.preset]}
  es_config = es.ESConfig(iterations=s["iterations"], pairs=s["pairs"],
                          sigma=s["sigma"],
                          learning_rate=s["es_learning_rate"],
                          strategy=s["strategy"])
  envelope = ENVELOPE if s["envelope"] == "on" else optax_greedy.NO_ENVELOPE
  config = dnn_problems.EnvConfig(
      problems=s["problems"], max_steps=s["max_steps"],
      min_budget=min(s["min_steps"], s["max_steps"]),
      label_noise=s["label_noise"], train_weight=s["train_weight"],
      families=tuple(s["families"]), envelope=envelope,
      baseline_peaks=tuple(s["baseline_peaks"]))
  # What determines the run (the state file must match all but the
  # number of iterations, which a resumed run may extend).
  run_config = {"seed": args.seed, "start": s["start"],
                "es": {**es_config._asdict(), "iterations": None},
                "env": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in config._asdict().items()},
                "features": list(dnn_problems.FEATURES),
                "hidden": list(dnn_problems.HIDDEN)}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  state_path = out.with_name(out.stem + "_state.npz")
  history_path = out.with_name(out.stem + "_history.json")
  print(f"devices={jax.devices()} es={es_config} env={config}"
        f" start={s['start']}", flush=True)
  state, history = None, []
  if args.resume and state_path.exists():
    initial = dnn_problems.initial_policy(args.seed, s["start"],
                                          envelope=tuple(envelope))
    state = es.load_state(state_path, initial, es_config, run_config)
    if state.iteration > es_config.iterations:
      raise ValueError(
          f"{state_path} is at update {state.iteration}, past --iterations"
          f" {es_config.iterations}; use its checkpoints"
          f" ({out.stem}_iter<k>.npz) for an earlier policy.")
    if history_path.exists():
      history = json.loads(history_path.read_text())[:state.iteration]
    print(f"resumed from {state_path} at update {state.iteration}",
          flush=True)
  start = time.perf_counter()
  elapsed0 = sum(h["seconds"] for h in history)

  def log(i, info):
    history.append(info)
    print(f"iter {i:4d} fitness mean {info['mean_fitness']:+.4f} max"
          f" {info['max_fitness']:+.4f} val log(baseline/policy)"
          f" {info['val_log_ratio']:+.4f} {info['seconds']:.1f}s"
          f" (elapsed {elapsed0 + time.perf_counter() - start:.0f}s)",
          flush=True)

  def checkpoint(i, policy):
    if (i + 1) % 10 == 0:
      policy_lib.save_policy(out.with_name(f"{out.stem}_iter{i + 1}.npz"),
                           policy, config=run_config, iterations=i + 1)

  def save(es_state):
    es.save_state(state_path, es_state, run_config)
    history_path.write_text(json.dumps(history, indent=1))

  policy, _ = dnn_problems.train(args.seed, es_config, config, log=log,
                                 checkpoint=checkpoint, start=s["start"],
                                 state=state, save=save)
  seconds = elapsed0 + time.perf_counter() - start
  final_config = {**run_config,
                  "es": es_config._asdict(),
                  "command": "python examples/train_dnn_policy.py "
                             + " ".join(argv if argv is not None else
                                        __import__("sys").argv[1:]),
                  "train_seconds": round(seconds, 1),
                  "optax_greedy": getattr(optax_greedy, "__version__", "?"),
                  "commit": _commit(), "jax": jax.__version__}
  policy_lib.save_policy(out, policy, config=final_config,
                       iterations=es_config.iterations,
                       train_seconds=round(seconds, 1), seed=args.seed)
  history_path.write_text(json.dumps(history, indent=1))
  print(f"trained in {seconds:.0f}s; wrote {out}", flush=True)
  return policy, history


if __name__ == "__main__":
  main()
