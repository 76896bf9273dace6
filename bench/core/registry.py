"""The controller registry: every row of every table, one entry each.

An entry (:class:`Controller`) builds an optax transform from ``(base,
rate, steps, context)``:

* ``base``: the base optimizer's name (:data:`BASES`): ``"sgd"``
  (``optax.identity`` direction), ``"momentum"`` (``optax.trace(0.9)``) or
  ``"adam"`` (``optax.scale_by_adam``);
* ``rate``: the initial (or peak) learning rate, a traced scalar, so that
  one compiled program runs every rate and seed under ``jax.vmap``;
* ``steps``: the run's total step budget (a Python int);
* ``context``: :class:`Context`, what else the run knows (steps per
  evaluation, the task's stability bound);

and keyword **options**, traced too, for named variants that share one
compiled program: the fixed schedules (their per-step multipliers) and
ablations such as ``greedy[patience=5]`` (one default changed).

``feed`` says what the entry's ``update`` is given by the loop
(:mod:`bench.core.loop`): ``"train"`` (the minibatch loss every step),
``"val"`` (the last evaluation's loss, observed once per evaluation),
``"linesearch"`` (value, gradients and the minibatch loss function),
``"probe"`` (value and the minibatch loss function) or ``"none"``.

Adding a controller is adding one entry to :func:`controllers`: it then
appears in every table and study its ``scope`` names. The constant rate
with the step budget's ramp and decay, for example, is one build function
and the entry ``Controller("wsd", "baseline", _wsd_build,
scope=(WORKLOADS, SWEEP))``.

``tests/_registry.py`` (the library's contract) is separate: it lists
transforms, not rows.
"""

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import optax_greedy

BASES = ("sgd", "momentum", "adam")
MOMENTUM = 0.9

# GreedyLR fed a validation loss once per evaluation: the documented setting
# for a sparse, already averaged signal (no smoothing window, small
# patience), chosen by the greedy-feeds study.
GREEDY_VAL = {"smooth": False, "patience": 1, "factor": 0.9}

# The paper's hypergradient rates, Baydin et al. (2018), Sec. 4: beta = 1e-3
# for SGD-HD / SGDN-HD and 1e-7 for Adam-HD (the ``hd_paper_*`` entries).
HD_BETA = {"sgd": 1e-3, "momentum": 1e-3, "adam": 1e-7}

FIXED_SCHEDULES = ("constant", "cosine", "linear", "step", "warmup_cosine")

# Where an entry runs: the grid's tables, the workloads, the cost section,
# the hypergradient-defaults study.
GRID, WORKLOADS, COST, HD_STUDY = "grid", "workloads", "cost", "hd_defaults"
# The workloads' rate-sensitivity sweep (every entry started at multiples
# of the tuned peak).
SWEEP = "sweep"
EVERYWHERE = (GRID, WORKLOADS, COST)


class Context(NamedTuple):
  """What a run knows besides ``(base, rate, steps)``.

  Attributes:
    steps_per_eval: training steps between evaluations.
    lr_bound: ``params -> rate``, the task's largest stable rate of plain
      gradient descent, where one is known (else ``None``).
  """

  steps_per_eval: int
  lr_bound: Any = None


@dataclasses.dataclass(frozen=True)
class Controller:
  """One registry entry (module docstring).

  Attributes:
    name: the row's label.
    group: ``greedy``, ``hd``, ``hd_paper``, ``fixed``, ``baseline``,
      ``peer``, ``learned`` or ``budget`` (told ``total_steps``).
    build: ``build(base, rate, steps, context, **options) -> transform``.
    feed: what ``update`` receives (module docstring).
    rate: ``rate(state, rate, options, step) -> scalar``, the effective rate
      after the update of ``step`` (NaN where not meaningful).
    eval_params: ``eval_params(state, params) -> params`` to evaluate
      (schedule-free); ``None``: the params themselves.
    bases: the base optimizers it supports.
    lr_free: no rate: runs once per task, without a base or rate grid.
    rate_is_multiplier: the sweep passes the multiplier of the tuned peak
      (x1/10..x10) as ``rate``, not the rate (the rate-free peers, whose
      ``learning_rate`` is a multiplier of the step they find).
    needs_bound: runs only where the task knows a stability bound.
    variants: ``variants(steps) -> {row: options}``, named option sets run
      as one program (every option a traced scalar or array); ``None``: none.
    plain: whether the entry runs without options, as the row ``name``
      (the fixed schedules exist only as variants).
    scope: where it runs (:data:`GRID`, :data:`WORKLOADS`, :data:`COST`,
      :data:`HD_STUDY`, :data:`SWEEP`).
    label: the row's name in the reports (``name`` if empty).
  """

  name: str
  group: str
  build: Callable[..., Any]
  feed: str = "none"
  rate: Optional[Callable[..., Any]] = None
  eval_params: Optional[Callable[..., Any]] = None
  bases: tuple = BASES
  lr_free: bool = False
  rate_is_multiplier: bool = False
  needs_bound: bool = False
  variants: Optional[Callable[[int], dict]] = None
  plain: bool = True
  scope: tuple = EVERYWHERE
  label: str = ""


# ------------------------------------------------------------ building ---


def direction(base):
  """The unscaled direction of a base optimizer (no learning rate)."""
  if base == "sgd":
    return optax.identity()
  if base == "momentum":
    return optax.trace(decay=MOMENTUM)
  return optax.scale_by_adam()


def optimizer(base, rate):
  """The plain optax optimizer of ``base`` at a constant ``rate``."""
  if base == "sgd":
    return optax.sgd(rate)
  if base == "momentum":
    return optax.sgd(rate, momentum=MOMENTUM)
  return optax.adam(rate)


def warmup_steps(steps):
  """The warmup of ``warmup_cosine``: 5% of the steps, at least one."""
  return max(steps // 20, 1)


def schedule_multipliers(steps, names=None):
  """The fixed schedules at peak 1, evaluated by optax at every step
  (``names`` picks some, in order): ``{name: float32[steps]}``.

  All are linear in their peak, so ``rate * multiplier[t]`` is exactly the
  optax schedule with peak ``rate``; one compiled program runs them all.
  """
  every = _multipliers(steps)
  return {k: every[k] for k in (names or every)}


@functools.lru_cache(maxsize=None)
def _multipliers(steps):
  """Every fixed schedule at peak 1 over ``steps`` (read-only arrays)."""
  schedules = {
      "constant": optax.constant_schedule(1.0),
      "cosine": optax.cosine_decay_schedule(1.0, steps),
      "linear": optax.linear_schedule(1.0, 0.0, steps),
      "step": optax.exponential_decay(
          1.0, transition_steps=max(steps // 4, 1), decay_rate=0.5,
          staircase=True),
      "warmup_cosine": optax.warmup_cosine_decay_schedule(
          0.0, 1.0, warmup_steps=warmup_steps(steps), decay_steps=steps),
  }
  # Concrete values even when first asked inside a traced function.
  with jax.ensure_compile_time_eval():
    t = jnp.arange(steps)
    out = {k: np.asarray(jax.vmap(s)(t), np.float32)
           for k, s in schedules.items()}
  for x in out.values():
    x.flags.writeable = False
  return out


def mean_rate(state, key="learning_rate"):
  """Mean over every ``key`` entry in ``state`` (scalars or rate trees)."""
  leaves = [jnp.ravel(x) for _, v in optax.tree.get_all_with_path(state, key)
            for x in jax.tree.leaves(v)]
  if not leaves:
    return jnp.nan
  return jnp.mean(jnp.concatenate(leaves))


def _state_rate(state, rate, options, step):
  del rate, options, step
  return mean_rate(state)


def _no_rate(state, rate, options, step):
  del state, rate, options, step
  return jnp.nan


# ------------------------------------------------------------- GreedyLR ---

# Ablations of GreedyLR: one default changed each, in units of the initial
# rate for the bounds. Every one is a traced option, so all share one
# program. The first repeats the defaults: it must reproduce ``greedy``.
GREEDY_DEFAULTS = {"factor": 0.95, "patience": 20, "min_lr": 0.01,
                   "max_lr": 10.0}
GREEDY_ABLATIONS = {
    "greedy[defaults]": {},
    "greedy[factor=0.9]": {"factor": 0.9},
    "greedy[factor=0.8]": {"factor": 0.8},
    "greedy[patience=10]": {"patience": 10},
    "greedy[patience=5]": {"patience": 5},
    "greedy[max_lr=lr]": {"max_lr": 1.0},
    "greedy[max_lr=3lr]": {"max_lr": 3.0},
    "greedy[min_lr=lr/1000]": {"min_lr": 0.001},
    "greedy[factor=0.9,patience=10]": {"factor": 0.9, "patience": 10},
}


def _greedy_ablations(steps):
  del steps
  return {name: {k: np.float32(v) for k, v in {**GREEDY_DEFAULTS,
                                                **change}.items()}
          for name, change in GREEDY_ABLATIONS.items()}


def _greedy_build(**settings):
  """``chain(direction, greedy_lr(rate, **settings))``; options (an
  ablation's) override the settings, ``min_lr`` and ``max_lr`` in units of
  the initial rate."""
  def build(base, rate, steps, context, **options):
    del steps, context
    for bound in ("min_lr", "max_lr"):
      if bound in options:
        options[bound] = options[bound] * rate
    return optax.chain(direction(base),
                       optax_greedy.greedy_lr(rate, **{**settings, **options}))
  return build


def _greedy_clipped_build(base, rate, steps, context):
  del steps
  return optax.chain(
      direction(base),
      optax_greedy.stability_clip(context.lr_bound,
                                  inner=optax_greedy.greedy_lr(rate)))


# -------------------------------------------------- hypergradient descent ---


def _hd_transform(base, rate, granularity, rule, beta, **kwargs):
  """Hypergradient descent on ``base``'s direction: ``hd_sgd`` /
  ``hd_adam`` (which recompute the previous direction from the momentum or
  Adam state instead of storing it); ``beta=None``: the library's
  default ``hypergrad_lr``; ``kwargs``: more of their keywords."""
  kwargs = dict(granularity=granularity, rule=rule, hypergrad_lr=beta,
                **kwargs)
  if base == "adam":
    return optax_greedy.hd_adam(rate, **kwargs)
  return optax_greedy.hd_sgd(
      rate, momentum=MOMENTUM if base == "momentum" else None, **kwargs)


def _hd_build(granularity):
  """The library's multiplicative rule; option ``beta`` (traced) replaces
  its default ``hypergrad_lr``."""
  def build(base, rate, steps, context, beta=None):
    del steps, context
    return _hd_transform(base, rate, granularity, "multiplicative", beta)
  return build


def _hd_paper_build(granularity):
  """The paper's additive rule with its ``beta`` (:data:`HD_BETA`)."""
  def build(base, rate, steps, context):
    del steps, context
    return _hd_transform(base, rate, granularity, "additive", HD_BETA[base])
  return build


# ------------------------------------------------------ fixed schedules ---


def _fixed_build(base, rate, steps, context, multiplier):
  """The direction at ``rate * multiplier[t]`` (a schedule at peak 1)."""
  del context
  multiplier = jnp.asarray(multiplier)
  return optax.chain(
      direction(base),
      optax.scale_by_learning_rate(
          lambda count: rate * multiplier[jnp.minimum(count, steps - 1)]))


def _fixed_rate(state, rate, options, step):
  del state
  multiplier = jnp.asarray(options["multiplier"])
  return rate * multiplier[jnp.minimum(step + 1, multiplier.shape[0] - 1)]


def _fixed_variants(steps):
  return {name: {"multiplier": m}
          for name, m in schedule_multipliers(steps).items()}


# ------------------------------------------------- baselines and peers ---


def _plateau_build(base, rate, steps, context):
  del steps
  return optax.chain(
      optimizer(base, rate),
      optax.contrib.reduce_on_plateau(
          factor=0.5, patience=3, accumulation_size=context.steps_per_eval))


def _plateau_rate(state, rate, options, step):
  del options, step
  return rate * state[-1].scale


def _linesearch_build(base, rate, steps, context):
  del steps, context
  return optax.chain(
      optimizer(base, rate),
      optax.scale_by_backtracking_linesearch(
          max_backtracking_steps=15, max_learning_rate=10.0))


def _linesearch_rate(state, rate, options, step):
  del options, step
  return rate * mean_rate(state)


def _schedule_free_build(base, rate, steps, context):
  """Schedule-free AdamW / SGD with the warmup its authors recommend (5% of
  the steps, as the warmup-cosine's)."""
  del context
  warmup = warmup_steps(steps)
  if base == "adam":
    return optax.contrib.schedule_free_adamw(rate, warmup_steps=warmup)
  return optax.contrib.schedule_free_sgd(
      rate, b1=MOMENTUM if base == "momentum" else 0.0, warmup_steps=warmup)


def _mechanize_build(base, rate, steps, context):
  del steps, context
  return optax.contrib.mechanize(optimizer(base, rate))


def _multiplier_build(make):
  """A rate-free peer whose ``learning_rate`` is the multiplier it
  documents (default 1), given as ``rate``."""
  def build(base, rate, steps, context):
    del base, steps, context
    return make(learning_rate=rate)
  return build


def _momo_build(base, rate, steps, context):
  """MoMo-Adam at ``rate`` (its documented use: a constant rate that its
  Polyak-type step caps)."""
  del base, steps, context
  return optax.contrib.momo_adam(rate)


def _lr_free(make):
  def build(base, rate, steps, context):
    del base, rate, steps, context
    return make()
  return build


@functools.lru_cache(maxsize=None)
def dnn_policy():
  """The shipped deep-network policy, ``optax_greedy.load_policy("dnn")``."""
  return optax_greedy.load_policy("dnn")


def _learned_build(base, rate, steps, context, policy=None):
  """The direction, then ``learned_schedule`` with ``policy`` (default: the
  shipped deep-network policy) from ``rate`` over ``steps``, without the
  step budget's envelope: the policy alone, whatever envelope it was
  trained inside (on purpose, so its warning is silenced here)."""
  del context
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning,
                            message="learned_schedule: the policy was trained")
    return optax.chain(
        direction(base),
        optax_greedy.learned_schedule(policy or dnn_policy(), rate,
                                      total_steps=steps,
                                      envelope=optax_greedy.NO_ENVELOPE))


# ---------------------------------------------- knowing the step budget ---


def _greedy_budget_build(base, rate, steps, context, **options):
  """GreedyLR with its defaults, told the budget (``total_steps``);
  options (``factor``, ``patience``, traced) change a default."""
  del context
  return optax.chain(direction(base),
                     optax_greedy.greedy_lr(rate, total_steps=steps,
                                            **options))


def _hd_budget_build(base, rate, steps, context):
  """The hypergradient (global, its defaults), told the budget."""
  del context
  return _hd_transform(base, rate, "global", "multiplicative", None,
                       total_steps=steps)


def _learned_budget_build(base, rate, steps, context, policy=None):
  """The learned schedule inside the step budget's envelope (its
  defaults)."""
  del context
  return optax.chain(
      direction(base),
      optax_greedy.learned_schedule(policy or dnn_policy(), rate,
                                    total_steps=steps))


# The rate probe's settings in the probe rows (options, traced, so that the
# probe-defaults study's candidates share one program).
PROBE_DEFAULTS = {"fraction": 0.5, "gain": 0.5}


def _probe(steps, options):
  """``optax_greedy.rate_probe`` told the budget, with ``options``
  (``fraction``, ``gain``) replacing :data:`PROBE_DEFAULTS`."""
  return optax_greedy.rate_probe(steps, **{**PROBE_DEFAULTS, **options})


def _probe_rate(state, rate, options, step):
  """The rate applied: the controller's ``learning_rate`` times the
  probe's multiplier (the last state of the chain)."""
  del rate, options, step
  return mean_rate(state) * state[-1].probe_scale


def _greedy_probe_build(base, rate, steps, context, **options):
  """GreedyLR with its defaults and the budget, then the rate probe."""
  del context
  return optax.chain(direction(base),
                     optax_greedy.greedy_lr(rate, total_steps=steps),
                     _probe(steps, options))


def _wsd_probe_build(base, rate, steps, context, **options):
  """The envelope alone (``budget_schedule``), then the rate probe: what
  the probe does without a reactive controller."""
  del context
  return optax.chain(
      direction(base),
      optax.scale_by_learning_rate(optax_greedy.budget_schedule(rate, total_steps=steps)),
      _probe(steps, options))


def _wsd_probe_rate(state, rate, options, step):
  """The constant rate times the probe's multiplier (before the
  envelope: this entry's state does not record the envelope)."""
  del options, step
  return rate * state[-1].probe_scale


def _mechanic_budget_build(base, rate, steps, context):
  """Mechanic (``optax.contrib.mechanize``) around the base optimizer at
  the envelope's rate (``budget_schedule``), as a user would give it the
  budget."""
  del context
  return optax.contrib.mechanize(
      optimizer(base, optax_greedy.budget_schedule(rate, total_steps=steps)))


def _mechanic_headroom_build(base, rate, steps, context, headroom=10.0,
                             start=None, weight_decay=0.01):
  """Mechanic around the base optimizer at ``headroom`` times the rate
  with the envelope: the learned scale then only has to come down instead
  of climbing from its tiny start. ``start``: Mechanic's ``s_init`` in
  units of ``1 / headroom`` (its scale, summed over its betas, stays near
  ``s_init`` until it has evidence, so 1 starts the run near the rate
  itself; None: Mechanic's own 1e-6); ``weight_decay``: Mechanic's own."""
  del context
  num_betas = 6
  s_init = 1e-6 if start is None else start / headroom
  return optax.contrib.mechanize(
      optimizer(base, optax_greedy.budget_schedule(rate * headroom,
                                                    total_steps=steps)),
      weight_decay=weight_decay, s_init=s_init, num_betas=num_betas)


def _greedy_mechanic_build(base, rate, steps, context, headroom=10.0,
                           start=None):
  """Mechanic around GreedyLR with the budget at ``headroom`` times the
  rate (``start`` as in :func:`_mechanic_headroom_build`)."""
  del context
  num_betas = 6
  s_init = 1e-6 if start is None else start / headroom
  return optax.contrib.mechanize(optax.chain(
      direction(base),
      optax_greedy.greedy_lr(rate * headroom, total_steps=steps)),
                                 s_init=s_init, num_betas=num_betas)


def _learned_scale_build(base, rate, steps, context, scale_free=0.0,
                         decay_fraction=None, **options):
  """``optax_greedy.learned_scale`` on the base's direction, its defaults
  but for ``options`` (its keywords; ``scale_free`` nonzero: its
  ``decay_form="scale-free"``; ``decay_fraction``: the envelope's)."""
  del context
  envelope = (optax_greedy.DEFAULT_ENVELOPE if decay_fraction is None else
              optax_greedy.Envelope(decay_fraction=float(decay_fraction)))
  return optax_greedy.learned_scale(
      rate, total_steps=steps, direction=direction(base),
      decay_form="scale-free" if scale_free else "mechanic",
      envelope=envelope, **options)


def _mechanic_probe_build(base, rate, steps, context, **options):
  """:func:`_mechanic_budget_build`, then the rate probe."""
  return optax.chain(_mechanic_budget_build(base, rate, steps, context),
                     _probe(steps, options))


def _wsd_build(base, rate, steps, context):
  """A constant rate with the budget's ramp and decay
  (``optax_greedy.budget_schedule``): the envelope alone."""
  del context
  return optax.chain(
      direction(base),
      optax.scale_by_learning_rate(
          optax_greedy.budget_schedule(rate, total_steps=steps)))



# -------------------------------------------------------------- entries ---


def controllers():
  """Every entry, in report order."""
  val = ", ".join(f"{k}={v}" for k, v in GREEDY_VAL.items())
  return (
      Controller("greedy", "greedy", _greedy_build(), "train",
                 rate=_state_rate, variants=_greedy_ablations,
                 label="GreedyLR (train loss, defaults)"),
      Controller("greedy_val", "greedy", _greedy_build(**GREEDY_VAL), "val",
                 rate=_state_rate,
                 label=f"GreedyLR (validation loss per eval, {val})"),
      Controller("greedy_clipped", "greedy", _greedy_clipped_build, "train",
                 rate=_state_rate, bases=("sgd",), needs_bound=True,
                 scope=(GRID,), label="GreedyLR clipped to the stability "
                                      "bound"),
      Controller("hd_global", "hd", _hd_build("global"), rate=_state_rate,
                 label="HD global"),
      Controller("hd_per_tensor", "hd", _hd_build("per_tensor"),
                 rate=_state_rate, scope=(GRID, COST), label="HD per tensor"),
      Controller("hd_per_parameter", "hd", _hd_build("per_parameter"),
                 rate=_state_rate, scope=(GRID, COST),
                 label="HD per parameter"),
      Controller("hd_paper_global", "hd_paper", _hd_paper_build("global"),
                 rate=_state_rate, scope=(HD_STUDY,)),
      Controller("hd_paper_per_tensor", "hd_paper",
                 _hd_paper_build("per_tensor"), rate=_state_rate,
                 scope=(HD_STUDY,)),
      Controller("hd_paper_per_parameter", "hd_paper",
                 _hd_paper_build("per_parameter"), rate=_state_rate,
                 scope=(HD_STUDY,)),
      Controller("fixed", "fixed", _fixed_build, rate=_fixed_rate,
                 variants=_fixed_variants, plain=False,
                 scope=(GRID, WORKLOADS, COST, HD_STUDY, SWEEP)),
      Controller("learned", "learned", _learned_build, "train",
                 rate=_state_rate, scope=(WORKLOADS,),
                 label="learned schedule (load_policy('dnn'))"),
      Controller("greedy_budget", "budget", _greedy_budget_build, "train",
                 rate=_state_rate, scope=(GRID, WORKLOADS, SWEEP),
                 label="GreedyLR with total_steps (defaults)"),
      Controller("hd_budget", "budget", _hd_budget_build, rate=_state_rate,
                 scope=(WORKLOADS, SWEEP),
                 label="hypergradient (global) with total_steps"),
      Controller("learned_budget", "budget", _learned_budget_build, "train",
                 rate=_state_rate, scope=(WORKLOADS, SWEEP),
                 label="learned schedule with total_steps "
                       "(load_policy('dnn'))"),
      Controller("wsd", "baseline", _wsd_build, rate=_state_rate,
                 scope=(WORKLOADS, SWEEP),
                 label="constant with the budget's ramp and decay "
                       "(budget_schedule)"),
      Controller("greedy_probe", "budget", _greedy_probe_build, "probe",
                 rate=_probe_rate, scope=(WORKLOADS, SWEEP),
                 label="GreedyLR with total_steps, then rate_probe "
                       "(value_fn)"),
      Controller("wsd_probe", "budget", _wsd_probe_build, "probe",
                 rate=_wsd_probe_rate, scope=(WORKLOADS, SWEEP),
                 label="budget_schedule, then rate_probe (value_fn)"),
      Controller("mechanic_probe", "budget", _mechanic_probe_build, "probe",
                 rate=_no_rate, scope=(),
                 label="Mechanic with the envelope, then rate_probe"),
      Controller("learned_scale", "budget", _learned_scale_build,
                 rate=_state_rate, scope=(WORKLOADS, SWEEP),
                 label="learned_scale (Mechanic around the envelope, "
                       "with headroom)"),
      Controller("mechanic_headroom", "budget", _mechanic_headroom_build,
                 rate=_no_rate, scope=(),
                 label="Mechanic with the envelope at headroom x the rate"),
      Controller("greedy_mechanic", "budget", _greedy_mechanic_build,
                 "train", rate=_no_rate, scope=(),
                 label="Mechanic around GreedyLR with total_steps at "
                       "headroom x the rate"),
      Controller("reduce_on_plateau", "baseline", _plateau_build, "train",
                 rate=_plateau_rate),
      Controller("backtracking", "baseline", _linesearch_build, "linesearch",
                 rate=_linesearch_rate, scope=(GRID, COST),
                 label="backtracking line search"),
      Controller("schedule_free", "peer", _schedule_free_build,
                 rate=_no_rate,
                 eval_params=optax.contrib.schedule_free_eval_params,
                 scope=EVERYWHERE + (SWEEP,), label="schedule-free"),
      Controller("mechanize", "peer", _mechanize_build, rate=_no_rate,
                 scope=(GRID, COST)),
      Controller("mechanic", "peer", _mechanic_budget_build, rate=_no_rate,
                 scope=(WORKLOADS, SWEEP),
                 label="Mechanic (mechanize(adam), envelope inside)"),
      Controller("prodigy", "peer", _lr_free(optax.contrib.prodigy),
                 rate=_no_rate, lr_free=True, scope=EVERYWHERE),
      Controller("dog", "peer", _lr_free(optax.contrib.dog), rate=_no_rate,
                 lr_free=True, scope=(GRID, COST), label="DoG"),
      # The rate-free peers in the sweep: their documented multiplier at
      # x1/10..x10 of its default 1.
      *(Controller(f"{name}_sweep", "peer", _multiplier_build(make),
                   rate=_no_rate, rate_is_multiplier=True, scope=(SWEEP,),
                   label=f"{name} (learning_rate = the multiplier)")
        for name, make in (("prodigy", optax.contrib.prodigy),
                           ("dog", optax.contrib.dog),
                           ("dowg", optax.contrib.dowg),
                           ("dadapt_adamw", optax.contrib.dadapt_adamw),
                           ("cocob", optax.contrib.cocob))),
      Controller("momo", "peer", _momo_build, "train", rate=_no_rate,
                 scope=(SWEEP,), label="MoMo-Adam"),
  )


def label(name):
  """The report label of row ``name`` (the name of a variant row)."""
  for c in controllers():
    if c.name == name:
      return c.label or c.name
  return name


def in_scope(scope):
  """The entries that run in ``scope``, in report order."""
  return tuple(c for c in controllers() if scope in c.scope)


def get(name):
  """The entry called ``name``."""
  for c in controllers():
    if c.name == name:
      return c
  raise KeyError(f"no controller {name!r}; known: "
                 f"{', '.join(c.name for c in controllers())}")
