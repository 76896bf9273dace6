"""Study: GreedyLR's defaults when it knows the step budget, chosen on a
selection workload that the report workloads never see.

With ``total_steps`` GreedyLR's rate is its own rate times the budget's
envelope (a ramp, then a decay to zero over the last 20%), and it reacts to
the loss only in between. Are the reference-derived defaults (``factor``
0.95, ``patience`` 20) still the right ones there? Each candidate is started
at x1/3, x1 and x3 of a tuned peak on

* ``sklearn_lm``, the selection workload: a byte-level transformer LM
  (width 96, 4 layers, 4 heads, context 64, 8 windows a step, about 0.5M
  parameters) for 1,500 steps on scikit-learn's own source (its ``*.py``
  files but the tests, sorted; every tenth file held out, its first half
  validation and its second half test windows). The workloads' LM trains on
  the standard library's source; this one never sees it, nor they this.

The peak is tuned for warmup-cosine on {1e-3, 3e-3, 1e-2} by validation
loss (seed 0); the candidates, a constant rate with the same envelope
(``wsd``) and warmup-cosine then start at the multiples of it (seed 0: a
cut to fit 2 CPU cores). The rule, fixed with the candidates: keep the
candidate whose worst held-out test loss over x1/3..x3, relative to the
tuned warmup-cosine, is lowest.

``python -m bench budget-defaults --out DIR`` writes
``DIR/budget_defaults/budget_defaults.{json,md}``.
"""

import pathlib

import numpy as np
import optax_greedy

from bench.core import output as O
from bench.core import registry as R
from bench.studies import workloads as W
from bench.workloads import sklearn_lm as SL

STEPS, PEAKS = SL.STEPS, SL.PEAKS
MULTIPLIERS = {"0.333": 1 / 3, "1": 1.0, "3": 3.0}
# Candidates: options of the registry's ``greedy_budget`` entry (GreedyLR's
# factor and patience; the envelope's decay shape and length).
CANDIDATES = {
    "defaults (factor 0.95, patience 20)": {},
    "factor 0.9": {"factor": 0.9},
    "factor 0.85": {"factor": 0.85},
    "patience 10": {"patience": 10},
    "factor 0.9, patience 30": {"factor": 0.9, "patience": 30},
    "factor 0.8, patience 30": {"factor": 0.8, "patience": 30},
    "1-sqrt decay": {"envelope": optax_greedy.Envelope(decay_shape="1-sqrt")},
    "decay over the last 10%": {
        "envelope": optax_greedy.Envelope(decay_fraction=0.1)},
}



def _final(results):
  return [r["curve"]["test_loss"][-1] for r in results]


def study(out_dir, steps=STEPS, candidates=None, model=None, log=print):
  """Runs the selection (module doc); writes and returns its results.

  Args:
    out_dir: output folder (``out_dir/budget_defaults``).
    steps: the budget (smaller for the smoke test).
    candidates: the names of :data:`CANDIDATES` to run (all if None).
    model: the LM's shape (:data:`bench.workloads.sklearn_lm.MODEL` if
      None; smaller for the smoke test).
    log: where progress lines go.
  """
  w = SL.make(steps, model)
  peak, tuned = tune(w, "budget-defaults", log)
  rates = [peak * m for m in MULTIPLIERS.values()]
  seeds = [0] * len(rates)
  rows = {"warmup-cosine": W.cosine_row(peak, w.steps),
          "wsd": W.Row("wsd", R.get("wsd"))}
  rows.update({name: W.Row(name, R.get("greedy_budget"), options)
               for name, options in CANDIDATES.items()
               if candidates is None or name in candidates})
  ratios = {}
  for name, row in rows.items():
    results = W.train_vmapped(w, row, rates, seeds)
    ratios[name] = dict(zip(MULTIPLIERS, np.asarray(_final(results)) / tuned))
    log(f"[budget-defaults] {name}: " + ", ".join(
        f"x{m} {r:.3f}" for m, r in ratios[name].items()))
  worst = {n: max(r.values()) for n, r in ratios.items() if n in CANDIDATES}
  chosen = min(worst, key=worst.get)
  doc = {"machine": O.machine(), "workload": "sklearn_lm", "steps": w.steps,
         "peaks": list(PEAKS), "tuned_peak": peak, "tuned_test_loss": tuned,
         "ratios": ratios, "worst": worst, "chosen": chosen}
  sub = pathlib.Path(out_dir) / "budget_defaults"
  if steps != STEPS or model is not None:
    doc["note"] = "a smoke run, not the study"
  sub.mkdir(parents=True, exist_ok=True)
  O.write_json(sub / "budget_defaults.json", doc, indent=1)
  (sub / "budget_defaults.md").write_text(markdown(doc))
  log(markdown(doc))
  return doc


def tune(w, study_name, log):
  """``(peak, test loss)`` of warmup-cosine tuned on the selection
  workload ``w``'s peaks by final validation loss, seed 0."""
  peaks = list(w.peaks)
  grid = W.train_vmapped(w, W.cosine_row(peaks[0], w.steps), peaks,
                         [0] * len(peaks))
  best = int(np.argmin([r["curve"]["val_loss"][-1] for r in grid]))
  if best in (0, len(peaks) - 1):
    log(f"[{study_name}] warning: the tuned peak {peaks[best]:g} is at the "
        "grid's edge")
  peak, tuned = peaks[best], grid[best]["curve"]["test_loss"][-1]
  log(f"[{study_name}] tuned peak {peak:g}, test loss {tuned:.4f}")
  return peak, tuned


def ratio_table(doc, multipliers):
  """The lines of a selection study's table: its workload, the tuned peak,
  one row per entry of ``doc["ratios"]`` at ``multipliers`` and its worst
  (where ``doc["worst"]`` has one)."""
  lines = [
      f"Selection workload `{doc['workload']}` ({doc['steps']} steps, "
      f"seeds {', '.join(map(str, doc.get('seeds', [0])))}; mean test "
      f"loss over them), tuned warmup-cosine peak {doc['tuned_peak']:g} "
      "(test loss "
      f"{doc['tuned_test_loss']:.4f}). Held-out **test** loss over the tuned "
      "warmup-cosine's, each row started at a multiple of the tuned peak:",
      "", "| row | " + " | ".join(f"x{m}" for m in multipliers)
      + " | worst |", "|---|" + "---|" * (len(multipliers) + 1)]
  for name, by in doc["ratios"].items():
    worst = f"{doc['worst'][name]:.3f}" if name in doc["worst"] else ""
    lines.append(f"| {name} | " + " | ".join(
        f"{by[m]:.3f}" for m in multipliers) + f" | {worst} |")
  return lines


def markdown(doc):
  """The study's table."""
  lines = ratio_table(doc, MULTIPLIERS)
  lines += ["", f"Chosen (lowest worst ratio over x1/3..x3): "
            f"**{doc['chosen']}**."]
  return "\n".join(lines) + "\n"
