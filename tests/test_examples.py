"""The GreedyLR examples run end to end (briefly) and learn something."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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
