"""Verdicts: one tie rule, one tally, one time to target, for every table.

**Win / tie / loss** of a challenger against a baseline compares their
final losses on the same seeds (:func:`compare`). The comparison is
*paired*: a seed fixes the initialisation and the sample stream of both
runs (common random numbers), so the unit of evidence is the per-seed
difference ``d_s = L_challenger(s) - L_baseline(s)``.

* A run whose final loss is not finite on some seed (diverged) counts as
  +inf: it loses to any finite run and ties (rule ``"both diverged"``) with
  another.
* Tie (rule ``"CI"``) if the 95% paired bootstrap confidence interval of
  the mean difference contains 0 (:func:`paired_interval`: the percentile
  interval of the bootstrap distribution, computed exactly over all
  ``n**n`` resamples up to :data:`EXACT_SEEDS` seeds, by
  ``scipy.stats.bootstrap`` with a fixed seed above). With 2 or 3 seeds the
  interval is ``[min d, max d]``: a win needs every seed to agree.
* Else tie (rule ``"1%"``) if the means differ by at most 1% of the
  baseline's mean: practical equivalence, whatever the seeds say.
* Else win if the challenger's mean is lower, loss otherwise.

With one seed there is no interval: the 1% rule alone decides.

Why this rule. The benchmark's earlier rule ("tie if the mean difference is
within the larger seed standard deviation") ignored the pairing and had no
stated coverage: a challenger better on every seed by more than 1% could
tie because the seeds differ much among themselves, and one outlier seed
could decide a win. The paired bootstrap interval is the standard
few-run tool (Efron & Tibshirani; rliable, Agarwal et al. 2021, for
exactly this setting), uses the pairing the benchmark builds in, is
computed exactly (no Monte Carlo noise in the tables), and reads plainly
with the 2-3 seeds a CPU allows; with more seeds (a rate-sensitivity sweep)
it narrows as it should.

**Equal or better** is (wins + ties) / comparisons (:func:`tally`).

**Time to target** (:func:`steps_to_target`) is the first evaluated step at
which a loss curve is at or below a target (relative slack 1e-9, so that
the run that set the target reaches it).
"""

import functools
import itertools

import numpy as np
import scipy.stats

TIE_REL = 0.01
CONFIDENCE = 0.95
EXACT_SEEDS = 6
RESAMPLES = 9_999
RULE = (f"tie if the {CONFIDENCE:.0%} paired bootstrap interval of the "
        f"per-seed difference contains 0 ('CI'), else if the means differ "
        f"by <= {TIE_REL:.0%} of the baseline's ('1%')")
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


@functools.lru_cache(maxsize=None)
def _resamples(n):
  """Every bootstrap resample of ``n`` items, as indices ``[n**n, n]``."""
  return np.asarray(list(itertools.product(range(n), repeat=n)))


def paired_interval(diffs, confidence=CONFIDENCE):
  """The percentile bootstrap interval of the mean of ``diffs``.

  Args:
    diffs: per-seed paired differences (at least two).
    confidence: the interval's level.

  Returns:
    ``(low, high)``: exact over all resamples up to :data:`EXACT_SEEDS`
    values, else from ``scipy.stats.bootstrap`` (:data:`RESAMPLES`
    resamples, seed 0).
  """
  d = np.asarray(diffs, np.float64)
  tail = (1 - confidence) / 2
  if d.size <= EXACT_SEEDS:
    means = d[_resamples(d.size)].mean(axis=1)
    low, high = np.quantile(means, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)
  ci = scipy.stats.bootstrap(
      (d,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
      method="percentile", random_state=0).confidence_interval
  return float(ci.low), float(ci.high)


def compare(challenger, baseline):
  """``(outcome, tie_rule)`` for two lists of per-seed final losses, seed
  by seed (module docstring); ``tie_rule`` is ``None`` unless the outcome
  is a tie."""
  mc, mb = stats(challenger)[0], stats(baseline)[0]
  if np.isinf(mc) and np.isinf(mb):
    return "tie", "both diverged"
  if np.isinf(mc) or np.isinf(mb):
    return ("loss", None) if np.isinf(mc) else ("win", None)
  diffs = np.asarray(challenger, np.float64) - np.asarray(baseline,
                                                          np.float64)
  if diffs.size > 1:
    low, high = paired_interval(diffs)
    if low <= 0 <= high:
      return "tie", "CI"
  if abs(mc - mb) <= TIE_REL * abs(mb):
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
