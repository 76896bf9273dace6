"""The grid's report: summary.md, summary.json and the figures."""

import json
import os

import numpy as np

from bench.core import output as O
from bench.core import registry as R


def _fmt(x, spec=".3g"):
  if x is None:
    return "-"
  if isinstance(x, float) and not np.isfinite(x):
    return "inf"
  return format(x, spec)


def _tally_cells(t):
  return [t["n"], t["wins"], t["ties"], t["losses"],
          _fmt(t["equal_or_better"], ".1%"),
          ", ".join(f"{k}: {v}" for k, v in sorted(t["tie_rules"].items()))
          or "-"]


def markdown(summary):
  """The tables of summary.md."""
  meta, tables = summary["meta"], summary["win_tables"]
  m = meta["machine"]
  out = [f"# Benchmark summary ({meta['preset']} preset)", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']} "
         f"({m['device']}); jax {m['jax']}, Python {m['python']}; "
         f"{m['date']}. Grid wall time {meta['grid_seconds']:.0f} s, total "
         f"{meta['total_seconds']:.0f} s.", "",
         f"Config: steps per task {meta['config']['steps']}, "
         f"{meta['config']['n_evals']} evaluations per run, seeds "
         f"{meta['config']['seeds']}, {meta['config']['n_lrs']} initial rates "
         f"per base optimizer (31.6x span), bases {meta['config']['bases']}.",
         ""]
  wr = summary["win_rate_vs_fixed_schedules"]
  out += ["## Headline (held-out loss)", "",
          f"**GreedyLR with its defaults (given only the initial rate) is "
          f"equal or better than the fixed schedule on held-out loss in "
          f"{_fmt(wr, '.1%')} of comparisons** "
          f"(`win_rate_vs_fixed_schedules`). "
          f"{summary['tie_rule']}.", "",
          "Held-out loss: the evaluation loss on the held-out split "
          "(learned tasks) or the noise-free function (analytic tasks). "
          "The training-loss tables follow the held-out ones.", ""]
  hdr = ["challenger", "comparisons", "wins", "ties", "losses",
         "equal or better", "tie rules"]
  out += ["## Win/tie/loss against the fixed schedules (held-out loss)", "",
          "Each comparison: one (task, base optimizer, initial rate) and one "
          "of " + ", ".join(R.FIXED_SCHEDULES) + ", same step budget, "
          "final held-out loss averaged over seeds.", "",
          O.table(hdr, [[R.label(k)] + _tally_cells(t)
                       for k, t in tables.items()]), ""]
  tuned = summary["tuned_win_tables"]
  out += ["## Best-of-grid against best-of-grid (held-out loss)", "",
          "Per (task, base optimizer): each row at its best initial rate "
          "against each fixed schedule at its own best initial rate. This "
          "takes away the advantage of repairing a badly chosen initial "
          "rate, which the per-configuration table rewards.", "",
          O.table(hdr, [[R.label(k)] + _tally_cells(t)
                       for k, t in tuned.items()]), ""]
  for chal in ("greedy", "greedy_val"):
    if chal not in tables:
      continue
    for key in ("task", "schedule", "base"):
      out += [f"### {R.label(chal)} by {key} (held-out loss)", "",
              O.table([key] + hdr[1:], [[v] + _tally_cells(t) for v, t in
                                       tables[chal][f"by_{key}"].items()]),
              ""]
  hd = [k for k in tables if k.startswith("hd_")]
  if hd:
    out += ["### Hypergradient descent by task (held-out loss, equal or "
            "better)", "",
            O.table(["task"] + [R.label(k) for k in hd],
                   [[task] + [_fmt(tables[k]["by_task"][task]
                                   ["equal_or_better"], ".0%") for k in hd]
                    for task in tables[hd[0]]["by_task"]]), ""]
    same = _identical_rows(summary["runs"], "hd_global", "hd_per_tensor")
    if same:
      out += ["Global and per-tensor HD are the same algorithm where the "
              "parameters are one array: their final losses are identical "
              f"on {', '.join(same)}, so their rows coincide there.", ""]
  train = summary.get("train_win_tables") or {}
  if train:
    out += ["## Win/tie/loss against the fixed schedules (training loss)",
            "", "The same comparisons as the first held-out table, on the "
            "final training loss (mean minibatch loss of the last evaluation "
            "block, per seed).", "",
            O.table(hdr, [[R.label(k)] + _tally_cells(t)
                         for k, t in train.items() if "[" not in k]), ""]
  flips = summary.get("negative_flips") or []
  if flips:
    out += ["## Negative flips against the tuned cosine (held-out examples)",
            "", "Classification tasks. Per (task, base optimizer): the "
            "cosine schedule at its best initial rate is the baseline, "
            "every row at its own best rate. Negative flips: the share of "
            "held-out examples the baseline classifies correctly and the "
            "row's model does not (same seed, mean over seeds).", "",
            O.table(["task", "base", "row", "accuracy", "change vs cosine",
                    "negative flips"],
                   [[f["task"], f["base"], R.label(f["row"]),
                     f"{f['accuracy']:.3f}", f"{f['accuracy_change']:+.3f}",
                     f"{f['negative_flip_rate']:.3f}"]
                    for f in flips if "[" not in f["row"]]), ""]
  speed = [r for r in summary["speed_summary"] if "[" not in r["row"]]
  bases = sorted({r["base"] for r in speed})
  cells = {}
  for r in speed:
    cells.setdefault(r["row"], {})[r["base"]] = (
        f"{r['reached']}/{r['tasks']}, "
        f"{_fmt(r['median_best_speedup'], '.2f')}")
  out += ["## Speed to target (held-out loss)", "",
          "Target per task: the final held-out loss of the best-of-grid "
          "Adam with a constant or cosine schedule. Cell: tasks where some "
          "initial rate reached the target / tasks, and the median, over the "
          "tasks reached, of the best rate's speedup (reference steps / "
          "steps; > 1 is faster than tuned Adam).", "",
          O.table(["row"] + bases,
                 [[R.label(k)] + [v.get(b, "-") for b in bases]
                  for k, v in cells.items()]), ""]
  ov = summary.get("overhead")
  if ov:
    names = list(ov["bare_update"]["ratio"])
    out += ["## Cost against optax.adam (same process)", "",
            f"Bare update + apply on {ov['bare_update']['n_params']:,} "
            f"parameters; full train step of a {ov['train_step']['n_params']:,}"
            f"-parameter MLP on digits (batch {ov['train_step']['batch']}); "
            "compile time of that train step; optimizer state bytes on the "
            f"{ov['bare_update']['n_params']:,} parameters. Medians of "
            "interleaved rounds.", "",
            O.table(["controller", "bare update", "train step", "compile",
                    "state bytes", "adam-relative state"],
                   [[n, _fmt(ov["bare_update"]["ratio"].get(n), ".2f") + "x",
                     _fmt(ov["train_step"]["ratio"].get(n), ".2f") + "x",
                     _fmt(ov["compile"]["ratio"].get(n), ".2f") + "x",
                     f"{ov['state_bytes']['bytes'][n]:,}",
                     _fmt(ov["state_bytes"]["ratio"][n], ".2f") + "x"]
                    for n in names]),
            "", f"Adam reference: bare update "
            f"{ov['bare_update']['seconds']['adam'] * 1e3:.2f} ms, train "
            f"step {ov['train_step']['seconds']['adam'] * 1e3:.3f} ms.", ""]
  vm = summary.get("vmap")
  if vm:
    out += ["## What jax.vmap saves", "",
            f"{vm['config']}, compile included in every figure:", "",
            O.table(["how", "seconds", "vmap speedup"], [
                ["one vmapped program", f"{vm['vmapped_s']:.1f}", "1.00x"],
                ["Python loop, one jit (rate and seed traced)",
                 f"{vm['loop_one_compile_s']:.1f}",
                 f"{vm['speedup_vs_loop_one_compile']:.2f}x"],
                ["Python loop, fresh jit per run",
                 f"{vm['loop_recompile_s']:.1f}",
                 f"{vm['speedup_vs_loop_recompile']:.2f}x"]]),
            "", "A speedup below 1 means the loop was faster."
            + (f" The vmapped program spent {vm['vmapped_compile_s']:.1f} s "
               f"compiling and {vm['vmapped_run_s']:.2f} s running."
               if "vmapped_compile_s" in vm else ""), ""]
  tim = meta["timings"]
  if tim:
    out += ["## Where the time went", "",
            f"{len(tim)} compiled programs, "
            f"{sum(t['runs'] for t in tim)} runs; compile "
            f"{sum(t['compile_s'] for t in tim):.0f} s, run "
            f"{sum(t['run_s'] for t in tim):.0f} s.", ""]
  ext = summary.get("external") or {}
  for key, res in ext.items():
    out += [f"## External task: {key}", ""]
    if res["status"] == "ok":
      out += [f"Ran in {res['seconds']:.0f} s; outputs in `{res['dir']}/`.",
              ""]
      table = res.get("table_md")
      if table:
        out += [table, ""]
    else:
      out += [f"{res['status']}: "
              f"{res.get('reason') or res.get('error', '').splitlines()[0]}",
              ""]
  if meta["skipped"]:
    out += ["## Skipped", ""] + [
        f"- {k}: {v.strip().splitlines()[-1]}"
        for k, v in meta["skipped"].items()] + [""]
  out += ["Figures: `lr_schedules.png`, `loss_histories.png`.", ""]
  return "\n".join(out)


def _identical_rows(runs, first, second):
  """The tasks on which rows ``first`` and ``second`` have the same final
  losses in every run (same base, rate and seed)."""
  finals = {}
  for r in runs:
    if r["row"] in (first, second):
      finals.setdefault(r["task"], {}).setdefault(r["row"], {})[
          (r["base"], r["lr_index"])] = r["final"]
  return [task for task, rows in finals.items()
          if len(rows) == 2 and rows[first] == rows[second]]


def _pick(recs, task, row, base, li):
  for r in recs:
    if (r["task"], r["row"], r["base"], r["lr_index"]) == (task, row, base,
                                                           li):
      return r
  return None


def _middle(recs, task, base):
  lis = sorted({r["lr_index"] for r in recs if r["task"] == task
                and r["base"] == base and r["lr_index"] is not None})
  return lis[len(lis) // 2] if lis else None


def _panels(recs, preferred):
  """(task, base) pairs that exist, in order of preference."""
  have = {(r["task"], r["base"]) for r in recs if r["row"] == "greedy"}
  return [p for p in preferred if p in have] or sorted(have)[:2]


def _smooth(x, width):
  width = max(1, min(width, len(x) // 5 or 1))
  return np.convolve(x, np.ones(width) / width, mode="valid")


def figure_schedules(recs, path):
  """GreedyLR's rate, without and with the step budget (``total_steps``),
  next to constant, linear and cosine, seed 0: one panel per (task, base),
  two rows, one legend for all."""
  panels = _panels(recs, [("mlp", "momentum"), ("logreg", "sgd"),
                          ("cnn", "adam"), ("charlm", "adam"),
                          ("quadratic/noise=0.1", "sgd"),
                          ("rosenbrock/noise=10", "adam")])
  cols = min(3, len(panels))
  nrows = -(-len(panels) // cols)
  plt = O.pyplot()
  fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows),
                           squeeze=False)
  styles = (("greedy", "GreedyLR", dict(color="C0", lw=2.2)),
            ("greedy_budget", "GreedyLR with total_steps",
             dict(color="C4", lw=2.2)),
            ("constant", "constant", dict(color="C1", ls=":", lw=1.6)),
            ("linear", "linear", dict(color="C2", ls="--", lw=1.4)),
            ("cosine", "cosine", dict(color="C3", ls="-.", lw=1.4)))
  for ax, (task, base) in zip(axes.flat, panels):
    li = _middle(recs, task, base)
    lr0 = None
    for row, label, style in styles:
      r = _pick(recs, task, row, base, li)
      if r is not None:
        ax.plot(np.arange(1, len(r["rate"]) + 1), r["rate"], label=label,
                **style)
        lr0 = lr0 or r["lr"]
    ax.set_yscale("log")
    if lr0:  # the schedules' last steps go to 0: keep 3 decades visible
      ax.set_ylim(lr0 / 1e3, lr0 * 15)
    ax.set_title(f"{task}, {base}")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper center", ncol=len(labels),
             frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def figure_losses(recs, path):
  """Training loss (moving average) and rate of GreedyLR, the base
  optimizer at the same constant rate, and per-parameter / per-tensor HD.
  Lines that coincide stay visible: the constant rate is a wide grey band
  underneath, the others differ in dash pattern and marker."""
  panels = _panels(recs, [("mlp", "sgd"), ("logreg", "sgd"),
                          ("mlp", "momentum")])[:2]
  plt = O.pyplot()
  fig, axes = plt.subplots(2, len(panels), figsize=(5.5 * len(panels) + 1, 7),
                           squeeze=False, sharex="col")
  styles = (
      ("constant", "{base} constant", dict(color="0.6", lw=5, alpha=0.6,
                                           zorder=1)),
      ("greedy", "GreedyLR", dict(color="C1", lw=1.6, zorder=3)),
      ("hd_per_parameter", "HD per parameter",
       dict(color="C2", ls="--", lw=1.4, marker="o", markersize=4,
            zorder=4)),
      ("hd_per_tensor", "HD per group (tensor)",
       dict(color="C4", ls=":", lw=1.8, marker="^", markersize=4,
            zorder=5)))
  for col, (task, base) in enumerate(panels):
    li = _middle(recs, task, base)
    for row, label, style in styles:
      r = _pick(recs, task, row, base, li)
      if r is None:
        continue
      label = label.format(base=base.upper())
      loss = _smooth(r["train"], 20)
      every = max(1, len(loss) // 12)
      axes[0, col].plot(np.arange(len(loss)) + 1, loss, label=label,
                        markevery=every, **style)
      axes[1, col].plot(np.arange(1, len(r["rate"]) + 1), r["rate"],
                        label=label, markevery=every, **style)
    axes[0, col].set_yscale("log")
    axes[0, col].set_title(f"{task}, base {base}")
    axes[0, col].set_ylabel("training loss (moving average)")
    axes[1, col].set_yscale("log")
    axes[1, col].set_ylabel("learning rate (mean)")
    axes[1, col].set_xlabel("step")
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 0.92))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(summary, recs, out_dir):
  """Writes summary.json, summary.md, lr_schedules.png, loss_histories.png.

  The ``"workloads"`` section of an existing summary.json (written by
  ``python -m bench --workloads``) is kept.
  """
  path = os.path.join(out_dir, "summary.json")
  if os.path.exists(path) and "workloads" not in summary:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    if "workloads" in old:
      summary = {**summary, "workloads": old["workloads"]}
  O.write_json(path, summary, digits=6)
  with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(markdown(summary))
  figure_schedules(recs, os.path.join(out_dir, "lr_schedules.png"))
  figure_losses(recs, os.path.join(out_dir, "loss_histories.png"))
