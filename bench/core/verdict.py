"""Verdicts: one tie rule, one tally, one time to target, for every table.

**Win / tie / loss** of a challenger against a baseline compares their
final losses over the same seeds (:func:`compare`):

* a run whose final loss is not finite (diverged) counts as +inf: it loses
  to any finite run and ties (rule ``"both diverged"``) with another;
* tie (rule ``"spread"``) if ``|mean_c - mean_b| <= max(std_c, std_b)``,
  the larger of the two seed standard deviations;
* else tie (rule ``"1%"``) if ``|mean_c - mean_b| <= 0.01 * |mean_b|``;
* else win if ``mean_c < mean_b``, loss otherwise.

**Equal or better** is (wins + ties) / comparisons (:func:`tally`).

**Time to target** (:func:`steps_to_target`) is the first evaluated step at
which a loss curve is at or below a target (relative slack 1e-9, so that
the run that set the target reaches it).
"""

import numpy as np

TIE_REL = 0.01
RULE = (f"tie if |mean difference| <= max seed std ('spread'), else if <= "
        f"{TIE_REL:.0%} of the baseline's mean ('1%')")
OUTCOMES = ("win", "tie", "loss")
TARGET_SLACK = 1e-9


def finite_or_inf(x):
  """``x`` as float64 with every non-finite value replaced by +inf."""
  x = np.asarray(x, np.float64)
  return np.where(np.isfinite(x), x, np.inf)


def stats(final):
  """``(mean, std)`` over seeds; ``(inf, 0)`` if any seed diverged."""
  final = np.asarray(final, np.float64)
  if not np.all(np.isfinite(final)):
    return np.inf, 0.0
  return float(final.mean()), float(final.std())


def compare(challenger, baseline):
  """``(outcome, tie_rule)`` for two lists of per-seed final losses (module
  docstring); ``tie_rule`` is ``None`` unless the outcome is a tie."""
  mc, sc = stats(challenger)
  mb, sb = stats(baseline)
  if np.isinf(mc) and np.isinf(mb):
    return "tie", "both diverged"
  if np.isinf(mc) or np.isinf(mb):
    return ("loss", None) if np.isinf(mc) else ("win", None)
  diff = abs(mc - mb)
  if diff <= max(sc, sb):
    return "tie", "spread"
  if diff <= TIE_REL * abs(mb):
    return "tie", "1%"
  return ("win", None) if mc < mb else ("loss", None)


def tally(rows, key="outcome", rule_key="tie_rule"):
  """Counts of ``rows`` (dicts with an outcome and, for ties, its rule).

  Returns:
    ``{"n", "wins", "ties", "losses", "tie_rules", "equal_or_better"}``;
    ``equal_or_better`` is ``None`` when there are no rows.
  """
  n = len(rows)
  count = {o: sum(r[key] == o for r in rows) for o in OUTCOMES}
  rules = {}
  for r in rows:
    if r.get(rule_key):
      rules[r[rule_key]] = rules.get(r[rule_key], 0) + 1
  return {"n": n, "wins": count["win"], "ties": count["tie"],
          "losses": count["loss"], "tie_rules": rules,
          "equal_or_better": (count["win"] + count["tie"]) / n if n else None}


def steps_to_target(curve, steps, target):
  """The first of ``steps`` at which ``curve`` is at or below ``target``
  (``None`` if never)."""
  curve = finite_or_inf(curve)
  hit = np.flatnonzero(curve <= target * (1 + TARGET_SLACK))
  return int(np.asarray(steps)[hit[0]]) if hit.size else None
