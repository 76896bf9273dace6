"""The families of networks and data a problem is drawn from (see the
package docstring): MLPs, CNNs and sequence models, each padded to one
shape so that a family's problems run under one ``jax.vmap``. A family
combines a network (:mod:`.architectures`), its data sources
(:mod:`.sources`) and the run settings its problems draw
(:mod:`.sampling`)."""

import jax
import jax.numpy as jnp

from optax_greedy_lab.dnn_problems import architectures as A
from optax_greedy_lab.dnn_problems import data as D
from optax_greedy_lab.dnn_problems import sampling as S
from optax_greedy_lab.dnn_problems import sources as Src
from optax_greedy_lab.dnn_problems.problem import Family


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
  names = [s for s in sources if s != "teacher"]
  tabs = Src.tables(names, rows, dims) if names else None
  with_teacher = "teacher" in sources

  def sample(key, config):
    keys = jax.random.split(key, 4)
    x, y, out_mask, regression, n, in_dims = Src.tabular_or_teacher(
        keys[:2], tabs, with_teacher, rows, dims)
    arch = S.mlp_arch(keys[3], in_dims, dims, max_width, max_depth)
    return S.split_and_run(keys[2], config, n, x, y, out_mask, regression,
                           arch, min_rows=120)

  def init(key, problem):
    return A.mlp_init(key, problem.arch, problem.init_scale, max_depth)

  return Family(name, sample, init, A.mlp_apply)


def cnn_family(name="cnn", sources=("digits", "teacher"), max_channels=8,
               rows=1797) -> Family:
  """Small CNNs on 8x8 images (see the module docstring).

  Two 3x3 convolutions (``c1, c2`` channels, each ``2..max_channels``) with
  ReLU, 2x2 average pooling between them, global average pooling and a
  dense head (:func:`.architectures.cnn_apply`).
  """
  digits = Src.digits_images(rows)
  with_digits, with_teacher = "digits" in sources, "teacher" in sources

  def sample(key, config):
    keys = jax.random.split(key, 5)
    x, y, out_mask, n = Src.digits_or_teacher(
        keys[1:], digits, with_digits, with_teacher, rows, max_channels)
    return S.split_and_run(jax.random.fold_in(key, 7), config, n, x, y,
                           out_mask, jnp.asarray(False),
                           S.cnn_arch(keys[0], max_channels), min_rows=300)

  def init(key, problem):
    return A.cnn_init(key, problem.arch, problem.init_scale)

  return Family(name, sample, init, A.cnn_apply)


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
  x_all, y_all = Src.text(D.char_windows(context, windows, seed), D.VOCAB)

  def sample(key, config):
    return S.split_and_run(key, config, jnp.asarray(windows), x_all, y_all,
                           jnp.ones([D.VOCAB]), jnp.asarray(False), {},
                           min_rows=windows // 2)

  def init(key, problem):
    return A.sequence_init(key, problem.init_scale, attention=attention,
                           vocab=D.VOCAB, context=context, embed=embed,
                           width=width)

  def apply(params, x, arch):
    del arch
    return A.sequence_apply(params, x, attention)

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
  vocab = D.SOURCE_VOCAB
  x_all, y_all = Src.text(D.source_windows(context, windows, seed), vocab)

  def sample(key, config):
    arch = S.char_lm_arch(jax.random.fold_in(key, 3), max_layers)
    return S.split_and_run(key, config, jnp.asarray(windows), x_all, y_all,
                           jnp.ones([vocab]), jnp.asarray(False), arch,
                           min_rows=windows // 2, label_noise=False)

  def init(key, problem):
    return A.char_lm_init(key, problem.init_scale, vocab=vocab,
                          context=context, embed=embed, hidden=hidden,
                          max_layers=max_layers)

  return Family(name, sample, init, A.char_lm_apply)


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
