"""Controllers and baselines, each built from ``(base, learning_rate)``.

Every :class:`Controller` builds an optax transform from a base optimizer
name (``"sgd"``, ``"momentum"``, ``"adam"``), an initial rate (a traced
scalar: the runner vmaps over rates) and an optional per-row payload (the
fixed schedules' multipliers). ``feed`` says what its ``update`` is given:

* ``"train"``: ``value=`` the minibatch training loss, every step;
* ``"val"``: ``value=`` the last evaluation loss with ``observe=`` true only
  on the first step after an evaluation (``value=None`` semantics inside one
  compiled program);
* ``"linesearch"``: ``value``, ``grad`` and ``value_fn`` on the minibatch;
* ``"none"``: gradients only.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import optax_greedy

BASES = ("sgd", "momentum", "adam")

# GreedyLR fed a validation loss once per evaluation: the documented setting
# for a sparse, already averaged signal (no smoothing window, small patience).
GREEDY_VAL = {"smooth": False, "patience": 1, "factor": 0.9}
MOMENTUM = 0.9

# The paper's hypergradient rates, from Baydin et al. (2018), Sec. 4: beta =
# 1e-3 for SGD-HD / SGDN-HD and 1e-7 for Adam-HD (the ``hd_paper_*`` rows;
# the ``hd_*`` rows use the library's defaults).
HD_BETA = {"sgd": 1e-3, "momentum": 1e-3, "adam": 1e-7}


def direction(base):
  """The unscaled direction of a base optimizer (no learning rate)."""
  if base == "sgd":
    return optax.identity()
  if base == "momentum":
    return optax.trace(decay=MOMENTUM)
  return optax.scale_by_adam()


def optimizer(base, lr):
  """The plain optax optimizer of ``base`` at a constant ``lr``."""
  if base == "sgd":
    return optax.sgd(lr)
  if base == "momentum":
    return optax.sgd(lr, momentum=MOMENTUM)
  return optax.adam(lr)


def schedule_multipliers(steps, names=None):
  """Fixed schedules at peak 1, evaluated by optax at every step: the
  benchmark's one fixed-schedule builder (``names`` picks some, in order).

  All are linear in their peak value, so ``lr * multiplier[t]`` is
  exactly the optax schedule with peak ``lr``; this lets one compiled program
  run every schedule (they differ only in data).
  """
  t = jnp.arange(steps)
  schedules = {
      "constant": optax.constant_schedule(1.0),
      "cosine": optax.cosine_decay_schedule(1.0, steps),
      "linear": optax.linear_schedule(1.0, 0.0, steps),
      "step": optax.exponential_decay(
          1.0, transition_steps=max(steps // 4, 1), decay_rate=0.5,
          staircase=True),
      "warmup_cosine": optax.warmup_cosine_decay_schedule(
          0.0, 1.0, warmup_steps=max(steps // 20, 1), decay_steps=steps),
  }
  return {k: np.asarray(jax.vmap(schedules[k])(t), np.float32)
          for k in (names or schedules)}


FIXED_SCHEDULES = ("constant", "cosine", "linear", "step", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class Controller:
  """A row family of the benchmark.

  Attributes:
    name: row label.
    group: ``greedy``, ``hd``, ``fixed``, ``baseline`` or ``peer``.
    build: ``build(base, lr, payload, ctx) -> transform``; ``ctx`` has
      ``steps`` and ``steps_per_eval``.
    feed: what ``update`` receives (module docstring).
    rate: ``rate(state, lr, payload, step) -> scalar`` effective rate after
      the update of ``step`` (NaN where not meaningful).
    lr_free: runs once per task, without base optimizer or rate grid.
    options: names of rows that share the program (the fixed schedules).
    eval_params: ``eval_params(state, params) -> params`` to evaluate.
    bases: base optimizers it supports.
    needs_bound: runs only on tasks with a stability bound (``lr_bound``).
  """

  name: str
  group: str
  build: Callable[..., Any]
  feed: str = "none"
  rate: Optional[Callable[..., Any]] = None
  lr_free: bool = False
  options: tuple = ()
  eval_params: Optional[Callable[..., Any]] = None
  bases: tuple = BASES
  needs_bound: bool = False


def mean_rate(state, key="learning_rate"):
  """Mean over every ``key`` entry in ``state`` (scalars or rate trees)."""
  leaves = [jnp.ravel(x) for _, v in optax.tree.get_all_with_path(state, key)
            for x in jax.tree.leaves(v)]
  if not leaves:
    return jnp.nan
  return jnp.mean(jnp.concatenate(leaves))


def _nan_rate(state, lr, payload, step):
  del state, lr, payload, step
  return jnp.nan


def _greedy(name, feed, **kwargs):
  def build(base, lr, payload, ctx):
    del payload, ctx
    return optax.chain(direction(base), optax_greedy.greedy_lr(lr, **kwargs))
  return Controller(name, "greedy", build, feed,
                    rate=lambda s, lr, p, t: mean_rate(s))


def _greedy_clipped_build(base, lr, payload, ctx):
  del payload
  return optax.chain(
      direction(base),
      optax_greedy.stability_clip(ctx["lr_bound"],
                                  optax_greedy.greedy_lr(lr)))


# Labelled, non-headline GreedyLR variants: (factor, patience, min_lr / lr,
# max_lr / lr). Every one is a traced hyperparameter of greedy_lr, so all
# variants share one compiled program. The first is the defaults (a check:
# it must reproduce the ``greedy`` row).
GREEDY_VARIANTS = {
    "greedy[defaults]": (0.95, 20, 0.01, 10.0),
    "greedy[factor=0.9]": (0.9, 20, 0.01, 10.0),
    "greedy[factor=0.8]": (0.8, 20, 0.01, 10.0),
    "greedy[patience=10]": (0.95, 10, 0.01, 10.0),
    "greedy[patience=5]": (0.95, 5, 0.01, 10.0),
    "greedy[max_lr=lr]": (0.95, 20, 0.01, 1.0),
    "greedy[max_lr=3lr]": (0.95, 20, 0.01, 3.0),
    "greedy[min_lr=lr/1000]": (0.95, 20, 0.001, 10.0),
    "greedy[factor=0.9,patience=10]": (0.9, 10, 0.01, 10.0),
}


def greedy_variant_payloads():
  return {k: np.asarray(v, np.float32) for k, v in GREEDY_VARIANTS.items()}


def _greedy_variants_build(base, lr, payload, ctx):
  del ctx
  factor, patience, low, high = (payload[i] for i in range(4))
  return optax.chain(direction(base), optax_greedy.greedy_lr(
      lr, factor=factor, patience=patience, min_lr=low * lr,
      max_lr=high * lr))


def hd_beta(base):
  """``hypergrad_lr`` for ``base``: the paper's value (:data:`HD_BETA`)."""
  return HD_BETA[base]


def hd_transform(base, lr, granularity, rule, beta):
  """Hypergradient descent on ``base``'s direction: ``hd_sgd`` / ``hd_adam``
  (which recompute the previous direction from the momentum or Adam state
  instead of storing it)."""
  kwargs = dict(granularity=granularity, rule=rule)
  if base == "adam":
    return optax_greedy.hd_adam(lr, beta, **kwargs)
  return optax_greedy.hd_sgd(
      lr, beta, momentum=MOMENTUM if base == "momentum" else None, **kwargs)


def _hd(granularity):
  """The library's defaults (the multiplicative rule, its default beta)."""
  def build(base, lr, payload, ctx):
    del payload, ctx
    return hd_transform(base, lr, granularity, "multiplicative", None)
  return Controller(f"hd_{granularity}", "hd", build,
                    rate=lambda s, lr, p, t: mean_rate(s))


def hd_paper(granularity):
  """The paper's rule: additive, beta from :data:`HD_BETA`."""
  def build(base, lr, payload, ctx):
    del payload, ctx
    return hd_transform(base, lr, granularity, "additive", hd_beta(base))
  return Controller(f"hd_paper_{granularity}", "hd_paper", build,
                    rate=lambda s, lr, p, t: mean_rate(s))


def hd_multiplicative(granularity, options):
  """The multiplicative rule, ``beta`` = the payload's first entry (traced,
  so every ``beta`` of ``options`` shares one program)."""
  def build(base, lr, payload, ctx):
    del ctx
    return hd_transform(base, lr, granularity, "multiplicative", payload[0])
  return Controller(f"hd_mult_{granularity}", "hd_tuned", build,
                    rate=lambda s, lr, p, t: mean_rate(s), options=options)


def _fixed_build(base, lr, payload, ctx):
  steps = ctx["steps"]
  return optax.chain(
      direction(base),
      optax.scale_by_learning_rate(
          lambda count: lr * payload[jnp.minimum(count, steps - 1)]))


def _fixed_rate(state, lr, payload, step):
  del state
  return lr * payload[jnp.minimum(step + 1, payload.shape[0] - 1)]


def _plateau_build(base, lr, payload, ctx):
  del payload
  return optax.chain(
      optimizer(base, lr),
      optax.contrib.reduce_on_plateau(
          factor=0.5, patience=3, accumulation_size=ctx["steps_per_eval"]))


def _linesearch_build(base, lr, payload, ctx):
  del payload, ctx
  return optax.chain(
      optimizer(base, lr),
      optax.scale_by_backtracking_linesearch(
          max_backtracking_steps=15, max_learning_rate=10.0))


def _schedule_free_build(base, lr, payload, ctx):
  del payload, ctx
  if base == "adam":
    return optax.contrib.schedule_free_adamw(lr)
  return optax.contrib.schedule_free_sgd(
      lr, b1=MOMENTUM if base == "momentum" else 0.0)


def _schedule_free_eval(state, params):
  return optax.contrib.schedule_free_eval_params(state, params)


def _mechanize_build(base, lr, payload, ctx):
  del payload, ctx
  return optax.contrib.mechanize(optimizer(base, lr))


def all_controllers():
  """Every row family, in report order."""
  return (
      _greedy("greedy", "train"),
      _greedy("greedy_val", "val", **GREEDY_VAL),
      Controller("greedy_variants", "greedy_tuned", _greedy_variants_build,
                 "train", rate=lambda s, lr, p, t: mean_rate(s),
                 options=tuple(GREEDY_VARIANTS)),
      Controller("greedy_clipped", "greedy", _greedy_clipped_build, "train",
                 rate=lambda s, lr, p, t: mean_rate(s, "learning_rate"),
                 bases=("sgd",), needs_bound=True),
      _hd("global"),
      _hd("per_tensor"),
      _hd("per_parameter"),
      Controller("fixed", "fixed", _fixed_build, rate=_fixed_rate,
                 options=FIXED_SCHEDULES),
      Controller("reduce_on_plateau", "baseline", _plateau_build, "train",
                 rate=lambda s, lr, p, t: lr * s[-1].scale),
      Controller("backtracking", "baseline", _linesearch_build, "linesearch",
                 rate=lambda s, lr, p, t: lr * mean_rate(s)),
      Controller("prodigy", "peer",
                 lambda b, lr, p, c: optax.contrib.prodigy(),
                 rate=_nan_rate, lr_free=True),
      Controller("dog", "peer", lambda b, lr, p, c: optax.contrib.dog(),
                 rate=_nan_rate, lr_free=True),
      Controller("schedule_free", "peer", _schedule_free_build,
                 rate=_nan_rate, eval_params=_schedule_free_eval),
      Controller("mechanize", "peer", _mechanize_build, rate=_nan_rate),
  )
