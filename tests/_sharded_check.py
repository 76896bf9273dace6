"""Measures optax_greedy transforms on a 4x2 (data x model) mesh of 8 CPU devices.

Run by ``tests/test_sharding.py`` in a subprocess, because JAX fixes its
device count when it starts:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python tests/_sharded_check.py OUT.json NAME [NAME ...]

(the script sets the flag itself when JAX is not yet imported). For every
transform NAME of ``_registry.REGISTRY`` and both kinds of mesh axes
(``auto``: the compiler propagates shardings; ``explicit``: shardings are part
of the array types, ``jax.make_mesh``'s default), it trains the MLP of
``_registry`` for ``STEPS`` jitted steps with the parameters sharded over
``model`` (Megatron style: ``w1`` by columns, ``w2`` by rows) and the batch
over ``data``, runs the same steps on one device, and writes one JSON record
per (transform, mode) with what ``test_sharding.py`` asserts on: the largest
differences to the single-device run, the layout of every state leaf, and the
collectives in the compiled optimizer update. It only measures; the test file
decides.
"""

import json
import os
import re
import sys
import tempfile
import time
import traceback

if "jax" not in sys.modules:
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=8").strip()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import optax_greedy as og
import _registry

STEPS = 6
MESH_SHAPE = (4, 2)
PARAM_SPECS = {"w1": P(None, "model"), "b1": P("model"),
               "w2": P("model", None), "b2": P()}
# One HLO instruction that is a collective: ``%x = SHAPE OP(...)``, where
# SHAPE is an array shape or a tuple of them.
_COLLECTIVE = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+(all-gather|all-reduce|"
    r"all-to-all|collective-permute|reduce-scatter|ragged-all-to-all)"
    r"(?:-start)?\(", re.MULTILINE)
_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def key_name(key):
  """One path entry as a string: a dict key, a field name or an index."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def paths(tree):
  """``[(tuple of key names, leaf)]`` of a pytree."""
  return [(tuple(key_name(k) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def collectives(hlo_text):
  """``[(op, [element counts of its results])]`` in compiled HLO text."""
  found = []
  hlo_text = re.sub(r"/\*.*?\*/", "", hlo_text)  # e.g. /*index=5*/
  for match in _COLLECTIVE.finditer(hlo_text):
    sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
             for dims in _SHAPE.findall(match.group(1))]
    found.append((match.group(2), sizes))
  return found


def explicit_dot(a, b, spec):
  """``a @ b`` with the output sharding named, as explicit axes require."""
  return jnp.matmul(a, b, out_sharding=P(*spec))


def explicit_loss(params, x, y):
  return _registry.mlp_loss(params, x, y, explicit_dot)


# One gradient function per kind of mesh, compiled once for all transforms.
GRADIENTS = {mode: jax.jit(jax.value_and_grad(loss)) for mode, loss in
             (("single", _registry.mlp_loss), ("auto", _registry.mlp_loss),
              ("explicit", explicit_loss))}


def train(tx, params, mode, place, steps, state=None, start=0,
          compiled=None):
  """``steps`` jitted steps from ``start``.

  The gradient and the optimizer update are two jitted functions, so the
  update's compiled HLO can be inspected alone (the model's own collectives,
  e.g. the data-parallel gradient all-reduce, are not the optimizer's). The
  update is compiled once, ahead of time, for the first step's arguments
  (or given as ``compiled``).

  Returns:
    The params, the state, the compiled update and the steps at which the
    state's layout differed from the previous step's (forcing a recompile).
  """
  @jax.jit
  def update(grads, state, params, value):
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  if state is None:
    state = place(tx.init(params), scalar=True)
  relayouts = []
  for step in range(start, start + steps):
    x, y = place(_registry.batch(step), batch=True)
    value, grads = GRADIENTS[mode](params, x, y)
    args = (grads, state, params, value)
    if compiled is None:
      compiled = update.lower(*args).compile()
    try:
      params, state = compiled(*args)
    except ValueError:
      # The compiled update refuses arguments laid out otherwise than the
      # first ones: the state's layout changed, jit would recompile.
      relayouts.append(step)
      compiled = update.lower(*args).compile()
      params, state = compiled(*args)
  return params, state, compiled, relayouts


def single_device_run(tx, steps=STEPS):
  params = _registry.mlp_params(jax.random.key(0))
  return train(tx, params, "single", lambda tree, **kw: tree, steps)[:2]


def mesh_for(mode):
  kind = AxisType.Explicit if mode == "explicit" else AxisType.Auto
  return jax.make_mesh(MESH_SHAPE, ("data", "model"), axis_types=(kind,) * 2)


def placer(mesh):
  """Puts params by ``PARAM_SPECS``, batches over ``data``, scalars replicated.

  ``scalar=True`` replicates the leaves that ``tx.init`` left uncommitted on
  one device (its scalars), as a training script does once before its loop.
  """
  def place(tree, batch=False, scalar=False):
    if batch:
      return jax.device_put(tree, NamedSharding(mesh, P("data", None)))
    if scalar:
      return jax.tree.map(
          lambda x: x if isinstance(x.sharding, NamedSharding)
          else jax.device_put(x, NamedSharding(mesh, P())), tree)
    return jax.device_put(
        tree, {k: NamedSharding(mesh, s) for k, s in PARAM_SPECS.items()})
  return place


def sharded_run(tx, mode, steps=STEPS):
  mesh = mesh_for(mode)
  place = placer(mesh)
  with jax.set_mesh(mesh):
    params = place(_registry.mlp_params(jax.random.key(0)))
    initial = tx.init(params)
    return (mesh, params, place, initial,
            train(tx, params, mode, place, steps))


def compare(single, sharded):
  """Largest differences between two (params, state) results, by leaf."""
  worst_rel, worst_leaf, exact_mismatch = 0.0, None, []
  flat_a, flat_b = paths(single), paths(sharded)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, a), (_, b) in zip(flat_a, flat_b):
    a, b = np.asarray(a), np.asarray(b)
    if not np.issubdtype(a.dtype, np.floating):
      if not np.array_equal(a, b):
        exact_mismatch.append(".".join(path))
      continue
    scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-3)
    rel = float(np.max(np.abs(a - b), initial=0.0)) / scale
    if rel > worst_rel:
      worst_rel, worst_leaf = rel, ".".join(path)
  return worst_rel, worst_leaf, exact_mismatch


def layouts(mesh, params, new_params, state):
  """Lists the layout problems of ``state`` (and of the updated params).

  A state leaf mirrors a parameter when it has its shape and its path ends
  with the parameter's path (``mu.w1`` mirrors ``w1``); it must have the
  parameter's sharding. Every other leaf (scalars, GreedyLR's window, rates
  per tensor or group) must be replicated on all devices of the mesh.

  Returns:
    The mirroring leaves' names, the sharding problems of mirrors and params,
    and the leaves that should be replicated but are not.
  """
  devices = set(mesh.devices.flat)
  param_paths = paths(params)
  mirror_problems, replication_problems, mirrored = [], [], []
  for (path, new), (_, old) in zip(paths(new_params), param_paths):
    if not new.sharding.is_equivalent_to(old.sharding, old.ndim):
      mirror_problems.append(f"param {'.'.join(path)}: {new.sharding} after"
                             f" the step, {old.sharding} before")
  for path, leaf in paths(state):
    name = ".".join(path)
    twin = [p for p_path, p in param_paths
            if path[-len(p_path):] == p_path and p.shape == leaf.shape
            and leaf.ndim > 0]
    if twin:
      mirrored.append(name)
      if not leaf.sharding.is_equivalent_to(twin[0].sharding, leaf.ndim):
        mirror_problems.append(f"{name}: {leaf.sharding.spec} but its"
                               f" parameter has {twin[0].sharding.spec}")
    elif not (leaf.sharding.is_fully_replicated
              and set(leaf.sharding.device_set) == devices):
      replication_problems.append(f"{name} {leaf.shape}: {leaf.sharding}")
  return mirrored, mirror_problems, replication_problems


def orbax_round_trip(tx, mesh, mode, params, place, state, compiled):
  """Saves the sharded state and restores it twice: into an abstract state
  with the live state's shardings, and into ``jax.eval_shape(tx.init,
  params)`` under the mesh (the shortcut the README shows)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "opt_state")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, state)
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state)
    restored = og.restore_opt_state(path, abstract, checkpointer=checkpointer)
    with jax.set_mesh(mesh):
      shortcut = og.restore_opt_state(
          path, jax.eval_shape(tx.init, params), checkpointer=checkpointer)
  same = lambda test, other: all(
      test(a, b) for a, b in zip(jax.tree.leaves(state),
                                 jax.tree.leaves(other)))
  same_values = same(np.array_equal, restored) and same(np.array_equal,
                                                        shortcut)
  layout = lambda a, b: a.sharding.is_equivalent_to(b.sharding, a.ndim)
  same_layout = same(layout, restored) and same(layout, shortcut)
  # The restored state trains on: two more steps from both.
  with jax.set_mesh(mesh):
    ahead = train(tx, params, mode, place, 2, state=state, start=STEPS,
                  compiled=compiled)[1]
    resumed = train(tx, params, mode, place, 2, state=restored, start=STEPS,
                    compiled=compiled)[1]
  bitwise = all(np.array_equal(a, b) for a, b in
                zip(jax.tree.leaves(ahead), jax.tree.leaves(resumed)))
  return {"same_values": same_values, "same_layout": same_layout,
          "resumed_bitwise": bitwise}


def gathering_control():
  """A deliberately bad transform, the control of the collective check.

  ``optax.tree.vdot`` ravels its operands, which gathers a column-sharded
  leaf on a mesh with automatic axes (and fails on explicit ones).
  """
  def update_fn(updates, state, params=None, **extra):
    del params, extra
    scale = 1.0 / (1.0 + optax.tree.vdot(updates, updates))
    return jax.tree.map(lambda u: -scale * u, updates), state
  return optax.GradientTransformationExtraArgs(
      lambda params: optax.EmptyState(), update_fn)


def check(name, mode, single_cache):
  start = time.perf_counter()
  record = {"name": name, "mode": mode}
  try:
    tx = (gathering_control() if name == "gathering_control"
          else _registry.build(name))
    (mesh, params0, place, initial,
     (params, state, compiled, record["relayouts"])) = sharded_run(tx, mode)
    record["status"] = "ok"
    record["collectives"] = collectives(compiled.as_text())
    record["n_param_leaves"] = len(jax.tree.leaves(params0))
    (record["mirrored"], record["mirror_problems"],
     record["replication_problems"]) = layouts(mesh, params0, params, state)
    # Right after tx.init (eager), only the mirrors are checked: scalars are
    # then uncommitted single-device arrays, replicated by the first step.
    record["init_mirror_problems"] = layouts(
        mesh, params0, params0, initial)[1]
    if name not in single_cache:
      single_cache[name] = single_device_run(tx)
    (record["worst_rel"], record["worst_leaf"],
     record["exact_mismatch"]) = compare(single_cache[name], (params, state))
    if name in _registry.SHARDED_CHECKPOINTS:
      record["orbax"] = orbax_round_trip(tx, mesh, mode, params, place,
                                         state, compiled)
  except Exception as error:  # pylint: disable=broad-except
    record["status"] = "error"
    record["error"] = f"{type(error).__name__}: {error}"[:2000]
    record["traceback"] = traceback.format_exc()[-3000:]
  record["seconds"] = round(time.perf_counter() - start, 2)
  return record


def main(out_path, names):
  assert len(jax.devices()) == 8, jax.devices()
  single_cache, records = {}, []
  for name in names:
    for mode in ("auto", "explicit"):
      records.append(check(name, mode, single_cache))
  with open(out_path, "w") as f:
    json.dump(records, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
