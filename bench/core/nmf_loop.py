"""The NMF loop: projected minibatch SGD on :func:`optax_greedy.nmf.loss`.

The benchmark's second training loop, and its last: the networks train in
:mod:`bench.core.loop`. It exists because NMF is a different problem, not
a different network: the parameters are the factors ``W``, ``H`` of a
fixed matrix ``V``, the sample of a step is a minibatch of ``V``'s columns
that the stability-clipped controllers' bound reads too (``update(...,
columns=...)``, ``bound_args=("columns",)``), the parameters are projected
back onto ``>= 0`` after every update, and what the studies record -- the
rate applied to ``W``, as a fraction of the bound, the relative error
``||V - WH|| / ||V||`` of the full matrix -- is read from the update and
the states before and after it, which the network loop does not keep.

Both NMF studies (:mod:`bench.studies.nmf`, :mod:`bench.studies.learned_nmf`)
train here. Every function is pure and traceable: the parameters and the
minibatch stream are arguments, so ``jax.vmap`` runs many seeds and
options as one program.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_greedy import nmf


class Step(NamedTuple):
  """One step, as :func:`loop`'s ``record`` sees it.

  Attributes:
    t: the 0-based index of the step.
    columns: the minibatch's column indices.
    value: the minibatch loss (:func:`optax_greedy.nmf.loss`).
    grads: its gradients.
    updates: the transform's updates.
    params, state: the factors and the transform's state before the step.
    new_params, new_state: the same after it.
  """

  t: Any
  columns: Any
  value: Any
  grads: Any
  updates: Any
  params: Any
  state: Any
  new_params: Any
  new_state: Any


class Loop(NamedTuple):
  """The loop's pieces (:func:`loop`).

  Attributes:
    train: ``train((params, state), (steps, columns)) -> ((params, state),
      records)``: one ``lax.scan`` over the steps (``steps`` their 0-based
      indices, ``columns`` one minibatch per step), ``records`` stacked.
    run: ``run(params, batches, every) -> (errors, records)``: the whole
      run from ``params``, in blocks of ``every`` steps; ``errors`` is the
      relative error of the full matrix before the first step and after
      every block (``len(batches) // every`` blocks run), ``records`` one
      per step.
  """

  train: Callable[..., Any]
  run: Callable[..., Any]


def project(params, updates):
  """``max(params + updates, 0)``: the step, projected onto ``>= 0``."""
  return jax.tree.map(lambda p, u: jnp.maximum(p + u, 0), params, updates)


def loop(V, tx, record, *, apply=optax.apply_updates, pass_columns=False):
  """Projected minibatch SGD of ``tx`` on ``V``.

  Args:
    V: the matrix ``[m, n]`` to factor.
    tx: the optax transform; its ``update`` receives ``value=`` the
      minibatch loss (and ``columns=`` with ``pass_columns``).
    record: ``record(step) -> pytree``, what to keep of every
      :class:`Step`.
    apply: ``apply(params, updates) -> params``: ``optax.apply_updates``
      where ``tx`` keeps the factors non-negative itself
      (``optax.keep_params_nonnegative``), else :func:`project`.
    pass_columns: pass the minibatch's columns to ``update`` (for a bound
      of the step's data, ``bound_args=("columns",)``).

  Returns:
    A :class:`Loop`.
  """
  def step(carry, xs):
    t, columns = xs
    params, state = carry
    value, grads = jax.value_and_grad(nmf.loss)(params, V, columns)
    extra = {"columns": columns} if pass_columns else {}
    updates, new_state = tx.update(grads, state, params, value=value,
                                   **extra)
    new_params = apply(params, updates)
    return (new_params, new_state), record(Step(
        t, columns, value, grads, updates, params, state, new_params,
        new_state))

  def train(carry, xs):
    return jax.lax.scan(step, carry, xs)

  def run(params, batches, every):
    blocks = batches.shape[0] // every

    def block(carry, xs):
      carry, records = train(carry, xs)
      return carry, (nmf.relative_error(carry[0], V), records)

    xs = (jnp.arange(blocks * every).reshape(blocks, every),
          batches[:blocks * every].reshape((blocks, every)
                                           + batches.shape[1:]))
    _, (errors, records) = jax.lax.scan(block, (params, tx.init(params)), xs)
    errors = jnp.concatenate([nmf.relative_error(params, V)[None], errors])
    return errors, jax.tree.map(
        lambda x: x.reshape((-1,) + x.shape[2:]), records)

  return Loop(train, run)
