"""The contract every public transform of optax_greedy keeps."""

import subprocess
import sys

import pytest

OPTIONAL = ("flax", "orbax", "sklearn", "matplotlib", "tqdm")


def test_import_needs_only_the_core():
  """``import optax_greedy`` imports none of the optional packages."""
  code = ("import sys, optax_greedy; print(' '.join(sorted(name for name in"
          f" {OPTIONAL!r} if name in sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "", f"import optax_greedy imported {out.strip()}"
