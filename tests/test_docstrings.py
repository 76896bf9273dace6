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
import re
import sys

import pytest

import optax_greedy
import optax_greedy_lab


def _modules():
  """Every module of the core and of the lab beside it (both ship in the
  wheel)."""
  yield optax_greedy
  yield from (importlib.import_module(info.name) for info in
              pkgutil.walk_packages(optax_greedy.__path__,
                                    prefix="optax_greedy."))
  yield optax_greedy_lab
  yield from (importlib.import_module(info.name) for info in
              pkgutil.walk_packages(optax_greedy_lab.__path__,
                                    prefix="optax_greedy_lab."))


def _public_modules():
  return sorted(module.__name__ for module in _modules()
                if not any(part.startswith("_")
                           for part in module.__name__.split(".")))


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


def _library_docstrings():
  """Every docstring of the installed package: modules, classes, functions
  and methods, private ones included (a wheel user reads them with help())."""
  for module in _modules():
    yield module.__name__, module.__doc__ or ""
    for name, obj in vars(module).items():
      if getattr(obj, "__module__", None) != module.__name__:
        continue
      if inspect.isfunction(obj) or inspect.isclass(obj):
        yield f"{module.__name__}.{name}", obj.__doc__ or ""
        for member_name, member in vars(obj).items() if inspect.isclass(
            obj) else ():
          if inspect.isfunction(member):
            yield f"{module.__name__}.{name}.{member_name}", (
                member.__doc__ or "")


@pytest.mark.parametrize("pattern, what", [
    (r"\bbench[/.]", "a path of the benchmark, which a wheel does not ship"),
    (r"\bexamples/", "a path of the examples, which a wheel does not ship"),
    (r"\d+(\.\d+)?\s?%", "a benchmark percentage (numbers go in the README)"),
])
def test_docstrings_need_nothing_outside_the_wheel(pattern, what):
  found = [name for name, doc in _library_docstrings()
           if re.search(pattern, doc)]
  assert not found, f"{what} in the docstrings of {found}"
