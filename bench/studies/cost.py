"""What a controller costs: step time, compile time, state bytes and passes
over the parameters, each next to plain ``optax.adam`` measured in the same
process; and what ``jax.vmap`` over rates and seeds saves against a Python
loop.

Timings interleave the controllers round-robin (each round times every
controller once) and keep the median, so load from other processes on a
shared machine hits all of them alike.

``python -m bench cost --out DIR`` runs the cost section alone (Adam and
the hypergradient variants) and writes ``cost.json`` and ``cost.md``; with
``--fast-math`` every program (Adam's too) is compiled with XLA's CPU fast
math, which lets LLVM reassociate (and so vectorise) float reductions, into
``cost_fast_math.json`` and ``cost_fast_math.md``.

The bare update is one compiled ``update`` on inputs built once; the train
step is a block of the benchmark's training loop (:mod:`bench.core.loop`),
a fixed number of steps per call, without evaluations.
"""

import collections
import glob
import gzip
import itertools
import json
import os
import re
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_greedy
from bench.core import data as D
from bench.core import loop as L
from bench.core import output as O
from bench.core import registry as R
from bench.core import timing
from bench.grid import programs as P
from bench.grid import tasks as T


def cost_rows(controllers, steps):
  """``(name, transform, feed)`` for adam and every given entry, all on the
  Adam base at rate 1e-3 (the fixed schedules: cosine)."""
  context = R.Context(steps_per_eval=max(steps // 10, 1))
  rows = [("adam", optax.adam(1e-3), "none")]
  for ctrl in controllers:
    if "adam" not in ctrl.bases and not ctrl.lr_free:
      continue
    if ctrl.plain:
      rows.append((ctrl.name, ctrl.build("adam", 1e-3, steps, context),
                   ctrl.feed))
    else:
      options = jax.tree.map(jnp.asarray, ctrl.variants(steps)["cosine"])
      rows.append((f"{ctrl.name}_cosine",
                   ctrl.build("adam", 1e-3, steps, context, **options),
                   ctrl.feed))
  return rows


def _by_rank(params):
  """Two groups: matrices and vectors (a ``granularity`` callable)."""
  return jax.tree.map(lambda p: "matrix" if p.ndim > 1 else "vector", params)


def hd_cost_rows():
  """The hypergradient variants on Adam at rate 1e-3, with their defaults:
  each granularity (``hd_adam`` recomputes ``d_{t-1}`` from Adam's moments),
  the paper's additive rule, and the generic transform that stores
  ``d_{t-1}`` (``hypergradient(optax.scale_by_adam())``), for comparison."""
  rows = [(f"hd_adam[{name}]", optax_greedy.hd_adam(1e-3, granularity=g),
           "none") for name, g in (("global", "global"),
                                   ("per_tensor", "per_tensor"),
                                   ("groups", _by_rank),
                                   ("per_parameter", "per_parameter"))]
  rows.append(("hd_adam[global,additive]",
               optax_greedy.hd_adam(1e-3, rule="additive"), "none"))
  rows.append(("hypergradient(scale_by_adam)[global,stored]",
               optax_greedy.hypergradient(optax.scale_by_adam(), 1e-3),
               "none"))
  return rows


_DTYPE_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "f64": 8, "s32": 4, "u32": 4,
                "s8": 1, "u8": 1, "pred": 1, "s64": 8}
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%(\S+) = (\(.*?\)|\S+) ([\w-]+)\((.*?)\)(.*)$")
_SKIP = ("parameter", "get-tuple-element", "tuple", "constant", "bitcast")


def _array_bytes(shapes, threshold):
  total = 0
  for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", shapes):
    size = int(np.prod([int(d) for d in dims.split(",") if d]))
    if size >= threshold:
      total += size * _DTYPE_BYTES.get(dtype, 4)
  return total


def params_traffic(hlo_text, n_params, param_bytes):
  """Params-sized arrays read plus written by one call of a compiled program
  (``compile().as_text()``), in units of the params' size.

  Every top-level operation of the entry computation (a fusion is one loop)
  counts the operands it reads and the results it writes that have at least
  ``n_params / 20`` elements; a conditional counts its costliest branch.
  Plain Adam's update + apply reads g, m, v, p and writes m, v, p: 7 at best
  (10 as XLA's CPU backend emits it: the new moments are written, then read
  again by the update).
  """
  threshold = max(n_params // 20, 1)
  computations, name, body = {}, None, []
  for line in hlo_text.splitlines():
    header = re.match(r"^(ENTRY )?%(\S+) .*\{$", line)
    if header:
      name, body = ("ENTRY" if header.group(1) else header.group(2)), []
    elif line.startswith("}") and name:
      computations[name], name = body, None
    elif name:
      body.append(line)

  def traffic(comp):
    shapes, total = {}, 0
    for line in computations[comp]:
      m = _INSTRUCTION.match(line)
      if not m:
        continue
      shapes[m.group(1)] = m.group(2)
      op = m.group(3)
      if op in _SKIP:
        continue
      if op == "conditional":
        branches = re.findall(r"%([\w.-]+)", re.search(
            r"(branch_computations=\{.*?\}|true_computation=.*)",
            m.group(5)).group(1))
        total += max(traffic(b) for b in branches if b in computations)
        continue
      total += _array_bytes(m.group(2), threshold)
      for operand in re.findall(r"%([\w.-]+)", m.group(4)):
        if not shapes.get(operand, "").startswith("("):
          total += _array_bytes(shapes.get(operand, ""), threshold)
    return total

  return traffic("ENTRY") / param_bytes


def _ratios(d):
  """Each entry of ``d`` over its ``"adam"`` entry."""
  return {k: d[k] / d["adam"] for k in d}


def _kwargs(feed, value, grads, loss_fn):
  if feed == "train":
    return {"value": value}
  if feed == "val":
    return {"value": value, "observe": jnp.asarray(True)}
  if feed == "linesearch":
    return {"value": value, "grad": grads, "value_fn": loss_fn}
  return {}


def bare_update(rows, n_params, rounds, compiler_options=None, copies=4):
  """Seconds of one jitted ``update`` + ``apply_updates`` on ``n_params``;
  state bytes; params-sized reads + writes (:func:`params_traffic`).

  Params are two square float32 matrices (8M parameters at the default).
  The gradients are an argument of the compiled step (as a training step
  gets them from the backward pass), not constants XLA could fold. The line
  search needs a loss; it gets ``0.5 * ||p||^2``. Each row's calls take
  turns over ``copies`` copies of its state: how fast a memory-bound update
  runs depends on where its buffers happen to lie (identical Adam rows have
  differed by 1.5x), and the median over the copies evens that out.
  """
  side = int((n_params / 2) ** 0.5)
  key = jax.random.PRNGKey(0)
  params = {"w1": jax.random.normal(key, (side, side)),
            "w2": jax.random.normal(jax.random.fold_in(key, 1), (side, side))}
  grads = jax.tree.map(lambda p: 1e-3 * p, params)
  n = 2 * side * side

  def loss_fn(p):
    return 0.5 * sum(jnp.vdot(x, x) for x in jax.tree.leaves(p))

  fns, bytes_, passes = {}, {}, {}
  for name, tx, feed in rows:
    def step(params, state, grads, tx=tx, feed=feed):
      updates, state = tx.update(grads, state, params,
                                 **_kwargs(feed, jnp.float32(1.0), grads,
                                           loss_fn))
      return optax.apply_updates(params, updates), state
    state = tx.init(params)
    bytes_[name] = int(sum(x.size * x.dtype.itemsize
                           for x in jax.tree.leaves(state)))
    compiled = jax.jit(step).lower(params, state, grads).compile(
        compiler_options)
    passes[name] = params_traffic(compiled.as_text(), n, 4 * n)
    states = itertools.cycle(
        [state] + [jax.tree.map(jnp.copy, state) for _ in range(copies - 1)])
    fns[name] = lambda c=compiled, s=states: c(params, next(s), grads)
    for _ in range(copies):  # First touches of the output buffers.
      jax.block_until_ready(fns[name]())
  times = timing.round_robin(fns, rounds)
  return times, bytes_, n, passes


class _WideMLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width)(x))
    x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(10)(x)


def _train_programs(rows, width, batch, inner, compiler_options=None):
  """Compiled ``inner`` MLP train steps per row (forward, backward, update:
  one block of the benchmark's loop, :mod:`bench.core.loop`, without its
  evaluations): ``({name: fn}, {name: compile seconds}, n_params)``;
  ``compiler_options`` are XLA's (``jax.stages.Lowered.compile``)."""
  data = jax.tree.map(jnp.asarray, D.digits_standardised())
  stream = np.random.default_rng(0).integers(
      0, data["y_train"].shape[0], (inner, batch), dtype=np.int32)
  module = _WideMLP(width)
  params = module.init(jax.random.PRNGKey(0), data["x_train"][:1])

  def train_loss(p, data, idx):
    logits = module.apply(p, data["x_train"][idx])
    return optax.losses.softmax_cross_entropy_with_integer_labels(
        logits, data["y_train"][idx]).mean()

  problem = L.Problem(train_loss, evaluate=None)
  fns, compile_s = {}, {}
  for name, tx, feed in rows:
    def many(params, state, stream, tx=tx, feed=feed):
      # One step per "evaluation": the "val" feed observes at every step
      # after the first (the carried loss, there being no evaluation), as
      # often as a validation feed can.
      block = L.loop(problem, tx, feed, 1).train
      return block(data, L.Carry(params, state, jnp.float32(1.0)),
                   (jnp.arange(inner), stream))
    state = tx.init(params)
    start = time.perf_counter()
    compiled = jax.jit(many).lower(params, state, stream).compile(
        compiler_options)
    compile_s[name] = time.perf_counter() - start
    fns[name] = lambda c=compiled, s=state: c(params, s, stream)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  return fns, compile_s, n_params


def train_step(rows, width, batch, inner, rounds, compiler_options=None):
  """Seconds per full training step (forward, backward, update) of an MLP on
  digits, ``inner`` steps per call under ``lax.scan``; and compile seconds."""
  fns, compile_s, n_params = _train_programs(rows, width, batch, inner,
                                             compiler_options)
  times = timing.round_robin(fns, rounds)
  return {k: v / inner for k, v in times.items()}, compile_s, n_params


def kernel_profile(rows, width, batch, inner, calls, top,
                   compiler_options=None):
  """Microseconds per train step spent in each compiled kernel (XLA CPU
  thunks, from a ``jax.profiler`` trace): ``{name: [(kernel, us), ...]}``,
  the sum over all kernels, then the ``top`` costliest, per row."""
  fns, _, _ = _train_programs(rows, width, batch, inner, compiler_options)
  out = {}
  for name, fn in fns.items():
    for _ in range(3):
      jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as tmp:
      with jax.profiler.trace(tmp):
        for _ in range(calls):
          jax.block_until_ready(fn())
      (path,) = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
      with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    per_kernel = collections.Counter()
    for e in events:
      # Kernels are the thunks named after HLO instructions (fusions, dots,
      # copies); runtime and Python frames are left out.
      if e.get("ph") == "X" and re.fullmatch(
          r"[a-z_\-]+(\.\d+)?", e["name"]) and e["name"] != "while":
        per_kernel[e["name"]] += e.get("dur", 0)
    steps = calls * inner
    out[name] = [("all kernels (added; kernels that overlap on the cores "
                  "count in full)",
                  sum(per_kernel.values()) / steps)] + [
                      (k, us / steps) for k, us in per_kernel.most_common(top)]
  return out


def overhead(controllers, steps, n_params, rounds, width, inner,
             hd_variants=True):
  """The ``overhead`` section of the summary: seconds, bytes and ratios.

  Args:
    controllers: the registry entries to cost (those that need a stability
      bound are left out).
    steps: the step budget their schedules are built for.
    n_params: parameters of the bare update.
    rounds: interleaved timing rounds.
    width, inner: the train-step MLP's hidden width and steps per call.
    hd_variants: add the hypergradient variants (:func:`hd_cost_rows`).
  """
  rows = cost_rows([c for c in controllers if not c.needs_bound], steps)
  if hd_variants:
    rows += hd_cost_rows()
  bare_s, state_bytes, n_bare, passes = bare_update(rows, n_params, rounds)
  step_s, compile_s, n_mlp = train_step(rows, width, 128, inner, rounds)
  return {
      "reference": "optax.adam(1e-3), same process, interleaved timings",
      "bare_update": {"n_params": n_bare, "seconds": bare_s,
                      "ratio": _ratios(bare_s),
                      "params_traffic": passes},
      "train_step": {"n_params": n_mlp, "batch": 128, "seconds": step_s,
                     "ratio": _ratios(step_s)},
      "compile": {"seconds": compile_s, "ratio": _ratios(compile_s)},
      "state_bytes": {"bytes": state_bytes, "ratio": _ratios(state_bytes)},
  }


def vmap_savings(ctrl, steps, n_lrs, n_evals, seeds):
  """One config (MLP, ``ctrl``, Adam): one vmapped program against a
  Python loop over (rate, seed), compile included in both (the initial
  parameters and streams are drawn once, outside the timings).

  ``loop_one_compile`` jits the single run with rate and seed as traced
  arguments (compiled once, called once per run); ``loop_recompile`` builds
  a fresh ``jax.jit`` per run with rate and seed as Python constants, as a
  script that loops over configurations does.
  """
  task = T.mlp(steps)
  lrs = task.lrs("adam", n_lrs)
  inputs = P.prepare(task, seeds, steps)  # shared, not timed
  params0, stream = inputs
  start = time.perf_counter()
  prog = P.run_program(task, ctrl, "adam", lrs, inputs, steps, n_evals)
  vmapped = time.perf_counter() - start

  run = P.single_run(task, ctrl, "adam", steps, n_evals)
  start = time.perf_counter()
  jitted = jax.jit(run)
  for lr in lrs:
    for i in range(len(seeds)):
      params = jax.tree.map(lambda x, i=i: x[i], params0)
      jax.block_until_ready(jitted(task.data, np.float32(lr), params,
                                   stream[i], np.float32(0), {}))
  loop_one = time.perf_counter() - start

  start = time.perf_counter()
  for lr in lrs:
    for i in range(len(seeds)):
      params = jax.tree.map(lambda x, i=i: x[i], params0)
      fn = jax.jit(lambda d, p, s, lr=lr: run(d, lr, p, s, 0.0, {}))
      jax.block_until_ready(fn(task.data, params, stream[i]))
  loop_re = time.perf_counter() - start
  n = len(lrs) * len(seeds)
  return {"config": f"mlp, {ctrl.name}, adam, {len(lrs)} rates x "
                    f"{len(seeds)} seeds = {n} runs of {steps} steps",
          "vmapped_s": vmapped, "vmapped_compile_s": prog.compile_s,
          "vmapped_run_s": prog.run_s, "loop_one_compile_s": loop_one,
          "loop_recompile_s": loop_re,
          "speedup_vs_loop_one_compile": loop_one / vmapped,
          "speedup_vs_loop_recompile": loop_re / vmapped}


def _markdown(result, meta):
  bare, step = result["bare_update"], result["train_step"]
  lines = [
      "# Cost of the hypergradient variants\n",
      f"Machine: {meta['cpu']}, {meta['cores']} cores, load average"
      f" {meta['load_average']} (1 min) when it started; {meta['date']}."
      " Ratios to `optax.adam(1e-3)`"
      " in the same process, medians of interleaved rounds"
      f" ({meta['rounds']} rounds). Bare update + apply on"
      f" {bare['n_params']:,} float32 parameters (two matrices); train step"
      f" of a 64-{meta['width']}-{meta['width']}-10 MLP on digits, batch"
      f" 128 ({step['n_params']:,} parameters). Params traffic: params-sized"
      " arrays read + written per bare update, from the compiled HLO."
      + (f" Every program compiled with `{meta['compiler_options']}`."
         if meta.get("compiler_options") else "") + "\n",
      "| variant | bare update | train step | state bytes | params traffic"
      " |", "|---|---|---|---|---|"]
  for name in bare["ratio"]:
    lines.append(
        f"| `{name}` | {bare['ratio'][name]:.2f}x |"
        f" {step['ratio'][name]:.2f}x |"
        f" {result['state_bytes']['ratio'][name]:.2f}x |"
        f" {bare['params_traffic'][name]:.1f} |")
  lines.append(f"\nAdam: bare update {bare['seconds']['adam'] * 1e3:.1f} ms,"
               f" train step {step['seconds']['adam'] * 1e3:.2f} ms.")
  return "\n".join(lines) + "\n"


def _profile_markdown(profile, meta):
  lines = ["# Where the train step's time goes, per compiled kernel\n",
           f"Microseconds per step of the 64-{meta['width']}-"
           f"{meta['width']}-10 "
           "MLP train step (batch 128), from a `jax.profiler` trace of 10 "
           f"calls of {meta['inner']} steps; {meta['date']}, load average "
           f"{meta['load_average']}. Kernel names are the HLO instructions of "
           "`jax.jit(...).lower(...).compile().as_text()`: `dot` and "
           "`ynn_fusion` (XLA's YNNPACK kernels) are the forward/backward "
           "matmuls and single-output sums, `multiply_add_fusion` Adam's "
           "moment and parameter updates, `bitcast_reduce_fusion` the "
           "hypergradient's blocked reduction over `g, m, v` "
           "(`multiply_reduce_fusion` for the small leaves), `cond` the "
           "per-parameter rates, `copy` loop-carried copies."
           + (f" Compiled with `{meta['compiler_options']}`."
              if meta.get("compiler_options") else "") + "\n"]
  for name, kernels in profile.items():
    lines += [f"## `{name}`\n", "| kernel | us / step |", "|---|---|"]
    lines += [f"| {k} | {us:.1f} |" for k, us in kernels]
    lines.append("")
  return "\n".join(lines)


def _write_and_print(path, text):
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  print(text)


def study(out_dir, rounds=15, n_params=8_000_000, width=512, inner=20,
          profile=False, fast_math=False):
  """The cost section alone (``python -m bench cost``): Adam, a second Adam
  row (the timing noise) and the hypergradient variants; writes
  ``cost.json`` and ``cost.md`` (``*_fast_math`` with ``fast_math``) and,
  with ``profile``, ``kernel_profile.md``.

  Args:
    out_dir: output folder (created).
    rounds: interleaved timing rounds.
    n_params: parameters of the bare update.
    width: hidden width of the train-step MLP.
    inner: train steps per timed call.
    profile: also profile the train step per compiled kernel.
    fast_math: compile every program with XLA's CPU fast math.

  Returns:
    The result written to ``cost.json``.
  """
  options = {"xla_cpu_enable_fast_math": True} if fast_math else None
  suffix = "_fast_math" if fast_math else ""
  meta = {**O.machine(), "rounds": rounds, "width": width, "inner": inner,
          "compiler_options": options}
  rows = [("adam", optax.adam(1e-3), "none"),
          ("adam (again)", optax.adam(1e-3), "none")] + hd_cost_rows()
  bare_s, state_bytes, n_bare, passes = bare_update(rows, n_params, rounds,
                                                    options)
  step_s, _, n_mlp = train_step(rows, width, 128, inner, rounds, options)
  result = {
      "bare_update": {"n_params": n_bare, "seconds": bare_s,
                      "ratio": _ratios(bare_s), "params_traffic": passes},
      "train_step": {"n_params": n_mlp, "seconds": step_s,
                     "ratio": _ratios(step_s)},
      "state_bytes": {"bytes": state_bytes, "ratio": _ratios(state_bytes)},
  }
  os.makedirs(out_dir, exist_ok=True)
  O.write_json(os.path.join(out_dir, f"cost{suffix}.json"),
               {"meta": meta, **result}, indent=1)
  _write_and_print(os.path.join(out_dir, f"cost{suffix}.md"),
                   _markdown(result, meta))
  if profile:
    kernels = kernel_profile([r for r in rows if r[0] != "adam (again)"],
                             width, 128, inner, calls=10, top=12,
                             compiler_options=options)
    _write_and_print(os.path.join(out_dir, f"kernel_profile{suffix}.md"),
                     _profile_markdown(kernels, meta))
  return result
