"""Training the deep-network policy: imitation of cosine annealing, then
evolution strategies on the training families."""

import jax
import jax.numpy as jnp
import optax

from optax_greedy import _policy
from optax_greedy.learning import es
from optax_greedy.learning.dnn_problems.episodes import fitness
from optax_greedy.learning.dnn_problems.families import training_families
from optax_greedy.learning.dnn_problems.problem import EnvConfig
from optax_greedy.learning.dnn_problems.problem import FEATURES
from optax_greedy.learning.dnn_problems.problem import HIDDEN

def cosine_policy(key, features=FEATURES, hidden=HIDDEN, steps=2000):
  """A policy fitted to cosine annealing, ``f = (1 + cos(pi t / T)) / 2``.

  The starting point of ES training: episodes of this policy tie with the
  baseline, so ES searches for improvements from cosine rather than from a
  random schedule. Fitted by Adam on the log fraction, with the features
  other than ``budget_used`` drawn at random (so it learns to ignore them).

  Returns:
    ``(policy, final fit loss)``.
  """
  key_init, key_fit = jax.random.split(key)
  policy = _policy.init_policy(key_init, features, hidden)
  used = features.index("budget_used")
  adam = optax.adam(1e-2)

  def loss(policy, key):
    x = jax.random.normal(key, (512, len(features)))
    t = jax.random.uniform(jax.random.fold_in(key, 1), (512,))
    x = x.at[:, used].set(t)
    target = jnp.clip(0.5 * (1 + jnp.cos(jnp.pi * t)), _policy.MIN_FRACTION,
                      1.0)
    pred = _policy.policy_fraction(policy, x)
    return jnp.mean((jnp.log(pred) - jnp.log(target)) ** 2)

  @jax.jit
  def step(policy, state, key):
    value, grads = jax.value_and_grad(loss)(policy, key)
    updates, state = adam.update(grads, state)
    return optax.apply_updates(policy, updates), state, value

  state = adam.init(policy)
  for i in range(steps):
    policy, state, value = step(policy, state, jax.random.fold_in(key_fit, i))
  return policy, float(value)


#: ES hyperparameters of the shipped policy.
ES_CONFIG = es.ESConfig(iterations=130, pairs=8, sigma=0.05,
                        learning_rate=0.01)


def train(seed: int, es_config: es.ESConfig = ES_CONFIG,
          config: EnvConfig = EnvConfig(), *, families=None, log=None,
          checkpoint=None, imitation_steps=2000):
  """Trains the deep-network policy: cosine imitation, then ES.

  Deterministic for a seed.

  Args:
    seed: the only source of randomness.
    es_config: an :class:`~optax_greedy.learning.es.ESConfig`.
    config: an :class:`EnvConfig`.
    families: the training families (default :func:`training_families`).
    log, checkpoint: as in :func:`optax_greedy.learning.es.train_es`.
    imitation_steps: steps of :func:`cosine_policy` before ES.

  Returns:
    ``(policy, history)`` as :func:`optax_greedy.learning.es.train_es`.
  """
  families = training_families() if families is None else families
  initial, _ = cosine_policy(jax.random.fold_in(jax.random.key(seed), 1),
                             steps=imitation_steps)
  return es.train_es(seed, lambda p, k: fitness(p, k, families, config),
                     initial, es_config, log=log, checkpoint=checkpoint)
