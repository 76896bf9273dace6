"""The grid: many small tasks, every controller, win/tie/loss against the
fixed schedules.

* :mod:`bench.grid.tasks`: the tasks (digits, standard-library text,
  noisy analytic functions);
* :mod:`bench.grid.programs`: one compiled program per (task, controller,
  base), every option, rate and seed under ``jax.vmap`` of the core loop;
* :mod:`bench.grid.run`: which programs a configuration runs, and running
  them;
* :mod:`bench.grid.analysis`: records, comparisons, tables, speed;
* :mod:`bench.grid.report`: ``summary.md``, ``summary.json``, figures;
* :mod:`bench.grid.reference`: the quick preset's recorded numbers.

The grid imports :mod:`bench.core` and ``optax_greedy``, never a study.
"""
