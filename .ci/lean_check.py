"""The core install works without the optional packages.

Run by ``.ci/run`` in a fresh virtual environment where only ``pip install .``
ran (no extras): one GreedyLR, one hypergradient and one learned-schedule
update, and no optional package is installed or imported.
"""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import optax

import optax_greedy

OPTIONAL = ("flax", "orbax", "sklearn", "matplotlib", "tqdm")

installed = [name for name in OPTIONAL if importlib.util.find_spec(name)]
assert not installed, f"the core install pulled in {installed}"

params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
grads = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.25)}
optimizers = {
    "greedy_adam": optax_greedy.greedy_adam(1e-2),
    "hd_sgd": optax_greedy.hd_sgd(0.1, hypergrad_lr=1e-3),
    **{f"learned_schedule({name!r})": optax.chain(
        optax.scale_by_adam(),
        optax_greedy.learned_schedule(optax_greedy.load_policy(name), 1e-2,
                                      total_steps=10))
       for name in ("nmf", "dnn")},
    "learned_scale": optax_greedy.learned_scale(1e-2, total_steps=10),
}
for name, tx in optimizers.items():
  state = tx.init(params)
  updates, state = jax.jit(tx.update)(grads, state, params,
                                      value=jnp.asarray(1.0))
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
  rate = optax.tree.get(state, "learning_rate")
  print(f"{name}: one update, learning_rate {rate}")

imported = [name for name in OPTIONAL + ("optax_greedy_lab",)
            if name in sys.modules]
assert not imported, f"import optax_greedy imported {imported}"
print("lean install: ok")
