"""The examples in the package's docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import optax_greedy

MODULES = sorted(
    info.name for info in pkgutil.iter_modules(
        optax_greedy.__path__, prefix="optax_greedy."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.failed == 0, f"{result.failed} docstring example(s) failed"
