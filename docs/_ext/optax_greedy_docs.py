"""Pages of the documentation that are generated, not written by hand.

``conf.py`` calls :func:`generate` before Sphinx reads the sources. It
writes into ``docs/_generated/`` (ignored by git):

* ``docs/api/_names.md`` (also ignored): the API reference's autosummary lists, one per
  section, built from the public names of ``optax_greedy`` and of its
  public submodules. A name added, renamed or removed in the package
  changes the reference with no edit to the docs.
* ``bench_*.md`` and the figures: the benchmark's tables, computed from the
  committed results under ``bench/results/`` (JSON, and the Markdown
  reports the benchmark writes next to it), so they cannot drift from them.
* ``changelog.md``: ``CHANGELOG.md`` with its headings under the page's
  title.
* ``greedy_lr_tour.ipynb``: a copy of the tour notebook (rendered, not
  executed).

Nothing here imports Sphinx: ``tests/test_docs.py`` imports this module to
check the API reference without building the site.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pathlib
import re
import shutil
import types

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = DOCS / "_generated"
RESULTS = ROOT / "bench" / "results"
# The API lists sit beside the page that includes them (docs/api/index.md),
# so that autosummary's stub pages land where that page's toctree looks.
API_NAMES = DOCS / "api" / "_names.md"

PACKAGE = "optax_greedy"

# ---------------------------------------------------------------------------
# The API reference
# ---------------------------------------------------------------------------

# Section titles for the private modules that define the public names. A
# module missing here still gets a section (titled by its name), so a new
# module never drops a name from the reference.
SECTIONS = {
    "_greedy_lr": "GreedyLR",
    "_greedy_aliases": "GreedyLR",
    "_validation_feed": "GreedyLR",
    "_hypergradient": "Hypergradient descent",
    "_hd_aliases": "Hypergradient descent",
    "_learned_scale": "Rate-robust transforms",
    "_probe": "Rate-robust transforms",
    "_stability": "Stability clipping",
    "_learned": "Learned schedules",
    "policy": "Learned schedules",
    "_budget": "The step budget",
    "_rate": "Reading the rate",
    "_checkpoint": "Checkpoints",
    "_multihost": "Several hosts",
}


def public_names(module) -> list[str]:
  """The public names of a module: ``__all__`` if it has one, else every
  attribute without a leading underscore that is a function or a class
  defined in the package (re-exports of jax, optax or typing excluded) or
  a public submodule."""
  if hasattr(module, "__all__"):
    return sorted(module.__all__)
  names = []
  for name, obj in vars(module).items():
    if name.startswith("_"):
      continue
    if isinstance(obj, types.ModuleType):
      if obj.__name__.startswith(PACKAGE + "."):
        names.append(name)
      continue
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
      continue
    if getattr(obj, "__module__", "").split(".")[0] != PACKAGE:
      continue
    names.append(name)
  return sorted(names)


def public_submodules(package) -> list[str]:
  """Dotted names of the public submodules the package itself exposes."""
  return sorted(
      getattr(package, name).__name__ for name in public_names(package)
      if isinstance(getattr(package, name), types.ModuleType))


def api_entries() -> dict[str, list[str]]:
  """Section title -> fully qualified names, for every documented object."""
  package = importlib.import_module(PACKAGE)
  sections: dict[str, list[str]] = {}
  for name in public_names(package):
    obj = getattr(package, name)
    if isinstance(obj, types.ModuleType):
      continue
    home = getattr(obj, "__module__", PACKAGE).split(".")[-1]
    title = SECTIONS.get(home, home.lstrip("_").replace("_", " ").capitalize())
    sections.setdefault(title, []).append(f"{PACKAGE}.{name}")
  order = {title: i for i, title in enumerate(dict.fromkeys(SECTIONS.values()))}
  sections = dict(sorted(sections.items(),
                         key=lambda item: order.get(item[0], len(order))))
  for module_name in public_submodules(package):
    module = importlib.import_module(module_name)
    title = f"`{module_name}`"
    sections[title] = [f"{module_name}.{n}" for n in public_names(module)
                       if not isinstance(getattr(module, n), types.ModuleType)]
  return sections


def public_constants(module) -> list[str]:
  """The public constants of a module: names in capitals (no leading
  underscore) bound to a value that is not a function, a class or a
  module, such as ``optax_greedy.NO_ENVELOPE``."""
  names = module.__all__ if hasattr(module, "__all__") else vars(module)
  return sorted(
      name for name in names
      if re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
      and not (inspect.isfunction(getattr(module, name))
               or inspect.isclass(getattr(module, name))
               or isinstance(getattr(module, name), types.ModuleType)))


def _package_modules():
  """Every module of the package that is imported, the package first."""
  import sys
  return [module for name, module in sorted(sys.modules.items())
          if module is not None
          and (name == PACKAGE or name.startswith(PACKAGE + "."))]


def constant_doc(module, name) -> tuple[str, str]:
  """The defining module's name and the ``#:`` comment above ``name = ...``
  there (the comment autodoc reads for data), searched in ``module`` and
  then in every module of the package; ``("", "")`` if none has one."""
  assignment = re.compile(
      r"((?:^#:.*\n)+)^" + re.escape(name) + r"\s*(?::[^=\n]*)?=",
      re.MULTILINE)
  for candidate in [module, *_package_modules()]:
    try:
      source = inspect.getsource(candidate)
    except (OSError, TypeError):
      continue
    m = assignment.search(source)
    if m:
      doc = " ".join(line[2:].strip() for line in m.group(1).splitlines())
      return candidate.__name__, doc
  return "", ""


def api_constants() -> dict[str, list[tuple[str, str, str]]]:
  """Section title -> (qualified name, value, doc) of every documented
  constant: the package's own (in the section of the module that defines
  them) and those of its public submodules (in the submodule's section)."""
  package = importlib.import_module(PACKAGE)
  sections: dict[str, list[tuple[str, str, str]]] = {}
  for name in public_constants(package):
    home, doc = constant_doc(package, name)
    home = home.split(".")[-1]
    title = SECTIONS.get(home, home.lstrip("_").replace("_", " ").capitalize())
    sections.setdefault(title, []).append(
        (f"{PACKAGE}.{name}", repr(getattr(package, name)), doc))
  for module_name in public_submodules(package):
    module = importlib.import_module(module_name)
    for name in public_constants(module):
      sections.setdefault(f"`{module_name}`", []).append(
          (f"{module_name}.{name}", repr(getattr(module, name)),
           constant_doc(module, name)[1]))
  return sections


def missing_docstrings() -> list[str]:
  """Documented names whose docstring is empty."""
  missing = []
  for names in api_entries().values():
    for qualified in names:
      module_name, _, attr = qualified.rpartition(".")
      obj = getattr(importlib.import_module(module_name), attr)
      if not (inspect.getdoc(obj) or "").strip():
        missing.append(qualified)
  for constants in api_constants().values():
    missing += [qualified for qualified, _, doc in constants if not doc]
  return missing


def api_markdown() -> str:
  """The autosummary lists of the API reference, in MyST Markdown, each
  section followed by its constants (``py:data`` entries: their doc is the
  ``#:`` comment of their definition)."""
  entries, constants = api_entries(), api_constants()
  lines = []
  for title in dict.fromkeys([*entries, *constants]):
    lines += [f"## {title}", ""]
    if entries.get(title):
      lines += ["```{eval-rst}", ".. autosummary::",
                "   :toctree: _autosummary", "   :nosignatures:", ""]
      lines += [f"   ~{name}" for name in entries[title]]
      lines += ["```", ""]
    for qualified, value, doc in constants.get(title, []):
      lines += ["```{eval-rst}", f".. py:data:: {qualified}",
                f"   :value: {' '.join(value.split())}", "", f"   {doc}",
                "```", ""]
  return "\n".join(lines)


def stale_stubs(folder: pathlib.Path = DOCS / "api" / "_autosummary"
                ) -> list[pathlib.Path]:
  """Stub pages autosummary wrote for names no longer public: autosummary
  never deletes one, and a stale stub fails a ``-W`` build of a checkout
  that built the docs before the name went."""
  listed = {name for names in api_entries().values() for name in names}
  return [stub for stub in sorted(folder.glob("*.rst"))
          if stub.stem not in listed] if folder.is_dir() else []


# ---------------------------------------------------------------------------
# The benchmark's tables
# ---------------------------------------------------------------------------

# Display names of the sweep's rows; a row not listed shows its key.
ROW_LABELS = {
    "greedy": "GreedyLR `total_steps`",
    "hd_adam": "`hd_adam` `total_steps`",
    "learned": "learned `total_steps`",
    "wsd": "constant + ramp/decay (`budget_schedule`)",
    "cosine": "warmup-cosine at that rate",
    "schedule_free": "schedule-free AdamW (5% warmup)",
    "prodigy": "Prodigy (no rate)",
    "dog": "DoG (no rate)",
}


def _number(text):
  try:
    return float(text)
  except (TypeError, ValueError):
    return math.inf


def _fmt(value, digits=3):
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return "" if value is None else str(value)
  if not math.isfinite(value):
    return str(value)
  return f"{value:.{digits}f}"


def _rel(path: pathlib.Path) -> str:
  try:
    return path.resolve().relative_to(ROOT).as_posix()
  except ValueError:  # outside the repository (the tests' files)
    return path.as_posix()


def _multiplier_label(m: str) -> str:
  return "x" + m


def sweep_table(entry: dict) -> str:
  """The rate-sensitivity table of one workload: held-out test loss of each
  row over the tuned warmup-cosine's, one column per multiple of its peak."""
  sweep = entry.get("sweep") or {}
  base = entry.get("tuned_cosine_test_loss")
  if not sweep or not isinstance(base, (int, float)) or base == 0:
    return ""
  multipliers = sorted({m for row in sweep.values() for m in row},
                       key=_number)
  ci = entry.get("sweep_ci") or {}
  seeds = entry.get("seeds")
  most_seeds = len(seeds) if isinstance(seeds, list) else 0
  lines = ["| row | " + " | ".join(map(_multiplier_label, multipliers)) + " |",
           "|---|" + "---|" * len(multipliers)]
  for row, values in sweep.items():
    cells = []
    for m in multipliers:
      value = values.get(m)
      cell = _fmt(value / base) if isinstance(value, (int, float)) else ""
      interval = (ci.get(row) or {}).get(m) if isinstance(ci, dict) else None
      if (cell and isinstance(interval, (list, tuple)) and len(interval) == 2
          and all(isinstance(v, (int, float)) for v in interval)):
        cell += f" [{_fmt(interval[0] / base)}, {_fmt(interval[1] / base)}]"
      runs = ((entry.get("sweep_runs") or {}).get(row) or {}).get(m) or {}
      if cell and isinstance(runs, dict):
        seeds, lost = runs.get("seeds"), runs.get("lost")
        if isinstance(seeds, int) and seeds < most_seeds:
          cell += f" ({seeds} seed{'s' if seeds > 1 else ''})"
        if isinstance(lost, int) and lost:
          cell += f" ({lost} lost)"
      cells.append(cell)
    label = ROW_LABELS.get(row, f"`{row}`")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def grid_table(entry: dict) -> str:
  """The bracketing grid of the baseline's peak, when the results have one:
  a mapping of peak -> test loss (or of row -> peak -> test loss)."""
  grid = entry.get("grid")
  if not isinstance(grid, dict) or not grid:
    return ""
  if all(isinstance(v, (int, float)) for v in grid.values()):
    grid = {"cosine": grid}
  if not all(isinstance(v, dict) for v in grid.values()):
    return ""
  peaks = sorted({p for row in grid.values() for p in row}, key=_number)
  lines = ["| row | " + " | ".join(f"peak {p}" for p in peaks) + " |",
           "|---|" + "---|" * len(peaks)]
  for row, values in grid.items():
    cells = [_fmt(values.get(p), 4) if isinstance(values.get(p), (int, float))
             else "" for p in peaks]
    lines.append(f"| {ROW_LABELS.get(row, f'`{row}`')} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def workloads_markdown(summary_path: pathlib.Path, machine: str) -> str:
  """Every workload of one ``summary.json``, its sweep table and figures."""
  if not summary_path.exists():
    return f"*No results file `{_rel(summary_path)}` in this checkout.*\n"
  summary = json.loads(summary_path.read_text())
  workloads = summary.get("workloads") or []
  if isinstance(workloads, dict):
    workloads = [dict(v, name=v.get("name", k)) for k, v in workloads.items()]
  out = []
  for entry in workloads:
    name = entry.get("name", "?")
    size = entry.get("size")
    params = entry.get("n_params")
    header = f"{name}" + (f" ({size} size)" if size else "")
    facts = []
    if isinstance(params, int):
      facts.append(f"{params:,} parameters")
    if entry.get("steps"):
      facts.append(f"{entry['steps']:,} steps")
    if entry.get("seeds"):
      seeds = entry["seeds"]
      facts.append(f"{len(seeds) if isinstance(seeds, list) else seeds} seeds")
    out += [f"### {machine}: {header}", ""]
    if entry.get("description"):
      out += [entry["description"] + (". " if facts else ".")
              + ", ".join(facts) + ".", ""]
    base = entry.get("tuned_cosine_test_loss")
    if entry.get("baseline") and isinstance(base, (int, float)):
      peaks = entry.get("peaks")
      out += [f"Baseline: warmup-cosine Adam tuned by validation loss"
              + (f" over the peaks {peaks}" if peaks else "")
              + f": `{entry['baseline']}`, held-out test loss "
              f"{_fmt(base, 4)}. Each cell: the row's mean held-out test loss"
              " started at that multiple of the tuned peak, over the tuned "
              "warmup-cosine's (below 1 is better); fewer seeds than the "
              "workload's, and seeds lost (ended non-finite or above their "
              "starting test loss), are noted in the cell.", ""]
    table = sweep_table(entry)
    out += [table or "*(no rate sweep in these results)*", ""]
    grid = grid_table(entry)
    if grid:
      out += ["The baseline's bracketing grid (validation loss per peak, "
              "the loss that tunes it):",
              "", grid, ""]
    errors = entry.get("errors")
    if errors:
      out += [f"Errors recorded: {', '.join(map(str, errors))}.", ""]
  out.append(f"Source: [{_rel(summary_path)}](path:{_link(summary_path)}), "
             "section `workloads`.")
  return "\n".join(out) + "\n"


def _link(path: pathlib.Path) -> str:
  """A link to a repository file from a page of ``docs/`` (a generated file
  is included by a page of ``docs/``, and its links resolve from there)."""
  return "../" + _rel(path)


def figure(path: pathlib.Path, caption: str) -> str:
  """A figure directive for a committed PNG, copied next to the pages."""
  GENERATED.mkdir(parents=True, exist_ok=True)
  target = GENERATED / (_rel(path).replace("/", "__"))
  shutil.copyfile(path, target)
  return "\n".join([f"```{{figure}} _generated/{target.name}", ":width: 100%", "",
                    f"{caption} (`{_rel(path)}`)", "```", ""])


def report_markdown(path: pathlib.Path, level: int = 4) -> str:
  """A Markdown report written by the benchmark, to include in a page: its
  headings moved below ``level`` - 1 (gaps closed), links to its own
  figures dropped, and a line naming the file."""
  if not path.exists():
    return f"*No report `{_rel(path)}` in this checkout.*\n"
  text = path.read_text()
  heading = re.compile(r"^(#{1,6})\s+(.*)$")
  levels = sorted({len(m.group(1)) for line in text.splitlines()
                   if (m := heading.match(line))})
  shift = {old: min(6, level + i) for i, old in enumerate(levels)}
  lines, fenced = [], False
  for line in text.splitlines():
    if line.startswith("```"):
      fenced = not fenced
    m = None if fenced else heading.match(line)
    if m:
      line = "#" * shift[len(m.group(1))] + " " + m.group(2)
    lines.append(line)
  lines += ["", f"Source: [{_rel(path)}](path:{_link(path)}) "
            "(written by the benchmark, included unchanged but for its "
            "headings)."]
  return "\n".join(lines) + "\n"


# The committed reports included in the benchmark page, by the page's name
# for them. A report missing from the checkout is named as missing.
REPORTS = {
    "budget_defaults": "budget_defaults/budget_defaults.md",
    "probe_defaults": "probe_defaults/probe_defaults.md",
    "probe_defaults_mnist1d_select":
        "probe_defaults/probe_defaults_mnist1d_select.md",
    "probe_defaults_mnist1d_select_seeds":
        "probe_defaults/probe_defaults_mnist1d_select_seeds012.md",
    "probe_defaults_selection": "probe_defaults/selection.md",
    "hd_defaults": "hd/hd_defaults.md",
    "hd_cost": "hd/cost.md",
    "gpu_step_cost": "gpu/workloads/step_cost.md",
    "greedy_feeds": "greedy_feeds/greedy_feeds.md",
    "nmf": "nmf/nmf.md",
    "learned_nmf": "learned/learned.md",
    "dnn_policy": "dnn_policy/dnn_policy.md",
    "workloads_cpu": "workloads/workloads.md",
    "workloads_gpu": "gpu/workloads/workloads.md",
    "grid": "summary.md",
}

# The committed figures, by the page's name for them.
FIGURES = {
    "nmf": ("nmf/nmf.png", "Schedules for stochastic NMF of the digits"),
    "learned_nmf": ("learned/learned.png",
                    "The learned NMF schedule on held-out problems"),
    "dnn_policy": ("dnn_policy/dnn_policy.png",
                   "The learned deep-network schedule on held-out networks"),
    "grid_schedules": ("lr_schedules.png",
                       "Learning rates over training, standard grid"),
    "grid_losses": ("loss_histories.png", "Losses over training, standard grid"),
}


# Captions of the workloads' figures; every PNG of a workloads folder is
# shown, so a figure the benchmark adds appears under its file name.
WORKLOAD_CAPTIONS = {
    "sweep.png": "Held-out loss against the starting rate (top) and the rate "
                 "each reactive controller applied (bottom)",
    "workloads.png": "Test loss over training, and a performance profile of "
                     "steps to the target",
}


def workload_figures(folder: pathlib.Path, machine: str) -> str:
  """Every committed PNG of a workloads results folder, as figures."""
  pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
  if not pngs:
    return f"*No figures in `{_rel(folder)}` in this checkout.*\n"
  return "\n".join(
      figure(png, f"{machine}: "
             + WORKLOAD_CAPTIONS.get(png.name, png.stem.replace("_", " ")))
      for png in pngs)


def changelog_markdown(path: pathlib.Path = ROOT / "CHANGELOG.md") -> str:
  """``CHANGELOG.md`` below the page's own title: its H1 title (if any)
  dropped and its headings moved to start at H2, so that a changelog with or
  without a title of its own builds without a heading warning."""
  if not path.exists():
    return "*No `CHANGELOG.md` in this checkout.*\n"
  lines = path.read_text().splitlines()
  heading = re.compile(r"^(#{1,6})\s+(.*)$")
  first = next((i for i, line in enumerate(lines) if line.strip()), None)
  if first is not None and re.match(r"^#\s", lines[first]):
    del lines[first]
  levels = sorted({len(m.group(1)) for line in lines
                   if (m := heading.match(line))})
  shift = {old: min(6, 2 + i) for i, old in enumerate(levels)}
  out, fenced = [], False
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
    m = None if fenced else heading.match(line)
    out.append("#" * shift[len(m.group(1))] + " " + m.group(2) if m else line)
  return "\n".join(out) + "\n"


def generate() -> None:
  """Write every generated page (called by ``conf.py`` on each build)."""
  if GENERATED.exists():
    shutil.rmtree(GENERATED)
  GENERATED.mkdir(parents=True)
  API_NAMES.write_text(api_markdown())
  for stub in stale_stubs():
    stub.unlink()
  (GENERATED / "bench_workloads_cpu.md").write_text(
      workloads_markdown(RESULTS / "summary.json", "CPU"))
  (GENERATED / "bench_workloads_gpu.md").write_text(
      workloads_markdown(RESULTS / "gpu" / "summary.json", "GPU"))
  (GENERATED / "figures_workloads_cpu.md").write_text(
      workload_figures(RESULTS / "workloads", "CPU"))
  (GENERATED / "figures_workloads_gpu.md").write_text(
      workload_figures(RESULTS / "gpu" / "workloads", "GPU"))
  for name, relative in REPORTS.items():
    (GENERATED / f"report_{name}.md").write_text(
        report_markdown(RESULTS / relative))
  for name, (relative, caption) in FIGURES.items():
    path = RESULTS / relative
    text = (figure(path, caption) if path.exists()
            else f"*No figure `{_rel(path)}` in this checkout.*\n")
    (GENERATED / f"figure_{name}.md").write_text(text)
  (GENERATED / "changelog.md").write_text(changelog_markdown())
  notebook = ROOT / "examples" / "greedy_lr_tour.ipynb"
  if notebook.exists():
    shutil.copyfile(notebook, GENERATED / notebook.name)
