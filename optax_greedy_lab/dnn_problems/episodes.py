"""Episodes: training one problem with a rate transform, and the reward of
a policy's episode against cosine annealing (see the package docstring)."""

import functools

import jax
import jax.numpy as jnp
import optax

import optax_greedy
from optax_greedy_lab.dnn_problems.problem import DNNProblem
from optax_greedy_lab.dnn_problems.problem import EnvConfig
from optax_greedy_lab.dnn_problems.problem import Family

def _losses(outputs, y, out_mask, regression):
  """Per-row loss: cross-entropy over the used classes, or masked MSE."""
  logits = jnp.where(out_mask > 0, outputs, -1e9)
  xent = -jnp.sum(y * jax.nn.log_softmax(logits), axis=-1)
  mse = jnp.sum(out_mask * (outputs - y) ** 2, axis=-1) / jnp.sum(out_mask)
  per = jnp.where(regression, mse, xent)
  # Sequence outputs ([rows, positions, classes]): the mean over positions.
  return per.reshape(per.shape[0], -1).mean(axis=1)


def _mean_loss(family, params, problem, rows, weights):
  out = family.apply(params, problem.x[rows], problem.arch)
  losses = _losses(out, problem.y[rows], problem.out_mask, problem.regression)
  return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1)


def split_losses(family, params, problem):
  """Full training and validation losses (means over their rows)."""
  positions = jnp.arange(problem.x.shape[0])
  per_row = _losses(family.apply(params, problem.x[problem.order],
                                 problem.arch),
                    problem.y[problem.order], problem.out_mask,
                    problem.regression)
  train = positions < problem.n_train
  val = (positions >= problem.n_train) & (
      positions < problem.n_train + problem.n_val)
  mean = lambda m: jnp.sum(jnp.where(m, per_row, 0)) / jnp.maximum(
      jnp.sum(m), 1)
  return mean(train), mean(val)


def direction(adam) -> optax.GradientTransformation:
  """Adam (``adam`` true) or SGD with momentum 0.9 (``optax.trace``).

  ``adam`` may be traced: both are computed and one is selected.
  """
  first, second = optax.scale_by_adam(), optax.trace(decay=0.9)
  if isinstance(adam, bool):
    return first if adam else second

  def init_fn(params):
    return first.init(params), second.init(params)

  def update_fn(updates, state, params=None):
    a, state_a = first.update(updates, state[0], params)
    b, state_b = second.update(updates, state[1], params)
    return optax.tree.where(adam, a, b), (state_a, state_b)

  return optax.GradientTransformation(init_fn, update_fn)


def cosine_optimizer(problem, multiplier=1.0):
  """The baseline: the direction, then cosine annealing from the peak (times
  ``multiplier``) to 0."""
  return optax.chain(
      direction(problem.adam),
      optax.scale_by_schedule(lambda t: -multiplier * problem.peak * 0.5 * (
          1 + jnp.cos(jnp.pi * jnp.minimum(t / problem.budget, 1.0)))))


def learned_optimizer(policy, envelope=optax_greedy.NO_ENVELOPE):
  """``problem -> optimizer``: the direction, then the policy's schedule
  inside ``envelope`` (an :class:`optax_greedy.Envelope`, or its tuple)."""
  envelope = optax_greedy.Envelope(*envelope)
  return lambda problem: optax.chain(
      direction(problem.adam),
      optax_greedy.learned_schedule(policy, problem.peak,
                                    total_steps=problem.budget,
                                    envelope=envelope))


def _applied_rate(state):
  """The state's ``learning_rate`` (NaN unless it has exactly one)."""
  try:
    rate = optax.tree.get(state, "learning_rate", default=jnp.nan)
  except KeyError:  # Several, e.g. two alternatives run side by side.
    return jnp.asarray(jnp.nan)
  return jnp.mean(jnp.asarray(jax.tree.leaves(rate)[0], jnp.float32))


def run_episode(family: Family, problem: DNNProblem, optimizer, key, *,
                max_steps: int, max_batch: int, checkpoints: int = 1):
  """Trains ``family``'s network on ``problem``; returns its losses.

  Args:
    family: the :class:`Family`.
    problem: a :class:`DNNProblem` of that family.
    optimizer: ``problem -> optax transform`` (e.g. :func:`cosine_optimizer`,
      ``learned_optimizer(policy)``); its ``update`` receives ``value=`` the
      minibatch loss.
    key: initialisation and minibatches (share it across compared runs).
    max_steps: the scan's length, ``>= problem.budget`` (steps past the
      budget are no-ops).
    max_batch: the padded minibatch size (``>= problem.batch_size``).
    checkpoints: record the full losses this many times, after every
      ``max_steps // checkpoints`` steps (it must divide ``max_steps``).

  Returns:
    ``{"train": [checkpoints], "val": [checkpoints], "loss": [max_steps],
    "rates": [max_steps]}``: full training and validation losses at each
    checkpoint (the last is the final one), the minibatch losses and the
    state's ``learning_rate`` after each step (NaN if it has none).
  """
  tx = optax.with_extra_args_support(optimizer(problem))
  key_init, key_steps = jax.random.split(key)
  params = family.init(key_init, problem)
  state = tx.init(params)
  batch_mask = (jnp.arange(max_batch) < problem.batch_size).astype(
      jnp.float32)

  def step(carry, t):
    params, state = carry
    picks = jax.random.randint(jax.random.fold_in(key_steps, t),
                               [max_batch], 0, problem.n_train)
    rows = problem.order[picks]
    value, grads = jax.value_and_grad(
        lambda p: _mean_loss(family, p, problem, rows, batch_mask))(params)
    updates, new_state = tx.update(grads, state, params, value=value)
    new_params = optax.apply_updates(params, updates)
    active = t < problem.budget
    keep = lambda new, old: optax.tree.where(active, new, old)
    return (keep(new_params, params), keep(new_state, state)), (
        value, jnp.where(active, _applied_rate(new_state), jnp.nan))

  per_chunk = max_steps // checkpoints

  def chunk(carry, c):
    carry, (values, rates) = jax.lax.scan(
        step, carry, c * per_chunk + jnp.arange(per_chunk))
    return carry, (split_losses(family, carry[0], problem), values, rates)

  _, (losses, values, rates) = jax.lax.scan(
      chunk, (params, state), jnp.arange(checkpoints))
  return {"train": losses[0], "val": losses[1],
          "loss": values.reshape(-1), "rates": rates.reshape(-1)}


def _log_ratio(baseline, candidate):
  """``log(baseline / candidate)``; non-finite losses count as huge."""
  clean = lambda l: jnp.log(jnp.where(jnp.isfinite(l) & (l > 0), l, 1e6))
  return clean(baseline) - clean(candidate)


def reward(baseline, candidate, train_weight=0.5):
  """The reward of one episode against the baseline's (module docstring)."""
  rho = lambda d: jnp.clip(d, -0.5, 0.5) + jnp.minimum(jnp.clip(d, -0.5, 0.5),
                                                       0)
  return (rho(_log_ratio(baseline["val"][-1], candidate["val"][-1]))
          + train_weight * rho(_log_ratio(baseline["train"][-1],
                                 candidate["train"][-1])))


def fitness(policies, key, families, config: EnvConfig = EnvConfig()):
  """Mean reward of each member over the same problems of every family.

  For each family, ``config.problems`` problems are drawn; on each, the
  cosine baseline runs once per multiple of the peak in
  ``config.baseline_peaks`` (the best final losses count) and every member
  of the population runs its policy inside ``config.envelope`` (``vmap``
  over members inside ``vmap`` over problems, so the data is not copied per
  member), with the same initialisation and minibatches.

  Args:
    policies: a Policy whose leaves have a leading ``members`` axis.
    key: draws the problems, initialisations and minibatches.
    families: the :class:`Family` tuple.
    config: an :class:`EnvConfig`.

  Returns:
    ``(fitness [members], info)`` for
    :func:`optax_greedy_lab.es.train_es`; ``info["val_log_ratio"]`` is
    ``log(baseline / member)`` of the final validation loss on each problem
    ``[problems, members]`` (positive: the member is better), a raw result:
    whether it is a win, a tie or a loss is for the benchmark's verdict
    (its one tie rule) to say.
  """
  rewards, ratios = [], []
  run = functools.partial(run_episode, max_steps=config.max_steps,
                          max_batch=config.max_batch)
  for i, family in enumerate(families):
    keys = jax.random.split(jax.random.fold_in(key, i), 2 * config.problems)
    problems = jax.vmap(lambda k: family.sample(k, config))(
        keys[:config.problems])

    def per_problem(problem, k, family=family):
      bases = jax.vmap(lambda m: run(
          family, problem, functools.partial(cosine_optimizer, multiplier=m),
          k))(jnp.asarray(config.baseline_peaks, jnp.float32))
      clean = lambda l: jnp.where(jnp.isfinite(l) & (l > 0), l, jnp.inf)
      base = {s: jnp.min(clean(bases[s]), axis=0) for s in ("val", "train")}
      members = jax.vmap(lambda policy: run(
          family, problem, learned_optimizer(policy, tuple(config.envelope)),
          k))(policies)
      ratio = _log_ratio(base["val"][-1], members["val"][:, -1])
      return jax.vmap(lambda m: reward(base, m, config.train_weight))(
          members), ratio

    r, ratio = jax.vmap(per_problem)(problems, keys[config.problems:])
    rewards.append(r)
    ratios.append(ratio)
  rewards = jnp.concatenate(rewards)           # [problems, members]
  return jnp.mean(rewards, axis=0), {
      "val_log_ratio": jnp.concatenate(ratios)}
