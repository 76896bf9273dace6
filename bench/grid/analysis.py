"""From the grid's runs to its tables: win/tie/loss against the fixed
schedules, best-of-grid, speed to target, negative flips.

Every number here is computed from the runs; nothing is entered by hand.

Two losses are compared: the **held-out** loss (the evaluation loss: the
held-out split of the learned tasks, the noise-free function of the
analytic ones), the headline, and the **training** loss (the mean minibatch
loss of the last evaluation block, per seed). Each comparison is one
(task, base optimizer, initial rate) configuration and one fixed schedule,
decided by the benchmark's one verdict (:mod:`bench.core.verdict`).
"""

import numpy as np

from bench.core import registry as R
from bench.core import verdict as V

HEADLINE = "greedy"


def records(task, ctrl, base, lrs, options, prog, steps, n_evals):
  """One record per (option, variant, rate) of a program."""
  k = steps // n_evals
  out = []
  for o, row in enumerate(options):
    for v, variant in enumerate(task.variants):
      for li, lr in enumerate(lrs):
        evals = V.finite_or_inf(prog.eval_loss[o, v, li])  # [seed, n+1]
        train = np.asarray(prog.train_loss[o, v, li])        # [seed, steps]
        out.append({
            "task": task.variant_name(variant), "family": task.name,
            "row": row, "group": ctrl.group, "base": base,
            "lr_index": None if ctrl.lr_free else li,
            "lr": None if ctrl.lr_free else float(lr),
            "final": [float(x) for x in evals[:, -1]],
            "train_final": [float(x) for x in
                            V.finite_or_inf(train[:, -k:].mean(axis=1))],
            "correct": np.asarray(prog.correct[o, v, li], bool),
            "curve": [float(x) for x in evals.mean(0)],
            "eval_steps": [int(i * k) for i in range(n_evals + 1)],
            "rate": np.asarray(prog.rate[o, v, li, 0]),       # seed 0
            "train": train.mean(0),
        })
  return out


def _index(recs):
  return {(r["task"], r["row"], r["base"], r["lr_index"]): r for r in recs}


def comparisons(recs, key="final"):
  """Every challenger against every fixed schedule, per configuration, on
  ``key`` (``"final"``: held-out loss; ``"train_final"``: training loss).

  Learning-rate-free peers (one run per task) are compared with every
  (base optimizer, rate, schedule) configuration of their task.
  """
  idx = _index(recs)
  names = challengers(recs)
  rows = []
  for (task, row, base, li), sched in idx.items():
    if row not in R.FIXED_SCHEDULES:
      continue
    for chal in names:
      rec = idx.get((task, chal, base, li)) or idx.get((task, chal, "-", None))
      if rec is None:
        continue
      outcome, rule = V.compare(rec[key], sched[key])
      rows.append({
          "challenger": chal, "task": task, "base": base, "lr": sched["lr"],
          "schedule": row, "outcome": outcome, "tie_rule": rule,
          "challenger_mean": V.stats(rec[key])[0],
          "challenger_std": V.stats(rec[key])[1],
          "schedule_mean": V.stats(sched[key])[0],
          "schedule_std": V.stats(sched[key])[1],
      })
  return rows


def _best(recs):
  """Per (task, row, base): the record at the initial rate with the lowest
  mean final held-out loss."""
  best = {}
  for r in recs:
    key = (r["task"], r["row"], r["base"])
    if key not in best or (V.stats(r["final"])[0]
                           < V.stats(best[key]["final"])[0]):
      best[key] = r
  return best


def flip_rates(recs):
  """Negative flips against the tuned cosine baseline, classification tasks.

  Per (task, base optimizer), the baseline is the cosine schedule at its
  best initial rate; every other row at its own best rate. The negative
  flip rate is the share of held-out examples that the baseline's model
  classifies correctly and the row's model does not (same seed; mean over
  seeds), next to the accuracy change (row minus baseline).
  """
  best = _best(recs)
  out = []
  for (task, row, base), rec in sorted(best.items(), key=lambda kv: kv[0]):
    ref = best.get((task, "cosine", base))
    if ref is None or row == "cosine" or rec["correct"].shape[-1] == 0:
      continue
    if base == "-":
      continue
    out.append(_flip_row(task, row, base, rec, ref))
  # Learning-rate-free peers, against each base's tuned cosine.
  for (task, row, base), rec in sorted(best.items(), key=lambda kv: kv[0]):
    if base != "-" or rec["correct"].shape[-1] == 0:
      continue
    for (t, r, b), ref in sorted(best.items(), key=lambda kv: kv[0]):
      if t == task and r == "cosine":
        out.append(_flip_row(task, row, b, rec, ref))
  return out


def _flip_row(task, row, base, rec, ref):
  new, old = rec["correct"], ref["correct"]           # [seed, n]
  return {"task": task, "row": row, "base": base, "lr": rec["lr"],
          "baseline_lr": ref["lr"],
          "accuracy": float(new.mean()), "baseline_accuracy": float(old.mean()),
          "accuracy_change": float(new.mean() - old.mean()),
          "negative_flip_rate": float((old & ~new).mean())}


def tuned_comparisons(recs):
  """Best-of-grid against best-of-grid: per (task, base optimizer), each
  challenger at its best initial rate against each fixed schedule at *its*
  best initial rate (lowest mean final loss). This removes the advantage a
  controller gets from fixing a badly chosen initial rate."""
  best = _best(recs)
  names = challengers(recs)
  rows = []
  for (task, row, base), sched in best.items():
    if row not in R.FIXED_SCHEDULES:
      continue
    for chal in names:
      rec = best.get((task, chal, base)) or best.get((task, chal, "-"))
      if rec is None:
        continue
      outcome, rule = V.compare(rec["final"], sched["final"])
      rows.append({
          "challenger": chal, "task": task, "base": base, "lr": None,
          "challenger_lr": rec["lr"], "schedule_lr": sched["lr"],
          "schedule": row, "outcome": outcome, "tie_rule": rule,
          "challenger_mean": V.stats(rec["final"])[0],
          "schedule_mean": V.stats(sched["final"])[0]})
  return rows


def challengers(recs):
  """Every non-fixed row: the registry's entries in its order, then the
  labelled variants (sorted)."""
  rows = {r["row"] for r in recs} - set(R.FIXED_SCHEDULES)
  entries = [c.name for c in R.controllers()]
  return [c for c in entries if c in rows] + sorted(rows - set(entries))


def win_tables(rows):
  """Tallies per challenger, overall and by task, schedule and base."""
  tables = {}
  for chal in dict.fromkeys(r["challenger"] for r in rows):
    mine = [r for r in rows if r["challenger"] == chal]
    if not mine:
      continue
    table = V.tally(mine)
    for key in ("task", "schedule", "base"):
      table[f"by_{key}"] = {
          v: V.tally([r for r in mine if r[key] == v])
          for v in sorted({r[key] for r in mine})}
    tables[chal] = table
  return tables


def speed_to_target(recs):
  """Steps to the target loss, relative to the best tuned Adam.

  Per task, the reference is the Adam run with a constant or cosine
  schedule and the initial rate with the lowest mean final evaluation loss;
  the target is that loss. ``steps`` is the first evaluation step at which a
  row's seed-mean evaluation loss is at or below the target (``None`` if
  never); ``speedup = reference steps / steps`` (> 1 is faster than tuned
  Adam).
  """
  out = []
  for task in sorted({r["task"] for r in recs}):
    mine = [r for r in recs if r["task"] == task]
    refs = [r for r in mine if r["base"] == "adam"
            and r["row"] in ("constant", "cosine")]
    if not refs:
      continue
    ref = min(refs, key=lambda r: V.stats(r["final"])[0])
    target = V.stats(ref["final"])[0]
    if not np.isfinite(target):
      continue

    def steps_to(r, target=target):
      return V.steps_to_target(r["curve"], r["eval_steps"], target)

    ref_steps = steps_to(ref)
    for r in mine:
      s = steps_to(r)
      out.append({
          "task": task, "row": r["row"], "base": r["base"], "lr": r["lr"],
          "target": target, "reference": f"adam {ref['row']} lr={ref['lr']:g}",
          "steps": s, "reference_steps": ref_steps,
          "speedup": (ref_steps / s) if s and ref_steps else None})
  return out


def speed_summary(speed):
  """Per (row, base): tasks where some rate reached the target, and the
  median, over those tasks, of the best rate's speedup."""
  out = []
  keys = sorted({(r["row"], r["base"]) for r in speed})
  tasks = sorted({r["task"] for r in speed})
  for row, base in keys:
    best = []
    for task in tasks:
      ups = [r["speedup"] or 0.0 for r in speed
             if r["task"] == task and r["row"] == row and r["base"] == base]
      if ups:
        best.append(max(ups))
    reached = [b for b in best if b > 0]
    out.append({"row": row, "base": base, "tasks": len(best),
                "reached": len(reached),
                "median_best_speedup": (float(np.median(reached))
                                        if reached else None)})
  return out


def summarize(recs, meta, extra):
  """The content of summary.json."""
  rows = comparisons(recs)
  tables = win_tables(rows)
  train_tables = win_tables(comparisons(recs, key="train_final"))
  tuned = tuned_comparisons(recs)
  speed = speed_to_target(recs)
  head = tables.get(HEADLINE, {})
  return {
      "meta": meta,
      "win_rate_vs_fixed_schedules": head.get("equal_or_better"),
      "tie_rule": V.RULE,
      "win_tables": tables,
      # Rows of the labelled variants are summarised in the tables only.
      "comparisons": [r for r in rows if "[" not in r["challenger"]],
      "tuned_win_tables": {k: {kk: v for kk, v in t.items()
                               if kk in ("n", "wins", "ties", "losses",
                                         "tie_rules", "equal_or_better",
                                         "by_task")}
                           for k, t in win_tables(tuned).items()},
      "tuned_comparisons": [r for r in tuned if "[" not in r["challenger"]],
      "speed_to_target": [r for r in speed if "[" not in r["row"]],
      "speed_summary": speed_summary(speed),
      "loss_compared": {
          "win_tables": "held-out (evaluation) loss",
          "tuned_win_tables": "held-out (evaluation) loss",
          "train_win_tables": "training loss (mean minibatch loss of the "
                              "last evaluation block)"},
      "train_win_tables": {k: {kk: v for kk, v in t.items()
                               if kk in ("n", "wins", "ties", "losses",
                                         "tie_rules", "equal_or_better",
                                         "by_task")}
                           for k, t in train_tables.items()},
      "negative_flips": flip_rates(recs),
      "overhead": extra.get("overhead"),
      "vmap": extra.get("vmap"),
      "external": extra.get("external"),
      "runs": [{k: v for k, v in r.items()
                if k not in ("rate", "train", "correct")} for r in recs],
  }
