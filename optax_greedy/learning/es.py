r"""Evolution strategies for the policy of a learned schedule.

Antithetic evolution strategies (Salimans et al., 2017, "Evolution
Strategies as a Scalable Alternative to Reinforcement Learning") on the
flattened weights :math:`\theta` of a :class:`~optax_greedy.learning.Policy`:
each update draws ``pairs`` Gaussian directions :math:`\epsilon_i`, scores
the population :math:`\theta \pm \sigma\epsilon_i` with an environment's
fitness function (all members and all of its problems in one ``vmap``, one
``jit``-compiled program), shapes the fitness into centred ranks :math:`r`
and steps Adam along

.. math::

  g = -\frac{1}{2 P \sigma} \sum_i (r_i^+ - r_i^-)\,\epsilon_i .

Why ES rather than PPO: the reward (the final loss of a run, relative to a
baseline) arrives once per episode, episodes are short and cheap to run by
the hundred under ``vmap``, and the policy has about a hundred weights. ES
needs no value function, no per-step credit assignment and no
differentiation through training; with common random numbers (every member
plays the same problems, minibatches and initialisations) its gradient
estimate compares policies on identical runs. Deterministic for a seed.
"""

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


class ESConfig(NamedTuple):
  """Hyperparameters of :func:`train_es`.

  Attributes:
    iterations: ES updates.
    pairs: antithetic pairs per update (population ``2 * pairs``).
    sigma: standard deviation of the weight perturbations.
    learning_rate: Adam's rate on the ES gradient.
  """

  iterations: int = 400
  pairs: int = 12
  sigma: float = 0.1
  learning_rate: float = 0.03


def centred_ranks(x) -> jax.Array:
  """Ranks of ``x`` scaled to ``[-0.5, 0.5]`` (fitness shaping)."""
  ranks = jnp.argsort(jnp.argsort(x)).astype(jnp.float32)
  return ranks / (x.shape[0] - 1) - 0.5


def train_es(
    seed: int,
    fitness: Callable[[Any, jax.Array], Any],
    initial_policy: Any,
    config: ESConfig = ESConfig(),
    *,
    log: Callable[[int, dict], None] = None,
    checkpoint: Callable[[int, Any], None] = None,
) -> tuple:
  """Trains a policy by evolution strategies; deterministic for a seed.

  Args:
    seed: the source of randomness of the noise and the problems.
    fitness: ``(policies, key) -> (fitness [members], info dict)``, where
      ``policies`` is a :class:`~optax_greedy.learning.Policy` whose leaves
      have a leading ``members`` axis; traced under ``jax.jit``. Higher is
      better. ``key`` draws the problems: every member must play the same
      ones (common random numbers).
    initial_policy: the starting :class:`~optax_greedy.learning.Policy`.
    config: an :class:`ESConfig`.
    log: optional ``callable(iteration, info)`` called after each update;
      ``info`` has ``mean_fitness``, ``max_fitness``, ``seconds`` and the
      scalars of ``fitness``'s info dict (population means).
    checkpoint: optional ``callable(iteration, policy)`` called after each
      update with the current policy (the first ``k`` updates of a run are
      those of a run with ``iterations=k``).

  Returns:
    ``(policy, history)``: the final policy and the list of ``info`` dicts.
  """
  theta, unravel = ravel_pytree(initial_policy)
  adam = optax.adam(config.learning_rate)
  opt_state = adam.init(theta)

  @jax.jit
  def step(theta, opt_state, key):
    key_noise, key_problems = jax.random.split(key)
    eps = jax.random.normal(key_noise, (config.pairs, theta.shape[0]))
    thetas = theta + config.sigma * jnp.concatenate([eps, -eps])
    scores, info = fitness(jax.vmap(unravel)(thetas), key_problems)
    shaped = centred_ranks(scores)
    weights = shaped[:config.pairs] - shaped[config.pairs:]
    grad = -(weights @ eps) / (2 * config.pairs * config.sigma)
    updates, opt_state = adam.update(grad, opt_state, theta)
    info = {k: jnp.mean(v) for k, v in info.items()}
    info.update(mean_fitness=jnp.mean(scores), max_fitness=jnp.max(scores))
    return optax.apply_updates(theta, updates), opt_state, info

  key = jax.random.key(seed)
  history = []
  for i in range(config.iterations):
    start = time.perf_counter()
    theta, opt_state, info = step(theta, opt_state, jax.random.fold_in(key, i))
    info = {k: float(v) for k, v in info.items()}
    info["seconds"] = time.perf_counter() - start
    history.append(info)
    if log is not None:
      log(i, info)
    if checkpoint is not None:
      checkpoint(i, unravel(theta))
  return unravel(theta), history
