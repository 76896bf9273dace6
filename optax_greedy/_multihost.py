"""An opt-in check that every device observes the same loss.

Under ``jax.jit`` a replicated array is one value: the compiler assumes its
copies agree and never compares them. A loss fed to ``update`` as ``value=``
breaks that assumption silently when it was computed per host (outside the
jitted step, from this host's rows) or per shard (inside ``jax.shard_map``
without a mean): each device then updates its copy of a loss-driven rate
with its own loss, and the replicated state and the parameters drift apart.
"""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jax.sharding import PartitionSpec as P

_MESSAGE = ("value (the loss fed to update) differs between the devices of"
            " the mesh: compute it inside the jitted step over the global"
            " batch, or take jax.lax.pmean of a per-shard loss")


def _same_everywhere(value, axes):
  """True on every device when all devices' copies have the same bits."""
  unsigned = jnp.dtype(f"uint{8 * value.dtype.itemsize}")
  bits = jax.lax.bitcast_convert_type(value, unsigned)
  return jnp.all(jax.lax.pmin(bits, axes) == jax.lax.pmax(bits, axes))


def checked_value(value: Any, *, mesh: Optional[Any] = None) -> jax.Array:
  """Returns ``value``, checked to hold the same bits on every device.

  Put it around the loss given to ``update`` while debugging a sharded or
  multi-host run::

    updates, state = tx.update(grads, state, params,
                               value=optax_greedy.checked_value(loss))

  and run the step under ``jax.experimental.checkify.checkify``: the error
  it returns (``err.throw()``) names the problem when any device's copy of
  ``value`` differs from another's, which makes every loss-driven rate
  (GreedyLR, learned schedules) differ between devices. Bits are compared,
  so NaN on every device passes and ``0.0`` against ``-0.0`` fails.

  Cost: two all-reduces of ``value``'s size (a minimum and a maximum over
  every mesh axis) inside the step, and checkify's error output, which the
  host reads when it calls ``err.throw()``. On more than one device, a
  jitted step that calls it without ``checkify`` fails to trace, so the
  check cannot stay in a production step by accident. On one device it
  returns ``value`` as is.

  Args:
    value: the loss (or any replicated floating-point array).
    mesh: the mesh whose devices must agree. Default ``None``: the mesh set
      by ``jax.set_mesh``.

  Returns:
    ``value``, unchanged.

  Raises:
    ValueError: if ``value`` is not floating point, or ``mesh`` is ``None``
      and no mesh is set while JAX has more than one device.

  Example:
    >>> import jax, jax.numpy as jnp, optax_greedy
    >>> from jax.experimental import checkify
    >>> step = jax.jit(checkify.checkify(
    ...     lambda x: optax_greedy.checked_value(jnp.mean(x))))
    >>> err, value = step(jnp.arange(4.0))
    >>> err.throw()  # every device holds the same mean: no error
    >>> float(value)
    1.5
  """
  value = jnp.asarray(value)
  if not jnp.issubdtype(value.dtype, jnp.floating):
    raise ValueError(f"value must be a floating-point array, got dtype"
                     f" {value.dtype}.")
  context = jax.sharding.get_abstract_mesh()
  names = mesh.axis_names if mesh is not None else context.axis_names
  size = mesh.size if mesh is not None else context.size
  if mesh is None and context.empty:
    if jax.device_count() == 1:
      return value
    raise ValueError(
        f"mesh=None and no mesh is set, with {jax.device_count()} devices:"
        " pass mesh= or call inside `with jax.set_mesh(mesh):`.")
  if size == 1:
    return value
  same = jax.shard_map(
      functools.partial(_same_everywhere, axes=tuple(names)), mesh=mesh,
      in_specs=P(), out_specs=P(), check_vma=False)(value)
  checkify.check(same, _MESSAGE)
  return value
