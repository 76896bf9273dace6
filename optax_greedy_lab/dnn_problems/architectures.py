"""The families' networks: the initialisation and the forward pass of each,
padded to the family's largest shape and masked by the problem's ``arch``
(unused units, channels and layers change nothing)."""

import math

import jax
import jax.numpy as jnp

from optax_greedy_lab.dnn_problems.problem import MAX_OUT


def _scaled(params, scale):
  """Every weight of ``params`` times ``scale``."""
  return jax.tree.map(lambda w: w * scale, params)


def _normal(key, shape, fan_in):
  """Gaussian weights of variance ``1 / fan_in``."""
  return jax.random.normal(key, shape) / math.sqrt(fan_in)


# ---------------------------------------------------------------- MLPs


def _dense_init(key, n_in, n_out, fan_in, in_mask, out_mask):
  w = jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(fan_in)
  return {"w": w * in_mask[:, None] * out_mask[None, :],
          "b": jnp.zeros([n_out])}


def _activation(x, tanh):
  return jnp.where(tanh, jnp.tanh(x), jax.nn.relu(x))


def mlp_init(key, arch, scale, max_depth):
  """An MLP's layers: ``max_depth`` hidden layers as wide as
  ``arch["units"]`` (its used units masked in), then a :data:`MAX_OUT`
  head; weights of variance ``1 / fan_in`` times ``scale``."""
  dims, max_width = arch["in"].shape[0], arch["units"].shape[0]
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
  return _scaled(layers, scale)


def mlp_apply(params, x, arch):
  """The MLP's outputs: its first ``arch["depth"]`` hidden layers (tanh or
  ReLU, ``arch["tanh"]``), then the head."""
  h = _activation(x @ params[0]["w"] + params[0]["b"], arch["tanh"])
  h = h * arch["units"]
  for i in range(1, len(params) - 1):
    new = _activation(h @ params[i]["w"] + params[i]["b"], arch["tanh"])
    h = jnp.where(i < arch["depth"], new * arch["units"], h)
  return h @ params[-1]["w"] + params[-1]["b"]


# ---------------------------------------------------------------- CNNs


def _patches(x):
  """3x3 'same' patches of ``[batch, h, w, c]`` -> ``[batch, h, w, 9c]``."""
  h, w = x.shape[1], x.shape[2]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, i:i + h, j:j + w]
                          for i in range(3) for j in range(3)], axis=-1)


def cnn_init(key, arch, scale):
  """A CNN's layers: two 3x3 convolutions with the channels
  ``arch["c1"]``, ``arch["c2"]`` mask in, and a :data:`MAX_OUT` head;
  weights times ``scale``."""
  keys = jax.random.split(key, 3)
  c = arch["c1"].shape[0]
  w1 = jax.random.normal(keys[0], (9, c)) / 3.0 * arch["c1"]
  w2 = (jax.random.normal(keys[1], (9 * c, c))
        / jnp.sqrt(9 * jnp.sum(arch["c1"])))
  w2 = w2 * jnp.tile(arch["c1"], 9)[:, None] * arch["c2"][None, :]
  w3 = (jax.random.normal(keys[2], (c, MAX_OUT))
        / jnp.sqrt(jnp.sum(arch["c2"]))) * arch["c2"][:, None]
  params = [{"w": w1, "b": jnp.zeros([c])}, {"w": w2, "b": jnp.zeros([c])},
            {"w": w3, "b": jnp.zeros([MAX_OUT])}]
  return _scaled(params, scale)


def cnn_apply(params, x, arch):
  """The CNN's outputs on ``[batch, 8, 8, 1]`` images: convolution, ReLU,
  2x2 average pooling, convolution, ReLU, global average pooling, head
  (convolutions are matrix products of patches, cheap under ``vmap``)."""
  h = jax.nn.relu(_patches(x) @ params[0]["w"] + params[0]["b"])
  h = h * arch["c1"]
  b, hh, ww, c = h.shape
  h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
  h = jax.nn.relu(_patches(h) @ params[1]["w"] + params[1]["b"])
  h = (h * arch["c2"]).mean(axis=(1, 2))
  return h @ params[2]["w"] + params[2]["b"]


# ---------------------------------------------------------------- sequences


def sequence_init(key, scale, *, attention, vocab, context, embed, width):
  """A next-character model's parameters (see :func:`sequence_apply`);
  weights times ``scale``."""
  keys = jax.random.split(key, 8)
  params = {"embed": _normal(keys[0], (vocab, embed), 1.0)}
  if attention:
    params.update(
        pos=_normal(keys[1], (context, embed), 1.0),
        q=_normal(keys[2], (embed, embed), embed),
        k=_normal(keys[3], (embed, embed), embed),
        v=_normal(keys[4], (embed, embed), embed),
        w1=_normal(keys[5], (embed, width), embed), b1=jnp.zeros([width]),
        w2=_normal(keys[6], (width, embed), width))
    params["out"] = _normal(keys[7], (embed, vocab), embed)
  else:
    params.update(
        w1=_normal(keys[5], (context * embed, width), context * embed),
        b1=jnp.zeros([width]), out=_normal(keys[7], (width, vocab), width))
  params["bias"] = jnp.zeros([vocab])
  return _scaled(params, scale)


def sequence_apply(params, x, attention):
  """Next-character logits of ``[batch, context]`` ids: an MLP on the
  concatenated embeddings, or (``attention``) a single-head attention
  block with positional embeddings and a residual MLP whose last position
  predicts."""
  e = params["embed"][x]
  if attention:
    embed = e.shape[-1]
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


def _norm(h):
  """Layer normalisation without gain or bias."""
  mean = h.mean(-1, keepdims=True)
  return (h - mean) * jax.lax.rsqrt(((h - mean) ** 2).mean(-1, keepdims=True)
                                    + 1e-5)


def char_lm_init(key, scale, *, vocab, context, embed, hidden, max_layers):
  """A causal transformer's parameters (see :func:`char_lm_apply`),
  ``max_layers`` blocks; weights times ``scale``."""
  keys = jax.random.split(key, 3 + 6 * max_layers)
  params = {"embed": _normal(keys[0], (vocab, embed), 1.0),
            "pos": _normal(keys[1], (context, embed), 1.0) * 0.1,
            "out": _normal(keys[2], (embed, vocab), embed),
            "bias": jnp.zeros([vocab]), "blocks": []}
  for i in range(max_layers):
    k = keys[3 + 6 * i:9 + 6 * i]
    params["blocks"].append({
        "q": _normal(k[0], (embed, embed), embed),
        "k": _normal(k[1], (embed, embed), embed),
        "v": _normal(k[2], (embed, embed), embed),
        "o": _normal(k[3], (embed, embed), embed),
        "w1": _normal(k[4], (embed, hidden), embed),
        "b1": jnp.zeros([hidden]),
        "w2": _normal(k[5], (hidden, embed), hidden)})
  return _scaled(params, scale)


def char_lm_apply(params, x, arch):
  """Next-byte logits at every position of ``[batch, context]`` ids: the
  first ``arch["layers"]`` pre-norm blocks (single-head causal attention,
  then a ReLU MLP), learned positional embeddings."""
  context, embed = params["pos"].shape
  causal = jnp.tril(jnp.ones((context, context), bool))
  h = params["embed"][x] + params["pos"]
  for i, block in enumerate(params["blocks"]):
    a = _norm(h)
    scores = jnp.einsum("bte,bse->bts", a @ block["q"], a @ block["k"])
    scores = jnp.where(causal, scores / math.sqrt(embed), -1e9)
    new = h + jnp.einsum("bts,bse->bte", jax.nn.softmax(scores),
                         a @ block["v"]) @ block["o"]
    new = new + jax.nn.relu(_norm(new) @ block["w1"] + block["b1"]) @ block[
        "w2"]
    h = jnp.where(i < arch["layers"], new, h)
  return _norm(h) @ params["out"] + params["bias"]
