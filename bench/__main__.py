"""``python -m bench <command>``: the benchmark's one entry point.

Arguments are checked before anything heavy is imported, so a bad one is
refused at once with the valid choices.
"""

import argparse
import importlib.util
import sys

# The grid's tasks and the workloads, by name (checked against the modules
# by the smoke tests).
TASKS = ("logreg", "mlp", "cnn", "charlm", "quadratic", "rosenbrock")
# The tasks of each preset (the grid's ``GridConfig.steps``).
PRESET_TASKS = {"quick": ("logreg", "mlp", "cnn", "quadratic", "rosenbrock"),
                "full": TASKS, "tiny": ("quadratic",)}
WORKLOADS = ("lm", "mnist1d", "cnn")
REPORT_WORKLOADS = ("lm", "mnist1d")
LM_SIZES = ("cpu", "gpu")
SWEEP_KEYS = ("cosine", "wsd", "greedy", "greedy_probe", "wsd_probe",
              "learned_scale", "hd_adam", "learned", "schedule_free", "mechanic", "prodigy",
              "dog", "dowg", "dadapt_adamw", "momo", "cocob")
LEARNED_NMF_PROBLEMS = ("digits", "cancer", "synthetic")
BASES = ("sgd", "momentum", "adam")
# The modules of the [bench] extra (setup.cfg), by the name they import as.
BENCH_EXTRA = ("flax", "sklearn", "matplotlib", "scipy", "tqdm")

# Command -> one line for --help, with the wall time on 2 idle CPU cores.
COMMANDS = {
    "quick": "the grid (5 tasks: no charlm; 2 seeds), the cost section "
             "and the NMF study in one report (~2 min)",
    "full": "the whole grid (6 tasks, 3 seeds, ablations), cost, vmap "
            "savings, NMF and learned-NMF studies (~8 min)",
    "tiny": "the smoke configuration of the tests (~15 s)",
    "check-quick": "compare a quick run's numbers with the recorded "
                   "reference (seconds)",
    "workloads": "every controller on a 1M-parameter byte-level LM and a "
                 "CNN on MNIST-1D against a grid-tuned warmup-cosine, with "
                 "the rate-sensitivity sweep (~240 runs a workload: LM "
                 "~3.5 h, MNIST-1D ~1.5 h; --reuse resumes; --no-sweep "
                 "~1.3 h; --size gpu for an accelerator)",
    "budget-defaults": "GreedyLR's defaults with total_steps, chosen on a "
                       "selection LM the workloads never see (~18 min)",
    "probe-defaults": "learned_scale's and the rate probe's settings, "
                      "chosen on two selection workloads the sweep never "
                      "sees (~4 min a candidate on the LM, ~8 min on "
                      "MNIST-1D with 3 seeds)",
    "cost": "step time, compile time, state bytes and params traffic of "
            "the hypergradient variants against Adam (~1 min)",
    "hd-defaults": "choose hypergradient descent's default beta on some "
                   "tasks, report it on others (~2.5 min)",
    "greedy-feeds": "GreedyLR fed the training loss vs the validation loss, "
                    "against the fixed schedules (~1.5 min)",
    "nmf": "learning-rate schedules for stochastic NMF of the digits "
           "(~15 s with --quick, ~1 min without)",
    "learned-nmf": "the learned NMF schedule on held-out NMF problems and "
                   "an MLP (~25 s with --quick, ~30 s without)",
    "dnn-policy": "the learned deep-network schedule on networks it never "
                  "trained on (~4 min)",
}


def _parser():
  parser = argparse.ArgumentParser(
      prog="python -m bench",
      description="The benchmark of optax_greedy, one command per study "
                  "(wall times on 2 idle CPU cores); bench/README.md "
                  "explains each.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                              required=True)
  add = lambda name: sub.add_parser(name, help=COMMANDS[name],
                                    description=COMMANDS[name])

  for name in ("quick", "full", "tiny"):
    p = add(name)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--only", nargs="+", choices=PRESET_TASKS[name],
                   metavar="TASK", help="run only these tasks, of: "
                   + ", ".join(PRESET_TASKS[name]))
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar")
    p.add_argument("--reuse", action="store_true",
                   help="rebuild the report from OUT/grid_cache.pkl and the "
                        "cost and study sections of OUT/summary.json")

  p = add("check-quick")
  p.add_argument("out", help="the folder of a `quick` run")
  p.add_argument("--rtol", type=float, default=1e-5,
                 help="relative tolerance on final losses (default 1e-5)")
  p.add_argument("--record", action="store_true",
                 help="record this run as the new reference instead")

  p = add("workloads")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--only", nargs="+", choices=WORKLOADS, metavar="WORKLOAD",
                 help="run only these workloads, of: " + ", ".join(WORKLOADS)
                 + " (default: the report workloads, "
                 + ", ".join(REPORT_WORKLOADS) + "; cnn is a smoke workload)")
  p.add_argument("--rows", nargs="+", metavar="ROW",
                 help="run only these rows besides the cosine grid")
  p.add_argument("--size", choices=LM_SIZES, default="cpu",
                 help="the LM's size: cpu (1M parameters) or gpu (4.9M)")
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--peaks", type=float, nargs="+", metavar="PEAK",
                 help="the cosine grid (default: each workload's own)")
  p.add_argument("--steps-scale", type=float, default=1.0,
                 help="multiplies every step budget (smoke runs)")
  p.add_argument("--vmap", action="store_true",
                 help="run every (peak, seed) of a row as one vmapped "
                      "program")
  p.add_argument("--reuse", action="store_true",
                 help="keep the runs OUT/workloads holds for the same "
                      "configuration and run only the missing ones")
  p.add_argument("--no-sweep", action="store_true",
                 help="skip the rate-sensitivity sweep (every sweep row "
                      "started at x0.1, x0.333, x1, x3, x10 the tuned peak)")
  p.add_argument("--sweep-rows", nargs="+", choices=SWEEP_KEYS,
                 metavar="ROW", help="the sweep's rows, of: "
                 + ", ".join(SWEEP_KEYS))
  p.add_argument("--report-only", action="store_true",
                 help="rebuild OUT/workloads' tables and figures from its "
                      "JSON, without training")
  p.add_argument("--readme", metavar="FILE",
                 help="with --report-only: rewrite FILE's headline block "
                      "(between its headline markers) with the summary "
                      "table")
  p.add_argument("--step-cost", action="store_true",
                 help="instead of training: time the train step of Adam, "
                      "the hypergradient (each reduction) and GreedyLR on "
                      "each workload (step_cost.md)")
  p.add_argument("--sweep-seeds", choices=("cut", "all"), default="cut",
                 help="cut (default): every seed at x1/3..x3, the first two "
                      "seeds at x0.1 and x10; all: every seed everywhere")

  p = add("budget-defaults")
  p.add_argument("--out", required=True, help="output folder")

  p = add("probe-defaults")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--workloads", nargs="+",
                 default=["sklearn_lm", "mnist1d_select"],
                 choices=["sklearn_lm", "mnist1d_select"],
                 help="the selection workloads to run (then the choice over "
                      "all that ran)")
  p.add_argument("--candidates", nargs="+", metavar="NAME",
                 help="the candidates and references to run (all if "
                      "omitted)")
  p.add_argument("--seeds", type=int, nargs="+", default=[0],
                 help="the seeds (more than 0: mean ratios, own files)")

  p = add("cost")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--rounds", type=int, default=15,
                 help="interleaved timing rounds")
  p.add_argument("--params", type=int, default=8_000_000,
                 help="parameters of the bare update")
  p.add_argument("--width", type=int, default=512,
                 help="hidden width of the train-step MLP")
  p.add_argument("--inner", type=int, default=20,
                 help="train steps per timed call")
  p.add_argument("--profile", action="store_true",
                 help="also write kernel_profile.md (time per compiled "
                      "kernel of the train step)")
  p.add_argument("--fast-math", action="store_true",
                 help="compile every program with XLA's CPU fast math and "
                      "write the *_fast_math files")

  p = add("hd-defaults")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--only", nargs="+", choices=TASKS, metavar="TASK",
                 help="run only these tasks, of: " + ", ".join(TASKS))
  p.add_argument("--reuse", action="store_true",
                 help="re-tally the final losses of OUT/hd_defaults.json")

  p = add("greedy-feeds")
  p.add_argument("--out", default="bench/results/greedy_feeds",
                 help="output folder")
  p.add_argument("--select", nargs="+", default=["logreg"],
                 choices=("logreg", "mlp", "cnn"), metavar="TASK",
                 help="tasks the recipe is chosen on (logreg, mlp, cnn)")
  p.add_argument("--report", nargs="+", default=["mlp", "cnn"],
                 choices=("logreg", "mlp", "cnn"), metavar="TASK",
                 help="held-out tasks it is reported on (logreg, mlp, cnn)")
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--bases", nargs="+", default=list(BASES), choices=BASES,
                 metavar="BASE", help="base optimizers (sgd, momentum, adam)")
  p.add_argument("--steps-scale", type=float, default=1.0,
                 help="multiplies every task's step budget")

  for name, default in (("nmf", "nmf_bench"), ("learned-nmf",
                                                "learned_bench")):
    p = add(name)
    p.add_argument("--out", default=default, help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="fewer steps, seeds and problems")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (default 3 quick, 5 full)")
    p.add_argument("--steps", type=int, default=None,
                   help="replace every step budget (smoke runs"
                        + ("; a multiple of 20)" if name == "nmf" else ")"))
  sub.choices["learned-nmf"].add_argument(
      "--problems", nargs="+", choices=LEARNED_NMF_PROBLEMS,
      default=list(LEARNED_NMF_PROBLEMS), metavar="SET",
      help="held-out problem sets, of: " + ", ".join(LEARNED_NMF_PROBLEMS))

  p = add("dnn-policy")
  p.add_argument("--out", default="bench/results/dnn_policy",
                 help="output folder")
  p.add_argument("--seeds", type=int, default=5, help="seeds per cell")
  p.add_argument("--policy", default="dnn", help="policy name or .npz path")
  p.add_argument("--families", nargs="+", metavar="FAMILY",
                 help="run only these families (default: every one)")
  p.add_argument("--directions", nargs="+", choices=("adam", "momentum"),
                 default=["adam", "momentum"], metavar="BASE",
                 help="base directions (adam, momentum)")
  p.add_argument("--envelope", choices=("on", "off"), default="on",
                 help="the learned row with total_steps' default envelope"
                      " (on) or the policy alone (off)")
  p.add_argument("--no-in-distribution", action="store_true",
                 help="skip the training families")
  p.add_argument("--report-only", action="store_true",
                 help="rewrite the .md from the .json in --out")
  return parser


# pylint: disable=import-outside-toplevel
def _preset(args):
  from bench import presets
  # The bar redraws one line: only on a terminal, not into a redirected log.
  summary = presets.main(args.command, args.out,
                         progress=not args.no_progress and sys.stderr.isatty(),
                         only=args.only,
                         reuse=args.reuse)
  rate = summary["win_rate_vs_fixed_schedules"]
  train = (summary.get("train_win_tables") or {}).get("greedy", {})
  print(f"Headline (held-out loss): GreedyLR with its defaults is equal or "
        f"better than the fixed schedules in {rate:.1%} of comparisons "
        f"(win_rate_vs_fixed_schedules = {rate:.4g}; training loss: "
        f"{train.get('equal_or_better', float('nan')):.1%}); wrote "
        f"{args.out}/summary.md")
  return 0


def _check_quick(args):
  from bench.grid import reference
  if args.record:
    reference.write(args.out)
    print(f"recorded {args.out} as {reference.REFERENCE}")
    return 0
  problems = reference.check_run(args.out, rtol=args.rtol)
  for line in problems[:50]:
    print(line)
  if problems:
    print(f"{len(problems)} differences from {reference.REFERENCE}")
    return 1
  print(f"{args.out} reproduces {reference.REFERENCE} (final losses within "
        f"{args.rtol:g} relative, tables equal)")
  return 0


def _workloads(args):
  from bench.studies import workloads
  if args.report_only:
    workloads.redraw(args.out)
    if args.readme:
      workloads.write_headline(args.out, args.readme)
    return 0
  if args.step_cost:
    workloads.step_cost_study(args.out, names=tuple(args.only or REPORT_WORKLOADS),
                              size=args.size)
    return 0
  workloads.run(args.out, names=tuple(args.only or REPORT_WORKLOADS),
                seeds=tuple(args.seeds), peaks=args.peaks,
                scale=args.steps_scale, only=args.rows, size=args.size,
                vmap=args.vmap, resume=args.reuse, sweep=not args.no_sweep,
                sweep_only=args.sweep_rows, sweep_seeds=args.sweep_seeds)
  print(f"wrote {args.out}/workloads and the 'workloads' section of "
        f"{args.out}/summary.json")
  return 0


def _budget_defaults(args):
  from bench.studies import budget_defaults
  budget_defaults.study(args.out)
  return 0


def _probe_defaults(args):
  from bench.studies import probe_defaults
  for workload in args.workloads:
    probe_defaults.study(args.out, workload, candidates=args.candidates,
                         seeds=args.seeds)
  probe_defaults.combined(args.out)
  return 0


def _cost(args):
  from bench.studies import cost
  cost.study(args.out, rounds=args.rounds, n_params=args.params,
             width=args.width, inner=args.inner, profile=args.profile,
             fast_math=args.fast_math)
  return 0


def _hd_defaults(args):
  from bench.studies import hd_defaults
  hd_defaults.study(args.out, only=args.only, reuse=args.reuse)
  return 0


def _greedy_feeds(args, argv):
  from bench.studies import greedy_feeds
  greedy_feeds.study(args.out, select=args.select, report=args.report,
                     seeds=args.seeds, bases=args.bases,
                     steps_scale=args.steps_scale,
                     command="python -m bench " + " ".join(argv))
  return 0


def _nmf(args):
  from bench.studies import nmf
  seeds = None if args.seeds is None else range(args.seeds)
  print(nmf.markdown(nmf.run(args.quick, args.out, seeds, args.steps)))
  return 0


def _learned_nmf(args):
  from bench.studies import learned_nmf
  seeds = None if args.seeds is None else range(args.seeds)
  result = learned_nmf.run(args.quick, args.out, seeds, args.steps,
                           args.problems)
  print(learned_nmf.markdown(result))
  print(f"total {result['seconds']:.0f}s")
  return 0


def _dnn_policy(args):
  from bench.studies import dnn_policy
  dnn_policy.study(args.out, seeds=args.seeds, policy=args.policy,
                   families=args.families, directions=args.directions,
                   in_distribution=not args.no_in_distribution,
                   report_only=args.report_only, envelope=args.envelope)
  return 0
# pylint: enable=import-outside-toplevel


def main(argv=None):
  """Parses ``argv`` (``sys.argv[1:]`` if None) and runs the command."""
  argv = sys.argv[1:] if argv is None else list(argv)
  args = _parser().parse_args(argv)
  missing = [name for name in BENCH_EXTRA
             if importlib.util.find_spec(name) is None]
  if missing and args.command != "check-quick":
    sys.exit(f"python -m bench {args.command} needs the [bench] extra, and"
             f" {', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
             " not installed: pip install -e \".[bench]\" (or pip install"
             " \"optax_greedy[bench]\").")
  if args.command in ("quick", "full", "tiny"):
    return _preset(args)
  if args.command == "greedy-feeds":
    return _greedy_feeds(args, argv)
  return {"check-quick": _check_quick, "workloads": _workloads,
          "budget-defaults": _budget_defaults,
          "probe-defaults": _probe_defaults, "cost": _cost, "hd-defaults": _hd_defaults, "nmf": _nmf,
          "learned-nmf": _learned_nmf, "dnn-policy": _dnn_policy}[
              args.command](args)


if __name__ == "__main__":
  sys.exit(main())
