"""The data sources of the families' problems, padded to the family's
shapes: scikit-learn tables, teacher-labelled inputs (a random MLP's or
CNN's) and text windows. A drawn source is ``(x, y, out_mask, regression,
n, ...)``: inputs, one-hot labels or regression targets, the classes or
targets in use, and the number of valid rows."""

import jax
import jax.numpy as jnp
import numpy as np

from optax_greedy_lab.dnn_problems import architectures as A
from optax_greedy_lab.dnn_problems import data as D
from optax_greedy_lab.dnn_problems.problem import MAX_OUT


def _choose(is_first, first, second):
  """``first`` where ``is_first``, else ``second``, leaf by leaf."""
  return jax.tree.map(lambda a, b: jnp.where(is_first, a, b), first, second)


def tables(names, rows, dims):
  """The scikit-learn tables ``names`` padded to ``[rows, dims]`` and
  stacked: ``x``, ``labels``, and per table its ``classes``, ``sizes``
  (valid rows) and ``in_dims`` (valid columns)."""
  data = [D.padded(*D.tabular(s), rows, dims) for s in names]
  return {"x": jnp.asarray(np.stack([d[0] for d in data])),
          "labels": jnp.asarray(np.stack([d[1] for d in data])),
          "classes": jnp.asarray([int(D.tabular(s)[1].max()) + 1
                                  for s in names]),
          "sizes": jnp.asarray([len(D.tabular(s)[1]) for s in names]),
          "in_dims": jnp.asarray([D.tabular(s)[0].shape[1] for s in names])}


def _table(tabs, pick):
  """Table ``pick`` of :func:`tables`, drawn as a classification source."""
  out_mask = (jnp.arange(MAX_OUT) < tabs["classes"][pick]).astype(
      jnp.float32)
  return (tabs["x"][pick], jax.nn.one_hot(tabs["labels"][pick], MAX_OUT),
          out_mask, jnp.asarray(False), tabs["sizes"][pick],
          tabs["in_dims"][pick])


def _mlp_teacher(key, rows, dims):
  """Gaussian inputs of ``4..dims`` dimensions labelled by a random MLP:
  ``2..MAX_OUT`` classes, or (three times in ten) ``1..4`` regression
  targets; also returns the inputs' dimension."""
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
  return x, y, out_mask, regression, jnp.asarray(rows), in_dims


def tabular_or_teacher(keys, tabs, with_teacher, rows, dims):
  """An MLP problem's source ``(x, y, out_mask, regression, n, in_dims)``:
  one of the tables ``tabs`` (:func:`tables`, or ``None``) or
  (``with_teacher``) teacher-student data, uniformly (``keys[0]``; the
  teacher's data: ``keys[1]``)."""
  count = 0 if tabs is None else len(tabs["sizes"])
  source = jax.random.randint(keys[0], [], 0, count + int(with_teacher))
  if not with_teacher:
    return _table(tabs, jnp.minimum(source, count - 1))
  teacher = _mlp_teacher(keys[1], rows, dims)
  if not count:
    return teacher
  return _choose(source == count, teacher,
                 _table(tabs, jnp.minimum(source, count - 1)))


def digits_images(rows):
  """Scikit-learn's digits as ``[rows, 8, 8, 1]`` images (padded), their
  one-hot labels and their number."""
  x, labels = D.padded(*D.tabular("digits"), rows, 64)
  return (jnp.asarray(x.reshape(rows, 8, 8, 1)),
          jax.nn.one_hot(jnp.asarray(labels), MAX_OUT),
          len(D.tabular("digits")[1]))


def _cnn_teacher(keys, rows, max_channels):
  """Gaussian ``[rows, 8, 8, 1]`` images labelled by a random CNN of
  ``max_channels`` channels for ``2..MAX_OUT`` classes (``keys``: the
  images, the teacher, the classes)."""
  x = jax.random.normal(keys[0], (rows, 8, 8, 1))
  full = {"c1": jnp.ones([max_channels]), "c2": jnp.ones([max_channels])}
  logits = A.cnn_apply(A.cnn_init(keys[1], full, 3.0), x, full)
  classes = jax.random.randint(keys[2], [], 2, MAX_OUT + 1)
  out_mask = (jnp.arange(MAX_OUT) < classes).astype(jnp.float32)
  y = jax.nn.one_hot(jnp.argmax(jnp.where(out_mask > 0, logits, -jnp.inf),
                                axis=1), MAX_OUT)
  return x, y, out_mask


def digits_or_teacher(keys, digits, with_digits, with_teacher, rows,
                      max_channels):
  """A CNN problem's source ``(x, y, out_mask, n)``: the ``digits``
  (:func:`digits_images`) or teacher-labelled images (``keys[:3]``), by a
  fair coin (``keys[3]``) when the family has both."""
  x_t, y_t, mask_t = _cnn_teacher(keys[:3], rows, max_channels)
  if with_digits and with_teacher:
    is_t = jax.random.bernoulli(keys[3])
  else:
    is_t = jnp.asarray(with_teacher)
  x_d, y_d, n_d = digits
  return _choose(is_t, (x_t, y_t, mask_t, rows),
                 (x_d, y_d, jnp.ones([MAX_OUT]), n_d))


def text(windows, vocab):
  """Text windows ``(ids, targets)`` (:func:`.data.char_windows`,
  :func:`.data.source_windows`) as inputs and one-hot targets."""
  ids, targets = windows
  return jnp.asarray(ids), jax.nn.one_hot(jnp.asarray(targets), vocab)
