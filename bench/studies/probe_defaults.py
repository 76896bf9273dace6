"""Study: the rate-robust mechanism, on the selection workload only.

Which mechanism makes a run insensitive to the starting rate, and with
which settings? :func:`optax_greedy.rate_probe` moves its multiplier of
the rate toward a ``fraction`` of the one-step optimum measured along the
update on another minibatch; Mechanic (``optax.contrib.mechanize``) learns
a scale of the run's displacement, here with headroom and different
starts (:func:`optax_greedy.learned_scale`'s candidates). Each candidate is started at x1/10, x1/3, x1, x3 and
x10 of the tuned peak on ``sklearn_lm``, the selection workload
(:mod:`bench.workloads.sklearn_lm`: a 0.5M-parameter byte-level LM on
scikit-learn's source, 1,500 steps; the report workloads never see it),
seed 0, beside the envelope alone (``wsd``) and Mechanic with the envelope
inside (the peer that is robust from above).

The rule, fixed with the first candidates: the candidate whose worst
held-out test loss over x1/10..x10, relative to the tuned warmup-cosine,
is lowest is chosen; it is recommended only if that worst ratio is below
the envelope alone's. The candidates came in four rounds, each added after
reading the last (:data:`CANDIDATES` says which); the rule did not
change.

``python -m bench probe-defaults --out DIR`` writes
``DIR/probe_defaults/probe_defaults.{json,md}``.
"""

import json
import pathlib

import numpy as np

from bench.core import output as O
from bench.core import registry as R
from bench.studies import budget_defaults as BD
from bench.studies import workloads as W
from bench.workloads import sklearn_lm as SL

MULTIPLIERS = {"0.1": 0.1, "0.333": 1 / 3, "1": 1.0, "3": 3.0, "10": 10.0}
# Candidates: ``(registry entry, options)``; the probe's options are
# traced, so the fractions of one entry share a program.
CANDIDATES = {
    # The first round: the probe after the envelope, GreedyLR, Mechanic.
    "wsd_probe, fraction 0.5": ("wsd_probe", {"fraction": 0.5}),
    "wsd_probe, fraction 1": ("wsd_probe", {"fraction": 1.0}),
    "greedy_probe, fraction 0.5": ("greedy_probe", {"fraction": 0.5}),
    "mechanic_probe, fraction 0.5": ("mechanic_probe", {"fraction": 0.5}),
    # A learned scale that only has to come down (the second round, after
    # the first showed the probe cannot tell a rate 10x too high).
    "mechanic, headroom 10": ("mechanic_headroom", {"headroom": 10.0}),
    "mechanic, headroom 30": ("mechanic_headroom", {"headroom": 30.0}),
    "greedy inside mechanic, headroom 10": ("greedy_mechanic",
                                            {"headroom": 10.0}),
    # The third round: the scale starts near a sixth of the rate given
    # (not at Mechanic's 1e-6), with and without Mechanic's own weight
    # decay.
    "mechanic, headroom 10, starts at 1/6 of the rate": (
        "mechanic_headroom", {"headroom": 10.0, "start": 1 / 6}),
    "mechanic, headroom 10, starts at 1/6 of the rate, no decay": (
        "mechanic_headroom", {"headroom": 10.0, "start": 1 / 6,
                              "weight_decay": 0.0}),
    # The fourth round: more headroom, the scale started at the rate.
    "mechanic, headroom 30, starts at the rate": (
        "mechanic_headroom", {"headroom": 30.0, "start": 1.0}),
    "mechanic, headroom 100": ("mechanic_headroom", {"headroom": 100.0}),
}
REFERENCES = {"wsd": ("wsd", {}), "mechanic": ("mechanic", {}),
              "greedy (total_steps)": ("greedy_budget", {})}


def study(out_dir, steps=SL.STEPS, candidates=None, model=None, log=print):
  """Runs the selection (module doc); writes and returns its results.

  Args:
    out_dir: output folder (``out_dir/probe_defaults``).
    steps: the budget (smaller for the smoke test).
    candidates: names of :data:`CANDIDATES` and :data:`REFERENCES` to run
      (all if None).
    model: the LM's shape (smaller for the smoke test).
    log: where progress lines go.
  """
  w = SL.make(steps, model)
  peak, tuned = BD.tune(w, "probe-defaults", log)
  rates = [peak * m for m in MULTIPLIERS.values()]
  seeds = [0] * len(rates)
  rows = {"warmup-cosine": W.cosine_row(peak, w.steps)}
  rows.update({name: W.Row(name, R.get(entry), {
      k: np.float32(v) for k, v in options.items()})
               for name, (entry, options) in {**REFERENCES,
                                              **CANDIDATES}.items()
               if candidates is None or name in candidates})
  sub = pathlib.Path(out_dir) / "probe_defaults"
  ratios, traces = _earlier(sub / "probe_defaults.json", w.steps, peak)
  for name, row in rows.items():
    if name in ratios:
      continue
    results = W.train_vmapped(w, row, rates, seeds)
    finals = [r["curve"]["test_loss"][-1] for r in results]
    ratios[name] = dict(zip(MULTIPLIERS, np.asarray(finals) / tuned))
    traces[name] = {m: r["curve"]["rate"] for m, r in zip(MULTIPLIERS,
                                                          results)}
    log(f"[probe-defaults] {name}: " + ", ".join(
        f"x{m} {r:.3f}" for m, r in ratios[name].items()))
  worst = {n: max(r.values()) for n, r in ratios.items()}
  probes = [n for n in worst if n in CANDIDATES]
  chosen = min(probes, key=worst.get) if probes else None
  doc = {"machine": O.machine(), "workload": "sklearn_lm", "steps": w.steps,
         "peaks": list(SL.PEAKS), "tuned_peak": peak,
         "tuned_test_loss": tuned,
         "ratios": ratios, "worst": worst, "chosen": chosen,
         "default": bool(chosen and "wsd" in worst
                         and worst[chosen] < worst["wsd"]),
         "rate_traces": traces}
  if steps != SL.STEPS or model is not None:
    doc["note"] = "a smoke run, not the study"
  sub.mkdir(parents=True, exist_ok=True)
  O.write_json(sub / "probe_defaults.json", doc, indent=1)
  (sub / "probe_defaults.md").write_text(markdown(doc))
  log(markdown(doc))
  return doc


def _earlier(path, steps, peak):
  """``(ratios, traces)`` of the rows an earlier run of the same
  configuration wrote to ``path`` (so that a new candidate runs alone);
  empty if none."""
  if not path.exists():
    return {}, {}
  doc = json.loads(path.read_text())
  if doc.get("steps") != steps or doc.get("tuned_peak") != peak:
    return {}, {}
  return doc["ratios"], doc.get("rate_traces", {})


def markdown(doc):
  """The study's table."""
  lines = BD.ratio_table(doc, MULTIPLIERS)
  lines += ["", f"Chosen (lowest worst ratio over x1/10..x10 among the "
            f"candidates): **{doc['chosen']}**; "
            + ("below the envelope alone's worst: recommended."
               if doc["default"] else
               "not below the envelope alone's worst: not recommended.")]
  return "\n".join(lines) + "\n"
