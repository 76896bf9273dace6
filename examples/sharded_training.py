"""Data- and model-parallel training with GreedyLR (and hypergradient descent).

A Flax NNX MLP classifies scikit-learn's digits on a 2-D device mesh:
batches are split over the ``data`` axis, the hidden layer over the ``model``
axis (the first kernel by columns, the second by rows, Megatron style). The
optimizer is an ordinary optax transform, so JAX's sharding does the rest:
Adam's moments and the hypergradient's stored directions live next to their
parameter shards, GreedyLR's rate and counters are replicated scalars, and
the hypergradient's global dot product is a sum of per-shard partial sums
(an all-reduce of scalars, no parameter is gathered). ``tests/test_sharding.py``
checks those claims on the same kind of mesh.

On a CPU it fakes 8 devices (the flag must be set before JAX starts, which
this script does when run directly):

    python examples/sharded_training.py --steps 200

On a TPU pod or several GPU hosts, start the same script on every host with
``--distributed`` (``jax.distributed.initialize()`` then finds the other
hosts) and a ``--mesh`` matching the global device count; each host feeds its
own slice of every batch (``jax.make_array_from_process_local_data``). Where
no cluster is detected (processes started by hand), name it: with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set, two processes on
one machine are

    python examples/sharded_training.py --distributed --mesh 4x2
        --coordinator localhost:12345 --num-processes 2 --process-id 0  # and 1

(``tests/test_multihost.py`` runs exactly that).
"""

import argparse
import os
import sys

if "jax" not in sys.modules and "--xla_force_host_platform_device_count" \
    not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from sklearn.datasets import load_digits

import optax_greedy


class MLP(nnx.Module):
  """``64 -> width -> 10`` with the hidden units sharded over ``model``."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(
        64, width, rngs=rngs,
        kernel_metadata={"out_sharding": (None, "model")},
        bias_metadata={"out_sharding": ("model",)})
    self.out = nnx.Linear(
        width, 10, rngs=rngs,
        kernel_metadata={"out_sharding": ("model", None)},
        bias_metadata={"out_sharding": (None,)})

  def __call__(self, x):
    h = jax.nn.relu(self.hidden(x))
    # The second product sums over the sharded hidden units; with explicit
    # mesh axes the output sharding must be named (batch over "data").
    explicit = jax.sharding.get_abstract_mesh().are_all_axes_explicit
    return self.out(h, out_sharding=P("data", None) if explicit else None)


def optimizers(learning_rate: float):
  """The optimizers compared, by name (HD when the package has it)."""
  found = {"adam+greedy_lr": optax_greedy.greedy_adam(
      learning_rate, patience=5, window_size=10)}
  if hasattr(optax_greedy, "hd_adam"):
    found["hd_adam (global)"] = optax_greedy.hd_adam(learning_rate)
  return found


def make_mesh(shape: str, axes: str):
  data, model = (int(n) for n in shape.split("x"))
  kind = AxisType.Explicit if axes == "explicit" else AxisType.Auto
  return jax.make_mesh((data, model), ("data", "model"),
                       axis_types=(kind, kind))


def global_batch(mesh, local_x, local_y):
  """Assembles the global batch from this host's rows (all rows, one host)."""
  x = jax.make_array_from_process_local_data(
      NamedSharding(mesh, P("data", None)), local_x)
  y = jax.make_array_from_process_local_data(
      NamedSharding(mesh, P("data")), local_y)
  return x, y


@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads, value=loss)
  rate = optax.tree.get(nnx.as_pure(optimizer.opt_state), "learning_rate")
  return loss, rate


@nnx.jit
def accuracy(model, x, y):
  return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


def train(name, tx, mesh, data, args):
  """Trains a fresh model with ``tx``; returns losses, rates, accuracy."""
  (x_train, y_train), (x_test, y_test) = data
  rng = np.random.default_rng(args.seed)
  per_host = args.batch_size // jax.process_count()
  mine = slice(jax.process_index() * per_host,
               (jax.process_index() + 1) * per_host)
  with jax.set_mesh(mesh):
    model = MLP(args.width, rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    losses, rates = [], []
    for step in range(args.steps):
      # Every host draws the global batch and feeds its own slice of it.
      rows = rng.integers(0, len(x_train), args.batch_size)[mine]
      loss, rate = train_step(model, optimizer,
                              *global_batch(mesh, x_train[rows],
                                            y_train[rows]))
      losses.append(float(loss))
      rates.append(float(rate))
      if step % args.log_every == 0 or step == args.steps - 1:
        print(f"{name:>18} step {step:4d}  loss {losses[-1]:.4f}"
              f"  lr {rates[-1]:.2e}")
    acc = float(accuracy(model, *global_batch(mesh, x_test, y_test)))
    state = nnx.as_pure(optimizer.opt_state)
    print(f"{name:>18} test accuracy {acc:.3f}; shardings: hidden kernel"
          f" {model.hidden.kernel[...].sharding.spec}, its Adam moment"
          f" {optax.tree.get(state, 'mu')['hidden']['kernel'].sharding.spec},"
          f" rate {optax.tree.get(state, 'learning_rate').sharding.spec}")
  return {"losses": losses, "rates": rates, "accuracy": acc}


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=int, default=150,
                      help="training steps of each optimizer")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="global batch, a multiple of the data axis")
  parser.add_argument("--width", type=int, default=64,
                      help="hidden units of the MLP (split over the model"
                      " axis)")
  parser.add_argument("--learning-rate", type=float, default=3e-3,
                      help="initial rate of every optimizer")
  parser.add_argument("--mesh", default="4x2", help="DATAxMODEL devices")
  parser.add_argument("--axes", choices=("explicit", "auto"),
                      default="explicit",
                      help="mesh axis types (explicit is jax.make_mesh's)")
  parser.add_argument("--distributed", action="store_true",
                      help="call jax.distributed.initialize() (multi-host)")
  parser.add_argument("--coordinator", default=None,
                      help="with --distributed: HOST:PORT of process 0, where"
                      " the cluster is not detected (e.g. processes started"
                      " by hand)")
  parser.add_argument("--num-processes", type=int, default=None,
                      help="with --coordinator: how many processes")
  parser.add_argument("--process-id", type=int, default=None,
                      help="with --coordinator: this process's index")
  parser.add_argument("--log-every", type=int, default=50,
                      help="print the loss and rate every this many steps")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the model and the minibatches")
  args = parser.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize(args.coordinator, args.num_processes,
                               args.process_id)
  mesh = make_mesh(args.mesh, args.axes)
  print(f"{jax.device_count()} devices, {jax.process_count()} process(es),"
        f" mesh {dict(mesh.shape)}")
  images, labels = load_digits(return_X_y=True)
  images = (images / 16.0).astype(np.float32)
  labels = labels.astype(np.int32)
  order = np.random.default_rng(args.seed).permutation(len(images))
  split = int(0.8 * len(images))
  train_rows, test_rows = order[:split], order[split:]
  # Each host holds an equal share of the test set, a multiple of the number
  # of its devices along "data" (one host: all of it, rounded down).
  per_host = len(test_rows) // jax.process_count()
  per_host -= per_host % max(1, mesh.shape["data"] // jax.process_count())
  share = test_rows[jax.process_index() * per_host:][:per_host]
  data = ((images[train_rows], labels[train_rows]),
          (images[share], labels[share]))
  return {name: train(name, tx, mesh, data, args)
          for name, tx in optimizers(args.learning_rate).items()}


if __name__ == "__main__":
  main()
