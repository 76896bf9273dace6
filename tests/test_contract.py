"""The contract every public transform of optax_greedy keeps.

Parametrised over ``tests/_registry.py`` (a transform joins by one line there)
and modelled on optax's suite for contributed optimizers
(``optax/contrib/_common_test.py``), whose checks it includes: extra
arguments to ``update``, no recompilation on the second call, updates in the
params' dtype (float16, bfloat16, float32, float64) under ``lax.cond``,
``optax.MultiSteps``, ``optax.inject_hyperparams`` (same updates and same
state), ``optax.tree.map_params``, a constant schedule where the
``learning_rate`` is annotated as accepting one, and convergence. On top of
those:
``optax.partition``, the one readable rate (``optax.tree.get(state,
"learning_rate")`` finds one field; before the first update it is the
initial rate, after an update the rate that update applied, so that
``update == -learning_rate * direction``) and a non-finite loss that never
poisons the state. Sharding (``test_sharding.py``) and checkpoints
(``test_checkpoint.py``) run over the same registry.
"""

import functools
import inspect
import subprocess
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _registry
import optax_greedy as og

NAMES = list(_registry.REGISTRY)
PARAMS = _registry.mlp_params(jax.random.key(0))
# Factors of the loss fed as ``value`` along the trajectory: non-finite
# losses in the middle, finite ones before and after.
LOSS_FACTORS = (1.0, 1.0, np.nan, np.inf, 1.0, -np.inf, 1.0, 1.0)
OPTIONAL = ("flax", "orbax", "sklearn", "matplotlib", "tqdm")


def test_import_needs_only_the_core():
  """``import optax_greedy`` imports none of the optional packages."""
  code = ("import sys, optax_greedy; print(' '.join(sorted(name for name in"
          f" {OPTIONAL!r} if name in sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "", f"import optax_greedy imported {out.strip()}"


def test_the_core_does_not_import_the_lab():
  """The lab (policy training) sits beside the core, not inside it."""
  code = "import sys, optax_greedy; print('optax_greedy_lab' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "False"


def _scaled(rate, directions):
  """``-rate * directions``, each rate over the block of params it covers."""
  return jax.tree.map(
      lambda r, block: jax.tree.map(lambda d: -r * d, block), rate,
      directions)


def _assert_trees_close(actual, expected, rtol=1e-5):
  """Leafwise closeness, with a floor at ``rtol`` of each leaf's scale."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    scale = max(float(np.max(np.abs(e), initial=0.0)), 1e-30)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale)


def _rate(state):
  """The one ``learning_rate`` field of ``state`` (fails if not one)."""
  found = optax.tree.get_all_with_path(state, "learning_rate")
  assert len(found) == 1, (
      "optax.tree.get(state, 'learning_rate') must find exactly one field,"
      f" found {[jax.tree_util.keystr(path) for path, _ in found]}")
  return found[0][1]


def _layout(tree):
  """The structure, shapes and dtypes of a pytree."""
  return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x))
                                    for x in jax.tree.leaves(tree)]


# Every update is compiled into as few programs as possible (one for the
# float32 trajectory, one per other dtype): compiling is most of the time.
@functools.lru_cache(maxsize=None)
def _trajectory(name):
  """Eight jitted updates of ``name`` on the MLP in float32, with the losses
  fed as ``value`` scaled by ``LOSS_FACTORS`` and an unknown extra
  argument; alongside, the reference direction and ``optax.MultiSteps``
  (every 4 calls) of the same transform, in the same program.

  Returns the initial state, one record per update (params before it, state
  after it, its updates, the directions, the MultiSteps updates) and the
  number of times the step was traced.
  """
  entry = _registry.REGISTRY[name]
  tx, direction = entry.build(), entry.direction()
  accumulated = optax.MultiSteps(entry.build(), every_k_schedule=4)
  traces = []

  @jax.jit
  def step(params, states, x, y, factor):
    traces.append(1)
    state, direction_state, accumulated_state = states
    loss, grads = jax.value_and_grad(_registry.mlp_loss)(params, x, y)
    value = loss * factor
    updates, state = tx.update(grads, state, params, value=value,
                               unexpected_extra_arg=1)
    directions, direction_state = direction.update(grads, direction_state,
                                                   params)
    every_4th, accumulated_state = accumulated.update(
        grads, accumulated_state, params, value=value)
    return (optax.apply_updates(params, updates),
            (state, direction_state, accumulated_state),
            dict(updates=updates, directions=directions, every_4th=every_4th))

  params = PARAMS
  initial = tx.init(params)
  states = (initial, direction.init(params), accumulated.init(params))
  records = []
  for i, factor in enumerate(LOSS_FACTORS):
    new_params, states, outputs = step(params, states, *_registry.batch(i),
                                       factor)
    records.append(dict(params=params, state=states[0], **outputs))
    params = new_params
  return initial, records, len(traces)


@pytest.mark.parametrize("name", NAMES)
def test_accepts_extra_args_and_compiles_once(name):
  *_, traces = _trajectory(name)
  assert traces == 1, f"update traced {traces} times in {len(LOSS_FACTORS)}"


@pytest.mark.parametrize("name", NAMES)
def test_state_has_one_learning_rate_field(name):
  initial, records, _ = _trajectory(name)
  for state in [initial] + [r["state"] for r in records]:
    _rate(state)


@pytest.mark.parametrize("name", NAMES)
def test_the_learning_rate_field_is_a_record(name):
  """Writing the state's ``learning_rate`` changes no later update: the rate
  a family carries forward has another name (``next_learning_rate``, at
  most one field), or is recomputed."""
  _, records, _ = _trajectory(name)
  state, params = records[2]["state"], records[3]["params"]
  assert len(optax.tree.get_all_with_path(state, "next_learning_rate")) <= 1
  tx = _registry.build(name)
  x, y = _registry.batch(3)

  @jax.jit
  def update(state):
    value, grads = jax.value_and_grad(_registry.mlp_loss)(params, x, y)
    return tx.update(grads, state, params, value=value)

  written = optax.tree.set(
      state, learning_rate=jax.tree.map(lambda r: 3 * r + 0.5, _rate(state)))
  (updates, after), (updates_w, after_w) = update(state), update(written)
  jax.tree.map(np.testing.assert_array_equal, updates_w, updates)
  jax.tree.map(np.testing.assert_array_equal, after_w, after)


@pytest.mark.parametrize("name", NAMES)
def test_rate_before_the_first_update_is_the_initial_rate(name):
  initial, _, _ = _trajectory(name)
  expected = _registry.REGISTRY[name].rate_before_first_update(PARAMS)
  rate = _rate(initial)
  jax.tree.map(
      lambda e, block: jax.tree.map(
          lambda r: np.testing.assert_allclose(r, e, rtol=1e-6), block),
      expected, rate)


@pytest.mark.parametrize("name", NAMES)
def test_update_is_minus_the_rate_read_times_the_direction(name):
  """The rate in the state after an update is the one that update applied."""
  _, records, _ = _trajectory(name)
  for i, record in enumerate(records):
    expected = (record["directions"]
                if _registry.REGISTRY[name].update_is_direction
                else _scaled(_rate(record["state"]), record["directions"]))
    try:
      _assert_trees_close(record["updates"], expected)
    except AssertionError as error:
      raise AssertionError(f"update {i}: {error}") from None


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_loss_never_poisons_the_state(name):
  """NaN and +/-inf values: updates stay finite, and no state entry that
  was finite becomes NaN or infinite."""
  _, records, _ = _trajectory(name)
  finite_before = None
  for i, record in enumerate(records):
    for leaf in jax.tree.leaves(record["updates"]):
      assert np.all(np.isfinite(leaf)), f"update {i} is not finite"
    finite = [np.isfinite(np.asarray(leaf)) for leaf in
              jax.tree.leaves(record["state"])
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if finite_before is not None:
      for was, now in zip(finite_before, finite):
        assert np.all(now[was]), (
            f"update {i} (value factor {LOSS_FACTORS[i]}) made a finite state"
            " entry non-finite")
    finite_before = finite


@pytest.mark.parametrize("name", NAMES)
def test_tree_map_params(name):
  tx = _registry.build(name)
  state = tx.init(PARAMS)
  same = optax.tree.map_params(tx, lambda p: p, state)
  assert jax.tree.structure(same) == jax.tree.structure(state)


@functools.lru_cache(maxsize=None)
def _in_dtype(name, dtype):
  """Two jitted calls of ``name`` on the MLP's params cast to ``dtype`` (and,
  in bfloat16, four of ``optax.MultiSteps(name, 4)`` in the same program).

  As optax's ``test_state_shape_dtype_shard_stability``, the update runs in
  one branch of ``lax.cond`` (so its new state must have the incoming
  state's shapes and dtypes) and ``value`` comes in another dtype.

  Returns one record per call: the dtypes of params and updates, whether
  the state kept its layout, and the MultiSteps updates.
  """
  with jax.enable_x64(dtype == "float64"):
    dtype = jnp.dtype(dtype)
    tx = _registry.build(name)
    accumulated = (optax.MultiSteps(_registry.build(name), every_k_schedule=4)
                   if dtype == jnp.bfloat16 else None)
    other = jnp.bfloat16 if dtype == jnp.float16 else jnp.float16

    @jax.jit
    def step(params, state, accumulated_state, x, y, take):
      loss, grads = jax.value_and_grad(_registry.mlp_loss)(params, x, y)
      updates, state = jax.lax.cond(
          take,
          lambda: tx.update(grads, state, params, value=loss.astype(other)),
          lambda: (jax.tree.map(jnp.zeros_like, params), state))
      every_4th = None
      if accumulated is not None:
        every_4th, accumulated_state = accumulated.update(
            grads, accumulated_state, params, value=loss)
      return (optax.apply_updates(params, updates), state, updates,
              accumulated_state, every_4th)

    params = jax.tree.map(lambda p: p.astype(dtype), PARAMS)
    state = tx.init(params)
    accumulated_state = accumulated and accumulated.init(params)
    records = []
    for i in range(4):
      params, new_state, updates, accumulated_state, every_4th = step(
          params, state, accumulated_state, *_registry.batch(i), True)
      records.append(dict(
          dtypes={leaf.dtype for leaf in jax.tree.leaves((params, updates))},
          same_layout=_layout(new_state) == _layout(state),
          every_4th=every_4th))
      state = new_state
  return records


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_is_stable_under_lax_cond(name, dtype):
  """Updates and params keep the params' dtype, the state its layout."""
  for i, record in enumerate(_in_dtype(name, dtype)):
    assert record["dtypes"] == {jnp.dtype(dtype)}, f"call {i}"
    assert record["same_layout"], f"call {i}: the state changed its layout"


@pytest.mark.parametrize("name", NAMES)
def test_float32_is_stable_too(name):
  """float32 runs in the trajectory (same checks, without ``lax.cond``)."""
  initial, records, _ = _trajectory(name)
  for i, record in enumerate(records):
    leaves = jax.tree.leaves((record["params"], record["updates"]))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float32")}, i
    assert _layout(record["state"]) == _layout(initial), f"call {i}"


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_multi_steps_accumulates(name, dtype):
  """As optax's ``test_gradient_accumulation``: zero updates in the params'
  dtype for three calls, then a finite, non-zero one. (Not float16: there
  Adam's ``eps=1e-8`` is 0 and optax's own Adam divides 0 by 0.)"""
  if dtype == "float32":
    every_4th = [r["every_4th"] for r in _trajectory(name)[1][:4]]
  else:
    every_4th = [r["every_4th"] for r in _in_dtype(name, dtype)]
  for i, updates in enumerate(every_4th):
    leaves = [np.asarray(u, np.float32) for u in jax.tree.leaves(updates)]
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(dtype)}
    if i < 3:
      assert all(np.all(u == 0) for u in leaves), f"call {i}"
  assert all(np.all(np.isfinite(u)) for u in leaves)
  assert any(np.any(u != 0) for u in leaves)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_gives_the_same_updates_and_state(name):
  """The first two updates of the trajectory, through inject_hyperparams."""
  entry = _registry.REGISTRY[name]
  injected = optax.inject_hyperparams(
      entry.factory, static_args=entry.static_args)(**entry.kwargs)
  _, records, _ = _trajectory(name)

  @jax.jit
  def update(params, state, x, y, factor):
    loss, grads = jax.value_and_grad(_registry.mlp_loss)(params, x, y)
    return injected.update(grads, state, params, value=loss * factor,
                           unexpected_extra_arg=1)

  state = injected.init(PARAMS)
  for i, record in enumerate(records[:2]):
    updates, state = update(record["params"], state, *_registry.batch(i),
                            LOSS_FACTORS[i])
    if entry.update_is_direction:
      # Such an update is new parameters minus parameters: its error is
      # the parameters' float32 resolution, not the update's. Compare the
      # parameters it gives.
      _assert_trees_close(
          optax.apply_updates(record["params"], updates),
          optax.apply_updates(record["params"], record["updates"]))
    else:
      _assert_trees_close(updates, record["updates"])
    assert (jax.tree.structure(state.inner_state)
            == jax.tree.structure(record["state"]))
    _assert_trees_close(state.inner_state, record["state"])
    # The documented reads of the rate under inject_hyperparams, where
    # optax.tree.get(state, ...) also finds the hyperparameter.
    _assert_trees_close(optax.tree.get(state.inner_state, "learning_rate"),
                        _rate(record["state"]))
    _assert_trees_close(og.get_learning_rate(state), _rate(record["state"]))
    _assert_trees_close(og.get_learning_rate(record["state"]),
                        _rate(record["state"]))


@pytest.mark.parametrize("name", NAMES)
def test_partition_trains_its_part_only(name):
  labels = {"w1": "ours", "b1": "ours", "w2": "frozen", "b2": "frozen"}
  tx = optax.partition({"ours": _registry.build(name),
                        "frozen": optax.set_to_zero()}, labels)

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(_registry.mlp_loss)(params, x, y)
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state, updates

  params, state = PARAMS, tx.init(PARAMS)
  for i in range(3):
    params, state, updates = step(params, state, *_registry.batch(i))
    assert np.all(np.asarray(updates["w2"]) == 0)
    assert np.all(np.isfinite(updates["w1"]))
  assert np.any(np.asarray(updates["w1"]) != 0)
  _rate(state)


# The optimum of the quadratic below: the MLP's params moved by about 0.1.
TARGET = jax.tree.map(
    lambda p, n: p + 0.1 * n, PARAMS, _registry.mlp_params(jax.random.key(1)))
CONVERGENCE_STEPS = 500


def _quadratic(params):
  """``1/2 sum_i c_i ||p_i - t_i||^2`` with curvatures 1/4 .. 2 per leaf."""
  curvatures = {"w1": 1.0, "b1": 0.25, "w2": 2.0, "b2": 0.5}
  return sum(0.5 * curvatures[k] * jnp.sum((params[k] - TARGET[k]) ** 2)
             for k in params)


def _converge(tx, steps=CONVERGENCE_STEPS):
  """``steps`` updates of ``tx`` on the quadratic; the params and losses."""
  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(_quadratic)(params)
    updates, state = tx.update(grads, state, params, value=loss)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.jit(lambda c: jax.lax.scan(
      step, c, length=steps))((PARAMS, tx.init(PARAMS)))
  return params, losses


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
  """As optax's ``test_optimizers`` (on one noise-free problem, with matrix
  and vector leaves of curvatures 1/4 to 2): the loss falls below 1% of its
  start. A transform with a step budget is told the run's length, as a user
  would."""
  entry = _registry.REGISTRY[name]
  kwargs = dict(entry.kwargs)
  if "total_steps" in kwargs:
    kwargs["total_steps"] = CONVERGENCE_STEPS
  params, losses = _converge(entry.factory(**kwargs))
  assert np.all(np.isfinite(losses))
  final = float(_quadratic(params))
  assert final < 1e-2 * float(losses[0]), (
      f"loss {float(losses[0]):.3g} -> {final:.3g}")


def _accepts_schedule(factory):
  """Whether ``factory``'s ``learning_rate`` is annotated as taking a
  schedule (as optax's suite decides it)."""
  parameter = inspect.signature(factory).parameters.get("learning_rate")
  annotation = getattr(parameter, "annotation", None)
  accepted = {annotation, *typing.get_args(annotation)}
  return bool(accepted & {optax.ScalarOrSchedule, optax.Schedule}) or (
      set(typing.get_args(optax.ScalarOrSchedule)) <= accepted)


@pytest.mark.parametrize("name", [
    name for name in NAMES
    if _accepts_schedule(_registry.REGISTRY[name].factory)])
def test_a_constant_schedule_is_the_constant_rate(name):
  """As optax's ``test_optimizers_accept_learning_rate_schedule...``."""
  entry = _registry.REGISTRY[name]
  rate = entry.kwargs["learning_rate"]
  scheduled = entry.factory(**dict(
      entry.kwargs, learning_rate=optax.constant_schedule(rate)))
  _assert_trees_close(_converge(scheduled, steps=10)[0],
                      _converge(entry.build(), steps=10)[0])
