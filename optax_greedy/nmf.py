r"""Non-negative matrix factorisation (NMF) and its learning-rate bounds.

Stochastic NMF factors a non-negative ``V`` (``m x n``) into non-negative
``W`` (``m x r``) and ``H`` (``r x n``) by (projected) gradient descent on

.. math::

  f(W, H) = \tfrac12 \lVert V - W H \rVert_F^2
          = \tfrac12 \textstyle\sum_{ij} (V - W H)_{ij}^2,

with gradients :math:`\nabla_W f = (W H - V) H^\top` and
:math:`\nabla_H f = W^\top (W H - V)`. A column minibatch ``B`` estimates
``f`` without bias by :math:`f_B = \tfrac{n}{|B|} \tfrac12
\lVert V_{:B} - W H_{:B} \rVert_F^2` (see :func:`loss`).

:func:`stability_bounds` gives the largest stable learning rate of each
factor; pair it with :func:`optax_greedy.stability_clip` to cap any schedule
at that bound, as in the reference below.

Reference: "Efficient learning rate schedules for stochastic non-negative
matrix factorization via reinforcement learning", ICLR 2023 Tiny Papers
(Amazon).

Example (the bounds of a random start; see :func:`optax_greedy.stability_clip`
for a training step):
  >>> import jax
  >>> from optax_greedy import nmf
  >>> V = nmf.digits_matrix().T  # 64 pixels x 1797 images
  >>> params = nmf.init(jax.random.key(0), V, rank=8)
  >>> sorted(nmf.stability_bounds(params))
  ['H', 'W']
  >>> bool(nmf.relative_error(params, V) < 1.5)
  True
"""

import numbers
from typing import Any, Optional

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from optax_greedy import _checks


def _check_data(V):
  """Raises ``ValueError`` unless ``V`` is a 2-D non-negative matrix."""
  if jnp.ndim(V) != 2:
    raise ValueError(f"V must be a 2-D matrix, got V.shape={jnp.shape(V)}.")
  if not isinstance(V, jax.core.Tracer):
    values = np.asarray(V)
    if not np.all(values >= 0):
      raise ValueError(
          "V must be non-negative (and not NaN), got min(V)="
          f"{np.nanmin(values)!r}" + (" and NaN entries" if np.isnan(
              values).any() else "") + "."
      )


def _check_factors(params, V=None):
  """Raises ``ValueError`` unless ``W``, ``H`` (and ``V``) shapes agree."""
  if not isinstance(params, dict) or set(params) != {"W", "H"}:
    raise ValueError(
        'params must be a dict with keys "W" and "H", got '
        f"{type(params).__name__} with keys "
        f"{sorted(params) if isinstance(params, dict) else None}."
    )
  w_shape, h_shape = jnp.shape(params["W"]), jnp.shape(params["H"])
  if len(w_shape) != 2 or len(h_shape) != 2 or w_shape[1] != h_shape[0]:
    raise ValueError(
        "W (m x r) and H (r x n) must be matrices with the same rank r, got "
        f"W.shape={w_shape} and H.shape={h_shape}."
    )
  if V is not None and jnp.shape(V) != (w_shape[0], h_shape[1]):
    raise ValueError(
        f"V must have shape (W.shape[0], H.shape[1])={(w_shape[0], h_shape[1])}"
        f", got V.shape={jnp.shape(V)}."
    )


def digits_matrix(dtype: Any = jnp.float32) -> jax.Array:
  """scikit-learn's digits images as a ``1797 x 64`` matrix in ``[0, 1]``.

  Each row is one 8 x 8 handwritten digit (pixel intensities 0..16, divided
  by 16). The data ships inside scikit-learn, so no download is needed.
  For column minibatches of images, factor its transpose (``64 x 1797``).

  Args:
    dtype: the array's dtype (default float32).

  Returns:
    A non-negative ``(1797, 64)`` array.

  Raises:
    ImportError: if scikit-learn is not installed (it is an optional
      dependency: ``pip install "optax_greedy[examples]"``).
  """
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "optax_greedy.nmf.digits_matrix() reads scikit-learn's digits, and"
        " scikit-learn is not installed: pip install"
        ' "optax_greedy[examples]" (or pip install scikit-learn).') from error
  digits = datasets.load_digits()  # A Bunch, whatever its stubs say.
  return jnp.asarray(
      digits.data / 16.0, dtype)  # pyright: ignore[reportAttributeAccessIssue]


def init(key: jax.Array, V: jax.Array, rank: int) -> dict[str, jax.Array]:
  r"""Random non-negative factors whose product matches ``V`` on average.

  ``W`` and ``H`` have i.i.d. entries uniform on :math:`[0, 2s)` with
  :math:`s = \sqrt{\bar V / r}`, so that :math:`E[(W H)_{ij}] = r s^2 =
  \bar V`, the mean of ``V`` (the scaling of scikit-learn's ``init="random"``,
  with a uniform instead of a half-normal law).

  Args:
    key: a JAX random key.
    V: the non-negative ``m x n`` data matrix.
    rank: the inner dimension ``r >= 1``.

  Returns:
    ``{"W": (m, r), "H": (r, n)}``, non-negative, in ``V``'s float dtype.

  Example:
    >>> params = init(jax.random.key(0), digits_matrix(), rank=8)
    >>> params["W"].shape, params["H"].shape
    ((1797, 8), (8, 64))
  """
  _checks.check_static("rank", rank, "a Python int >= 1", numbers.Integral,
                       sets="the factors' shapes")
  _checks.check_range("rank", int(rank), 1)
  _check_data(V)
  V = jnp.asarray(V)
  dtype = V.dtype if jnp.issubdtype(V.dtype, jnp.floating) else jnp.float32
  m, n = V.shape
  scale = jnp.sqrt(jnp.mean(V.astype(dtype)) / rank)
  key_w, key_h = jax.random.split(key)
  return {
      "W": (2 * scale * jax.random.uniform(key_w, (m, rank), dtype)),
      "H": (2 * scale * jax.random.uniform(key_h, (rank, n), dtype)),
  }


def loss(params: dict[str, jax.Array], V: jax.Array,
         columns: Optional[jax.Array] = None) -> jax.Array:
  r"""Squared reconstruction error, over all of ``V`` or a column minibatch.

  .. math::

    f = \tfrac12 \lVert V - W H \rVert_F^2, \qquad
    f_B = \tfrac{n}{|B|}\, \tfrac12 \lVert V_{:B} - W H_{:B} \rVert_F^2 .

  With ``columns`` (the indices ``B``), only those columns of ``V`` and ``H``
  enter, scaled by ``n / |B|`` so that :math:`E_B[f_B] = f` when ``B`` is
  drawn uniformly (with or without replacement): its gradient is an unbiased
  stochastic gradient of ``f`` for both factors (``H``'s columns outside
  ``B`` get zero, those inside ``n / |B|`` times their full gradient).

  Args:
    params: ``{"W": (m, r), "H": (r, n)}``.
    V: the ``m x n`` data.
    columns: optional integer indices into the columns of ``V`` (and ``H``);
      ``None`` (default) uses every column, unscaled.

  Returns:
    A scalar in the factors' dtype.
  """
  _check_factors(params, V)
  W, H = params["W"], params["H"]
  if columns is None:
    residual = V - W @ H
    scale = 1.0
  else:
    residual = jnp.take(V, columns, axis=1) - W @ jnp.take(H, columns, axis=1)
    scale = V.shape[1] / jnp.shape(columns)[0]
  return (0.5 * scale) * jnp.sum(residual.astype(W.dtype) ** 2)


def relative_error(params: dict[str, jax.Array], V: jax.Array) -> jax.Array:
  r"""Relative reconstruction error :math:`\lVert V - WH \rVert_F /
  \lVert V \rVert_F` (the square root of ``2 * loss / ||V||^2``)."""
  _check_factors(params, V)
  return jnp.linalg.norm(V - params["W"] @ params["H"]) / jnp.linalg.norm(V)


def _top_eigenvalue(a, b):
  """Largest eigenvalue of the PSD ``r x r`` matrix ``a @ b``, in at least
  float32 (``eigvalsh`` has no half-precision kernels)."""
  dtype = jnp.promote_types(jnp.result_type(a), jnp.float32)
  return jnp.linalg.eigvalsh(a.astype(dtype) @ b.astype(dtype))[-1]


def stability_bounds(
    params: dict[str, jax.Array],
    *,
    joint: bool = False,
    batch_size: Optional[int] = None,
    columns: Optional[jax.Array] = None,
) -> dict[str, jax.Array]:
  r"""Largest stable learning rates of (projected) gradient descent on NMF.

  **One factor at a time** (the other fixed). ``f`` is a quadratic in ``W``
  with Hessian :math:`(H H^\top) \otimes I_m`: gradient descent
  :math:`W \leftarrow W - \eta \nabla_W f` multiplies the error along each
  eigenvector of :math:`H H^\top` (eigenvalue :math:`\mu`) by
  :math:`1 - \eta \mu`, so it converges iff

  .. math::

    \eta_W < \frac{2}{\lambda_{\max}(H H^\top)}, \qquad
    \eta_H < \frac{2}{\lambda_{\max}(W^\top W)} \quad\text{(symmetrically).}

  The bound is tight: above it the error along the top eigenvector grows
  geometrically. Projecting onto :math:`\{\cdot \ge 0\}` is non-expansive,
  so projected descent is stable below the bound too, and where the
  projection is inactive at the optimum it diverges above it. Both
  eigenvalues come exactly from ``r x r`` Gram matrices
  (:func:`jax.numpy.linalg.eigvalsh`), at a cost of :math:`O((m+n) r^2)`.

  **Both factors in one step** (``joint=True``, what an optax step does).
  Linearising :math:`W H` around the current factors (the Gauss-Newton
  curvature, exact at a zero-residual fit), a step
  :math:`(\eta_W \Delta_W, \eta_H \Delta_H)` changes the residual by the
  Sylvester operator :math:`R \mapsto \eta_W R H^\top H + \eta_H W W^\top R`,
  whose eigenvalues are sums :math:`\eta_W \nu_j + \eta_H \mu_i` of those of
  :math:`H^\top H` and :math:`W W^\top`. A shared rate is therefore stable iff
  :math:`\eta < 2 / (\lambda_{\max}(H H^\top) + \lambda_{\max}(W^\top W))`,
  the value returned for both factors (more generally, per-factor rates need
  :math:`\eta_W \lambda_W + \eta_H \lambda_H < 2`). The residual's own
  curvature is not included: it is small near a good fit.

  **Column minibatches** (``b`` distinct columns ``B`` of the ``n``, with
  the ``n / b``-scaled :func:`loss`). The step on ``W`` sees the random
  Hessian :math:`\tfrac{n}{b} H_B H_B^\top \otimes I_m`, the columns
  :math:`H_B` see :math:`\tfrac{n}{b} W^\top W`. Given the batch
  (``columns=B``), the bounds are exact for that step:

  .. math::

    \eta_W < \frac{2}{\tfrac{n}{b} \lambda_{\max}(H_B H_B^\top)}, \qquad
    \eta_H < \frac{b}{n} \frac{2}{\lambda_{\max}(W^\top W)} .

  Noise makes the first one random, and it can be smaller than the
  full-batch bound (by up to ``n / b``). For a bound that holds for *every*
  batch of size ``b`` (``batch_size=b``, when the batch is not at hand):
  since :math:`H_B H_B^\top \preceq H H^\top` and
  :math:`\lambda_{\max}(H_B H_B^\top) \le \operatorname{tr}(H_B H_B^\top)
  \le S_b`, the sum of the ``b`` largest squared column norms of ``H``,

  .. math::

    \eta_W < \frac{2}{\tfrac{n}{b} \min(\lambda_{\max}(H H^\top), S_b)}

  keeps every step non-expansive (noise is never amplified); it equals the
  full-batch bound when ``b = n``, and is smaller than the typical batch's
  bound (by about 2x on the digits). With ``joint=True`` both scaled
  curvatures are added as above.

  Args:
    params: ``{"W": (m, r), "H": (r, n)}``.
    joint: bounds for updating both factors in the same step (``True``:
      use this with an optax optimizer over ``{"W", "H"}``) or one factor
      with the other held fixed (``False``, the default, for alternating
      minimisation; capping both factors at these at once can be unstable).
    batch_size: ``b``, the number of columns per minibatch, for the
      ``n / b``-scaled minibatch :func:`loss`: bounds safe for every batch
      of ``b`` distinct columns. ``None`` (default) is the full batch.
    columns: the indices of this step's batch (as passed to :func:`loss`):
      bounds exact for this batch. Exclusive with ``batch_size``.

  Returns:
    ``{"W": bound_W, "H": bound_H}``, positive scalars in at least float32
    (``inf`` for a zero factor, which has no curvature).

  Example:
    >>> params = {"W": jnp.eye(2), "H": 2.0 * jnp.eye(2)}
    >>> {k: float(v) for k, v in stability_bounds(params).items()}
    {'W': 0.5, 'H': 2.0}
  """
  _check_factors(params)
  W, H = params["W"], params["H"]
  n = H.shape[1]
  if batch_size is not None and columns is not None:
    raise ValueError("Pass batch_size or columns, not both.")
  if batch_size is not None:
    _checks.check_range("batch_size", batch_size, 1, n)
  curvature_h = _top_eigenvalue(W.T, W)
  if columns is not None:
    h_batch = jnp.take(H, columns, axis=1)
    scale = n / jnp.shape(columns)[0]
    curvature_w = scale * _top_eigenvalue(h_batch, h_batch.T)
    curvature_h = scale * curvature_h
  else:
    curvature_w = _top_eigenvalue(H, H.T)
  if batch_size is not None and batch_size < n:
    scale = n / batch_size
    column_norms = jnp.sum(H.astype(curvature_w.dtype) ** 2, axis=0)
    top_b = jnp.sum(jax.lax.top_k(column_norms, int(batch_size))[0])
    curvature_w = scale * jnp.minimum(curvature_w, top_b)
    curvature_h = scale * curvature_h
  if joint:
    curvature_w = curvature_h = curvature_w + curvature_h
  return {"W": 2.0 / curvature_w, "H": 2.0 / curvature_h}
