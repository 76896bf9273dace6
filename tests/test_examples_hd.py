"""examples/hd_comparison.py runs end to end and saves its figure."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLE = (pathlib.Path(__file__).resolve().parents[1] / "examples"
           / "hd_comparison.py")


@pytest.mark.slow
def test_hd_comparison_saves_png(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location("hd_comparison", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out = tmp_path / "figure.png"
  results = module.main(["--steps", "12", "--out", str(out)])
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
