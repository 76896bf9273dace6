r"""A vmapped stochastic-NMF environment and an evolution-strategies trainer.

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

**Observation** (:func:`optax_greedy._learned.policy_features`): log loss
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

**Training** (:func:`train_es`): antithetic evolution strategies (Salimans
et al., 2017, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning") on the flattened policy weights, centred-rank
fitness shaping and Adam on the ES gradient. Every member of the population
plays the same problems with the same minibatches (common random numbers),
and all ``population x problems`` episodes run in one ``jit``-compiled step
under ``jax.vmap``.
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from optax_greedy import _learned
from optax_greedy import nmf


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
      _learned.learned_schedule(policy_params, nmf_bound,
                                budget=problem.budget),
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


class ESConfig(NamedTuple):
  """Hyperparameters of :func:`train_es` (defaults: the shipped policy's).

  Attributes:
    iterations: ES updates. 400 took 364 s on 2 shared CPU cores.
    pairs: antithetic pairs per update (population ``2 * pairs``).
    problems: NMF problems each member plays per update.
    sigma: standard deviation of the weight perturbations.
    learning_rate: Adam's rate on the ES gradient.
    hidden: the policy's hidden widths.
    max_steps, batch_size: as in :func:`run_episode`.
    min_budget, max_budget: as in :func:`sample_problem`.
  """

  iterations: int = 400
  pairs: int = 12
  problems: int = 6
  sigma: float = 0.1
  learning_rate: float = 0.03
  hidden: tuple = (8, 8)
  max_steps: int = 200
  batch_size: int = 16
  min_budget: int = 80
  max_budget: int = 200


def _returns(thetas, unravel, problems, keys, config):
  """Returns ``[members, problems]``, all episodes in one flat ``vmap``."""
  members, count = thetas.shape[0], keys.shape[0]
  tile = lambda x: jnp.tile(x, (members,) + (1,) * (x.ndim - 1))
  episode = lambda theta, problem, key: run_episode(
      unravel(theta), problem, key, max_steps=config.max_steps,
      batch_size=config.batch_size)["return"]
  flat = jax.vmap(episode)(jnp.repeat(thetas, count, axis=0),
                           jax.tree.map(tile, problems), tile(keys))
  return flat.reshape(members, count)


def _centred_ranks(x):
  ranks = jnp.argsort(jnp.argsort(x)).astype(jnp.float32)
  return ranks / (x.shape[0] - 1) - 0.5


def _unravel(hidden):
  """Maps a flat weight vector to :class:`PolicyMLP` parameters."""
  return ravel_pytree(_learned.init_policy(jax.random.key(0), hidden))[1]


@functools.partial(jax.jit, static_argnames="config")
def es_step(theta, opt_state, key, config: ESConfig):
  """One ES update, all ``2 pairs x problems`` episodes in one ``vmap``.

  Args:
    theta: the flat policy weights.
    opt_state: Adam's state for ``theta``.
    key: randomness of this update (noise, problems, minibatches).
    config: an :class:`ESConfig` (static: one compilation per config).

  Returns:
    ``(theta, opt_state, info)`` with the population's mean/max fitness.
  """
  unravel = _unravel(config.hidden)
  sample = lambda k: sample_problem(
      k, min_budget=config.min_budget, max_budget=config.max_budget)
  key_noise, key_problems, key_episodes = jax.random.split(key, 3)
  eps = jax.random.normal(key_noise, (config.pairs, theta.shape[0]))
  thetas = theta + config.sigma * jnp.concatenate([eps, -eps])
  problems = jax.vmap(sample)(jax.random.split(key_problems,
                                               config.problems))
  keys = jax.random.split(key_episodes, config.problems)
  fitness = jnp.mean(_returns(thetas, unravel, problems, keys, config),
                     axis=1)
  shaped = _centred_ranks(fitness)
  weights = shaped[:config.pairs] - shaped[config.pairs:]
  grad = -(weights @ eps) / (2 * config.pairs * config.sigma)
  updates, opt_state = optax.adam(config.learning_rate).update(
      grad, opt_state, theta)
  theta = optax.apply_updates(theta, updates)
  return theta, opt_state, {"mean_fitness": jnp.mean(fitness),
                            "max_fitness": jnp.max(fitness)}


def train_es(seed: int, config: ESConfig = ESConfig(), *, log=None) -> Any:
  """Trains a policy by evolution strategies; deterministic for a seed.

  Args:
    seed: the only source of randomness (policy init, noise, problems).
    config: an :class:`ESConfig`.
    log: optional ``callable(iteration, info_dict)`` called after each
      update (with ``seconds`` and ``env_steps_per_s`` added).

  Returns:
    ``(policy_params, history)``: the final policy and a list of per-update
    info dicts (mean/max fitness over the population).
  """
  key = jax.random.key(seed)
  key_init, key = jax.random.split(key)
  theta, unravel = ravel_pytree(_learned.init_policy(key_init, config.hidden))
  opt_state = optax.adam(config.learning_rate).init(theta)
  steps_per_update = 2 * config.pairs * config.problems * config.max_steps
  history = []
  for i in range(config.iterations):
    start = time.perf_counter()
    theta, opt_state, info = es_step(theta, opt_state,
                                     jax.random.fold_in(key, i), config)
    info = {k: float(v) for k, v in info.items()}
    seconds = time.perf_counter() - start
    info.update(seconds=seconds, env_steps_per_s=steps_per_update / seconds)
    history.append(info)
    if log is not None:
      log(i, info)
  return unravel(theta), history


def evaluate_policy(policy_params, seed, *, problems=32, config=ESConfig()):
  """Mean return and relative error on ``problems`` fresh problems."""
  key_problems, key_episodes = jax.random.split(jax.random.key(seed))
  sample = lambda k: sample_problem(
      k, min_budget=config.min_budget, max_budget=config.max_budget)
  batch = jax.vmap(sample)(jax.random.split(key_problems, problems))
  keys = jax.random.split(key_episodes, problems)
  out = jax.jit(jax.vmap(lambda p, k: run_episode(
      policy_params, p, k, max_steps=config.max_steps,
      batch_size=config.batch_size)))(batch, keys)
  return {k: float(np.mean(v)) for k, v in out.items()}
