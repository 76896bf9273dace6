"""The examples in the public API's docstrings run and print what they show.

The public API is every name without a leading underscore in a module
without one (``optax_greedy``, ``optax_greedy.nmf``, ...): their docstrings'
examples run with the globals of the module that defines them, as
``doctest`` itself does.
"""

import doctest
import importlib
import inspect
import pkgutil
import sys

import pytest

import optax_greedy


def _public_modules():
  names = ["optax_greedy"]
  for info in pkgutil.walk_packages(optax_greedy.__path__,
                                    prefix="optax_greedy."):
    if not any(part.startswith("_") for part in info.name.split(".")):
      names.append(info.name)
  return sorted(names)


def _doctests(module_name):
  """The doctests of the module's docstring and of its public names."""
  module = importlib.import_module(module_name)
  finder = doctest.DocTestFinder(recurse=False)
  tests = finder.find(module, module_name)
  for attribute in sorted(vars(module)):
    obj = getattr(module, attribute)
    if attribute.startswith("_") or not (
        inspect.isfunction(obj) or inspect.isclass(obj)):
      continue
    home = sys.modules.get(getattr(obj, "__module__", ""), None)
    if home is None or not home.__name__.startswith("optax_greedy"):
      continue  # re-exported from another package (jax, optax, typing...)
    tests += finder.find(obj, f"{module_name}.{attribute}",
                         globs=vars(home))
  return [test for test in tests if test.examples]


@pytest.mark.parametrize("name", _public_modules())
def test_docstring_examples(name):
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  tests = _doctests(name)
  for test in tests:
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} docstring example(s) failed"
