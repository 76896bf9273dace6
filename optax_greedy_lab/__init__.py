"""The lab of ``optax_greedy``: where the learned schedules' policies are
trained. A separate package, which ``import optax_greedy`` never imports
(``pip install "optax_greedy[train]"``).

:func:`optax_greedy.learned_schedule` applies a *policy*: a tiny MLP that
reads scale-free features of training (loss ratios and slopes, update-norm
ratios, the budget used, its last action) and picks the rate as a fraction
of the largest rate allowed. The policy itself (its class, reading,
writing and evaluating one) is part of the core, in
:mod:`optax_greedy.policy`; this package holds what trains one:

* :mod:`optax_greedy_lab.es`: evolution strategies (:func:`es.train_es`,
  :class:`es.ESConfig`).
* :mod:`optax_greedy_lab.nmf_problems`: stochastic NMF problems with
  the rate as a fraction of NMF's stability bound (the ``"nmf"`` policy).
* :mod:`optax_greedy_lab.dnn_problems`: small deep-network training
  problems with the rate as a fraction of a peak rate, compared with
  cosine annealing (the ``"dnn"`` policy), split into its problem types,
  data, families, episodes and trainer. Its data sets need scikit-learn
  (``pip install optax_greedy[examples]``).
* :mod:`optax_greedy_lab.stdlib_text`: the one loader of text that
  ships with Python (the standard library's source and docstrings), for the
  environments and the benchmark.

The lab returns raw results (losses, log ratios); whether a result is a win,
a tie or a loss is decided in one place, the benchmark's verdict (its one
tie rule).
"""

from optax_greedy_lab import dnn_problems
from optax_greedy_lab import es
from optax_greedy_lab import nmf_problems
from optax_greedy_lab import stdlib_text
