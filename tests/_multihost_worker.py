"""One process of a multi-process run: every transform on one global mesh.

Run by ``tests/test_multihost.py``, once per process, all on this machine:

  python tests/_multihost_worker.py HOST:PORT NUM_PROCESSES PROCESS_ID OUT

Each process joins JAX's distributed runtime (``jax.distributed.initialize``,
the coordinator on HOST:PORT run by process 0) with ``DEVICES`` CPU devices
of its own and CPU collectives over gloo; together they form one global 4x2
(data x model) mesh with explicit axes, ``jax.make_mesh``'s default. The MLP
of ``_registry`` is sharded as in ``_sharded_check.py`` (``w1`` by columns,
``w2`` by rows, over ``model``) and every process feeds its own rows of each
global batch (``jax.make_array_from_process_local_data``).

Runs of ``STEPS`` steps, named ``(feed, transform)``, several transforms in
one jitted program (XLA compiles one program faster than many):

* ``("global", NAME)`` for every transform of ``_registry.REGISTRY`` that
  runs on an explicit mesh (not ``_registry.NO_EXPLICIT_MESH``): the
  loss is computed inside the jitted step over the global batch, as the
  README shows. The params and states of ``_registry.SHARDED_CHECKPOINTS``
  are saved with Orbax under ``OUT/checkpoints/NAME``.
* ``value=`` fed otherwise to ``DEMO`` (GreedyLR, patience 1): ``host``, each
  process's loss on its own rows, computed outside the step; ``shard``, each
  device's loss on its own rows, from ``jax.shard_map``; ``pmean``, the same
  averaged with ``jax.lax.pmean``. ``+check`` wraps the value in
  ``optax_greedy.checked_value`` and runs the step under ``checkify``.

Then every process restores the checkpoints onto a 2x2 mesh of its own 4
devices (``reshard``). Each process writes ``OUT/process<ID>.pkl``: per run,
the status and every addressable shard of the params and the state (device
id, index, data), so that the test compares every copy of every entry across
devices and processes. It only measures; ``test_multihost.py`` decides.
"""

import os
import pickle
import sys
import time
import traceback

import jax
import numpy as np
import optax
from jax.experimental import checkify
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import optax_greedy as og
import _registry
import _sharded_check

DEVICES = 4  # per process
STEPS = 6
RESUMED = 2  # steps after the restore
DEMO = "greedy_lr"
PROGRAMS = (
    tuple(("global", name) for name in _registry.REGISTRY
          if name not in _registry.NO_EXPLICIT_MESH),
    (("host", DEMO), ("shard", DEMO), ("pmean", DEMO)),
    (("host+check", DEMO),),
    (("pmean+check", DEMO),),
)


def start(coordinator, num_processes, process_id):
  """Joins the distributed runtime with ``DEVICES`` CPU devices here."""
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", DEVICES)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator, num_processes, process_id,
                             initialization_timeout=60)


def local_batch(mesh, step):
  """This process's rows of step ``step``'s batch (NumPy)."""
  x, y = _registry.batch(step)
  sharding = NamedSharding(mesh, P("data", None))
  indices = sharding.addressable_devices_indices_map(x.shape).values()
  spans = [index[0].indices(len(x))[:2] for index in indices]
  begin, end = min(s for s, _ in spans), max(e for _, e in spans)
  return x[begin:end], y[begin:end]


def global_batch(mesh, rows):
  """The global batch, from every process's own ``rows``."""
  sharding = NamedSharding(mesh, P("data", None))
  return tuple(jax.make_array_from_process_local_data(sharding, a)
               for a in rows)


def local_copy(tree):
  """A NumPy copy of every leaf, assembled from this process's shards.

  Each process holds every model shard of the params and the state here
  (they are split over ``model`` only, and each process has both halves).
  """
  def copy(leaf):
    out = np.empty(leaf.shape, leaf.dtype)
    for shard in leaf.addressable_shards:
      out[shard.index] = np.asarray(shard.data)
    return out
  return jax.tree.map(copy, tree)


def host_loss(params, rows):
  """This process's loss on its own rows, computed outside the step, from
  its copy of the params: what a host computing a metric on its data gets."""
  return np.float32(_registry.mlp_loss(local_copy(params), *rows))


def shard_loss(mesh, params, x, y, mean):
  """Each device's loss on its own rows; with ``mean``, their mean."""
  def per_shard(params, x, y):
    loss = _registry.mlp_loss(params, x, y)
    return jax.lax.pmean(loss, "data") if mean else loss

  return jax.shard_map(per_shard, mesh=mesh,
                       in_specs=(P(), P("data"), P("data")), out_specs=P(),
                       check_vma=False)(
                           jax.sharding.reshard(params, P()), x, y)


def make_step(mesh, lanes, txs, loss_fn=_sharded_check.explicit_loss):
  """One jitted step of every lane ``(feed, name)``, with its transform.

  The step takes and returns lists of params and states, one per lane, and
  takes the host-computed values (``None`` for lanes fed otherwise). Under
  ``+check`` feeds it runs under ``checkify`` and raises the check's error.
  """
  checked = {feed.endswith("+check") for feed, _ in lanes}
  assert len(checked) == 1, "checked and unchecked lanes in one program"

  def step(params, states, x, y, host_values):
    new_params, new_states = [], []
    for (feed, _), tx, p, state, host in zip(lanes, txs, params, states,
                                             host_values):
      loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
      source = feed.split("+")[0]
      value = {"global": lambda: loss, "host": lambda: host,
               "shard": lambda: shard_loss(mesh, p, x, y, mean=False),
               "pmean": lambda: shard_loss(mesh, p, x, y, mean=True),
               }[source]()
      if checked == {True}:
        value = og.checked_value(value)
      updates, state = tx.update(grads, state, p, value=value)
      new_params.append(optax.apply_updates(p, updates))
      new_states.append(state)
    return new_params, new_states

  if checked == {False}:
    return jax.jit(step)
  checked_step = jax.jit(checkify.checkify(step))

  def throwing(*args):
    error, out = checked_step(*args)
    error.throw()
    return out
  return throwing


def shards(tree):
  """``{path: (shape, [(device id, index, data)])}``: every addressable
  shard of every leaf."""
  found = {}
  for path, leaf in _sharded_check.paths(tree):
    found[".".join(path)] = (tuple(leaf.shape), [
        (shard.device.id,
         tuple(s.indices(d)[:2] for s, d in zip(shard.index, leaf.shape)),
         np.asarray(shard.data)) for shard in leaf.addressable_shards])
  return found


def place_state(mesh, state):
  """Replicates the scalars ``tx.init`` left uncommitted on one device."""
  return jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding)
      else jax.device_put(x, NamedSharding(mesh, P())), state)


def recorded(measure):
  """Runs ``measure() -> dict``; adds its status, error and duration."""
  started = time.perf_counter()
  try:
    record = {"status": "ok", **measure()}
  except Exception as error:  # pylint: disable=broad-except
    record = {"status": "error",
              "error": f"{type(error).__name__}: {error}"[:3000],
              "traceback": traceback.format_exc()[-3000:]}
  record["seconds"] = round(time.perf_counter() - started, 2)
  return record


def save(path, params, state):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(path, "params"), params)
  checkpointer.save(os.path.join(path, "opt_state"), state)
  checkpointer.wait_until_finished()


def train(mesh, lanes, checkpoints):
  """``STEPS`` steps of every lane on the global mesh, in one program.

  Returns ``{"lanes": [shards of (params, state)]}``; saves the lanes of
  ``_registry.SHARDED_CHECKPOINTS`` fed globally under ``checkpoints``.
  """
  txs = [_registry.build(name) for _, name in lanes]
  params = _sharded_check.placer(mesh)(_registry.mlp_params(jax.random.key(0)))
  states = [place_state(mesh, tx.init(params)) for tx in txs]
  params = [params] * len(lanes)
  step = make_step(mesh, lanes, txs)
  for i in range(STEPS):
    rows = local_batch(mesh, i)
    host = [host_loss(p, rows) if feed.startswith("host") else None
            for (feed, _), p in zip(lanes, params)]
    params, states = step(params, states, *global_batch(mesh, rows), host)
  for (feed, name), p, state in zip(lanes, params, states):
    if feed == "global" and name in _registry.SHARDED_CHECKPOINTS:
      save(os.path.join(checkpoints, name), p, state)
  return {"lanes": [shards(tree) for tree in zip(params, states)]}


def reshard(names, checkpoints):
  """Restores the two-process checkpoints of ``names`` onto this process.

  The target is a 2x2 mesh with automatic axes over this process's 4
  devices (saved: 4x2, explicit axes, 8 devices in 2 processes), with the
  shardings of ``optax_greedy.abstract_opt_state``. Returns, per name, the
  restored values (to compare bit for bit with the saved ones), the layout
  problems of the restored state, the state after ``RESUMED`` more steps,
  and whether those equal ``RESUMED`` steps from the saved values put onto
  the same shardings by ``jax.device_put``.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((2, 2), ("data", "model"),
                       axis_types=(AxisType.Auto,) * 2,
                       devices=jax.local_devices())
  txs = [_registry.build(name) for name in names]
  with jax.set_mesh(mesh):
    target = jax.tree.map(
        lambda p, spec: jax.ShapeDtypeStruct(
            p.shape, p.dtype, sharding=NamedSharding(mesh, spec)),
        jax.eval_shape(_registry.mlp_params, jax.random.key(0)),
        _sharded_check.PARAM_SPECS)
    params, states = [], []
    for name, tx in zip(names, txs):
      path = os.path.join(checkpoints, name)
      params.append(ocp.StandardCheckpointer().restore(
          os.path.join(path, "params"), target))
      states.append(og.restore_opt_state(os.path.join(path, "opt_state"),
                                         og.abstract_opt_state(tx, target)))
    restored = local_copy((params, states))
    step = make_step(mesh, [("global", name) for name in names], txs,
                     _registry.mlp_loss)

    def resume(params, states):
      for i in range(STEPS, STEPS + RESUMED):
        x, y = jax.device_put(_registry.batch(i),
                              NamedSharding(mesh, P("data", None)))
        params, states = step(params, states, x, y, [None] * len(names))
      return params, states

    resumed = resume(params, states)
    again = resume(*jax.device_put(
        restored, jax.tree.map(lambda leaf: leaf.sharding, (params, states))))
    problems = [_sharded_check.layouts(mesh, p, new_p, state)[1:]
                for p, new_p, state in zip(params, resumed[0], states)]
  resumed, again = local_copy(resumed), local_copy(again)
  return {name: {
      "restored": (restored[0][i], restored[1][i]),
      "layout_problems": problems[i][0] + problems[i][1],
      "resumed": (resumed[0][i], resumed[1][i]),
      "resumed_bitwise": all(
          np.array_equal(a, b) for a, b in
          zip(jax.tree.leaves((resumed[0][i], resumed[1][i])),
              jax.tree.leaves((again[0][i], again[1][i]))))}
                for i, name in enumerate(names)}


def main(coordinator, num_processes, process_id, out_dir):
  started = time.perf_counter()
  start(coordinator, int(num_processes), int(process_id))
  records = {"devices": jax.device_count(),
             "local_devices": jax.local_device_count(),
             "processes": jax.process_count(),
             "collectives": jax.config.jax_cpu_collectives_implementation,
             "start_seconds": round(time.perf_counter() - started, 2),
             "programs": []}
  checkpoints = os.path.join(out_dir, "checkpoints")
  mesh = jax.make_mesh(_sharded_check.MESH_SHAPE, ("data", "model"))
  with jax.set_mesh(mesh):
    for lanes in PROGRAMS:
      records["programs"].append(
          (lanes, recorded(lambda: train(mesh, lanes, checkpoints))))
  records["reshard"] = recorded(
      lambda: {"names": reshard(_registry.SHARDED_CHECKPOINTS, checkpoints)})
  records["seconds"] = round(time.perf_counter() - started, 2)
  with open(os.path.join(out_dir, f"process{process_id}.pkl"), "wb") as f:
    pickle.dump(records, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
