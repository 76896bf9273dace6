"""The studies: one question each, built on the core and the grid.

* :mod:`bench.studies.workloads`: two workloads of thousands of steps;
* :mod:`bench.studies.cost`: what a controller costs against Adam;
* :mod:`bench.studies.hd_defaults`: hypergradient descent's default beta;
* :mod:`bench.studies.greedy_feeds`: which loss GreedyLR should observe;
* :mod:`bench.studies.nmf`: schedules for stochastic NMF;
* :mod:`bench.studies.learned_nmf`: the learned NMF schedule;
* :mod:`bench.studies.dnn_policy`: the learned deep-network schedule.

Studies import :mod:`bench.grid` and :mod:`bench.core`; nothing below them
imports a study.
"""
