"""Checked restore of optimizer states from Orbax checkpoints.

An optimizer state's structure depends on hyperparameters: GreedyLR's window
has ``window_size`` entries, a hypergradient rate is a scalar, a tree of
scalars or a tree shaped like the params depending on ``granularity``. Orbax
refuses most mismatches with messages that do not say which field is wrong,
and casts a different dtype silently. These helpers compare first and name the
field; :func:`abstract_opt_state` gives the target that restores a state onto
other devices than it was saved from.
"""

from typing import Any

import jax
import numpy as np
import optax

_SHOWN = 10


def _key_name(key) -> str:
  """One path entry as a string: a dict key, a field name or an index.

  Orbax stores named tuples as dicts of their fields and tuples as lists, so a
  field and a dict key of the same name (and a tuple index and a list index)
  must read the same.
  """
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _flat(tree) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {".".join(_key_name(k) for k in path) or "<root>": leaf
          for path, leaf in leaves}


def _describe(leaf) -> str:
  return f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}"


def check_state_compatible(stored: Any, expected: Any) -> None:
  """Raises ``ValueError`` unless ``stored`` has ``expected``'s layout.

  The layout is the set of leaf paths (field names, dict keys, indices) and
  each leaf's shape and dtype. Paths are compared by name, so a checkpoint's
  metadata (where named tuples became dicts and tuples became lists) matches
  the state it was saved from.

  Args:
    stored: a pytree whose leaves have ``shape`` and ``dtype``: an Orbax
      checkpoint's metadata tree (e.g.
      ``checkpointer.metadata(path).item_metadata.tree``), a state, or
      ``jax.ShapeDtypeStruct`` leaves.
    expected: the same for the state the optimizer will use, typically
      ``jax.eval_shape(tx.init, params)``.

  Raises:
    ValueError: naming every mismatching field (the first ten) with both
      shapes and dtypes, and the fields present on one side only.

  Example:
    >>> import jax, jax.numpy as jnp, optax_greedy
    >>> params = {"w": jnp.ones(3)}
    >>> saved = jax.eval_shape(optax_greedy.greedy_lr(0.1).init, params)
    >>> wanted = jax.eval_shape(
    ...     optax_greedy.greedy_lr(0.1, window_size=5).init, params)
    >>> optax_greedy.check_state_compatible(saved, wanted)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The checkpointed optimizer state does not match the optimizer: window: checkpoint float32[50], optimizer float32[5]. ...
  """
  have, want = _flat(stored), _flat(expected)
  problems = [f"{path}: checkpoint {_describe(have[path])}, optimizer"
              f" {_describe(want[path])}"
              for path in want if path in have
              and (tuple(have[path].shape) != tuple(want[path].shape)
                   or np.dtype(have[path].dtype) != np.dtype(want[path].dtype))]
  missing = [path for path in want if path not in have]
  extra = [path for path in have if path not in want]
  if missing:
    problems.append("missing from the checkpoint: " + ", ".join(missing))
  if extra:
    problems.append("not in the optimizer's state: " + ", ".join(extra))
  if problems:
    shown = "; ".join(problems[:_SHOWN])
    more = (f" (and {len(problems) - _SHOWN} more)"
            if len(problems) > _SHOWN else "")
    raise ValueError(
        "The checkpointed optimizer state does not match the optimizer: "
        f"{shown}{more}. It was saved with other hyperparameters (e.g."
        " window_size, smooth, granularity, the chain) or other params;"
        " build the optimizer as it was when the state was saved.")


def _on_current_mesh(abstract_state):
  """Moves shardings over an abstract mesh onto the mesh of ``jax.set_mesh``.

  Under a mesh with explicit axes, ``jax.eval_shape(tx.init, params)`` gives
  the leaves that follow a parameter a ``NamedSharding`` over an
  ``AbstractMesh``, which names no devices; Orbax needs devices.
  """
  mesh = jax.sharding.get_mesh()

  def concrete(leaf):
    sharding = getattr(leaf, "sharding", None)
    if not (isinstance(sharding, jax.sharding.NamedSharding)
            and isinstance(sharding.mesh, jax.sharding.AbstractMesh)):
      return leaf
    if mesh.empty or mesh.shape_tuple != sharding.mesh.shape_tuple:
      raise ValueError(
          f"abstract_state has shardings over {sharding.mesh}, but the mesh"
          f" set by jax.set_mesh is {mesh}: restore inside"
          " `with jax.set_mesh(mesh):` with the mesh of the params.")
    return jax.ShapeDtypeStruct(
        leaf.shape, leaf.dtype,
        sharding=jax.sharding.NamedSharding(mesh, sharding.spec))

  return jax.tree.map(concrete, abstract_state)


def _replicated(sharding):
  """A sharding that replicates over ``sharding``'s devices."""
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh,
                                      jax.sharding.PartitionSpec())
  if sharding.is_fully_replicated:
    return sharding
  raise ValueError(
      f"params must be sharded with NamedSharding or replicated, got"
      f" {sharding}.")


def abstract_opt_state(tx: Any, params: Any) -> Any:
  """The layout of ``tx.init(params)``, shardings included, without arrays.

  What :func:`restore_opt_state` needs to restore a state onto other devices
  than it was saved from (another mesh shape, fewer hosts, one device): the
  shape and dtype of every leaf, and its sharding on ``params``' devices.
  Every leaf that holds one entry per parameter entry (Adam's moments, a
  hypergradient's direction and per-parameter rate) gets its parameter's
  sharding; every other leaf (counters, GreedyLR's rate and window, global,
  per-tensor and per-group rates) is replicated over the devices of the
  first parameter. That is the layout ``tx.init`` gives sharded params and
  a jitted step keeps. The leaves that follow a parameter are found with
  :func:`optax.tree.map_params`.

  Args:
    tx: the optimizer, built as it was when the state was saved.
    params: the params on the new devices, as arrays or as
      ``jax.ShapeDtypeStruct`` with ``sharding=`` set (e.g. the target given
      to Orbax to restore them).

  Returns:
    ``jax.eval_shape(tx.init, params)`` with ``sharding=`` set on every
    leaf.

  Raises:
    ValueError: if a leaf of ``params`` has no sharding, or a sharding that
      is neither a ``NamedSharding`` nor replicated.

  Example:
    >>> import jax, jax.numpy as jnp, optax_greedy
    >>> params = {"w": jnp.ones((4, 2))}
    >>> abstract = optax_greedy.abstract_opt_state(
    ...     optax_greedy.greedy_adam(0.1), params)
    >>> sorted({type(leaf.sharding).__name__
    ...         for leaf in jax.tree.leaves(abstract)})
    ['SingleDeviceSharding']
  """
  shardings = [getattr(leaf, "sharding", None)
               for leaf in jax.tree.leaves(params)]
  if not shardings or any(s is None for s in shardings):
    raise ValueError(
        "params must be arrays or jax.ShapeDtypeStruct with sharding= set on"
        " every leaf (the params on the devices to restore onto).")
  replicated = _replicated(shardings[0])
  state = jax.eval_shape(tx.init, params)

  def with_sharding(leaf, sharding):
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

  def follow(leaf, param):
    # A tree of one scalar per tensor mirrors the params' structure only.
    same = tuple(leaf.shape) == tuple(param.shape)
    return with_sharding(leaf, param.sharding if same else replicated)

  return optax.tree.map_params(
      tx, follow, state, params,
      transform_non_params=lambda leaf: with_sharding(leaf, replicated))


def restore_opt_state(path: Any, abstract_state: Any, *,
                      checkpointer: Any = None) -> Any:
  """Restores an optimizer state saved with Orbax, after checking its layout.

  Reads the checkpoint's metadata, checks it against ``abstract_state`` with
  :func:`check_state_compatible` (so a state saved with other
  structure-changing hyperparameters fails with the field named, and a
  different dtype fails instead of being cast), then restores into
  ``abstract_state``.

  Shardings: a leaf of ``abstract_state`` with a sharding is restored with
  it; one without (``jax.eval_shape`` gives none under a mesh with automatic
  axes, nor to the scalars) gets the sharding it was saved with, which is
  right when the devices are the same as at saving. Under explicit axes,
  ``jax.eval_shape(tx.init, params)`` gives the leaves that follow a
  parameter their parameter's sharding over an abstract mesh: call this
  inside ``with jax.set_mesh(mesh):`` and they are restored onto ``mesh``.

  Orbax is an optional dependency: it is imported here, only when no
  ``checkpointer`` is given.

  Args:
    path: the checkpoint directory the state was saved to, e.g. by
      ``orbax.checkpoint.StandardCheckpointer().save(path, opt_state)``.
    abstract_state: the state to restore into, as ``jax.ShapeDtypeStruct``
      leaves: ``jax.eval_shape(tx.init, params)``, optionally with
      ``sharding=`` set on the leaves (see above).
    checkpointer: an Orbax checkpointer with ``metadata(path)`` and
      ``restore(path, target)``. Default ``None``: a new
      ``orbax.checkpoint.StandardCheckpointer()``.

  Returns:
    The restored state, with ``abstract_state``'s structure (named tuples
    included).

  Raises:
    ValueError: if the checkpoint's layout differs from ``abstract_state``'s,
      or its shardings are over an abstract mesh that is not the current one.

  Example:
    >>> import orbax.checkpoint as ocp  # doctest: +SKIP
    >>> ocp.StandardCheckpointer().save("/tmp/ckpt/opt", opt_state)  # doctest: +SKIP
    >>> opt_state = optax_greedy.restore_opt_state(  # doctest: +SKIP
    ...     "/tmp/ckpt/opt", jax.eval_shape(tx.init, params))
  """
  if checkpointer is None:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  metadata = getattr(metadata, "item_metadata", metadata)
  metadata = getattr(metadata, "tree", metadata)
  check_state_compatible(metadata, abstract_state)
  return checkpointer.restore(path, _on_current_mesh(abstract_state))
