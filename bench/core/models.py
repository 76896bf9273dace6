"""The Flax building blocks that the grid's tasks and the studies share."""

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """ReLU hidden layers of ``widths``, then ``outputs`` logits."""
  widths: tuple = (128, 128)
  outputs: int = 10

  @nn.compact
  def __call__(self, x):
    for width in self.widths:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.outputs)(x)


class Conv3x3(nn.Module):
  """A 3x3 'SAME' convolution as a dense layer on the 9 shifted copies of
  the input (im2col): the same function as ``nn.Conv(features, (3, 3))``,
  but a plain matrix product, which ``jax.vmap`` over parameters turns into
  a batched matmul instead of a grouped convolution (slow on CPU)."""
  features: int

  @nn.compact
  def __call__(self, x):
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
    return nn.Dense(self.features)(patches)


class _Block(nn.Module):
  """A pre-LayerNorm causal self-attention block with a 4x GELU MLP."""
  dim: int
  heads: int

  @nn.compact
  def __call__(self, x):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + nn.MultiHeadDotProductAttention(self.heads)(
        nn.LayerNorm()(x), mask=mask)
    h = nn.gelu(nn.Dense(4 * self.dim)(nn.LayerNorm()(x)))
    return x + nn.Dense(self.dim)(h)


class CharTransformer(nn.Module):
  """Causal transformer over ``vocab`` symbols (pre-LayerNorm blocks, a
  learned position embedding of ``length``)."""
  dim: int = 32
  heads: int = 2
  layers: int = 2
  length: int = 32
  vocab: int = 128

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab, self.dim)(tokens)
    pos = self.param("pos", nn.initializers.normal(0.02),
                     (self.length, self.dim))
    x = x + pos[: tokens.shape[1]]
    for _ in range(self.layers):
      x = _Block(self.dim, self.heads)(x)
    return nn.Dense(self.vocab)(nn.LayerNorm()(x))
