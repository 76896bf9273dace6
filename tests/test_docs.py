"""The documentation's sources: every public name is in the API reference,
the benchmark's tables come from the results, the README's links resolve.

None of this needs Sphinx: the API reference's lists are written by
``docs/_ext/optax_greedy_docs.py``, a plain module, which ``docs/conf.py``
runs before each build; these tests run the same functions.
"""

import importlib.util
import inspect
import json
import pathlib
import re
import types

import pytest

import optax_greedy

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_generator():
  spec = importlib.util.spec_from_file_location(
      "optax_greedy_docs", DOCS / "_ext" / "optax_greedy_docs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


gen = _load_generator()


def _expected_public(module):
  """The public names of a module, computed here independently of the
  generator: ``__all__`` if defined, else the functions and classes without
  a leading underscore that the package defines (no submodules)."""
  if hasattr(module, "__all__"):
    names = list(module.__all__)
  else:
    names = [name for name, obj in vars(module).items()
             if not name.startswith("_")
             and (inspect.isfunction(obj) or inspect.isclass(obj))
             and getattr(obj, "__module__", "").startswith("optax_greedy")]
  return sorted(name for name in names
                if not isinstance(getattr(module, name), types.ModuleType))


def _autosummary_entries(markdown):
  """Names listed in the autosummary directives of a generated page."""
  entries, inside = set(), False
  for line in markdown.splitlines():
    if line.strip().startswith(".. autosummary::"):
      inside = True
      continue
    if inside and line.strip() == "```":
      inside = False
    if inside and re.match(r"^\s+~?[\w.]+$", line):
      entries.add(line.strip().lstrip("~"))
  return entries


def _public_submodules():
  return [obj for name, obj in vars(optax_greedy).items()
          if isinstance(obj, types.ModuleType) and not name.startswith("_")
          and obj.__name__.startswith("optax_greedy.")]


def _missing_and_stale(entries):
  expected = {f"optax_greedy.{name}"
              for name in _expected_public(optax_greedy)}
  for module in _public_submodules():
    expected |= {f"{module.__name__}.{name}"
                 for name in _expected_public(module)}
  assert expected, "no public names found"
  return sorted(expected - entries), sorted(entries - expected)


def test_every_public_name_is_in_the_api_reference():
  missing, stale = _missing_and_stale(_autosummary_entries(gen.api_markdown()))
  assert not missing, f"public names missing from the API reference: {missing}"
  assert not stale, f"API reference lists names that are not public: {stale}"


def test_nmf_is_documented():
  entries = _autosummary_entries(gen.api_markdown())
  assert "optax_greedy.nmf.stability_bounds" in entries


def test_the_api_page_includes_the_generated_lists():
  page = (DOCS / "api" / "index.md").read_text()
  assert re.search(r"```\{include\}\s+_names\.md", page)
  conf = (DOCS / "conf.py").read_text()
  assert 'autosummary_generate = ["api/_names.md"]' in conf
  assert "optax_greedy_docs.generate()" in conf


def test_every_public_name_has_a_docstring():
  assert gen.missing_docstrings() == []


def test_the_check_fails_on_an_unlisted_name(monkeypatch):
  """The check can fail: a list written before a public function was added
  (a hand-written list that drifted) misses it; the generated one has it."""
  stale_list = _autosummary_entries(gen.api_markdown())

  def new_controller():
    """A controller added to the package."""
  new_controller.__module__ = "optax_greedy._new"
  monkeypatch.setattr(optax_greedy, "new_controller", new_controller,
                      raising=False)
  if hasattr(optax_greedy, "__all__"):
    monkeypatch.setattr(optax_greedy, "__all__",
                        [*optax_greedy.__all__, "new_controller"])
  missing, _ = _missing_and_stale(stale_list)
  assert missing == ["optax_greedy.new_controller"]
  missing, _ = _missing_and_stale(_autosummary_entries(gen.api_markdown()))
  assert missing == []


def test_sweep_table_follows_the_results():
  entry = {
      "tuned_cosine_test_loss": 2.0,
      "sweep": {"greedy": {"1": 1.0, "0.1": 4.0},
                "new_probe": {"3": 3.0},
                "cosine": {"1": 2.0}},
  }
  table = gen.sweep_table(entry)
  header = table.splitlines()[0]
  assert header.index("x0.1") < header.index("x1") < header.index("x3")
  assert "`new_probe`" in table  # a row added to the results appears
  assert "| GreedyLR `total_steps` | 2.000 | 0.500 |  |" in table
  entry["sweep_ci"] = {"greedy": {"1": [0.8, 1.2]}}
  assert "0.500 [0.400, 0.600]" in gen.sweep_table(entry)
  assert gen.sweep_table({"sweep": {}}) == ""


def test_committed_workloads_render():
  summary = ROOT / "bench" / "results" / "summary.json"
  if not summary.exists():
    pytest.skip("no committed summary.json")
  text = gen.workloads_markdown(summary, "CPU")
  for entry in json.loads(summary.read_text()).get("workloads", []):
    for row in entry.get("sweep", {}):
      assert gen.ROW_LABELS.get(row, f"`{row}`") in text


def test_readme_links_resolve():
  readme = (ROOT / "README.md").read_text()
  links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
  local = [link for link in links if "://" not in link]
  assert any(link.startswith("docs/") for link in local)
  missing = [link for link in local if not (ROOT / link).exists()]
  assert not missing, f"README links to missing files: {missing}"


def test_readme_keeps_the_two_commands_and_the_headline_markers():
  readme = (ROOT / "README.md").read_text()
  assert ('pip install -e ".[examples]" && python examples/train_digits.py'
          in readme)
  assert 'pip install -e ".[test]" && pytest -q' in readme
  start = readme.index("<!-- headline:start -->")
  assert start < readme.index("<!-- headline:end -->")


def test_workloads_page_survives_new_and_partial_results(tmp_path):
  """A workload added without a sweep, a bracketing grid, a missing file:
  the page still renders, naming what it has."""
  summary = tmp_path / "summary.json"
  summary.write_text(json.dumps({"workloads": [
      {"name": "mnist1d", "size": "cpu", "n_params": 1000, "steps": 10,
       "seeds": [0, 1], "tuned_cosine_test_loss": 0.5,
       "sweep": {"rate_probe": {"1": 0.25}},
       "grid": {"0.001": 0.6, "0.003": 0.5}},
      {"name": "partial"},
  ]}))
  text = gen.workloads_markdown(summary, "CPU")
  assert "mnist1d" in text and "`rate_probe`" in text and "0.500" in text
  assert "peak 0.001" in text and "0.6000" in text
  assert "no rate sweep" in text
  assert "No results file" in gen.workloads_markdown(
      tmp_path / "missing.json", "GPU")


def test_the_envelope_and_the_constants_are_in_the_api_reference():
  """``Envelope`` is a class (an autosummary entry); the constants, values
  rather than functions or classes, are ``py:data`` entries with the ``#:``
  comment of their definition as their description."""
  markdown = gen.api_markdown()
  assert "optax_greedy.Envelope" in _autosummary_entries(markdown)
  for name in ("optax_greedy.NO_ENVELOPE", "optax_greedy.DEFAULT_ENVELOPE",
               "optax_greedy.policy.MIN_FRACTION",
               "optax_greedy.policy.KNOWN_FEATURES",
               "optax_greedy.policy.POLICY_VERSION"):
    assert f".. py:data:: {name}" in markdown
  budget = markdown[markdown.index("## The step budget"):]
  budget = budget[:budget.index("\n## ", 1)]
  assert ".. py:data:: optax_greedy.NO_ENVELOPE" in budget
  assert "No envelope: a scale of 1 at every step" in budget
  constants = {qualified for items in gen.api_constants().values()
               for qualified, _, _ in items}
  for module in [optax_greedy, *_public_submodules()]:
    for name in gen.public_constants(module):
      assert f"{module.__name__}.{name}" in constants


def test_the_public_policy_module_has_its_section():
  entries = gen.api_entries()
  assert "optax_greedy.policy.Policy" in entries["`optax_greedy.policy`"]
  assert "optax_greedy.load_policy" in entries["Learned schedules"]
  assert not any(name.startswith("optax_greedy.learning")
                 for names in entries.values() for name in names)


def test_stale_autosummary_stubs_are_found(tmp_path):
  """A stub page for a name no longer public (autosummary never deletes
  one) is found, so that generate() removes it before a -W build."""
  (tmp_path / "optax_greedy.greedy_lr.rst").write_text("")
  (tmp_path / "optax_greedy.ScheduledRateState.rst").write_text("")
  assert [p.name for p in gen.stale_stubs(tmp_path)] == [
      "optax_greedy.ScheduledRateState.rst"]
  assert gen.stale_stubs(tmp_path / "missing") == []
