"""Two JAX processes, one optimizer state: every transform across hosts.

Two processes on this machine join JAX's distributed runtime (a coordinator
on a free localhost port, CPU collectives over gloo), each with 4 CPU
devices, and train the MLP of ``_registry`` on one global 4x2 mesh, each
process feeding its own rows of every batch (``tests/_multihost_worker.py``;
all transforms run in one pair of processes). The tests check that

* every copy of every entry of the params and the state is the same on all
  8 devices of both processes, and equal to a single-device run on the same
  global batches (computed here, in the pytest process);
* a loss computed per host (outside the jitted step) or per shard (inside
  ``shard_map`` without a mean) makes the copies drift apart without any
  error, ``jax.lax.pmean`` keeps them together, and
  ``optax_greedy.checked_value`` catches the first and passes the second;
* a state saved by the two processes restores bit for bit onto other
  devices (a 2x2 mesh of one process's 4 devices; this process's single
  device) with ``abstract_opt_state``'s shardings, and trains on;
* ``examples/sharded_training.py --distributed`` runs as two processes and
  both print the same losses, rates and accuracy.
"""

import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

import _multihost_worker as worker
import _registry
import _sharded_check
import optax_greedy as og

HERE = pathlib.Path(__file__).resolve().parent
# Its meshes are explicit (jax.make_mesh's default).
NAMES = [n for n in _registry.REGISTRY if n not in _registry.NO_EXPLICIT_MESH]
PROCESSES = 2
# Each process's hard limit: several seconds of JAX start-up and compilation
# on a loaded two-core machine, against minutes for a collective that hangs.
TIMEOUT = 180
# As in test_sharding.py: float32 sums split over devices are added in
# another order than on one device; 1e-5 of each leaf's largest entry
# covers six steps of that and fails on a real difference. Integer state
# must match exactly.
RTOL = 1e-5
# What sharded_training.py prints of its run: each step's loss and rate,
# and the accuracy (gloo's messages may cut into its lines).
_NUMBERS = re.compile(r"step +\d+ +loss [\d.]+ +lr [\d.e+-]+|test accuracy"
                      r" [\d.]+")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(argv, logs, env):
  with open(logs[0], "w") as stdout, open(logs[1], "w") as stderr:
    proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=stdout,
                            stderr=stderr)
  proc.logs = logs
  return proc


def _start_pair(tmp, tag, argv, xla_flags=""):
  """Starts ``argv(process_id, coordinator)`` as each of two processes.

  XLA compiles their programs without LLVM's optimisations, which takes a
  third less time; the tests compare values, not speed.
  """
  coordinator = f"localhost:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"{xla_flags} --xla_backend_optimization_level=0").strip())
  return [_start(argv(i, coordinator),
                 [tmp / f"{tag}{i}.{kind}" for kind in ("out", "err")], env)
          for i in range(PROCESSES)]


def _read(log):
  """A log without gloo's connection messages."""
  return "".join(line for line in log.read_text().splitlines(keepends=True)
                 if "[Gloo]" not in line)


def _finish(procs, deadline):
  """Waits for every process of a pair; returns their stdouts.

  On a failure or past ``deadline`` kills them all and fails with every
  process's stderr.
  """
  try:
    for proc in procs:
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    failed = any(proc.returncode != 0 for proc in procs)
  except subprocess.TimeoutExpired:
    failed = True
  if failed:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    pytest.fail("\n".join(
        f"process {i} (exit {proc.returncode}):\n"
        f"{_read(proc.logs[1])[-4000:]}" for i, proc in enumerate(procs)))
  return [proc.logs[0].read_text() for proc in procs]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
  """Starts the worker pair and the example pair, side by side."""
  if "jax_cpu_collectives_implementation" not in jax.config.values:
    pytest.skip(f"jax {jax.__version__} has no CPU collectives"
                " (jax_cpu_collectives_implementation): the processes could"
                " not compute together")
  tmp = tmp_path_factory.mktemp("multihost")
  pairs = {
      "worker": _start_pair(tmp, "worker", lambda i, coordinator: [
          str(HERE / "_multihost_worker.py"), coordinator, str(PROCESSES),
          str(i), str(tmp)]),
      "example": _start_pair(tmp, "example", lambda i, coordinator: [
          str(HERE.parent / "examples" / "sharded_training.py"),
          "--distributed", "--coordinator", coordinator, "--num-processes",
          str(PROCESSES), "--process-id", str(i), "--mesh", "4x2",
          "--steps", "3", "--log-every", "1"],
          xla_flags="--xla_force_host_platform_device_count=4"),
  }
  deadline = time.monotonic() + TIMEOUT
  yield pairs, tmp, deadline
  for procs in pairs.values():
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def reference(launched):
  """Single-device runs on the same global batches, while the pair runs.

  Per transform: its jitted step, and its params and state after
  ``worker.STEPS`` and ``worker.STEPS + worker.RESUMED`` steps.
  """
  del launched  # started first, so that both run at once
  runs = {}
  for name in NAMES:
    tx = _registry.build(name)
    step = _registry.train_step(tx)
    params = _registry.mlp_params(jax.random.key(0))
    trees = [(params, tx.init(params))]
    for i in range(worker.STEPS + worker.RESUMED):
      trees.append(step(*trees[-1], *_registry.batch(i)))
    runs[name] = (step, trees[worker.STEPS], trees[-1])
  return runs


@pytest.fixture(scope="module")
def records(launched, reference):
  """Both processes' records: ``(lanes, record)`` per program."""
  del reference  # computed while the processes run
  pairs, tmp, deadline = launched
  _finish(pairs["worker"], deadline)
  return [pickle.loads((tmp / f"process{i}.pkl").read_bytes())
          for i in range(PROCESSES)]


def _lane(records, lane):
  """``{path: (shape, [(process, device, index, data)])}`` of ``lane``'s
  run in every process."""
  merged = {}
  for process, record in enumerate(records):
    (found,) = [(lanes.index(lane), run) for lanes, run in
                record["programs"] if lane in lanes]
    index, run = found
    if run["status"] != "ok":
      pytest.fail(f"{lane} in process {process} raised {run['error']}\n"
                  f"{run['traceback']}")
    for path, (shape, shards) in run["lanes"][index].items():
      merged.setdefault(path, (shape, []))[1].extend(
          (process, device, idx, data) for device, idx, data in shards)
  return merged


def _disagreeing(merged, within=None):
  """Leaves whose copies of some entry differ (within one process only,
  if ``within`` is given)."""
  found = []
  for path, (_, shards) in merged.items():
    copies = {}
    for process, _, index, data in shards:
      if within is None or process == within:
        copies.setdefault(index, set()).add(data.tobytes())
    if any(len(bits) > 1 for bits in copies.values()):
      found.append(path)
  return found


def _assembled(merged):
  """``{path: global array}`` from the shards (every entry is covered)."""
  out = {}
  for path, (shape, shards) in merged.items():
    array = np.empty(shape, shards[0][3].dtype)
    for _, _, index, data in shards:
      array[tuple(slice(*span) for span in index)] = data
    out[path] = array
  return out


def _flat(tree):
  return {".".join(path): np.asarray(leaf)
          for path, leaf in _sharded_check.paths(tree)}


def _differences(expected, actual):
  """The leaves of two ``{path: array}`` that differ: integers at all,
  floats by more than ``RTOL`` of the leaf's largest entry."""
  assert sorted(expected) == sorted(actual)
  found = []
  for path, a in expected.items():
    b = actual[path]
    if not np.issubdtype(a.dtype, np.floating):
      if not np.array_equal(a, b):
        found.append(f"{path}: {a} != {b}")
      continue
    scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-3)
    rel = float(np.max(np.abs(a - b), initial=0.0)) / scale
    if rel > RTOL:
      found.append(f"{path}: off by {rel:.2e} of its largest entry")
  return found


@pytest.mark.slow
def test_processes_form_one_mesh(records):
  for record in records:
    assert (record["devices"], record["local_devices"],
            record["processes"]) == (8, 4, 2)
    assert record["collectives"] == "gloo"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_device_holds_the_same_state(records, name):
  merged = _lane(records, ("global", name))
  assert _disagreeing(merged) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_state_equals_a_single_device_run(records, reference, name):
  merged = _lane(records, ("global", name))
  expected = _flat(reference[name][1])
  assert _differences(expected, _assembled(merged)) == []


@pytest.mark.slow
def test_host_local_loss_drifts_apart_silently(records):
  """Each process feeds its own rows' loss: no error, two states."""
  merged = _lane(records, ("host", worker.DEMO))
  drifted = _disagreeing(merged)
  # GreedyLR's next rate and best loss, and then the params themselves.
  assert {"1.1.next_learning_rate", "1.1.best", "0.w1"} <= set(drifted)
  # Each process agrees with itself: the two hosts hold two states.
  for process in range(PROCESSES):
    assert _disagreeing(merged, within=process) == []


@pytest.mark.slow
def test_per_shard_loss_drifts_apart_silently(records):
  """A loss per data shard inside shard_map, not averaged: the devices of
  each data shard decide on their own, within one process too."""
  merged = _lane(records, ("shard", worker.DEMO))
  assert "1.1.next_learning_rate" in _disagreeing(merged, within=0)
  assert "0.w1" in _disagreeing(merged)


@pytest.mark.slow
def test_pmean_of_the_shard_losses_keeps_one_state(records, reference):
  merged = _lane(records, ("pmean", worker.DEMO))
  assert _disagreeing(merged) == []
  # The mean of equal shards' means is the global loss: the same run.
  expected = _flat(reference[worker.DEMO][1])
  assert _differences(expected, _assembled(merged)) == []


@pytest.mark.slow
def test_checked_value_catches_the_host_local_loss(records):
  for record in records:
    (run,) = [run for lanes, run in record["programs"]
              if lanes == (("host+check", worker.DEMO),)]
    assert run["status"] == "error"
    assert "value (the loss fed to update) differs between the devices" in (
        run["error"])


@pytest.mark.slow
def test_checked_value_passes_the_pmean_recipe(records, reference):
  merged = _lane(records, ("pmean+check", worker.DEMO))
  assert _disagreeing(merged) == []
  expected = _flat(reference[worker.DEMO][1])
  assert _differences(expected, _assembled(merged)) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", _registry.SHARDED_CHECKPOINTS)
def test_restore_onto_one_process_s_2x2_mesh(records, reference, name):
  """Saved from 8 devices in two processes, restored by each process onto
  a 2x2 mesh of its own 4 devices with automatic axes."""
  saved = _assembled(_lane(records, ("global", name)))
  after = reference[name][2]
  for record in records:
    reshard = record["reshard"]
    assert reshard["status"] == "ok", reshard.get("traceback")
    result = reshard["names"][name]
    restored = _flat(result["restored"])
    assert all(restored[p].tobytes() == saved[p].tobytes() for p in saved)
    assert result["layout_problems"] == []
    assert result["resumed_bitwise"]
    assert _differences(_flat(after), _flat(result["resumed"])) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", _registry.SHARDED_CHECKPOINTS)
def test_restore_onto_this_single_device(records, reference, name, launched):
  """Saved from two processes, restored in this one onto its one device."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  saved = _assembled(_lane(records, ("global", name)))
  path = launched[1] / "checkpoints" / name
  device = jax.devices()[0]
  target = jax.tree.map(
      lambda p: jax.ShapeDtypeStruct(
          p.shape, p.dtype,
          sharding=jax.sharding.SingleDeviceSharding(device)),
      jax.eval_shape(_registry.mlp_params, jax.random.key(0)))
  params = ocp.StandardCheckpointer().restore(path / "params", target)
  state = og.restore_opt_state(
      path / "opt_state", og.abstract_opt_state(_registry.build(name),
                                                target))
  assert all(leaf.sharding.device_set == {device}
             for leaf in jax.tree.leaves(state))
  restored = _flat((params, state))
  assert all(restored[p].tobytes() == saved[p].tobytes() for p in saved)
  step, _, after = reference[name]
  for i in range(worker.STEPS, worker.STEPS + worker.RESUMED):
    params, state = step(params, state, *_registry.batch(i))
  assert _differences(_flat(after), _flat((params, state))) == []


@pytest.mark.slow
def test_distributed_example_runs(launched):
  """``sharded_training.py --distributed``: two processes, one run."""
  pairs, _, deadline = launched
  outputs = _finish(pairs["example"], deadline)
  assert "8 devices, 2 process(es)" in outputs[0], outputs[0]
  # Losses, rates and accuracies are global values: both print the same.
  runs = [_NUMBERS.findall(output) for output in outputs]
  assert runs[0] == runs[1], outputs
  # Two optimizers, three steps and an accuracy each.
  assert len(runs[0]) == 8, outputs[0]


def test_checked_value_on_one_device_returns_the_value():
  assert og.checked_value(np.float32(1.5)) == 1.5


def test_checked_value_refuses_integers():
  with pytest.raises(ValueError, match="value must be a floating-point"):
    og.checked_value(np.int32(3))


def test_abstract_opt_state_needs_shardings():
  params = jax.eval_shape(_registry.mlp_params, jax.random.key(0))
  with pytest.raises(ValueError, match="params must be arrays or"):
    og.abstract_opt_state(og.greedy_adam(0.1), params)
