r"""A vmapped environment of stochastic-NMF problems for learned schedules.

**Episodes** are stochastic NMF problems drawn by :func:`sample_problem`:
``V = scale * (W* H* + noise)`` with random row count, true rank, fitted
rank, sparsity-inducing factors, noise level and data scale, padded to one
shape (padded rows of ``V`` and unused rank components are zero in ``V``
and in the factors; NMF's gradients keep them zero, so a padded problem is
exactly the smaller one). An episode runs ``budget`` steps (random per
problem, the remaining steps of the fixed-length scan are no-ops) of
projected minibatch SGD on :func:`optax_greedy.nmf.loss` with the rate set by
:func:`optax_greedy.learned_schedule` as a fraction of
``nmf.stability_bounds(params, joint=True)`` (see :func:`nmf_bound`): the
action can never exceed the bound, which is the safety layer.

**Observation** (:func:`optax_greedy.policy.policy_features`, the five
features of :data:`FEATURES`): log loss
ratio to the start, recent log-loss slope, log ratio of the gradient norm to
the first one, the current fraction of the bound, the fraction of the budget
used -- all invariant to the data scale and the size of the problem.

**Action**: the fraction of the bound, in [1e-3, 1].

**Reward**: progress in log loss, :math:`\log f(\theta_{t-1}) - \log
f(\theta_t)` on the *full* loss, whose sum over the episode telescopes to
the return :math:`\log f(\theta_0) - \log f(\theta_T)`, the final log
improvement. It is computed once at the end: the per-step minibatch loss is
too noisy to credit single steps and the full loss costs a full pass, and
evolution strategies only use the episode's return. Being a log ratio, it
weighs every problem equally whatever its scale.

**Training** (:func:`train`): :func:`optax_greedy_lab.es.train_es`
with :func:`fitness`: every member of the population plays the same
problems with the same minibatches (common random numbers), and all
``population x problems`` episodes run in one ``jit``-compiled step under
``jax.vmap``. The shipped ``policies/nmf_policy.npz`` was trained by
the repository's example ``train_nmf_policy.py --seed 0`` when the policy was a Flax module
(same problems, ES and hyperparameters); the plain-jax.numpy policy draws
its initial weights differently, so a rerun today gives a comparable policy,
not the identical file.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy
from optax_greedy import policy as _policy
from optax_greedy import nmf
from optax_greedy_lab import es

#: The features of the NMF policy.
FEATURES = ("log_loss_ratio", "loss_slope", "log_grad_norm_ratio",
            "fraction", "budget_used")


class NMFProblem(NamedTuple):
  """One NMF episode: the data, its fitted rank and its step budget.

  Attributes:
    V: the ``rows x cols`` non-negative data (rows beyond the problem's own
      are zero).
    rank_mask: ``[max_rank]`` 1.0 for the components that are fitted.
    budget: the episode's number of steps (int32 scalar).
  """

  V: jax.Array
  rank_mask: jax.Array
  budget: jax.Array


def sample_problem(key, *, rows=48, cols=96, max_rank=8, min_budget=80,
                   max_budget=200) -> NMFProblem:
  """Draws a random synthetic NMF problem (see the module docstring).

  Args:
    key: a JAX random key.
    rows: padded number of rows; the problem has 16..rows of them.
    cols: number of columns (minibatches are drawn from them).
    max_rank: padded rank; the true rank is 1..max_rank and the fitted rank
      2..max_rank, independently (under- and over-fitted problems).
    min_budget, max_budget: the episode's budget is uniform in this range.

  Returns:
    An :class:`NMFProblem`.
  """
  keys = jax.random.split(key, 9)
  m = jax.random.randint(keys[0], [], 16, rows + 1)
  true_rank = jax.random.randint(keys[1], [], 1, max_rank + 1)
  fit_rank = jax.random.randint(keys[2], [], 2, max_rank + 1)
  row_mask = (jnp.arange(rows) < m).astype(jnp.float32)
  true_mask = (jnp.arange(max_rank) < true_rank).astype(jnp.float32)
  # Powers of uniforms give sparse, heavy-tailed non-negative factors.
  power = jax.random.uniform(keys[3], [], minval=1.0, maxval=4.0)
  w_star = jax.random.uniform(keys[4], (rows, max_rank)) ** power
  h_star = jax.random.uniform(keys[5], (max_rank, cols)) ** power
  clean = (w_star * true_mask) @ h_star * row_mask[:, None]
  clean = clean / (jnp.sum(clean) / (m * cols))
  level = jax.random.uniform(keys[6], [], maxval=0.5)
  noise = level * jnp.abs(jax.random.normal(keys[7], clean.shape))
  scale = 10.0 ** jax.random.uniform(keys[8], [], minval=-2.0, maxval=2.0)
  V = scale * (clean + noise) * row_mask[:, None]
  budget = jax.random.randint(
      jax.random.fold_in(key, 1), [], min_budget, max_budget + 1)
  return NMFProblem(
      V=V, rank_mask=(jnp.arange(max_rank) < fit_rank).astype(jnp.float32),
      budget=budget.astype(jnp.int32))


def init_factors(key, problem: NMFProblem):
  """``nmf.init`` at the padded rank, with unused rows/components zeroed."""
  params = nmf.init(key, problem.V, problem.rank_mask.shape[0])
  row_mask = (jnp.sum(problem.V, axis=1) > 0).astype(problem.V.dtype)
  return {"W": params["W"] * row_mask[:, None] * problem.rank_mask,
          "H": params["H"] * problem.rank_mask[:, None]}


def nmf_bound(params):
  """The action's scale: ``nmf.stability_bounds(params, joint=True)``.

  The full-batch bound for updating both factors in one step. The
  worst-case minibatch bound (``batch_size=b``) is so conservative that the
  bound itself was the best constant rate in a first trial (return 3.66 at
  fraction 1 vs 3.60 at 0.88, 3.20 at 0.5): nothing to learn. At the
  full-batch bound the minibatch noise matters: on 32 held-out problems
  (``evaluate_policy(seed=10000)``) the return is 1.45 at a constant
  fraction 0.62, 3.80 at 0.5 and 3.97 at 0.38, so the schedule matters.
  A fraction of 1 is therefore not guaranteed stable for minibatch steps;
  chain :func:`optax_greedy.stability_clip` with a minibatch bound where a
  hard guarantee is needed.
  """
  return nmf.stability_bounds(params, joint=True)


def run_episode(policy_params, problem: NMFProblem, key, *, max_steps=200,
                batch_size=16, trace=False):
  """Plays one episode; returns the return (and the trajectory if asked).

  Args:
    policy_params: parameters of the policy (may be traced).
    problem: the episode's :class:`NMFProblem`.
    key: randomness for the initial factors and the minibatches.
    max_steps: length of the scan, >= ``problem.budget``.
    batch_size: columns per minibatch.
    trace: also return the per-step minibatch loss and fraction.

  Returns:
    ``{"return": log f(theta_0) - log f(theta_T), "relative_error": ...}``
    (plus ``"loss"`` and ``"fraction"`` arrays of length ``max_steps`` with
    ``trace``).
  """
  key_init, key_steps = jax.random.split(key)
  params = init_factors(key_init, problem)
  n = problem.V.shape[1]
  # Minibatches: the columns shuffled once, then cycled through. Drawing
  # them with ``jax.random.choice`` every step (a sort inside the loop) was
  # 2-3x slower.
  order = jax.random.permutation(key_steps, n)
  tx = optax.chain(
      optax_greedy.learned_schedule(policy_params, nmf_bound,
                                total_steps=problem.budget,
                                envelope=optax_greedy.NO_ENVELOPE),
      optax.keep_params_nonnegative())
  state = tx.init(params)

  def step(carry, t):
    params, state = carry
    columns = order[(t * batch_size + jnp.arange(batch_size)) % n]
    value, grads = jax.value_and_grad(nmf.loss)(params, problem.V, columns)
    updates, new_state = tx.update(grads, state, params, value=value)
    new_params = optax.apply_updates(params, updates)
    active = t < problem.budget
    keep = lambda new, old: jax.tree.map(
        lambda a, b: jnp.where(active, a, b), new, old)
    fraction = optax.tree.get(new_state, "fraction")
    return (keep(new_params, params), keep(new_state, state)), (
        value, fraction)

  (final, _), (losses, fractions) = jax.lax.scan(
      step, (params, state), jnp.arange(max_steps))
  out = {
      "return": (jnp.log(nmf.loss(params, problem.V))
                 - jnp.log(nmf.loss(final, problem.V))),
      "relative_error": nmf.relative_error(final, problem.V),
  }
  if trace:
    out.update(loss=losses, fraction=fractions)
  return out


class NMFConfig(NamedTuple):
  """The problems of one ES update (defaults: the shipped policy's).

  Attributes:
    problems: NMF problems each member plays per update.
    max_steps, batch_size: as in :func:`run_episode`.
    min_budget, max_budget: as in :func:`sample_problem`.
  """

  problems: int = 6
  max_steps: int = 200
  batch_size: int = 16
  min_budget: int = 80
  max_budget: int = 200


#: The ES hyperparameters of the shipped policy (400 updates took 364 s on
#: 2 shared CPU cores).
ES_CONFIG = es.ESConfig(iterations=400, pairs=12, sigma=0.1,
                        learning_rate=0.03)
#: The hidden widths of the shipped policy.
HIDDEN = (8, 8)


def sample_problems(key, count, config: NMFConfig = NMFConfig()):
  """``count`` problems of :func:`sample_problem`, stacked."""
  sample = lambda k: sample_problem(
      k, min_budget=config.min_budget, max_budget=config.max_budget)
  return jax.vmap(sample)(jax.random.split(key, count))


def fitness(policies, key, config: NMFConfig = NMFConfig()):
  """Mean return of each member over the same ``config.problems`` problems.

  Args:
    policies: a Policy whose leaves have a leading ``members`` axis.
    key: draws the problems, initial factors and minibatches.
    config: an :class:`NMFConfig`.

  Returns:
    ``(fitness [members], {})`` for :func:`optax_greedy_lab.es.train_es`;
    all ``members x problems`` episodes run in one flat ``vmap``.
  """
  key_problems, key_episodes = jax.random.split(key)
  problems = sample_problems(key_problems, config.problems, config)
  keys = jax.random.split(key_episodes, config.problems)
  members = jax.tree.leaves(policies)[0].shape[0]
  count = config.problems
  tile = lambda x: jnp.tile(x, (members,) + (1,) * (x.ndim - 1))
  repeat = lambda x: jnp.repeat(x, count, axis=0)
  episode = lambda policy, problem, k: run_episode(
      policy, problem, k, max_steps=config.max_steps,
      batch_size=config.batch_size)["return"]
  flat = jax.vmap(episode)(jax.tree.map(repeat, policies),
                           jax.tree.map(tile, problems), tile(keys))
  return jnp.mean(flat.reshape(members, count), axis=1), {}


def train(seed: int, es_config: es.ESConfig = ES_CONFIG,
          config: NMFConfig = NMFConfig(), *, log=None):
  """Trains an NMF policy from a random one; deterministic for a seed.

  Returns:
    ``(policy, history)`` as :func:`optax_greedy_lab.es.train_es`.
  """
  key_init = jax.random.split(jax.random.key(seed))[0]
  return es.train_es(seed, lambda p, k: fitness(p, k, config),
                     _policy.init_policy(key_init, FEATURES, HIDDEN),
                     es_config, log=log)


def evaluate_policy(policy, seed, *, problems=32, config=NMFConfig()):
  """Mean return and relative error on ``problems`` fresh problems."""
  key_problems, key_episodes = jax.random.split(jax.random.key(seed))
  batch = sample_problems(key_problems, problems, config)
  keys = jax.random.split(key_episodes, problems)
  out = jax.jit(jax.vmap(lambda p, k: run_episode(
      policy, p, k, max_steps=config.max_steps,
      batch_size=config.batch_size)))(batch, keys)
  return {k: float(np.mean(v)) for k, v in out.items()}
