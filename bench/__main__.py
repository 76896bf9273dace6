"""``python -m bench [--quick | --tiny | --workloads] --out DIR``: runs the
benchmark suite (or its realistic tier)."""

import argparse
import sys

from bench import tasks as T


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m bench",
                                   description=__doc__)
  group = parser.add_mutually_exclusive_group()
  group.add_argument("--quick", action="store_true",
                     help="small budgets, 2 seeds (about 3 minutes on 2 "
                          "idle cores)")
  group.add_argument("--tiny", action="store_true",
                     help="smoke configuration used by the tests (seconds)")
  group.add_argument("--workloads", action="store_true",
                     help="the realistic tier: a 1M-parameter byte-level "
                          "transformer LM (2,000 steps) and a CNN (1,000 "
                          "steps), every controller against a tuned "
                          "warmup-cosine (about 35 minutes on 2 idle "
                          "cores); results written after every run")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--only", nargs="+", default=None, metavar="TASK",
                      help="run only these tasks; one of: "
                           + ", ".join(T.FACTORIES) + " (with --workloads: "
                           "cnn, lm)")
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bar")
  parser.add_argument("--reuse", action="store_true",
                      help="reuse OUT/grid_cache.pkl (and the cost and "
                           "external sections of OUT/summary.json if "
                           "present); with --workloads: keep the runs "
                           "OUT/workloads already holds for the same "
                           "configuration and run only the missing ones")
  args = parser.parse_args(argv)
  valid = ("cnn", "lm") if args.workloads else tuple(T.FACTORIES)
  unknown = [t for t in args.only or () if t not in valid]
  if unknown:
    parser.error(f"unknown task(s) for --only: {', '.join(unknown)}; "
                 f"valid: {', '.join(valid)}")
  # Imported after the arguments are checked: bad input fails at once.
  from bench import suite  # pylint: disable=import-outside-toplevel
  if args.workloads:
    from bench import workloads  # pylint: disable=import-outside-toplevel
    workloads.run(args.out, names=tuple(args.only or ("cnn", "lm")),
                  machine=suite.machine(), resume=args.reuse)
    print(f"wrote {args.out}/workloads and the 'workloads' section of "
          f"{args.out}/summary.json")
    return 0
  preset = "quick" if args.quick else "tiny" if args.tiny else "full"
  summary = suite.main(preset, args.out, progress=not args.no_progress,
                       only=args.only, reuse=args.reuse)
  rate = summary["win_rate_vs_fixed_schedules"]
  train = (summary.get("train_win_tables") or {}).get("greedy", {})
  print(f"Headline (held-out loss): GreedyLR with its defaults is equal or "
        f"better than the fixed schedules in {rate:.1%} of comparisons "
        f"(win_rate_vs_fixed_schedules = {rate:.4g}; training loss: "
        f"{train.get('equal_or_better', float('nan')):.1%}); wrote "
        f"{args.out}/summary.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
