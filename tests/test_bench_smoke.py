"""Smoke test of the benchmark suite: the tiny preset writes a well-formed
summary (structure and ranges, not the numbers)."""

import json
import math
import pathlib
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

# bench/ lives next to the package, not inside it: import it from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench import suite  # pylint: disable=wrong-import-position

OUTCOMES = {"win", "tie", "loss"}


def _reject_constant(name):
  raise ValueError(f"summary.json contains {name}, which is not JSON")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  suite.main("tiny", str(out), progress=False)
  return out


@pytest.fixture(scope="module")
def summary(out_dir):
  text = (out_dir / "summary.json").read_text(encoding="utf-8")
  return json.loads(text, parse_constant=_reject_constant)


def test_headline_is_a_fraction(summary):
  rate = summary["win_rate_vs_fixed_schedules"]
  assert isinstance(rate, float) and 0.0 <= rate <= 1.0
  table = summary["win_tables"]["greedy"]
  assert table["wins"] + table["ties"] + table["losses"] == table["n"] > 0
  # summary.json keeps 6 significant digits.
  assert math.isclose(rate, (table["wins"] + table["ties"]) / table["n"],
                      rel_tol=1e-5)


def test_comparison_rows_are_well_formed(summary):
  rows = summary["comparisons"]
  assert rows
  fixed = {"constant", "cosine", "linear", "step", "warmup_cosine"}
  assert {r["schedule"] for r in rows} == fixed
  for r in rows:
    assert r["outcome"] in OUTCOMES
    assert (r["tie_rule"] is None) == (r["outcome"] != "tie")
    assert r["lr"] > 0
  greedy = [r for r in rows if r["challenger"] == "greedy"]
  # One comparison per (task variant, base, rate, schedule).
  keys = {(r["task"], r["base"], r["lr"], r["schedule"]) for r in greedy}
  assert len(keys) == len(greedy)


def test_overhead_ratios_are_relative_to_adam(summary):
  overhead = summary["overhead"]
  for section in ("bare_update", "train_step", "compile", "state_bytes"):
    ratios = overhead[section]["ratio"]
    assert ratios["adam"] == 1.0
    assert "greedy" in ratios
    assert all(v > 0 for v in ratios.values())


def test_runs_record_every_program(summary):
  meta = summary["meta"]
  assert meta["machine"]["jax"]
  assert meta["timings"]
  rows = {r["row"] for r in summary["runs"]}
  assert {"greedy", "constant", "cosine"} <= rows
  for run in summary["runs"]:
    assert len(run["curve"]) == len(run["eval_steps"])


def test_markdown_and_figures_written(out_dir):
  text = (out_dir / "summary.md").read_text(encoding="utf-8")
  assert "## Headline" in text and "win" in text.lower()
  for name in ("lr_schedules.png", "loss_histories.png"):
    assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_task_is_refused_at_once(capsys):
  from bench import __main__ as cli  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as info:
    cli.main(["--only", "foo", "--out", "unused"])
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "foo" in err and "logreg" in err and "rosenbrock" in err


def test_held_out_and_training_tables(summary):
  assert "held-out" in summary["loss_compared"]["win_tables"]
  train = summary["train_win_tables"]["greedy"]
  assert train["wins"] + train["ties"] + train["losses"] == train["n"] > 0
  assert isinstance(summary["negative_flips"], list)


def test_workloads_smoke(tmp_path):
  """The realistic tier at a few steps: one row besides the cosine grid;
  the summary gets a well-formed "workloads" section."""
  from bench import workloads  # pylint: disable=import-outside-toplevel
  workloads.run(str(tmp_path), names=("cnn",), seeds=(0,), peaks=(1e-3,),
                scale=0.004, only=("greedy",), log=lambda *_: None)
  summary = json.loads((tmp_path / "summary.json").read_text())
  (entry,) = summary["workloads"]
  assert entry["name"] == "cnn" and entry["steps"] == 4
  assert entry["n_params"] > 100_000
  results = entry["results"]
  assert set(results) == {"cosine@0.001", "greedy"}
  base = results["cosine@0.001"]
  assert base["negative_flip_rate_vs_tuned"] == 0.0
  assert base["steps_to_target"] == 4
  flip = results["greedy"]["negative_flip_rate_vs_tuned"]
  assert 0.0 <= flip <= 1.0
  assert (tmp_path / "workloads" / "workloads.md").exists()

  # Resuming keeps the finished runs (not re-run: the log says so) and
  # runs only the missing row.
  lines = []
  workloads.run(str(tmp_path), names=("cnn",), seeds=(0,), peaks=(1e-3,),
                scale=0.004, only=("greedy", "prodigy"), resume=True,
                log=lines.append)
  assert lines[0].startswith("[workloads] cnn: resuming with 2 finished")
  assert [line.split(":")[0] for line in lines[1:]] == [
      "[workloads] cnn prodigy seed 0"]
  resumed = json.loads((tmp_path / "summary.json").read_text())
  (entry,) = resumed["workloads"]
  assert set(entry["results"]) == {"cosine@0.001", "greedy", "prodigy"}
  assert entry["results"]["greedy"] == results["greedy"]


def test_greedy_feeds_smoke(tmp_path):
  """The feeds study at a few steps: both feeds' tables are written, on
  held-out and training loss."""
  from bench import greedy_feeds  # pylint: disable=import-outside-toplevel
  greedy_feeds.main(["--select", "logreg", "--report", "logreg", "--bases",
                     "sgd", "--steps-scale", "0.05", "--seeds", "0",
                     "--out", str(tmp_path)])
  summary = json.loads((tmp_path / "greedy_feeds.json").read_text())
  text = (tmp_path / "greedy_feeds.md").read_text()
  assert "held-out" in text.lower() and "training" in text.lower()
  assert summary["runs"], "no run recorded"


def test_kernel_profile_smoke():
  """The cost study's kernel profile: per-kernel times of a tiny train step,
  their sum first, every time positive."""
  import optax  # pylint: disable=import-outside-toplevel
  from bench import cost  # pylint: disable=import-outside-toplevel
  profile = cost.kernel_profile([("adam", optax.adam(1e-3), "none")],
                                width=8, batch=4, inner=2, calls=1, top=3)
  (total, *kernels), = profile.values()
  assert total[0].startswith("all kernels") and kernels
  assert all(us > 0 for _, us in kernels)
  assert total[1] >= max(us for _, us in kernels)


def test_cost_compiler_options_reach_xla():
  """``--fast-math``'s compiler options are handed to XLA: a valid one
  compiles and times the step, an unknown one is refused by XLA."""
  import optax  # pylint: disable=import-outside-toplevel
  from bench import cost  # pylint: disable=import-outside-toplevel
  rows = [("adam", optax.adam(1e-3), "none")]
  seconds, _, _ = cost.train_step(rows, 8, 4, 2, 1,
                                  {"xla_cpu_enable_fast_math": True})
  assert seconds["adam"] > 0
  with pytest.raises(Exception, match="no_such_xla_option"):
    cost.train_step(rows, 8, 4, 2, 1, {"no_such_xla_option": True})
