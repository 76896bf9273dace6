"""``python -m bench [--quick] --out DIR``: runs the benchmark suite."""

import argparse
import sys

from bench import suite


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m bench",
                                   description=__doc__)
  group = parser.add_mutually_exclusive_group()
  group.add_argument("--quick", action="store_true",
                     help="small budgets, 2 seeds (< 5 minutes on 2 cores)")
  group.add_argument("--tiny", action="store_true",
                     help="smoke configuration used by the tests (seconds)")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--only", nargs="*", default=None,
                      help="run only these tasks (e.g. logreg quadratic)")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--reuse", action="store_true",
                      help="reuse OUT/grid_cache.pkl (and the cost and "
                           "external sections of OUT/summary.json if present)")
  args = parser.parse_args(argv)
  preset = "quick" if args.quick else "tiny" if args.tiny else "full"
  summary = suite.main(preset, args.out, progress=not args.no_progress,
                       only=args.only, reuse=args.reuse)
  print(f"win_rate_vs_fixed_schedules = "
        f"{summary['win_rate_vs_fixed_schedules']}; wrote {args.out}")


if __name__ == "__main__":
  sys.exit(main())
