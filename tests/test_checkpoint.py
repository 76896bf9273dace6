"""Optimizer states through Orbax checkpoints: resume bit-identically, or fail.

Each transform of ``tests/_registry.py`` trains the small MLP there for
``SAVE_AT`` jitted steps; params and optimizer state are saved with
``orbax.checkpoint.StandardCheckpointer`` and restored into abstract values
(``jax.eval_shape`` of a freshly built optimizer's ``init``), as a restarted
job would, and training goes on to ``STEPS``. Every bit of the params and the
state must equal those of the uninterrupted run.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _registry
import optax_greedy as og

ocp = pytest.importorskip("orbax.checkpoint")

SAVE_AT, STEPS = 5, 8
NAMES = list(_registry.REGISTRY)


def _train(step, params, state, start, stop):
  for i in range(start, stop):
    params, state = step(params, state, *_registry.batch(i))
  return params, state


def _save(path, tree):
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, tree)
  checkpointer.wait_until_finished()


def _assert_bitwise_equal(expected, actual):
  assert jax.tree.structure(expected) == jax.tree.structure(actual)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected),
                          jax.tree.leaves(actual)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, jax.tree_util.keystr(path)
    assert a.tobytes() == b.tobytes(), (
        f"{jax.tree_util.keystr(path)} differs after resuming")


@functools.lru_cache(maxsize=None)
def _first_half(name):
  """``name``'s transform, compiled step, initial params and step-SAVE_AT
  params and state (shared by the tests below)."""
  tx = _registry.build(name)
  params0 = _registry.mlp_params(jax.random.key(0))
  step = _registry.train_step(tx)
  return (tx, step, params0,
          *_train(step, params0, tx.init(params0), 0, SAVE_AT))


@pytest.mark.parametrize("name", NAMES)
def test_resume_is_bit_identical(name, tmp_path):
  tx, step, params0, params, state = _first_half(name)
  _save(tmp_path / "params", params)
  _save(tmp_path / "opt_state", state)
  # Changes of the state before and after the save, so that both halves
  # matter: a resume that restarted from tx.init would fail below.
  later_params, later_state = _train(step, params, state, SAVE_AT, STEPS)
  init_leaves = jax.tree.leaves(tx.init(params0))
  assert any(not np.array_equal(a, b)
             for a, b in zip(init_leaves, jax.tree.leaves(state)))

  # A restarted job: abstract targets from a newly built transform. (The
  # compiled step is reused: a new compilation of the same program would
  # only cost time.)
  abstract_params = jax.eval_shape(lambda: params0)
  restored_params = ocp.StandardCheckpointer().restore(
      tmp_path / "params", abstract_params)
  restored_state = og.restore_opt_state(
      tmp_path / "opt_state", jax.eval_shape(_registry.build(name).init,
                                             abstract_params))
  assert type(restored_state) is type(state)  # named tuples come back
  resumed = _train(step, restored_params, restored_state, SAVE_AT, STEPS)
  _assert_bitwise_equal((later_params, later_state), resumed)


def test_greedy_lr_is_saved_mid_decision():
  """The GreedyLR run above is saved with its machinery half-way.

  The window (3 values) has wrapped and holds values, a cooldown or a run of
  good/bad observations is in progress, and the rate has already changed: a
  resume that lost any of them would diverge from the uninterrupted run.
  """
  state = optax.tree.get(_first_half("greedy_lr")[-1], "GreedyLRState")
  assert state.window_len == 3 and state.window_head == SAVE_AT % 3
  assert state.num_good + state.num_bad + state.cooldown_counter > 0
  initial = _registry.REGISTRY["greedy_lr"].kwargs["learning_rate"]
  assert float(state.learning_rate) != initial
  assert state.count == SAVE_AT


def _saved_state(tmp_path, tx, params):
  path = tmp_path / "opt_state"
  _save(path, tx.init(params))
  return path


def _params():
  return _registry.mlp_params(jax.random.key(0))


@pytest.mark.parametrize("saved, wanted, message", [
    (dict(window_size=5), dict(window_size=7),
     r"window: checkpoint float32\[5\], optimizer float32\[7\]"),
    (dict(), dict(smooth=False),
     r"window: checkpoint float32\[50\], optimizer float32\[0\]"),
])
def test_other_greedy_structure_fails_naming_the_field(
    tmp_path, saved, wanted, message):
  path = _saved_state(tmp_path, og.greedy_lr(0.1, **saved), _params())
  abstract = jax.eval_shape(og.greedy_lr(0.1, **wanted).init, _params())
  with pytest.raises(ValueError, match=message):
    og.restore_opt_state(path, abstract)


def test_other_chain_fails_listing_missing_fields(tmp_path):
  path = _saved_state(tmp_path, og.greedy_lr(0.1), _params())
  abstract = jax.eval_shape(og.greedy_adam(0.1).init, _params())
  with pytest.raises(ValueError, match=r"missing from the checkpoint: 0\.count"
                     r".*not in the optimizer's state: best"):
    og.restore_opt_state(path, abstract)


def test_other_dtype_fails_instead_of_casting(tmp_path):
  path = _saved_state(tmp_path, optax.adam(0.1), _params())
  bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params())
  abstract = jax.eval_shape(optax.adam(0.1).init, bf16)
  with pytest.raises(ValueError,
                     match=r"0\.mu\.b1: checkpoint float32\[32\], optimizer"
                     r" bfloat16\[32\]"):
    og.restore_opt_state(path, abstract)


@pytest.mark.parametrize("saved, wanted, message", [
    ("per_tensor", "per_parameter",
     r"learning_rate\.w1: checkpoint float32\[\], optimizer float32\[16, 32\]"),
    ("global", "per_tensor",
     r"missing from the checkpoint: learning_rate\.b1.*"
     r"not in the optimizer's state: learning_rate"),
])
def test_other_hypergradient_granularity_fails(tmp_path, saved, wanted,
                                               message):
  build = lambda g: og.hypergradient(optax.identity(), 0.1, hypergrad_lr=1e-3,
                                     granularity=g)
  path = _saved_state(tmp_path, build(saved), _params())
  abstract = jax.eval_shape(build(wanted).init, _params())
  with pytest.raises(ValueError, match=message):
    og.restore_opt_state(path, abstract)


def test_check_state_compatible_accepts_a_matching_state():
  tx = og.greedy_adam(0.1)
  og.check_state_compatible(tx.init(_params()),
                            jax.eval_shape(tx.init, _params()))
