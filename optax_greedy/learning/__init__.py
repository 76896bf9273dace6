"""Learned learning-rate schedules: policies, environments and their trainer.

:func:`optax_greedy.learned_schedule` applies a *policy*: a tiny MLP that
reads scale-free features of training (loss ratios and slopes, update-norm
ratios, the budget used, its last action) and picks the rate as a fraction
of the largest rate allowed. This package holds everything needed to train
and inspect one:

* :class:`Policy`, :func:`init_policy`, :func:`policy_fraction`,
  :func:`policy_features`, :func:`save_policy` (:func:`load_policy` is also
  ``optax_greedy.load_policy``). A policy file is an ``.npz`` with
  ``version`` (:data:`POLICY_VERSION`), ``features`` (names from
  :data:`KNOWN_FEATURES`, in input order), ``kernel_i``/``bias_i`` per layer
  and ``meta_*`` entries.
* :mod:`optax_greedy.learning.es`: evolution strategies (:func:`es.train_es`,
  :class:`es.ESConfig`).
* :mod:`optax_greedy.learning.nmf_problems`: stochastic NMF problems with
  the rate as a fraction of NMF's stability bound (the ``"nmf"`` policy).
* :mod:`optax_greedy.learning.dnn_problems`: small deep-network training
  problems with the rate as a fraction of a peak rate, rewarded against
  cosine annealing (the ``"dnn"`` policy), split into its problem types,
  data, families, episodes and trainer. Its data sets need scikit-learn
  (``pip install optax_greedy[examples]``).
* :mod:`optax_greedy.learning.stdlib_text`: the one loader of text that
  ships with Python (the standard library's source and docstrings), for the
  environments and the benchmark.

Nothing here is imported by ``import optax_greedy``.
"""

from optax_greedy._features import KNOWN_FEATURES
from optax_greedy._features import policy_features
from optax_greedy._policy import MIN_FRACTION
from optax_greedy._policy import POLICY_VERSION
from optax_greedy._policy import Policy
from optax_greedy._policy import init_policy
from optax_greedy._policy import load_policy
from optax_greedy._policy import policy_config
from optax_greedy._policy import policy_fraction
from optax_greedy._policy import save_policy
from optax_greedy.learning import dnn_problems
from optax_greedy.learning import es
from optax_greedy.learning import nmf_problems
from optax_greedy.learning import stdlib_text
