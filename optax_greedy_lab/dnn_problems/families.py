"""The families of networks and data a problem is drawn from (see the
package docstring): MLPs, CNNs and sequence models, each padded to one
shape so that a family's problems run under one ``jax.vmap``."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from optax_greedy_lab.dnn_problems import data as D
from optax_greedy_lab.dnn_problems.problem import DNNProblem
from optax_greedy_lab.dnn_problems.problem import Family
from optax_greedy_lab.dnn_problems.problem import MAX_OUT

def _loguniform(key, low, high):
  return jnp.exp(jax.random.uniform(key, [], minval=math.log(low),
                                    maxval=math.log(high)))


def _split_and_run(key, config, n, x, y, out_mask, regression, arch,
                   min_rows, label_noise=True):
  """The common part of every problem: rows, split, noise and run settings.

  ``n`` rows of ``x``/``y`` are valid; a random subset of at least
  ``min_rows`` of them is used, three quarters for training.
  """
  keys = jax.random.split(key, 9)
  used = jax.random.randint(keys[0], [], jnp.minimum(min_rows, n), n + 1)
  rows = x.shape[0]
  scores = jax.random.uniform(keys[1], [rows])
  scores = jnp.where(jnp.arange(rows) < used, scores, 2.0)
  order = jnp.argsort(scores)
  n_train = (3 * used) // 4
  # Label noise: a fraction of the labels replaced by random classes.
  classes = jnp.sum(out_mask)
  noise = jax.random.uniform(keys[2], [], maxval=config.label_noise)
  noise = noise if label_noise else 0.0
  flip = jax.random.uniform(keys[3], [rows]) < noise
  random_label = jax.random.randint(keys[4], [rows], 0, classes.astype(int))
  noisy = jax.nn.one_hot(random_label, y.shape[-1])
  if label_noise:
    y = jnp.where(flip[:, None] & ~regression, noisy, y)
  adam = jax.random.bernoulli(keys[5])
  peak = jnp.where(adam, _loguniform(keys[6], *config.adam_peaks),
                   _loguniform(keys[6], *config.momentum_peaks))
  return DNNProblem(
      x=x, y=y, out_mask=out_mask, regression=regression, order=order,
      n_train=n_train, n_val=used - n_train,
      batch_size=jax.random.randint(keys[7], [], 8, config.max_batch + 1),
      budget=jax.random.randint(keys[8], [], config.min_budget,
                                config.max_steps + 1),
      peak=peak, adam=adam,
      init_scale=_loguniform(jax.random.fold_in(key, 1), 0.5, 2.0),
      arch=arch)


# ---------------------------------------------------------------- MLPs


def _dense_init(key, n_in, n_out, fan_in, in_mask, out_mask):
  w = jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(fan_in)
  return {"w": w * in_mask[:, None] * out_mask[None, :],
          "b": jnp.zeros([n_out])}


def _activation(x, tanh):
  return jnp.where(tanh, jnp.tanh(x), jax.nn.relu(x))


def mlp_family(name="mlp", sources=("digits", "iris", "wine", "teacher"),
               max_width=32, max_depth=3, dims=64, rows=1797) -> Family:
  """MLPs on tabular data sets or a teacher-student task (see module doc).

  Args:
    name: the family's name.
    sources: scikit-learn data set names and/or ``"teacher"``.
    max_width, max_depth: the padded width and number of hidden layers
      (each problem draws width ``8..max_width``, depth ``1..max_depth``).
    dims, rows: the padded input dimension and number of rows.
  """
  data = [D.padded(*D.tabular(s), rows, dims) for s in sources
          if s != "teacher"]
  sizes = [len(D.tabular(s)[1]) for s in sources if s != "teacher"]
  classes = [int(D.tabular(s)[1].max()) + 1 for s in sources
             if s != "teacher"]
  with_teacher = "teacher" in sources
  xs = jnp.asarray(np.stack([d[0] for d in data])) if data else None
  labels = jnp.asarray(np.stack([d[1] for d in data])) if data else None

  def arch_of(key, in_dims):
    keys = jax.random.split(key, 3)
    width = jax.random.randint(keys[0], [], 8, max_width + 1)
    return {"in": (jnp.arange(dims) < in_dims).astype(jnp.float32),
            "units": (jnp.arange(max_width) < width).astype(jnp.float32),
            "depth": jax.random.randint(keys[1], [], 1, max_depth + 1),
            "tanh": jax.random.bernoulli(keys[2])}

  def teacher(key):
    keys = jax.random.split(key, 6)
    in_dims = jax.random.randint(keys[0], [], 4, dims + 1)
    in_mask = (jnp.arange(dims) < in_dims).astype(jnp.float32)
    x = jax.random.normal(keys[1], (rows, dims)) * in_mask
    w1 = jax.random.normal(keys[2], (dims, 32)) / jnp.sqrt(in_dims)
    w2 = jax.random.normal(keys[3], (32, MAX_OUT)) * 2.0
    out = jnp.tanh(x @ w1) @ w2
    regression = jax.random.bernoulli(keys[4], 0.3)
    count = jnp.where(regression, jax.random.randint(keys[5], [], 1, 5),
                      jax.random.randint(keys[5], [], 2, MAX_OUT + 1))
    out_mask = (jnp.arange(MAX_OUT) < count).astype(jnp.float32)
    label = jnp.argmax(jnp.where(out_mask > 0, out, -jnp.inf), axis=1)
    y = jnp.where(regression, out * out_mask / 2.0,
                  jax.nn.one_hot(label, MAX_OUT))
    return x, y, out_mask, regression, in_dims

  def sample(key, config):
    keys = jax.random.split(key, 4)
    n_sources = len(data) + int(with_teacher)
    source = jax.random.randint(keys[0], [], 0, n_sources)
    if data:
      pick = jnp.minimum(source, len(data) - 1)
      x_d = xs[pick]
      y_d = jax.nn.one_hot(labels[pick], MAX_OUT)
      c_d = jnp.asarray(classes)[pick]
      n_d = jnp.asarray(sizes)[pick]
      in_d = jnp.asarray([D.tabular(s)[0].shape[1] for s in sources
                          if s != "teacher"])[pick]
      mask_d = (jnp.arange(MAX_OUT) < c_d).astype(jnp.float32)
    if with_teacher:
      x_t, y_t, mask_t, reg_t, in_t = teacher(keys[1])
      n_t = jnp.asarray(rows)
    if data and with_teacher:
      is_t = source == len(data)
      pick_t = lambda a, b: jnp.where(is_t, a, b)
      x, y, out_mask = pick_t(x_t, x_d), pick_t(y_t, y_d), pick_t(mask_t,
                                                                   mask_d)
      regression, n, in_dims = reg_t & is_t, pick_t(n_t, n_d), pick_t(in_t,
                                                                       in_d)
    elif data:
      x, y, out_mask, regression, n, in_dims = (
          x_d, y_d, mask_d, jnp.asarray(False), n_d, in_d)
    else:
      x, y, out_mask, regression, n, in_dims = x_t, y_t, mask_t, reg_t, n_t, in_t
    return _split_and_run(keys[2], config, n, x, y, out_mask, regression,
                          arch_of(keys[3], in_dims), min_rows=120)

  def init(key, problem):
    arch = problem.arch
    keys = jax.random.split(key, max_depth + 1)
    fan_in = jnp.sum(arch["in"])
    width = jnp.sum(arch["units"])
    layers = [_dense_init(keys[0], dims, max_width, fan_in, arch["in"],
                          arch["units"])]
    for i in range(1, max_depth):
      layers.append(_dense_init(keys[i], max_width, max_width, width,
                                arch["units"], arch["units"]))
    layers.append(_dense_init(keys[-1], max_width, MAX_OUT, width,
                              arch["units"], jnp.ones([MAX_OUT])))
    return jax.tree.map(lambda w: w * problem.init_scale, layers)

  def apply(params, x, arch):
    h = _activation(x @ params[0]["w"] + params[0]["b"], arch["tanh"])
    h = h * arch["units"]
    for i in range(1, max_depth):
      new = _activation(h @ params[i]["w"] + params[i]["b"], arch["tanh"])
      h = jnp.where(i < arch["depth"], new * arch["units"], h)
    return h @ params[-1]["w"] + params[-1]["b"]

  return Family(name, sample, init, apply)


# ---------------------------------------------------------------- CNNs


def _patches(x):
  """3x3 'same' patches of ``[batch, h, w, c]`` -> ``[batch, h, w, 9c]``."""
  h, w = x.shape[1], x.shape[2]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, i:i + h, j:j + w]
                          for i in range(3) for j in range(3)], axis=-1)


def cnn_family(name="cnn", sources=("digits", "teacher"), max_channels=8,
               rows=1797) -> Family:
  """Small CNNs on 8x8 images (see the module docstring).

  Two 3x3 convolutions (``c1, c2`` channels, each ``2..max_channels``) with
  ReLU, 2x2 average pooling between them, global average pooling and a
  dense head; convolutions are matrix products of patches (cheap under
  ``vmap``).
  """
  x_digits, y_digits = D.padded(*D.tabular("digits"), rows, 64)
  x_digits = jnp.asarray(x_digits.reshape(rows, 8, 8, 1))
  y_digits = jax.nn.one_hot(jnp.asarray(y_digits), MAX_OUT)
  with_digits, with_teacher = "digits" in sources, "teacher" in sources

  def arch_of(key):
    k1, k2 = jax.random.split(key)
    c1 = jax.random.randint(k1, [], 2, max_channels + 1)
    c2 = jax.random.randint(k2, [], 2, max_channels + 1)
    return {"c1": (jnp.arange(max_channels) < c1).astype(jnp.float32),
            "c2": (jnp.arange(max_channels) < c2).astype(jnp.float32)}

  def init_raw(key, arch, scale):
    keys = jax.random.split(key, 3)
    c = max_channels
    w1 = jax.random.normal(keys[0], (9, c)) / 3.0 * arch["c1"]
    w2 = (jax.random.normal(keys[1], (9 * c, c))
          / jnp.sqrt(9 * jnp.sum(arch["c1"])))
    w2 = w2 * jnp.tile(arch["c1"], 9)[:, None] * arch["c2"][None, :]
    w3 = (jax.random.normal(keys[2], (c, MAX_OUT))
          / jnp.sqrt(jnp.sum(arch["c2"]))) * arch["c2"][:, None]
    params = [{"w": w1, "b": jnp.zeros([c])}, {"w": w2, "b": jnp.zeros([c])},
              {"w": w3, "b": jnp.zeros([MAX_OUT])}]
    return jax.tree.map(lambda w: w * scale, params)

  def apply(params, x, arch):
    h = jax.nn.relu(_patches(x) @ params[0]["w"] + params[0]["b"])
    h = h * arch["c1"]
    b, hh, ww, c = h.shape
    h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
    h = jax.nn.relu(_patches(h) @ params[1]["w"] + params[1]["b"])
    h = (h * arch["c2"]).mean(axis=(1, 2))
    return h @ params[2]["w"] + params[2]["b"]

  def sample(key, config):
    keys = jax.random.split(key, 5)
    arch = arch_of(keys[0])
    x_t = jax.random.normal(keys[1], (rows, 8, 8, 1))
    full = {"c1": jnp.ones([max_channels]), "c2": jnp.ones([max_channels])}
    logits = apply(init_raw(keys[2], full, 3.0), x_t, full)
    classes = jax.random.randint(keys[3], [], 2, MAX_OUT + 1)
    mask_t = (jnp.arange(MAX_OUT) < classes).astype(jnp.float32)
    y_t = jax.nn.one_hot(jnp.argmax(jnp.where(mask_t > 0, logits, -jnp.inf),
                                    axis=1), MAX_OUT)
    if with_digits and with_teacher:
      is_t = jax.random.bernoulli(keys[4])
    else:
      is_t = jnp.asarray(with_teacher)
    x = jnp.where(is_t, x_t, x_digits)
    y = jnp.where(is_t, y_t, y_digits)
    out_mask = jnp.where(is_t, mask_t, jnp.ones([MAX_OUT]))
    n = jnp.where(is_t, rows, len(D.tabular("digits")[1]))
    return _split_and_run(jax.random.fold_in(key, 7), config, n, x, y,
                          out_mask, jnp.asarray(False), arch, min_rows=300)

  def init(key, problem):
    return init_raw(key, problem.arch, problem.init_scale)

  return Family(name, sample, init, apply)


# ---------------------------------------------------------------- sequences


def sequence_family(name, attention: bool, context=8, embed=16, width=64,
                    windows=4000, seed=0) -> Family:
  """Next-character models on standard-library text (held out).

  ``attention=False``: an MLP on the concatenated embeddings of the last
  ``context`` characters. ``attention=True``: a single-head attention block
  (with positional embeddings and a residual MLP) whose last position
  predicts the next character. Each problem uses a random subset of (at
  least half of) ``windows`` windows. The outputs are the 37 character ids
  (not :data:`MAX_OUT`).
  """
  ids, nxt = D.char_windows(context, windows, seed)
  vocab = D.VOCAB
  x_all = jnp.asarray(ids)
  y_all = jax.nn.one_hot(jnp.asarray(nxt), vocab)

  def init(key, problem):
    keys = jax.random.split(key, 8)
    n = lambda k, shape, fan: jax.random.normal(k, shape) / math.sqrt(fan)
    params = {"embed": n(keys[0], (vocab, embed), 1.0)}
    if attention:
      params.update(
          pos=n(keys[1], (context, embed), 1.0),
          q=n(keys[2], (embed, embed), embed),
          k=n(keys[3], (embed, embed), embed),
          v=n(keys[4], (embed, embed), embed),
          w1=n(keys[5], (embed, width), embed), b1=jnp.zeros([width]),
          w2=n(keys[6], (width, embed), width))
      params["out"] = n(keys[7], (embed, vocab), embed)
    else:
      params.update(w1=n(keys[5], (context * embed, width), context * embed),
                    b1=jnp.zeros([width]),
                    out=n(keys[7], (width, vocab), width))
    params["bias"] = jnp.zeros([vocab])
    return jax.tree.map(lambda w: w * problem.init_scale, params)

  def apply(params, x, arch):
    del arch
    e = params["embed"][x]
    if attention:
      e = e + params["pos"]
      q = e[:, -1] @ params["q"]
      scores = jnp.einsum("be,bte->bt", q, e @ params["k"]) / math.sqrt(embed)
      h = e[:, -1] + jnp.einsum("bt,bte->be", jax.nn.softmax(scores),
                                e @ params["v"])
      h = h + jax.nn.relu(h @ params["w1"] + params["b1"]) @ params["w2"]
    else:
      h = jax.nn.relu(e.reshape(e.shape[0], -1) @ params["w1"]
                      + params["b1"])
    return h @ params["out"] + params["bias"]

  def sample(key, config):
    return _split_and_run(key, config, jnp.asarray(windows), x_all, y_all,
                          jnp.ones([vocab]), jnp.asarray(False), {},
                          min_rows=windows // 2)

  return Family(name, sample, init, apply)


def char_lm_family(name="char_lm", context=16, embed=16, hidden=64,
                   max_layers=2, windows=2048, seed=0) -> Family:
  """Tiny causal transformer language models on standard-library source.

  Byte-level (printable ASCII, newline and "other": 97 ids) next-byte
  prediction at every position of windows of ``context`` bytes of the
  source files inside the standard library's packages
  (:data:`~optax_greedy_lab.dnn_problems.data.SOURCE_PACKAGES`; never
  its top-level files, nor the held-out families' text). Pre-norm blocks of
  single-head causal attention and a ReLU MLP, ``1..max_layers`` of them
  per problem, learned positional embeddings; each problem uses a random
  subset (at least half) of ``windows`` windows. No label noise: the
  minibatch noise is the data's own.
  """
  ids, targets = D.source_windows(context, windows, seed)
  vocab = D.SOURCE_VOCAB
  x_all = jnp.asarray(ids)
  y_all = jax.nn.one_hot(jnp.asarray(targets), vocab)
  causal = jnp.tril(jnp.ones((context, context), bool))

  def norm(h):
    mean = h.mean(-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(((h - mean) ** 2).mean(-1, keepdims=True)
                                      + 1e-5)

  def init(key, problem):
    keys = jax.random.split(key, 3 + 6 * max_layers)
    n = lambda k, shape, fan: jax.random.normal(k, shape) / math.sqrt(fan)
    params = {"embed": n(keys[0], (vocab, embed), 1.0),
              "pos": n(keys[1], (context, embed), 1.0) * 0.1,
              "out": n(keys[2], (embed, vocab), embed),
              "bias": jnp.zeros([vocab]), "blocks": []}
    for i in range(max_layers):
      k = keys[3 + 6 * i:9 + 6 * i]
      params["blocks"].append({
          "q": n(k[0], (embed, embed), embed),
          "k": n(k[1], (embed, embed), embed),
          "v": n(k[2], (embed, embed), embed),
          "o": n(k[3], (embed, embed), embed),
          "w1": n(k[4], (embed, hidden), embed), "b1": jnp.zeros([hidden]),
          "w2": n(k[5], (hidden, embed), hidden)})
    return jax.tree.map(lambda w: w * problem.init_scale, params)

  def apply(params, x, arch):
    h = params["embed"][x] + params["pos"]
    for i, block in enumerate(params["blocks"]):
      a = norm(h)
      scores = jnp.einsum("bte,bse->bts", a @ block["q"], a @ block["k"])
      scores = jnp.where(causal, scores / math.sqrt(embed), -1e9)
      new = h + jnp.einsum("bts,bse->bte", jax.nn.softmax(scores),
                           a @ block["v"]) @ block["o"]
      new = new + jax.nn.relu(norm(new) @ block["w1"] + block["b1"]) @ block[
          "w2"]
      h = jnp.where(i < arch["layers"], new, h)
    return norm(h) @ params["out"] + params["bias"]

  def sample(key, config):
    arch = {"layers": jax.random.randint(jax.random.fold_in(key, 3), [], 1,
                                         max_layers + 1)}
    return _split_and_run(key, config, jnp.asarray(windows), x_all, y_all,
                          jnp.ones([vocab]), jnp.asarray(False), arch,
                          min_rows=windows // 2, label_noise=False)

  return Family(name, sample, init, apply)


#: The training families by name (:attr:`EnvConfig.families`):
#: ``mlp``/``cnn`` (the first ``dnn`` policy's, with scikit-learn's digits),
#: ``mlp_tabular`` (MLPs on iris, wine and teacher-student data, no
#: digits), ``cnn_teacher`` (CNNs on teacher-labelled Gaussian images, no
#: digits) and ``char_lm`` (tiny transformer language models).
FAMILIES = {
    "mlp": mlp_family,
    "cnn": cnn_family,
    "mlp_tabular": lambda: mlp_family(
        "mlp_tabular", sources=("iris", "wine", "teacher"), rows=1797),
    "cnn_teacher": lambda: cnn_family("cnn_teacher", sources=("teacher",)),
    "char_lm": char_lm_family,
}


def training_families(names=("mlp", "cnn")):
  """The families named (default: those the first ``dnn`` policy was
  trained on), built from :data:`FAMILIES`."""
  unknown = [n for n in names if n not in FAMILIES]
  if unknown:
    raise ValueError(f"training_families: unknown {unknown}; expected names"
                     f" from {tuple(FAMILIES)}.")
  return tuple(FAMILIES[n]() for n in names)


def held_out_families():
  """Families never seen in training (for the benchmark's
  ``python -m bench dnn-policy``)."""
  return (sequence_family("char_mlp", attention=False),
          sequence_family("attention", attention=True),
          mlp_family("mlp_breast_cancer", sources=("breast_cancer",),
                     max_width=64, dims=30, rows=569))
