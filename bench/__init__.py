"""The benchmark of ``optax_greedy``: ``python -m bench --help``.

Layers, each importing only the ones below it: :mod:`bench.core` (data,
registry, loop, verdict, output), :mod:`bench.grid` (the many-task
win/tie/loss suite), :mod:`bench.studies` (one question each), and on top
:mod:`bench.presets` and the entry point (``bench/__main__.py``).
"""
