"""Differential tester: ``optax_greedy.greedy_lr`` vs the reference GreedyLR.

A development script, not a test module: it drives the authors' implementation
(``transformers.optimization.GreedyLR``, PyTorch) and ``greedy_lr`` (under
``jax.jit``, float64) with the same random configurations and value sequences
and reports, for every case that differs, the first step where they differ
with the state of both. The reference runs in a scratch virtualenv, in a
subprocess: it is never a dependency of the package or of its tests.

Usage (from the repository root)::

  python tests/reference/greedy_lr_differential.py --cases 3000
  python tests/reference/greedy_lr_differential.py --cases 3000 \\
      --venv /tmp/greedy-ref --record tests/reference/greedy_lr_corpus.json.gz

``--venv`` is created (``python -m venv``) and given the reference
(``pip install torch==2.13.0 transformers==5.23.0``, CPU wheels) when it has
no ``transformers``; an existing one is reused. ``--record`` writes a compact
corpus (``--record-cases`` cases, with the reference's rates) that
``tests/test_greedy_lr.py`` replays.

What is compared, after every ``step(value)``: the rate (the reference's
``get_last_lr()``; ours ``next_learning_rate``) to ``--rtol`` (1e-9), ``best``
to the same tolerance, and the counters ``num_good``, ``num_bad``,
``cooldown_counter``, ``warmup_counter`` and ``reset_counter`` exactly.

Configurations cover every keyword: ``factor`` in [0.3, 0.99], ``patience``
0-5, both threshold modes, cooldown and warmup, ``min_lr`` reached repeatedly
with resets (``reset_start`` mostly 1-6), unbounded ``min_lr=None`` /
``max_lr=None`` (the reference gets 0 and inf), ``min_change`` (the
reference's ``eps``) large enough to skip small changes, smoothing windows and
``mode="max"``. Value sequences chain plateaus (exact and noisy), spikes,
monotone runs, oscillation and noise, at scales from 1e-3 to 1e12, with
negative offsets. Non-finite values are left out: there the library departs
from the reference on purpose (see ``greedy_lr``'s docstring).

Cases are grouped by their static arguments (mode, threshold mode, window,
which bounds exist); within a group every numeric hyperparameter is a vmapped
array, so each group compiles once whatever the number of cases.
"""

import argparse
import gzip
import json
import math
import os
import pathlib
import subprocess
import sys
import time

REFERENCE_PINS = ("torch==2.13.0", "transformers==5.23.0")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FIELDS = ("rate", "best", "num_good", "num_bad", "cooldown_counter",
          "warmup_counter", "reset_counter")
NUMERIC = ("lr", "factor", "patience", "threshold", "cooldown", "warmup",
           "min_lr", "max_lr", "eps", "reset_start")
WINDOWS = (1, 3, 8)
# The recorded corpus keeps the cases without smoothing or with a 3-value
# window: 8 static groups, so that replaying it compiles 8 programs.
CORPUS_WINDOWS = (0, 3)


# ---------------------------------------------------------------------------
# Random cases (numpy only).

def _round(x, digits=4):
  return float(f"{x:.{digits}g}")


def _segment(rng, length, level, scale):
  """One stretch of a value sequence, starting near ``level``."""
  kind = rng.choice(["plateau", "noisy_plateau", "down", "up", "oscillate",
                     "spike", "noise"])
  t = list(range(length))
  if kind == "plateau":
    out = [level] * length
  elif kind == "noisy_plateau":
    out = [level + scale * 1e-3 * rng.standard_normal() for _ in t]
  elif kind == "down":
    rate = rng.uniform(0.001, 0.2)
    out = [level - scale * rate * (k + 1) for k in t]
  elif kind == "up":
    rate = rng.uniform(0.001, 0.2)
    out = [level + scale * rate * (k + 1) for k in t]
  elif kind == "oscillate":
    amp = scale * rng.uniform(0.01, 0.5)
    out = [level + amp * (-1) ** k for k in t]
  elif kind == "spike":
    out = [level] * length
    out[rng.integers(length)] = level + scale * rng.uniform(2, 1e3)
  else:
    out = [level + scale * 0.1 * rng.standard_normal() for _ in t]
  return out


def random_values(rng, length):
  scale = 10.0 ** rng.uniform(-3, 6)
  if rng.random() < 0.05:
    scale = 1e12
  level = scale * rng.uniform(-2, 3)
  values = []
  while len(values) < length:
    seg = _segment(rng, int(rng.integers(3, 40)), level, scale)
    values += seg
    level = seg[-1]
  return [_round(v) for v in values[:length]]


def random_config(rng):
  lr = _round(10.0 ** rng.uniform(-4, 0))
  config = {
      "lr": lr,
      "mode": str(rng.choice(["min", "max"])),
      "factor": _round(rng.uniform(0.3, 0.99), 3),
      "patience": int(rng.integers(0, 6)),
      "threshold_mode": str(rng.choice(["abs", "rel"])),
      "threshold": float(rng.choice(
          [0.0, 1e-6, _round(10.0 ** rng.uniform(-4, -1))])),
      "cooldown": int(rng.choice([0, 0, rng.integers(1, 5)])),
      "warmup": int(rng.choice([0, 0, rng.integers(1, 5)])),
      "min_lr": _round(lr * 10.0 ** rng.uniform(-2.5, -0.2)),
      "max_lr": _round(lr * 10.0 ** rng.uniform(0.1, 2)),
      "eps": float(rng.choice(
          [0.0, 1e-8, _round(lr * 10.0 ** rng.uniform(-3, -0.5))])),
      "smooth": bool(rng.random() < 0.5),
      "window_size": int(rng.choice(WINDOWS)),
      "reset_start": int(rng.choice(
          [rng.integers(1, 7), rng.integers(1, 7), 500])),
  }
  if rng.random() < 0.1:
    config["min_lr"] = None
  if rng.random() < 0.1:
    config["max_lr"] = None
  return config


def generate_cases(count, seed, max_steps):
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  cases = []
  for i in range(count):
    length = int(rng.integers(max(2, max_steps // 4), max_steps + 1))
    cases.append({"name": f"case{i:05d}", "config": random_config(rng),
                  "values": random_values(rng, length)})
  return cases


# ---------------------------------------------------------------------------
# The reference, in its own interpreter.

def reference_kwargs(config):
  """``config`` as the reference's constructor takes it (without ``lr``)."""
  kwargs = {k: v for k, v in config.items() if k != "lr"}
  if kwargs["min_lr"] is None:
    kwargs["min_lr"] = 0.0
  if kwargs["max_lr"] is None:
    kwargs["max_lr"] = math.inf
  return kwargs


def reference_driver():
  """Runs in the scratch venv: cases on stdin, traces on stdout."""
  # pylint: disable=import-outside-toplevel
  import torch
  import transformers
  from transformers.optimization import GreedyLR

  cases = json.load(sys.stdin)
  traces = []
  for case in cases:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=case["config"]["lr"])
    scheduler = GreedyLR(optimizer, **reference_kwargs(case["config"]))
    trace = []
    for value in case["values"]:
      scheduler.step(value)
      trace.append([scheduler.get_last_lr()[0], scheduler.best,
                    scheduler.num_good_epochs, scheduler.num_bad_epochs,
                    scheduler.cooldown_counter, scheduler.warmup_counter,
                    scheduler.reset_start])
    traces.append(trace)
  json.dump({"versions": {"torch": torch.__version__,
                          "transformers": transformers.__version__},
             "traces": traces}, sys.stdout)


def ensure_reference_venv(venv):
  venv = pathlib.Path(venv)
  python = venv / "bin" / "python"
  check = [str(python), "-c", "import torch, transformers.optimization"]
  if python.exists() and subprocess.run(
      check, capture_output=True, check=False).returncode == 0:
    return python
  print(f"creating the reference venv {venv} ...", file=sys.stderr)
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  subprocess.run([str(python), "-m", "pip", "install", "--extra-index-url",
                  TORCH_CPU_INDEX, *REFERENCE_PINS], check=True)
  return python


def run_reference(python, cases):
  done = subprocess.run(
      [str(python), __file__, "--reference-driver"],
      input=json.dumps(cases), capture_output=True, text=True, check=True)
  return json.loads(done.stdout)


# ---------------------------------------------------------------------------
# optax_greedy, grouped by static arguments.

def static_key(config):
  return (config["mode"], config["threshold_mode"],
          config["window_size"] if config["smooth"] else 0,
          config["min_lr"] is None, config["max_lr"] is None)


def run_ours(cases):
  """Per case, the trace of FIELDS after every observation (x64, jit)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax_greedy  # pylint: disable=import-outside-toplevel

  groups = {}
  for index, case in enumerate(cases):
    groups.setdefault(static_key(case["config"]), []).append(index)
  traces = [None] * len(cases)
  with jax.enable_x64(True):
    for (mode, threshold_mode, window, no_min, no_max), members in (
        groups.items()):
      steps = max(len(cases[i]["values"]) for i in members)
      values = np.zeros((len(members), steps))
      observed = np.zeros((len(members), steps), bool)
      numeric = {name: np.zeros(len(members)) for name in NUMERIC}
      for row, i in enumerate(members):
        case = cases[i]
        values[row, :len(case["values"])] = case["values"]
        observed[row, :len(case["values"])] = True
        for name in NUMERIC:
          numeric[name][row] = case["config"][name] or 0.0

      def run(numbers, values, observed, mode=mode,
              threshold_mode=threshold_mode, window=window, no_min=no_min,
              no_max=no_max):
        tx = optax_greedy.greedy_lr(
            numbers["lr"], mode=mode, factor=numbers["factor"],
            patience=numbers["patience"].astype(jnp.int32),
            threshold=numbers["threshold"], threshold_mode=threshold_mode,
            cooldown=numbers["cooldown"].astype(jnp.int32),
            warmup=numbers["warmup"].astype(jnp.int32),
            min_lr=None if no_min else numbers["min_lr"],
            max_lr=None if no_max else numbers["max_lr"],
            min_change=numbers["eps"], smooth=window > 0,
            window_size=max(window, 1),
            reset_start=numbers["reset_start"].astype(jnp.int32))
        params = jnp.zeros([])

        def step(state, inputs):
          value, observe = inputs
          _, state = tx.update(params, state, params, value=value,
                               observe=observe)
          return state, (state.next_learning_rate, state.best, state.num_good,
                         state.num_bad, state.cooldown_counter,
                         state.warmup_counter, state.reset_counter)
        return jax.lax.scan(step, tx.init(params), (values, observed))[1]

      numbers = {k: jnp.asarray(v, jnp.float64) for k, v in numeric.items()}
      out = jax.jit(jax.vmap(run))(numbers, jnp.asarray(values),
                                   jnp.asarray(observed))
      out = [np.asarray(field) for field in out]
      for row, i in enumerate(members):
        length = len(cases[i]["values"])
        traces[i] = [[out[f][row, k].item() for f in range(len(FIELDS))]
                     for k in range(length)]
  return traces


# ---------------------------------------------------------------------------
# Comparison and report.

def _close(a, b, rtol):
  if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
    return a == b
  return abs(a - b) <= rtol * abs(b)


def first_mismatch(ours, theirs, rtol):
  for step, (mine, ref) in enumerate(zip(ours, theirs)):
    for field, a, b in zip(FIELDS, mine, ref):
      same = _close(a, b, rtol) if field in ("rate", "best") else a == b
      if not same:
        return step, field
  return None


def describe(case, step, field, ours, theirs):
  lines = [f"{case['name']}: first mismatch at step {step} in {field}",
           f"  config: {json.dumps(case['config'])}",
           f"  values[{max(0, step - 3)}:{step + 1}]: "
           f"{case['values'][max(0, step - 3):step + 1]}"]
  for k in range(max(0, step - 1), step + 1):
    lines.append(f"  after step {k}: ours      "
                 f"{dict(zip(FIELDS, ours[k]))}")
    lines.append(f"  after step {k}: reference "
                 f"{dict(zip(FIELDS, theirs[k]))}")
  return "\n".join(lines)


def compact_rates(trace):
  """``[[step, rate], ...]`` where the reference's rate changed."""
  changes, last = [], None
  for step, row in enumerate(trace):
    if row[0] != last:
      changes.append([step, row[0]])
      last = row[0]
  return changes


def record(path, cases, traces, versions, count, command):
  chosen = [{**case, "rate_changes": compact_rates(trace)}
            for case, trace in zip(cases, traces)
            if static_key(case["config"])[2] in CORPUS_WINDOWS][:count]
  corpus = {
      "about": ("Cases of tests/reference/greedy_lr_differential.py with the"
                " reference's rate after every step(value), stored where it"
                " changes: rate_changes[j] = [k, rate] means the rate after"
                " step(values[k]) is rate until the next entry. config uses"
                " the reference's names (eps is greedy_lr's min_change;"
                " min_lr/max_lr null mean unbounded: the reference got 0 and"
                " inf)."),
      "command": command,
      "reference": versions,
      "cases": chosen,
  }
  with gzip.open(path, "wt") as f:
    json.dump(corpus, f, separators=(",", ":"))
  print(f"recorded {len(chosen)} cases to {path} "
        f"({os.path.getsize(path) / 1024:.0f} KiB)")


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--cases", type=int, default=3000,
                      help="number of random cases")
  parser.add_argument("--seed", type=int, default=0, help="random seed")
  parser.add_argument("--max-steps", type=int, default=200,
                      help="longest value sequence (lengths are random, from"
                           " a quarter of it)")
  parser.add_argument("--venv", default=os.environ.get(
      "GREEDY_REFERENCE_VENV", "/tmp/optax-greedy-reference-venv"),
      help="scratch virtualenv with the reference (created when missing;"
           " env GREEDY_REFERENCE_VENV)")
  parser.add_argument("--rtol", type=float, default=1e-9,
                      help="relative tolerance on the rate and best")
  parser.add_argument("--show", type=int, default=10,
                      help="mismatching cases to print in full")
  parser.add_argument("--record", default=None,
                      help="write a corpus (gzip JSON) of the first"
                           " --record-cases cases (without smoothing or with"
                           " a 3-value window) to this path")
  parser.add_argument("--record-cases", type=int, default=600,
                      help="cases in the recorded corpus")
  parser.add_argument("--reference-driver", action="store_true",
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.reference_driver:
    reference_driver()
    return 0

  start = time.time()
  cases = generate_cases(args.cases, args.seed, args.max_steps)
  python = ensure_reference_venv(args.venv)
  reference = run_reference(python, cases)
  ours = run_ours(cases)
  failing = []
  for case, mine, theirs in zip(cases, ours, reference["traces"]):
    found = first_mismatch(mine, theirs, args.rtol)
    if found is not None:
      failing.append((case, *found, mine, theirs))
  for case, step, field, mine, theirs in failing[:args.show]:
    print(describe(case, step, field, mine, theirs))
  steps = sum(len(case["values"]) for case in cases)
  print(f"{len(cases) - len(failing)}/{len(cases)} cases match ({steps} steps,"
        f" rtol {args.rtol:g}; reference {reference['versions']};"
        f" {time.time() - start:.0f} s)")
  if args.record:
    command = ("python tests/reference/greedy_lr_differential.py"
               f" --cases {args.cases} --seed {args.seed}"
               f" --max-steps {args.max_steps} --record {args.record}"
               f" --record-cases {args.record_cases}")
    if failing:
      print("not recording: some cases do not match")
      return 1
    record(args.record, cases, reference["traces"], reference["versions"],
           args.record_cases, command)
  return 1 if failing else 0


if __name__ == "__main__":
  sys.exit(main())
