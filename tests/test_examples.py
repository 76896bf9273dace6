"""The examples run end to end (briefly), learn something, save their figures."""

import importlib.util
import pathlib
import re

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", ["linen_train_state", "nmf_digits",
                                  "sharded_training", "train_digits",
                                  "train_dnn_policy", "vmap_sweep"])
def test_help_shows_every_flag_with_its_default(name, capsys):
  with pytest.raises(SystemExit) as exit_info:
    _load(name).main(["--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  options = re.findall(r"^  (--[\w-]+)", out, re.MULTILINE)
  # Each option's entry: from its line to the next option's.
  entries = re.split(r"^  (?=--)", out, flags=re.MULTILINE)[1:]
  assert [e.split()[0] for e in entries] == options
  for entry in entries:
    if not entry.startswith("--help"):
      assert "(default:" in entry, f"{name}: no default shown in {entry!r}"
      assert len(entry.split()) > 4, f"{name}: no help text in {entry!r}"


@pytest.mark.parametrize("feed", ["train", "validation"])
def test_train_digits(feed, capsys):
  accuracy = _load("train_digits").main(
      ["--steps", "150", "--eval-every", "50", "--feed", feed])
  out = capsys.readouterr().out
  assert "lr " in out and "test accuracy" in out
  assert accuracy > 0.5  # ten classes: chance is 0.1


def test_linen_train_state(capsys):
  accuracy = _load("linen_train_state").main(
      ["--steps", "100", "--log-every", "50"])
  assert "lr " in capsys.readouterr().out
  assert accuracy > 0.5


def test_vmap_sweep_is_one_program_of_independent_runs():
  module = _load("vmap_sweep")
  losses, rates = module.main(["--steps", "40"])
  assert losses.shape == rates.shape == (6, 40)
  # Each run starts at its own initial rate and stays within its bounds.
  initial = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
  np.testing.assert_allclose(rates[:, 0], initial, rtol=0.06)
  assert np.all(rates <= 10 * initial[:, None] * (1 + 1e-5))
  assert np.all(losses[:, -5:].mean(1) < losses[:, :5].mean(1))


@pytest.mark.slow
def test_hd_comparison_saves_png(tmp_path, capsys):
  out = tmp_path / "figure.png"
  results = _load("hd_comparison").main(["--steps", "12", "--out", str(out)])
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert set(results) == {"SGD", "SGD-HD per parameter", "SGD-HD per tensor",
                          "GreedyLR"}
  for losses, rates, _ in results.values():
    assert losses.shape == rates.shape == (12,)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  # Plain SGD keeps its rate; the hypergradient variants move theirs.
  np.testing.assert_allclose(results["SGD"][1], 0.05)
  assert results["SGD-HD per tensor"][1][-1] != 0.05
  assert "saved" in capsys.readouterr().out


@pytest.mark.slow
def test_nmf_digits_saves_png(tmp_path, capsys):
  out = tmp_path / "figure.png"
  results = _load("nmf_digits").main(["--steps", "30", "--rank", "8", "--out", str(out)])
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert set(results) == {"constant 3x bound", "constant at bound", "cosine",
                          "greedy_lr", "greedy_lr + stability_clip"}
  for errors, rates in results.values():
    assert errors.shape == (4,) and rates.shape == (30,)
  # Three times the bound fails within 30 steps: the error grows past 1.
  assert not errors_below(results["constant 3x bound"][0][-1], 1.0)
  # Clipped from 10x the bound, the rate stays under 0.9x each batch's
  # bound and the error falls like the constant rate at the bound.
  clipped_errors, clipped_rates = results["greedy_lr + stability_clip"]
  assert errors_below(clipped_errors[-1], 0.9 * clipped_errors[0])
  assert np.all(clipped_rates < 10 * results["constant at bound"][1][0])
  printed = capsys.readouterr().out
  assert "saved" in printed and "failed" in printed


def errors_below(value, limit):
  return bool(np.isfinite(value) and value < limit)


_TINY_DNN = ["--iterations", "2", "--pairs", "2", "--problems", "1",
             "--max-steps", "8", "--min-steps", "4", "--families",
             "mlp_tabular", "--baseline-peaks", "0.5", "1"]


def test_train_dnn_policy_tiny_run_resumes_and_records_its_config(
    tmp_path, capsys):
  import optax_greedy  # pylint: disable=g-import-not-at-top
  from optax_greedy import policy as policy_lib  # pylint: disable=g-import-not-at-top
  module = _load("train_dnn_policy")
  out = tmp_path / "p.npz"
  module.main(_TINY_DNN + ["--out", str(out)])
  first = optax_greedy.load_policy(out)
  assert first.envelope == (0.05, 0.2, "linear")
  config = policy_lib.policy_config(out)
  assert config["env"]["families"] == ["mlp_tabular"]
  assert config["env"]["baseline_peaks"] == [0.5, 1.0]
  assert config["es"]["iterations"] == 2 and config["seed"] == 0
  assert config["envelope"] == [0.05, 0.2, "linear"]
  # Resuming the finished 2-update run for 3 updates runs only the third
  # (the exactness of a resumed run is tests/test_learned.py's).
  module.main(_TINY_DNN[:1] + ["3"] + _TINY_DNN[2:]
              + ["--out", str(out), "--resume"])
  printed = capsys.readouterr().out
  assert "resumed from" in printed and "iter    2" in printed
  assert "iter    1" not in printed.split("resumed from")[1]
  assert policy_lib.policy_config(out)["es"]["iterations"] == 3
  with pytest.raises(ValueError, match=r"p_state.npz: written by a run of"
                     r" config .*; expected .*\"seed\": 1"):
    module.main(_TINY_DNN + ["--out", str(out), "--resume", "--seed", "1"])
