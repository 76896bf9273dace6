"""The quick preset's recorded numbers, and a check of a new run against them.

A refactor of the benchmark must not move its numbers by accident. The
reference (``bench/results/quick_reference.json``) holds, from one run of
``python -m bench quick``:

* ``runs``: every grid run's final losses, per seed -- held-out (``final``)
  and training (``train_final``) -- keyed ``task|row|base|lr_index``
  (``row`` is the option: a fixed schedule, a labelled variant, or the
  controller's name);
* ``tables``: the win/tie/loss tables (held-out, training, best-of-grid),
  counts only;
* ``nmf``: the NMF task's final relative errors per method and seed.

:func:`check` compares a run with it: final losses within ``rtol``
(relative, 1e-5 by default; both non-finite counts as equal), tables equal
count for count. A run of some tasks only (``--only``) is compared on the
runs it has; its tables are not compared.
"""

import json
import math
import os
import pickle

GRID_CACHE = "grid_cache.pkl"
TABLES = ("win_tables", "train_win_tables", "tuned_win_tables")
COUNTS = ("n", "wins", "ties", "losses")


def _key(record):
  return "|".join(str(record[k]) for k in ("task", "row", "base",
                                            "lr_index"))


def _float(x):
  """float32-exact text (9 significant digits); ``None`` if not finite (or
  already ``None``: JSON's non-finite)."""
  if x is None or not math.isfinite(float(x)):
    return None
  return float(f"{float(x):.9g}")


def _counts(table):
  """A win table's counts, overall and in every ``by_*`` breakdown."""
  out = {k: table[k] for k in COUNTS}
  for key, by in table.items():
    if key.startswith("by_"):
      out[key] = {v: {k: t[k] for k in COUNTS} for v, t in by.items()}
  return out


def load_run(out_dir):
  """``(records, summary, nmf)`` of a run written to ``out_dir``."""
  with open(os.path.join(out_dir, GRID_CACHE), "rb") as f:
    records = pickle.load(f)[0]
  with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  nmf = None
  path = os.path.join(out_dir, "nmf", "nmf.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      nmf = json.load(f)
  return records, summary, nmf


def record(records, summary, nmf):
  """The reference of one run (module docstring)."""
  return {
      "runs": {_key(r): {"final": [_float(x) for x in r["final"]],
                         "train_final": [_float(x) for x in r["train_final"]]}
               for r in records},
      "tables": {name: {row: _counts(t) for row, t in summary[name].items()}
                 for name in TABLES},
      "nmf": None if nmf is None else {
          name: [_float(x) for x in row["final_error"]]
          for name, row in nmf["rows"].items()},
  }


def _close(a, b, rtol):
  if a is None or b is None:
    return a is None and b is None
  return abs(a - b) <= rtol * max(abs(a), abs(b))


def _compare_lists(where, new, old, rtol):
  if len(new) != len(old):
    return [f"{where}: {len(new)} seeds, reference {len(old)}"]
  return [f"{where}: {n!r} vs reference {o!r}"
          for n, o in zip(new, old) if not _close(n, o, rtol)]


def check(new, reference, rtol=1e-5, tables=True):
  """Differences of ``new`` (:func:`record` of a run) from ``reference``.

  Args:
    new, reference: outputs of :func:`record`.
    rtol: relative tolerance on every final loss and NMF error.
    tables: compare the win/tie/loss tables too (a run of the whole preset);
      otherwise only the runs ``new`` has are compared.

  Returns:
    A list of human-readable differences; empty when the run reproduces.
  """
  problems = []
  old_runs, new_runs = reference["runs"], new["runs"]
  missing = sorted(set(old_runs) - set(new_runs))
  extra = sorted(set(new_runs) - set(old_runs))
  if tables and missing:
    problems.append(f"runs missing: {missing[:10]} ({len(missing)} in all)")
  if extra:
    problems.append(f"runs not in the reference: {extra[:10]} "
                    f"({len(extra)} in all)")
  for key in sorted(set(old_runs) & set(new_runs)):
    for loss in ("final", "train_final"):
      problems += _compare_lists(f"{key} {loss}", new_runs[key][loss],
                                 old_runs[key][loss], rtol)
  if tables:
    for name in TABLES:
      if new["tables"][name] != reference["tables"][name]:
        rows = sorted(
            r for r in set(new["tables"][name]) | set(reference["tables"][name])
            if new["tables"][name].get(r) != reference["tables"][name].get(r))
        problems.append(f"{name} differ in rows {rows}")
    if reference["nmf"] is not None:
      if new["nmf"] is None:
        problems.append("no NMF results")
      else:
        for name, old in reference["nmf"].items():
          problems += _compare_lists(f"nmf {name}",
                                     new["nmf"].get(name, []), old, rtol)
  return problems


REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                         "results", "quick_reference.json")


def write(out_dir, path=REFERENCE):
  """Records the run in ``out_dir`` as the reference at ``path``."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record(*load_run(out_dir)), f, separators=(",", ":"),
              sort_keys=True)


def check_run(out_dir, path=REFERENCE, rtol=1e-5, tables=True):
  """:func:`check` of the run in ``out_dir`` against the file at ``path``."""
  with open(path, encoding="utf-8") as f:
    reference = json.load(f)
  return check(record(*load_run(out_dir)), reference, rtol, tables)
