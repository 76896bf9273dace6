r"""Evolution strategies for the policy of a learned schedule.

Antithetic evolution strategies (Salimans et al., 2017, "Evolution
Strategies as a Scalable Alternative to Reinforcement Learning") on the
flattened weights :math:`\theta` of a :class:`~optax_greedy.policy.Policy`:
each update draws ``pairs`` Gaussian directions :math:`\epsilon_i`, scores
the population :math:`\theta \pm \sigma\epsilon_i` with an environment's
fitness function (all members and all of its problems in one ``vmap``, one
``jit``-compiled program), shapes the fitness into centred ranks :math:`r`
and steps Adam along

.. math::

  g = -\frac{1}{2 P \sigma} \sum_i (r_i^+ - r_i^-)\,\epsilon_i .

``ESConfig(strategy="snes")`` or ``"cma_es"`` runs instead the separable
natural evolution strategy (Wierstra et al., 2014, JMLR) or CMA-ES (Hansen
and Ostermeier, 2001) of `evosax <https://github.com/RobertTLange/evosax>`_
(an optional package: ``pip install "optax_greedy[train]"``) with the same
population size ``2 * pairs``, initial standard deviation ``sigma`` and
common random numbers; ``learning_rate`` is then unused (each strategy
sets its own step sizes).

Why ES rather than PPO: the reward (the final loss of a run, relative to a
baseline) arrives once per episode, episodes are short and cheap to run by
the hundred under ``vmap``, and the policy has about a hundred weights. ES
needs no value function, no per-step credit assignment and no
differentiation through training; with common random numbers (every member
plays the same problems, minibatches and initialisations) its gradient
estimate compares policies on identical runs. Deterministic for a seed.
"""

import json
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree


class ESConfig(NamedTuple):
  """Hyperparameters of :func:`train_es`.

  Attributes:
    iterations: ES updates.
    pairs: antithetic pairs per update (population ``2 * pairs``).
    sigma: standard deviation of the weight perturbations.
    learning_rate: Adam's rate on the ES gradient (``"antithetic"`` only).
    strategy: ``"antithetic"`` (the hand-written strategy above),
      ``"snes"`` or ``"cma_es"`` (evosax's, an optional package).
  """

  iterations: int = 400
  pairs: int = 12
  sigma: float = 0.1
  learning_rate: float = 0.03
  strategy: str = "antithetic"


STRATEGIES = ("antithetic", "snes", "cma_es")


class ESState(NamedTuple):
  """Where a run of :func:`train_es` stands, enough to resume it exactly.

  Attributes:
    theta: the flattened policy weights (an evosax strategy's mean).
    opt_state: Adam's state on ``theta``, or the evosax strategy's state.
    iteration: the number of updates done.
  """

  theta: jax.Array
  opt_state: Any
  iteration: int


def save_state(path, state: ESState, config: dict) -> None:
  """Writes ``state`` and the run's ``config`` (a JSON-serialisable dict)
  to ``path`` (``.npz``), for :func:`load_state`."""
  leaves = jax.tree.leaves(state.opt_state)
  np.savez(path, theta=np.asarray(state.theta),
           iteration=np.asarray(state.iteration),
           config=np.asarray(json.dumps(config, sort_keys=True)),
           **{f"opt_{i}": np.asarray(x) for i, x in enumerate(leaves)})


def load_state(path, initial_policy, es_config: "ESConfig",
               config: dict) -> ESState:
  """Reads a state written by :func:`save_state`, checking that it was
  written by a run of the same ``config`` and policy shape.

  Raises:
    ValueError: naming the file and what was expected, if its config or
      the shapes differ.
  """
  with np.load(path, allow_pickle=False) as data:
    files = dict(data)
  expected = json.dumps(config, sort_keys=True)
  found = str(files.get("config", "<none>"))
  if found != expected:
    raise ValueError(
        f"ES state {path}: written by a run of config {found}; expected"
        f" {expected} (resume with the same settings, or start afresh).")
  theta, _ = ravel_pytree(initial_policy)
  template = _strategy(es_config, theta).init(theta)
  leaves, treedef = jax.tree.flatten(template)
  if (files["theta"].shape != theta.shape
      or any(f"opt_{i}" not in files or files[f"opt_{i}"].shape != x.shape
             for i, x in enumerate(leaves))):
    raise ValueError(
        f"ES state {path}: theta {files['theta'].shape}; expected"
        f" {theta.shape} and the {es_config.strategy} strategy's state for"
        " it.")
  opt_state = jax.tree.unflatten(
      treedef, [jnp.asarray(files[f"opt_{i}"], x.dtype)
                for i, x in enumerate(leaves)])
  return ESState(jnp.asarray(files["theta"], theta.dtype), opt_state,
                 int(files["iteration"]))


def centred_ranks(x) -> jax.Array:
  """Ranks of ``x`` scaled to ``[-0.5, 0.5]`` (fitness shaping)."""
  ranks = jnp.argsort(jnp.argsort(x)).astype(jnp.float32)
  return ranks / (x.shape[0] - 1) - 0.5


class _Strategy(NamedTuple):
  """``init(theta) -> state`` and ``ask_tell(theta, state, key, evaluate)
  -> (theta, state, scores, info)``, where ``evaluate(thetas) -> (scores,
  info)`` scores a population (higher is better)."""

  init: Callable
  ask_tell: Callable


def _antithetic(config: ESConfig) -> _Strategy:
  adam = optax.adam(config.learning_rate)

  def ask_tell(theta, opt_state, key, evaluate):
    eps = jax.random.normal(key, (config.pairs, theta.shape[0]))
    scores, info = evaluate(theta + config.sigma
                            * jnp.concatenate([eps, -eps]))
    shaped = centred_ranks(scores)
    weights = shaped[:config.pairs] - shaped[config.pairs:]
    grad = -(weights @ eps) / (2 * config.pairs * config.sigma)
    updates, opt_state = adam.update(grad, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state, scores, info

  return _Strategy(adam.init, ask_tell)


def _evosax(config: ESConfig, theta) -> _Strategy:
  try:
    from evosax import algorithms  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        f"ESConfig(strategy={config.strategy!r}) needs the evosax package:"
        " pip install \"optax_greedy[train]\" (or pip install evosax)."
    ) from error
  cls = {"snes": algorithms.SNES, "cma_es": algorithms.CMA_ES}[
      config.strategy]
  strategy = cls(population_size=2 * config.pairs, solution=theta)
  params = strategy.default_params.replace(
      std_init=jnp.asarray(config.sigma, theta.dtype))

  def init(theta):
    return strategy.init(jax.random.key(0), theta, params)

  def ask_tell(theta, state, key, evaluate):
    del theta  # the strategy's mean
    key_ask, key_tell = jax.random.split(key)
    thetas, state = strategy.ask(key_ask, state, params)
    scores, info = evaluate(thetas)
    state, _ = strategy.tell(key_tell, thetas, -scores, state, params)
    return state.mean, state, scores, info  # evosax minimises

  return _Strategy(init, ask_tell)


def _strategy(config: ESConfig, theta) -> _Strategy:
  if config.strategy not in STRATEGIES:
    raise ValueError(f"ESConfig: strategy={config.strategy!r}; expected one"
                     f" of {STRATEGIES}.")
  if config.strategy == "antithetic":
    return _antithetic(config)
  return _evosax(config, theta)


def train_es(
    seed: int,
    fitness: Callable[[Any, jax.Array], Any],
    initial_policy: Any,
    config: ESConfig = ESConfig(),
    *,
    log: Callable[[int, dict], None] = None,
    checkpoint: Callable[[int, Any], None] = None,
    state: Optional[ESState] = None,
    save: Callable[[ESState], None] = None,
) -> tuple:
  """Trains a policy by evolution strategies; deterministic for a seed.

  Args:
    seed: the source of randomness of the noise and the problems.
    fitness: ``(policies, key) -> (fitness [members], info dict)``, where
      ``policies`` is a :class:`~optax_greedy.policy.Policy` whose leaves
      have a leading ``members`` axis; traced under ``jax.jit``. Higher is
      better. ``key`` draws the problems: every member must play the same
      ones (common random numbers).
    initial_policy: the starting :class:`~optax_greedy.policy.Policy`.
    config: an :class:`ESConfig`.
    log: optional ``callable(iteration, info)`` called after each update;
      ``info`` has ``mean_fitness``, ``max_fitness``, ``seconds`` and the
      scalars of ``fitness``'s info dict (population means).
    checkpoint: optional ``callable(iteration, policy)`` called after each
      update with the current policy (the first ``k`` updates of a run are
      those of a run with ``iterations=k``).
    state: an :class:`ESState` to resume from (e.g. :func:`load_state`):
      the run continues at ``state.iteration`` exactly as if it had not
      stopped. ``None``: start from ``initial_policy``.
    save: optional ``callable(ESState)`` called after each update (write it
      with :func:`save_state` to resume later).

  Returns:
    ``(policy, history)``: the final policy and the list of ``info`` dicts
    of the updates run by this call.
  """
  theta, unravel = ravel_pytree(initial_policy)
  strategy = _strategy(config, theta)
  opt_state = strategy.init(theta)
  first = 0
  if state is not None:
    theta, opt_state, first = state.theta, state.opt_state, state.iteration

  @jax.jit
  def step(theta, opt_state, key):
    key_noise, key_problems = jax.random.split(key)
    evaluate = lambda thetas: fitness(jax.vmap(unravel)(thetas), key_problems)
    theta, opt_state, scores, info = strategy.ask_tell(
        theta, opt_state, key_noise, evaluate)
    info = {k: jnp.mean(v) for k, v in info.items()}
    info.update(mean_fitness=jnp.mean(scores), max_fitness=jnp.max(scores))
    return theta, opt_state, info

  key = jax.random.key(seed)
  history = []
  for i in range(first, config.iterations):
    start = time.perf_counter()
    theta, opt_state, info = step(theta, opt_state, jax.random.fold_in(key, i))
    info = {k: float(v) for k, v in info.items()}
    info["seconds"] = time.perf_counter() - start
    history.append(info)
    if log is not None:
      log(i, info)
    if checkpoint is not None:
      checkpoint(i, unravel(theta))
    if save is not None:
      save(ESState(theta, opt_state, i + 1))
  return unravel(theta), history
