"""``examples/greedy_lr_tour.ipynb`` runs top to bottom on a CPU.

The notebook is executed with ``nbclient`` in a kernel that runs this very
Python (``sys.executable``): a kernelspec for it is written to a temporary
Jupyter data directory, so the test works in a fresh virtual environment
where only ``pip install -e .[test]`` ran, whatever kernels the machine has.
"""

import json
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

NOTEBOOK = (pathlib.Path(__file__).resolve().parents[1] / "examples" /
            "greedy_lr_tour.ipynb")
KERNEL = "optax-greedy-test"

pytestmark = pytest.mark.slow


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
  """A kernelspec named ``KERNEL`` that starts ``sys.executable``."""
  spec = kernelspec.write_kernel_spec(path=tmp_path / "kernels" / KERNEL)
  argv = json.loads((pathlib.Path(spec) / "kernel.json").read_text())["argv"]
  assert argv[0] == sys.executable
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
  # The kernel inherits the environment: CPU only, and no package index (the
  # install cell must find the package installed and do nothing).
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  return KERNEL


def test_notebook_runs_top_to_bottom(kernel_name, tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      notebook, kernel_name=kernel_name, timeout=300,
      resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError with the cell on any error

  outputs = [out for cell in notebook.cells if cell.cell_type == "code"
             for out in cell.get("outputs", [])]
  text = "".join(out.get("text", "") for out in outputs
                 if out.get("output_type") == "stream")
  images = [out for out in outputs if "image/png" in out.get("data", {})]
  # The training loop, the six-rate sweep and the four contenders printed.
  assert "test accuracy" in text
  assert text.count("initial rate") == 6
  for name in ("Adam, fixed rate", "Adam + GreedyLR", "Adam-HD, global",
               "Adam-HD, per tensor"):
    assert name in text
  # One figure each: loss and rate, the sweep, the comparison.
  assert len(images) == 3
