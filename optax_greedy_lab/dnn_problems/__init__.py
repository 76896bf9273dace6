r"""A JAX-native environment of small deep-network training problems.

A *problem* (:class:`DNNProblem`) is one training run: a network of a
family (:class:`Family`), a data set split into training and validation
rows, a minibatch size, a step budget, a peak rate, an initialisation scale
and a direction (Adam, or SGD with momentum 0.9 as ``optax.trace``). An
*episode* (:func:`run_episode`) trains the network for the budget with the
rate set by a rate transform -- :func:`optax_greedy.learned_schedule` with a
policy, or a baseline schedule -- and reports the final training and
validation losses. Everything is ``jit``-compiled and ``vmap``-ped: one ES
update runs ``population x problems`` episodes of each family as one
program, problems of a family padded to one shape (unused units, channels,
classes, rows and steps are masked, so a padded problem trains exactly as
the smaller one).

**Families** (:mod:`.families`; :data:`FAMILIES` by name,
:func:`training_families`; :attr:`EnvConfig.families` names those a policy
trains on):

* ``mlp``: 1-3 hidden layers of width 8-32, ReLU or tanh, on
  scikit-learn's digits, iris or wine (standardised), or on a synthetic
  teacher-student task (a random MLP labels Gaussian inputs of dimension
  4-64 for 2-10 classes, or gives 1-4 regression targets);
  ``mlp_tabular``: the same without digits;
* ``cnn``: two 3x3 convolutions (2-8 channels) and a dense head on 8x8
  images: digits, or Gaussian images labelled by a random teacher CNN;
  ``cnn_teacher``: the teacher's images only;
* ``char_lm``: tiny causal transformer language models (1-2 blocks, width
  16, context 16) predicting every next byte of the source files inside
  the standard library's packages (never its top-level files).

Every problem draws its rows used (a subset), a label-noise rate (uniform
below :attr:`EnvConfig.label_noise`; none for ``char_lm``), a minibatch
size (8-32), a budget (``min_budget``..``max_steps``), a peak rate (Adam
``[1e-3, 3e-2]``, momentum ``[1e-2, 3e-1]``, log-uniform) and an
initialisation scale (``x [0.5, 2]``). A quarter of the rows are
validation rows.

:func:`held_out_families` are never trained on: a next-character MLP and a
tiny attention block on the docstrings of Python's standard library, and
MLPs on scikit-learn's breast-cancer data.

**Observation**: the scale-free features of :data:`FEATURES` (see
:func:`optax_greedy.policy.policy_features`), from the minibatch loss and
the direction's norm. **Action**: the fraction of the peak rate, applied
inside :attr:`EnvConfig.envelope` (the step budget's ramp and decay, or
none).

**Reward** (:func:`fitness`): on each problem, the policy's episode is
compared with cosine annealing -- at the same peak rate, or tuned: the best
over the multiples :attr:`EnvConfig.baseline_peaks` of it -- on the same
initialisation and minibatches (common random numbers):

.. math::

  d_{\text{val}} = \log L^{\cos}_{\text{val}} - \log L^{\pi}_{\text{val}},
  \quad
  d_{\text{train}} = \log L^{\cos}_{\text{train}} - \log L^{\pi}_{\text{train}},
  \quad
  r = \rho(d_{\text{val}}) + w\,\rho(d_{\text{train}}),

with :math:`\rho(d) = c + \min(c, 0)`, :math:`c = \text{clip}(d, -0.5,
0.5)` and :math:`w` = :attr:`EnvConfig.train_weight` (default one half): a
log ratio, so every problem counts the same whatever its loss scale; losses
are weighed twice as much as wins (the goal is to be equal or better on
most problems, not better on average); the training term is the credit for
training progress.

Data sets need scikit-learn, imported when first used
(``pip install optax_greedy[examples]``).

Modules: :mod:`.problem` (the types), :mod:`.data` (tables and text),
:mod:`.families` (each combines a network of :mod:`.architectures`, data
of :mod:`.sources` and run settings drawn by :mod:`.sampling`),
:mod:`.episodes` (episodes and reward), :mod:`.trainer`.
"""

from optax_greedy_lab.dnn_problems.data import char_windows
from optax_greedy_lab.dnn_problems.data import stdlib_text
from optax_greedy_lab.dnn_problems.data import tabular
from optax_greedy_lab.dnn_problems.episodes import cosine_optimizer
from optax_greedy_lab.dnn_problems.episodes import direction
from optax_greedy_lab.dnn_problems.episodes import fitness
from optax_greedy_lab.dnn_problems.episodes import learned_optimizer
from optax_greedy_lab.dnn_problems.episodes import reward
from optax_greedy_lab.dnn_problems.episodes import run_episode
from optax_greedy_lab.dnn_problems.episodes import split_losses
from optax_greedy_lab.dnn_problems.families import FAMILIES
from optax_greedy_lab.dnn_problems.families import char_lm_family
from optax_greedy_lab.dnn_problems.families import cnn_family
from optax_greedy_lab.dnn_problems.families import held_out_families
from optax_greedy_lab.dnn_problems.families import mlp_family
from optax_greedy_lab.dnn_problems.families import sequence_family
from optax_greedy_lab.dnn_problems.families import training_families
from optax_greedy_lab.dnn_problems.problem import DNNProblem
from optax_greedy_lab.dnn_problems.problem import EnvConfig
from optax_greedy_lab.dnn_problems.problem import FEATURES
from optax_greedy_lab.dnn_problems.problem import Family
from optax_greedy_lab.dnn_problems.problem import HIDDEN
from optax_greedy_lab.dnn_problems.problem import MAX_OUT
from optax_greedy_lab.dnn_problems.trainer import ES_CONFIG
from optax_greedy_lab.dnn_problems.trainer import TARGETS
from optax_greedy_lab.dnn_problems.trainer import imitation_policy
from optax_greedy_lab.dnn_problems.trainer import initial_policy
from optax_greedy_lab.dnn_problems.trainer import train
