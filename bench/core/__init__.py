"""The benchmark's core: what every grid row and study is built from.

* :mod:`bench.core.data`: the data sets (scikit-learn's, the standard
  library's text), one loader each;
* :mod:`bench.core.models`: the Flax building blocks the tasks share;
* :mod:`bench.core.registry`: the controllers, one entry each;
* :mod:`bench.core.loop`: the networks' training loop;
* :mod:`bench.core.nmf_loop`: the NMF loop (the NMF studies');
* :mod:`bench.core.verdict`: compare, tally, time to target;
* :mod:`bench.core.output`: JSON, Markdown tables, figures, the machine.

The core imports ``optax_greedy`` and nothing else of ``bench``.
"""
