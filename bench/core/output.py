"""Output: strict JSON, Markdown tables, figures, and what ran them."""

import datetime
import json
import os
import pathlib
import platform

import numpy as np


def clean(x, digits=None):
  """``x`` as strict JSON data: arrays to lists, numpy scalars to Python,
  non-finite floats (diverged runs) to ``None``.

  Args:
    x: nested dicts, lists, tuples, arrays and scalars.
    digits: significant digits to keep on floats (``None``: all).

  Returns:
    The same structure, ready for ``json.dump(..., allow_nan=False)``.
  """
  if isinstance(x, dict):
    return {str(k): clean(v, digits) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [clean(v, digits) for v in x]
  if hasattr(x, "tolist"):
    return clean(x.tolist(), digits)
  if isinstance(x, float):
    if not np.isfinite(x):
      return None
    return float(f"{x:.{digits}g}") if digits else x
  return x


def write_json(path, data, digits=None, indent=None):
  """Writes :func:`clean` ``data`` to ``path`` atomically (a temporary file,
  then a rename), so a reader never sees half a file."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  separators = None if indent else (",", ":")
  tmp.write_text(json.dumps(clean(data, digits), indent=indent,
                            separators=separators, allow_nan=False),
                 encoding="utf-8")
  os.replace(tmp, path)


def table(header, rows):
  """A Markdown table: ``header`` cells, then one line per row."""
  lines = ["| " + " | ".join(str(c) for c in header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def pyplot():
  """matplotlib's ``pyplot`` on the file-only Agg backend."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def machine():
  """What the numbers were measured on: CPU, cores, device, versions, date
  (UTC) and the 1-minute load average when asked."""
  import jax  # pylint: disable=import-outside-toplevel
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f
               if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  dev = jax.devices()[0]
  return {"cpu": cpu, "cores": os.cpu_count(), "platform": dev.platform,
          "device": dev.device_kind, "jax": jax.__version__,
          "python": platform.python_version(),
          "load_average": round(os.getloadavg()[0], 2),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds")}


def machine_line():
  """:func:`machine` in one line of text."""
  m = machine()
  return (f"{m['cpu']}, {m['cores']} cores, {m['platform']} "
          f"({m['device']}), jax {m['jax']}, load average "
          f"{m['load_average']}, {m['date']}")
