"""examples/nmf_digits.py runs end to end and saves its figure."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLE = (pathlib.Path(__file__).resolve().parents[1] / "examples"
           / "nmf_digits.py")


@pytest.mark.slow
def test_nmf_digits_saves_png(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location("nmf_digits", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out = tmp_path / "figure.png"
  results = module.main(["--steps", "30", "--rank", "8", "--out", str(out)])
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
