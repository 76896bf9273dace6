"""Smoke tests of the benchmark: every ``python -m bench <command>`` runs in
a tiny configuration and writes well-formed results (structure and
ranges, not the numbers; the quick preset's numbers are checked by
``python -m bench check-quick``)."""

import dataclasses
import json
import math
import pathlib
import shutil
import sys

import jax
import numpy as np
import optax
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

# bench/ lives next to the package, not inside it: import it from the root.
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# pylint: disable=wrong-import-position
import flax.linen as nn
from bench import __main__ as cli
from bench import presets
from bench.core import data
from bench.core import loop as L
from bench.core import registry as R
from bench.core import verdict
from bench.grid import reference
from bench.grid import run as G
from bench.grid import tasks as T
from bench.studies import cost
from bench.studies import hd_defaults
from bench.studies import learned_nmf
from bench.core import workload
from bench.studies import workloads
# pylint: enable=wrong-import-position

OUTCOMES = {"win", "tie", "loss"}


def _reject_constant(name):
  raise ValueError(f"summary.json contains {name}, which is not JSON")


def _json(path):
  return json.loads(path.read_text(encoding="utf-8"),
                    parse_constant=_reject_constant)


def test_a_missing_extra_is_named(monkeypatch, tmp_path):
  """Without the [bench] extra the entry point names it, before importing
  anything that needs it."""
  monkeypatch.setattr(cli, "BENCH_EXTRA", ("flax", "no_such_module_xyz"))
  with pytest.raises(SystemExit, match=r"needs the \[bench\] extra, and"
                     r" no_such_module_xyz is not installed: pip install"):
    cli.main(["tiny", "--out", str(tmp_path), "--no-progress"])
  assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  assert cli.main(["tiny", "--out", str(out), "--no-progress"]) == 0
  return out


@pytest.fixture(scope="module")
def summary(out_dir):
  return _json(out_dir / "summary.json")


# ------------------------------------------------------- the entry point ---


def test_cli_lists_every_command(capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(["--help"])
  assert info.value.code == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in out
  assert "min" in out


@pytest.mark.parametrize("argv, words", [
    (["quick", "--only", "charlm", "--out", "x"], ["charlm", "rosenbrock"]),
    (["frob"], ["frob", "workloads", "dnn-policy"]),
    (["workloads", "--out", "x", "--size", "tpu"], ["tpu", "gpu"]),
    (["greedy-feeds", "--bases", "lion"], ["lion", "momentum"]),
])
def test_bad_arguments_are_refused_at_once(capsys, argv, words):
  with pytest.raises(SystemExit) as info:
    cli.main(argv)
  assert info.value.code == 2
  err = capsys.readouterr().err
  for word in words:
    assert word in err


def test_cli_names_match_the_modules():
  assert cli.TASKS == tuple(T.FACTORIES)
  assert cli.WORKLOADS == tuple(workloads.WORKLOADS)
  assert cli.REPORT_WORKLOADS == workloads.WL.REPORT
  assert cli.LM_SIZES == tuple(workloads.LM_SIZES)
  assert cli.SWEEP_KEYS == tuple(workloads.SWEEP_KEYS.values())
  assert cli.LEARNED_NMF_PROBLEMS == tuple(learned_nmf.PROBLEMS)
  assert cli.BASES == R.BASES
  for name, tasks in cli.PRESET_TASKS.items():
    assert tasks == tuple(presets.PRESETS[name]["grid"].steps)


# ---------------------------------------------------------- the presets ---


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
  assert {r["schedule"] for r in rows} == set(R.FIXED_SCHEDULES)
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


def test_held_out_and_training_tables(summary):
  assert "held-out" in summary["loss_compared"]["win_tables"]
  train = summary["train_win_tables"]["greedy"]
  assert train["wins"] + train["ties"] + train["losses"] == train["n"] > 0
  assert isinstance(summary["negative_flips"], list)


def test_reuse_rebuilds_the_report(out_dir, tmp_path):
  """``--reuse`` rebuilds the report from the grid cache, nothing run."""
  for name in (presets.CACHE, "summary.json"):
    shutil.copy(out_dir / name, tmp_path / name)
  assert cli.main(["tiny", "--out", str(tmp_path), "--reuse"]) == 0
  again = _json(tmp_path / "summary.json")
  assert again["win_tables"] == _json(out_dir / "summary.json")["win_tables"]


def test_quick_and_full_presets_are_well_formed():
  """Every program of the quick and full presets can be listed: each
  controller runs somewhere, the ablations only where asked."""
  for name in ("quick", "full"):
    config = presets.PRESETS[name]["grid"]
    todo = G.programs(config)
    ran = {ctrl.name for _, ctrl, _, _ in todo}
    assert ran == {c.name for c in R.in_scope(R.GRID)}
    ablated = {task for task, ctrl, _, labelled in todo
               if labelled and ctrl.plain}
    assert ablated == set(config.ablations)


def test_check_quick_reproduces_a_subset(tmp_path):
  """The quick preset's rosenbrock runs of GreedyLR and the fixed schedules
  reproduce the recorded reference (``check-quick`` on a subset)."""
  quick = presets.PRESETS["quick"]["grid"]
  config = dataclasses.replace(
      quick, steps={"rosenbrock": quick.steps["rosenbrock"]},
      controllers=("greedy", "fixed"))
  records, _, skipped = G.run_grid(config, progress=False)
  assert not skipped
  new = reference.record(records, {t: {} for t in reference.TABLES}, None)
  old = json.loads(pathlib.Path(reference.REFERENCE).read_text())
  assert len(new["runs"]) == 3 * 3 * 6
  assert reference.check(new, old, tables=False) == []
  # A moved number is reported.
  key = sorted(new["runs"])[0]
  new["runs"][key]["final"][0] *= 1 + 1e-4
  assert reference.check(new, old, tables=False) == [
      f"{key} final: {new['runs'][key]['final'][0]!r} vs reference "
      f"{old['runs'][key]['final'][0]!r}"]


# ----------------------------------------------------------- the verdict ---


def test_verdict_is_paired():
  """Seeds are paired: better on every seed wins even when the seeds differ
  much among themselves; seeds that disagree tie; one seed: the 1% rule."""
  assert verdict.compare([1.0, 5.0, 9.0], [1.1, 5.1, 9.1]) == ("win", None)
  assert verdict.compare([1.0, 5.2, 9.0], [1.1, 5.1, 9.1]) == ("tie", "CI")
  assert verdict.compare([1.0], [1.005]) == ("tie", "1%")
  assert verdict.compare([1.0], [1.1]) == ("win", None)
  inf = float("inf")
  assert verdict.compare([inf, 1.0], [2.0, 2.0]) == ("loss", None)
  assert verdict.compare([inf, 1.0], [float("nan"), 2.0]) == (
      "tie", "both diverged")


def test_paired_interval_is_the_exact_bootstrap():
  """Up to 6 seeds the interval is the exact percentile interval of the
  bootstrap distribution ([min, max] for 2 or 3 seeds); above, scipy's."""
  assert verdict.paired_interval([0.1, -0.05, 0.2]) == pytest.approx(
      (-0.05, 0.2))
  low, high = verdict.paired_interval([1.0, 2.0, 3.0, 4.0, 5.0])
  assert 1.0 < low < 3.0 < high < 5.0
  low, high = verdict.paired_interval(np.arange(8.0))
  assert 0.0 < low < 3.5 < high < 7.0


# -------------------------------------------------------------- the loop ---


def test_loop_vmaps_over_rate_and_seed():
  """One program runs every (rate, seed) pair; each run equals the same
  run alone."""
  task = T.quadratic(20)
  ctrl = R.get("greedy")
  context = R.Context(steps_per_eval=5)

  def run(rate, params, stream):
    tx = ctrl.build("sgd", rate, 20, context)
    problem = L.Problem(
        lambda p, d, s: task.train_loss(p, d, s, 0.1),
        lambda p, d: (task.eval_loss(p, d, 0.1), ()))
    return L.loop(problem, tx, ctrl.feed, 5).run({}, params, stream).evals

  rates = np.asarray([0.1, 0.3, 0.1, 0.3], np.float32)
  seeds = [0, 0, 1, 1]
  params = np.stack([task.init(jax.random.PRNGKey(s)) for s in seeds])
  streams = np.stack([task.stream(np.random.default_rng(s), 20)
                      for s in seeds])
  together = jax.jit(jax.vmap(run))(rates, params, streams)
  assert together.shape == (4, 5)
  alone = jax.jit(run)(rates[3], params[3], streams[3])
  np.testing.assert_allclose(together[3], alone, rtol=1e-6)


def test_val_feed_observes_each_evaluation_once():
  kwargs = [L.feed_args("val", i, 5, 1.0, None, 2.0, None)["observe"]
            for i in range(12)]
  assert [bool(x) for x in kwargs] == [i in (5, 10) for i in range(12)]
  with pytest.raises(ValueError, match="feed"):
    L.feed_args("sometimes", 0, 5, 1.0, None, 2.0, None)


# ------------------------------------------------------------ the studies ---


def test_workloads_smoke(tmp_path):
  """The realistic tier at a few steps: one row besides the cosine grid,
  two seeds; the summary gets a well-formed "workloads" section;
  ``--reuse`` keeps the finished runs and runs only the missing row (here
  with ``--vmap``)."""
  out = str(tmp_path)
  assert cli.main(["workloads", "--out", out, "--only", "cnn", "--rows",
                   "greedy", "--seeds", "0", "1", "--peaks", "1e-3",
                   "--steps-scale", "0.004", "--no-sweep"]) == 0
  summary = _json(tmp_path / "summary.json")
  (entry,) = summary["workloads"]
  assert entry["name"] == "cnn" and entry["steps"] == 4
  assert entry["n_params"] > 100_000
  results = entry["results"]
  assert set(results) == {"cosine@0.001", "greedy"}
  base = results["cosine@0.001"]
  assert base["seeds"] == [0, 1]
  assert base["negative_flip_rate_vs_tuned"] == 0.0
  assert base["steps_to_target"] == 4
  flip = results["greedy"]["negative_flip_rate_vs_tuned"]
  assert 0.0 <= flip <= 1.0
  runs = _json(tmp_path / "workloads" / "workloads.json")["workloads"][0][
      "runs"]["greedy"]
  assert runs["0"]["curve"]["test_loss"] != runs["1"]["curve"]["test_loss"]
  assert (tmp_path / "workloads" / "workloads.md").exists()

  lines = []
  workloads.run(out, names=("cnn",), seeds=(0, 1), peaks=(1e-3,),
                scale=0.004, only=("greedy", "prodigy"), resume=True,
                vmap=True, sweep=False, log=lines.append)
  assert lines[0].startswith("[workloads] cnn: resuming with 4 finished")
  assert [line.split(":")[0] for line in lines[1:]] == [
      "[workloads] cnn prodigy seed 0", "[workloads] cnn prodigy seed 1"]
  (entry,) = _json(tmp_path / "summary.json")["workloads"]
  assert set(entry["results"]) == {"cosine@0.001", "greedy", "prodigy"}
  assert entry["results"]["greedy"] == results["greedy"]


def test_workloads_sweep_smoke(tmp_path):
  """The rate-sensitivity sweep at a few steps, vmapped: every multiplier of
  the tuned peak for a rated row (three seeds at x1/3..x3, two at the
  ends), one run of a rate-free row; summary.json's sweep section, the
  table, what each row does from x10, and the figure; a rate trace for
  GreedyLR."""
  out = str(tmp_path)
  assert cli.main(["workloads", "--out", out, "--only", "cnn", "--rows",
                   "greedy_budget", "--seeds", "0", "1", "2", "--peaks",
                   "1e-3",
                   "3e-3", "--steps-scale", "0.004", "--vmap",
                   "--sweep-rows", "cosine", "greedy", "prodigy"]) == 0
  (entry,) = _json(tmp_path / "summary.json")["workloads"]
  mults = ["0.1", "0.333", "1", "3", "10"]
  tuned = entry["tuned_peak"]
  assert tuned in (1e-3, 3e-3)
  base = f"cosine@{tuned:g}"
  assert entry["tuned_cosine_test_loss"] == entry["results"][base][
      "test_loss_mean"]
  sweep, counts = entry["sweep"], entry["sweep_runs"]
  assert set(sweep) == {"cosine", "greedy", "prodigy"}
  # Prodigy's learning_rate is the multiplier it documents: every point.
  assert list(sweep["greedy"]) == mults and list(sweep["prodigy"]) == mults
  assert [counts["greedy"][m]["seeds"] for m in mults] == [2, 3, 3, 3, 2]
  # Intervals where two seeds or more ran.
  ci = entry["sweep_ci"]["greedy"]
  assert set(ci) == set(mults)
  assert all(low <= high for low, high in ci.values())
  # x1 of a sweep row is the main table's run at the tuned peak.
  assert sweep["greedy"]["1"] == entry["results"]["greedy_budget"][
      "test_loss_mean"]
  assert sweep["cosine"]["1"] == entry["tuned_cosine_test_loss"]
  runs = _json(tmp_path / "workloads" / "workloads.json")["workloads"][0][
      "runs"]
  rate = runs["greedy@x3"]["0"]["curve"]["rate"]
  assert len(rate) == entry["steps"] // entry["eval_every"]
  assert np.all(np.isfinite(rate)) and max(rate) <= 3 * tuned * (1 + 1e-6)
  md = (tmp_path / "workloads" / "workloads.md").read_text()
  assert "#### Rate sensitivity: cnn" in md
  x10 = md[md.index("##### Started at x10: cnn"):]
  greedy = next(line for line in x10.splitlines()
                if line.startswith("| greedy |")).strip("| ").split(" | ")
  assert greedy[2].endswith(" of 2")
  # The applied rate, in units of the tuned peak, never above the start.
  assert all(0 < float(cell) <= 10 * (1 + 1e-6) for cell in greedy[3:6])
  assert (tmp_path / "workloads" / "sweep.png").exists()

  # --reuse reads a diverged run (its losses stored as null: JSON has no
  # NaN) back as lost and runs nothing again; another workload's entry
  # (here a copy named "other"), whose diverged row's infinite mean JSON
  # stored as null, is reported too.
  path = tmp_path / "workloads" / "workloads.json"
  doc = _json(path)
  doc["workloads"][0]["runs"]["greedy@x10"]["0"]["curve"]["test_loss"][
      -1] = None
  other = json.loads(json.dumps({**doc["workloads"][0], "name": "other"}))
  other["sweep"]["greedy"]["10"] = None
  doc["workloads"].append(other)
  path.write_text(json.dumps(doc))
  correct = dict(np.load(tmp_path / "workloads" / "correct.npz"))
  np.savez(tmp_path / "workloads" / "correct.npz", **correct, **{
      "other/" + k.split("/", 1)[1]: v for k, v in correct.items()})
  lines = []
  workloads.run(out, names=("cnn",), seeds=(0, 1, 2), peaks=(1e-3, 3e-3),
                scale=0.004, only=("greedy_budget",), resume=True,
                sweep_only=("cosine", "greedy", "prodigy"), log=lines.append)
  assert len(lines) == 1 and "resuming" in lines[0]
  entries = _json(tmp_path / "summary.json")["workloads"]
  assert [e["name"] for e in entries] == ["other", "cnn"]
  assert all(e["sweep_runs"]["greedy"]["10"]["lost"] >= 1 for e in entries)
  md = (tmp_path / "workloads" / "workloads.md").read_text()
  assert "#### Rate sensitivity: other" in md


def test_workloads_grid_is_extended_until_its_best_peak_is_interior(
    tmp_path, monkeypatch):
  """A workload whose own grid has its best point (by validation loss) at
  the upper edge gets a peak 3x higher, run and recorded, and the tuned
  peak is then interior; ``grid`` in summary.json lists every peak's
  validation loss."""
  from bench import workloads as registry  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(registry.digits_cnn, "PEAKS", (1e-4, 3e-4, 1e-3))
  out = str(tmp_path)
  workloads.run(out, names=("cnn",), seeds=(0,), scale=0.01, only=(),
                sweep=False, log=lambda _: None)
  (entry,) = _json(tmp_path / "summary.json")["workloads"]
  peaks = entry["peaks"]
  assert peaks[:3] == [1e-4, 3e-4, 1e-3] and len(peaks) > 3
  assert min(peaks) < entry["tuned_peak"] < max(peaks)
  assert set(entry["grid"]) == {f"{p:g}" for p in peaks}
  assert entry["tuned_peak"] == min(peaks, key=lambda p: entry["grid"][
      f"{p:g}"])


def test_mnist1d_workload_shapes_and_splits():
  """MNIST-1D: 40-sample signals, ten classes, the splits in the ratio
  40k / 5k / 5k and disjoint, a model of over 100k parameters."""
  from bench.workloads import mnist1d  # pylint: disable=import-outside-toplevel
  w = mnist1d.make(steps=4, eval_every=2, examples=1000)
  (xt, yt), (xv, yv), (xs, ys) = w.train, w.valid, w.test
  assert (len(yt), len(yv), len(ys)) == (800, 100, 100)
  assert xt.shape[1:] == (40,) and set(np.unique(yt)) == set(range(10))
  assert not np.any(np.all(xt[:, None] == xs[None], axis=-1))
  n = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
      w.init, jax.random.PRNGKey(0))))
  assert n > 100_000
  loss, correct = w.loss(w.init(jax.random.PRNGKey(0)), xv, yv)
  assert np.isfinite(loss) and correct.shape == (100,)


def test_probe_defaults_smoke(tmp_path):
  """The probe study at a few steps, one candidate beside the envelope: a
  second call with another candidate reuses the first call's rows."""
  from bench.studies import probe_defaults  # pylint: disable=import-outside-toplevel
  model = {"dim": 8, "heads": 1, "layers": 1}
  name = next(iter(probe_defaults.CANDIDATES))
  doc = probe_defaults.study(tmp_path, steps=4, candidates=("wsd", name),
                             smoke=model, log=lambda _: None)
  assert doc["chosen"] == name
  assert set(doc["ratios"]) == {"warmup-cosine", "wsd", name}
  assert list(doc["ratios"][name]) == list(probe_defaults.MULTIPLIERS)
  lines = []
  doc = probe_defaults.study(tmp_path, steps=4, candidates=("mechanic",),
                             smoke=model, log=lines.append)
  assert set(doc["ratios"]) == {"warmup-cosine", "wsd", name, "mechanic"}
  assert not any(line.startswith(f"[probe-defaults] {name}:")
                 for line in lines)


def test_probe_defaults_choice_over_both_selection_workloads(tmp_path):
  """The choice counts a candidate only where it ran on every selection
  workload, by its worst ratio over all of them."""
  from bench.studies import probe_defaults  # pylint: disable=import-outside-toplevel
  names = list(probe_defaults.CANDIDATES)[:2]
  probe_defaults.study(tmp_path, steps=4, candidates=("wsd", *names),
                       smoke={"dim": 8, "heads": 1, "layers": 1},
                       log=lambda _: None)
  select = probe_defaults.study(tmp_path, "mnist1d_select", steps=4,
                                candidates=("wsd", names[0]), smoke=500,
                                log=lambda _: None)
  assert select["workload"] == "mnist1d_select"
  doc = probe_defaults.combined(tmp_path, log=lambda _: None)
  assert set(doc["overall"]) == {"wsd", names[0]}
  assert doc["chosen"] == names[0]
  assert doc["overall"][names[0]] == max(doc["worst"][names[0]].values())
  assert (tmp_path / "probe_defaults" / "selection.md").exists()


def test_budget_defaults_smoke(tmp_path):
  """The budget-defaults study at 3 steps, one candidate: its table names
  a chosen candidate among those run."""
  from bench.studies import budget_defaults  # pylint: disable=import-outside-toplevel
  name = next(iter(budget_defaults.CANDIDATES))
  doc = budget_defaults.study(tmp_path, steps=3, candidates=(name,),
                              model={"dim": 8, "heads": 1, "layers": 1},
                              log=lambda _: None)
  assert doc["chosen"] == name and set(doc["ratios"]) == {
      "warmup-cosine", "wsd", name}
  text = (tmp_path / "budget_defaults" / "budget_defaults.md").read_text()
  assert f"**{name}**" in text


def _linear_workload(steps=8):
  """A linear classifier on 200 digits: a workload that compiles fast."""
  train, valid, test = data.digits_images((200, 50, 50))
  module = nn.Dense(10)

  def loss(params, inputs, targets):
    logits = module.apply(params, inputs.reshape(len(inputs), -1))
    correct = jax.numpy.argmax(logits, -1) == targets
    return optax.losses.softmax_cross_entropy_with_integer_labels(
        logits, targets).mean(), correct

  return workload.Workload(
      "linear", lambda key: module.init(key, np.zeros((1, 64), np.float32)),
      loss, lambda split, idx: (split[0][idx], split[1][idx]), train, valid,
      test, lambda rng, n: rng.integers(0, 200, (n, 16), dtype=np.int32),
      steps, eval_every=4)


def test_workloads_vmapped_runs_match_one_by_one():
  """``vmap=True`` runs the seeds of a row as one program, with the same
  losses as run by run."""
  w = _linear_workload()
  row = workloads.rows(("greedy_val",))[0]
  jitted = workloads.programs(w, row)
  alone = [workloads.train(w, jitted, 0.1, s) for s in (0, 1)]
  together = workloads.train_vmapped(w, row, [0.1, 0.1], [0, 1])
  for a, b in zip(alone, together):
    for key in ("val_loss", "test_loss", "train_loss"):
      np.testing.assert_allclose(a["curve"][key], b["curve"][key],
                                 rtol=1e-5)
    np.testing.assert_array_equal(a["correct"], b["correct"])


def test_workloads_step_cost_smoke():
  """The train-step cost table on a tiny workload: every row timed
  against Adam through the loop's block (the probe row fed another
  minibatch), ratios positive and Adam's exactly 1."""
  result = workloads.step_cost(_linear_workload(), inner=4, rounds=1)
  assert set(result["seconds_per_step"]) == set(
      workloads.step_cost_rows(8))
  assert "greedy_adam[total_steps] + rate_probe" in result["vs_adam"]
  assert result["vs_adam"]["adam"] == 1.0
  assert all(v > 0 for v in result["vs_adam"].values())


def test_workloads_lm_sizes():
  """The LM's cpu size is the committed 1.07M-parameter model, its gpu size
  about 4.9M parameters (shapes only, nothing trained)."""
  sizes = {}
  for size in cli.LM_SIZES:
    w = workloads.make("lm", size)
    sizes[size] = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
        w.init, jax.random.PRNGKey(0))))
  assert sizes["cpu"] == 1_065_600
  assert 4.5e6 < sizes["gpu"] < 5.3e6


def test_greedy_feeds_smoke(tmp_path):
  """The feeds study at a few steps: both feeds' tables are written, on
  held-out and training loss."""
  assert cli.main(["greedy-feeds", "--select", "logreg", "--report",
                   "logreg", "--bases", "sgd", "--steps-scale", "0.05",
                   "--seeds", "0", "--out", str(tmp_path)]) == 0
  summary = _json(tmp_path / "greedy_feeds.json")
  text = (tmp_path / "greedy_feeds.md").read_text()
  assert "held-out" in text.lower() and "training" in text.lower()
  assert summary["runs"], "no run recorded"


def test_hd_defaults_smoke(tmp_path):
  """The hypergradient study re-tallies saved final losses (``--reuse``):
  one beta of the sweep per granularity, a table of every row."""
  committed = ROOT / "bench" / "results" / "hd" / "hd_defaults.json"
  shutil.copy(committed, tmp_path / "hd_defaults.json")
  assert cli.main(["hd-defaults", "--out", str(tmp_path), "--reuse"]) == 0
  again = _json(tmp_path / "hd_defaults.json")
  assert set(again["chosen"]) == set(hd_defaults.GRANULARITIES)
  assert set(again["chosen"].values()) <= set(hd_defaults.BETAS)
  assert "hd_paper_global" in (tmp_path / "hd_defaults.md").read_text()


def test_nmf_smoke(tmp_path):
  assert cli.main(["nmf", "--quick", "--seeds", "1", "--steps", "40",
                   "--out", str(tmp_path)]) == 0
  result = _json(tmp_path / "nmf.json")
  assert "greedy_lr" in result["rows"] and result["config"]["steps"] == 40


def test_learned_nmf_smoke(tmp_path):
  assert cli.main(["learned-nmf", "--quick", "--seeds", "1", "--steps", "6",
                   "--problems", "cancer", "--out", str(tmp_path)]) == 0
  result = _json(tmp_path / "learned.json")
  assert set(result["problems"]) and result["transfer"]["rows"]


def test_learned_nmf_keeps_each_step_budget(monkeypatch):
  # Without --steps, each NMF problem keeps its own budget and the MLP
  # transfer its own (600 steps in full mode): one must not leak into the
  # other. The runners are replaced by recorders, so nothing trains.
  from bench.studies import learned_nmf  # pylint: disable=g-import-not-at-top
  budgets = {}

  def run_problem(V, rank, batch, steps, seeds, policy):
    del V, rank, batch, policy
    budgets.setdefault("nmf", []).append(steps)
    return np.ones((1, len(seeds), steps)), None, 0.0

  def transfer(policy, seeds, quick, steps=None):
    del policy, seeds, quick
    budgets["transfer"] = steps
    return {"task": "", "seconds": 0.0, "rows": {}}

  monkeypatch.setattr(learned_nmf, "_run_problem", run_problem)
  monkeypatch.setattr(learned_nmf, "_summary", lambda errors: {})
  monkeypatch.setattr(learned_nmf, "_transfer", transfer)
  learned_nmf.run(quick=False, sets=("cancer",))
  assert budgets == {"nmf": [200], "transfer": None}


def test_dnn_policy_smoke(tmp_path):
  assert cli.main(["dnn-policy", "--seeds", "1", "--families",
                   "mlp_breast_cancer", "--directions", "adam",
                   "--no-in-distribution", "--out", str(tmp_path)]) == 0
  report = _json(tmp_path / "dnn_policy.json")
  counts = report["summary"]["held_out"]["mlp_breast_cancer"]
  assert sum(counts["val_vs_cosine"]) == 2  # 2 peaks, 1 seed


def test_cost_smoke(tmp_path):
  assert cli.main(["cost", "--out", str(tmp_path), "--rounds", "1",
                   "--params", "2000", "--width", "8", "--inner", "2"]) == 0
  result = _json(tmp_path / "cost.json")
  assert result["bare_update"]["ratio"]["adam"] == 1.0


def test_kernel_profile_smoke():
  """The cost study's kernel profile: per-kernel times of a tiny train step,
  their sum first, every time positive."""
  profile = cost.kernel_profile([("adam", optax.adam(1e-3), "none")],
                                width=8, batch=4, inner=2, calls=1, top=3)
  (total, *kernels), = profile.values()
  assert total[0].startswith("all kernels") and kernels
  assert all(us > 0 for _, us in kernels)
  assert total[1] >= max(us for _, us in kernels)


def test_cost_compiler_options_reach_xla():
  """``--fast-math``'s compiler options are handed to XLA: a valid one
  compiles and times the step, an unknown one is refused by XLA."""
  rows = [("adam", optax.adam(1e-3), "none")]
  seconds, _, _ = cost.train_step(rows, 8, 4, 2, 1,
                                  {"xla_cpu_enable_fast_math": True})
  assert seconds["adam"] > 0
  with pytest.raises(Exception, match="no_such_xla_option"):
    cost.train_step(rows, 8, 4, 2, 1, {"no_such_xla_option": True})


def test_probe_defaults_pools_disjoint_seed_runs(tmp_path):
  """A row's ratio pools its runs by seed count and the cosine's loss
  (mean loss over all seeds over the cosine's mean: here (3*2*1.2 +
  3*1*1.0) / (3*2 + 3*1) = 1.1333); the seed-0 run counts only for a row
  no run on several seeds has; runs sharing a seed are refused."""
  from bench.studies import probe_defaults  # pylint: disable=import-outside-toplevel
  mults = list(probe_defaults.MULTIPLIERS)

  def run(name, seeds, tuned, rows):
    doc = {"seeds": seeds, "tuned_test_loss": tuned,
           "ratios": {n: dict.fromkeys(mults, r) for n, r in rows.items()},
           "worst": dict(rows)}
    (tmp_path / name).write_text(json.dumps(doc))
    return tmp_path / name

  paths = [run("a.json", [0], 5.0, {"x": 9.0, "y": 0.9}),
           run("b.json", [0, 1, 2], 2.0, {"x": 1.2}),
           run("c.json", [3, 4, 5], 1.0, {"x": 1.0})]
  rows = probe_defaults.pooled(paths)
  assert rows["x"]["seeds"] == [0, 1, 2, 3, 4, 5]
  assert rows["x"]["ratios"]["1"] == pytest.approx(10.2 / 9)
  assert rows["y"] == {"ratios": dict.fromkeys(mults, 0.9), "seeds": [0]}
  paths.append(run("d.json", [2, 6], 1.0, {"x": 1.0}))
  with pytest.raises(ValueError, match="d.json.*seed 2"):
    probe_defaults.pooled(paths)
