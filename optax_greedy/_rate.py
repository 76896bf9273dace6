"""Reading the learning rate applied by the last update from any state."""

import jax
import optax


def get_learning_rate(state: optax.OptState) -> optax.Updates:
  """The rate applied by the most recent update, from an optimizer state.

  ``optax.tree.get(state, "learning_rate")`` finds it in a chain of this
  library's transforms. Under :func:`optax.inject_hyperparams` the state
  holds a second ``learning_rate``, the hyperparameter (the rate you
  passed, not the one applied), and ``optax.tree.get`` then raises; this
  function skips the hyperparameters and works in both cases.

  Args:
    state: an optimizer state that contains exactly one transform of this
      library (possibly inside ``optax.chain``,
      ``optax.inject_hyperparams``, ``optax.MultiSteps``...).

  Returns:
    The state's ``learning_rate`` field: a scalar, or a pytree that is a
    prefix of the params (one rate per block, per leaf or per element).

  Raises:
    ValueError: if the state holds no such field, or several (two rate
      controllers chained, whose rates multiply: the message says so).

  Example:
    >>> import jax.numpy as jnp, optax, optax_greedy
    >>> tx = optax.inject_hyperparams(
    ...     optax_greedy.greedy_adam, static_args=("window_size",))(1e-3)
    >>> state = tx.init(jnp.zeros(3))
    >>> print(f"{optax_greedy.get_learning_rate(state):.3g}")
    0.001
  """
  found = [(path, value) for path, value in
           optax.tree.get_all_with_path(state, "learning_rate")
           if not _in_hyperparams(path)]
  if len(found) != 1:
    where = [jax.tree_util.keystr(path) for path, _ in found]
    chained = (
        " Two rate controllers in one chain (e.g. chain(greedy_adam(1e-3),"
        " greedy_lr(1e-3))) multiply their rates: each scales the other's"
        " update, so the parameters move by the product (about 1e-6 here);"
        " use one controller per chain." if len(found) > 1 else "")
    raise ValueError(
        "get_learning_rate: expected one field named 'learning_rate' outside"
        f" the injected hyperparameters, found {len(found)}"
        f"{': ' + ', '.join(where) if where else ''}.{chained}")
  return found[0][1]


def _in_hyperparams(path) -> bool:
  """Whether ``path`` leads into ``optax.inject_hyperparams``' dict of
  hyperparameters."""
  return any(getattr(key, "name", None) == "hyperparams" for key in path)
