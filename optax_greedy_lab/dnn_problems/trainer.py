"""Training the deep-network policy: imitation of a fixed schedule (cosine
annealing, or a constant fraction), then evolution strategies on the
training families."""

import jax
import jax.numpy as jnp
import optax

from optax_greedy import policy as _policy
from optax_greedy_lab import es
from optax_greedy_lab.dnn_problems.episodes import fitness
from optax_greedy_lab.dnn_problems.families import training_families
from optax_greedy_lab.dnn_problems.problem import EnvConfig
from optax_greedy_lab.dnn_problems.problem import FEATURES
from optax_greedy_lab.dnn_problems.problem import HIDDEN

#: Fixed schedules a policy can start from (:func:`imitation_policy`), as a
#: fraction of the peak for the share of the budget used ``t``.
TARGETS = {
    "cosine": lambda t: 0.5 * (1 + jnp.cos(jnp.pi * t)),
    # Inside an envelope that decays to zero: hold near the peak.
    "constant": lambda t: jnp.full_like(t, 0.8),
}


def imitation_policy(key, target="cosine", features=FEATURES, hidden=HIDDEN,
                     steps=2000, envelope=None):
  """A policy fitted to a fixed schedule of :data:`TARGETS`.

  The starting point of ES training: ``"cosine"``, cosine annealing
  ``f = (1 + cos(pi t / T)) / 2`` (episodes of this policy tie with the
  cosine baseline, so ES searches for improvements from cosine rather than
  from a random schedule), or ``"constant"``, ``f = 0.8`` (inside the step
  budget's envelope: a warmup-stable-decay schedule). Fitted by Adam on the
  log fraction, with the features other than ``budget_used`` drawn at
  random (so it learns to ignore them).

  Returns:
    ``(policy, final fit loss)``; the policy's ``envelope`` is
    ``envelope``.
  """
  key_init, key_fit = jax.random.split(key)
  policy = _policy.init_policy(key_init, features, hidden, envelope)
  used = features.index("budget_used")
  adam = optax.adam(1e-2)
  schedule = TARGETS[target]

  def loss(policy, key):
    x = jax.random.normal(key, (512, len(features)))
    t = jax.random.uniform(jax.random.fold_in(key, 1), (512,))
    x = x.at[:, used].set(t)
    target = jnp.clip(schedule(t), _policy.MIN_FRACTION, 1.0)
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


def initial_policy(seed, start="cosine", imitation_steps=2000,
                   envelope=None):
  """The policy ES starts from: :func:`imitation_policy` of ``start``."""
  return imitation_policy(jax.random.fold_in(jax.random.key(seed), 1), start,
                          steps=imitation_steps, envelope=envelope)[0]


def train(seed: int, es_config: es.ESConfig = ES_CONFIG,
          config: EnvConfig = EnvConfig(), *, families=None, log=None,
          checkpoint=None, imitation_steps=2000, start="cosine",
          state=None, save=None):
  """Trains the deep-network policy: imitation of ``start``, then ES.

  Deterministic for a seed (and, resumed from a saved state, the same as
  had it not stopped).

  Args:
    seed: the only source of randomness.
    es_config: an :class:`~optax_greedy_lab.es.ESConfig`.
    config: an :class:`EnvConfig` (its ``envelope`` becomes the policy's).
    families: the training families (default: ``config.families``, see
      :func:`training_families`).
    log, checkpoint, state, save: as in
      :func:`optax_greedy_lab.es.train_es`.
    imitation_steps: steps of :func:`imitation_policy` before ES.
    start: the schedule imitated first (:data:`TARGETS`).

  Returns:
    ``(policy, history)`` as :func:`optax_greedy_lab.es.train_es`.
  """
  if families is None:
    families = training_families(config.families)
  initial = initial_policy(seed, start, imitation_steps,
                           tuple(config.envelope))
  return es.train_es(seed, lambda p, k: fitness(p, k, families, config),
                     initial, es_config, log=log, checkpoint=checkpoint,
                     state=state, save=save)
