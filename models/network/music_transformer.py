"""``music_transformer``: a decoder-only Transformer with relative self-attention, as a Keras 3 model.

Huang et al. 2018 ("Music Transformer") add to each attention logit a term that depends only on the
distance between query and key: ``S_rel[i, j] = q_i · E[i - j]``.  Computing it by gathering one
embedding per (i, j) pair costs O(L²·D) memory; their "skewing" multiplies the queries once by the L
relative embeddings (``Q·E_rᵀ``, O(L·D) extra) and moves each entry into place with a pad, a reshape and
a slice (:func:`skew`).  Distances beyond ``max_relative_distance`` share the last embedding (clipping,
as in Shaw et al. 2018), so the model applies to sequences of any length.  Each head has its own
relative embeddings.  There is no absolute position encoding: causal attention plus relative positions
is enough to locate a step, and the model is the same at every offset of a melody.

Blocks are pre-LN (LayerNorm before attention and feed-forward, residual around each, dropout on each
branch and on the embedding).  Every layer is a top-level layer of the functional model, so the
training loop finds (and checkpoints) every dropout layer's random state as it does for the RNNs, and
:class:`IncrementalDecoder` reuses the trained layers by name.

Inputs are the config's input vectors (basic_rnn: one-hot of 38); the first Dense layer is then exactly
an embedding of the event class.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from melodyflow.models.hparams import TransformerHParams


def relative_indices(length, max_relative_distance: int):
    """Row ``m`` of the skewed layout holds distance ``length - 1 - m``; return its embedding index."""
    distances = tf.range(length - 1, -1, -1)
    return tf.minimum(distances, max_relative_distance)


def skew(qe):
    """``[..., L, L]`` of ``q_i · E_m`` (m over distances L-1 .. 0) → ``S_rel[..., i, j]`` for distance i - j.

    Pad one column on the left, view the ``L × (L+1)`` block as ``(L+1) × L``, drop the first row: entry
    ``(i, j)`` then holds ``qe[i, L-1-(i-j)]`` for ``j <= i``.  Entries above the diagonal are garbage,
    which the causal mask hides.  The row is dropped with ``tf.slice``: the gradient of a strided slice
    (``x[..., 1:, :]``) cost 3.6x as much CPU here, a third of a whole training step.
    """
    rank = len(qe.shape)
    shape = tf.shape(qe)
    length = shape[-1]
    padded = tf.pad(qe, [[0, 0]] * (rank - 1) + [[1, 0]])
    reshaped = tf.reshape(padded, tf.concat([shape[:-2], [length + 1, length]], axis=0))
    return tf.slice(reshaped, [0] * (rank - 2) + [1, 0], [-1] * rank)


@keras.saving.register_keras_serializable(package="melodyflow")
class RelativeSelfAttention(keras.layers.Layer):
    """Causal multi-head self-attention with per-head relative position logits (skewed)."""

    def __init__(self, num_heads: int, max_relative_distance: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.max_relative_distance = max_relative_distance

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.depth = dim // self.num_heads
        init = keras.initializers.GlorotUniform
        self.w_query = self.add_weight(name="query", shape=(dim, dim), initializer=init())
        self.w_key = self.add_weight(name="key", shape=(dim, dim), initializer=init())
        self.w_value = self.add_weight(name="value", shape=(dim, dim), initializer=init())
        self.w_output = self.add_weight(name="output", shape=(dim, dim), initializer=init())
        self.relative = self.add_weight(
            name="relative_embeddings", shape=(self.num_heads, self.max_relative_distance + 1, self.depth),
            initializer=keras.initializers.RandomNormal(stddev=self.depth ** -0.5))

    def _heads(self, x, weight):
        """``[B, T, D] @ W`` → ``[B, H, T, depth]``."""
        shape = tf.shape(x)
        y = tf.reshape(tf.matmul(x, weight), [shape[0], shape[1], self.num_heads, self.depth])
        return tf.transpose(y, [0, 2, 1, 3])

    def _merge(self, y):
        shape = tf.shape(y)
        y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [shape[0], shape[2], self.num_heads * self.depth])
        return tf.matmul(y, self.w_output)

    def relative_logits(self, q):
        """``S_rel`` for queries ``[B, H, L, depth]`` by skewing ``Q·E_rᵀ``.

        A batched matmul against the embeddings broadcast over the batch, not an einsum: the einsum's
        gradient for the embeddings transposed the ``[B, H, L, L]`` product and cost 3x as much CPU.
        """
        shape = tf.shape(q)
        embeddings = tf.gather(self.relative, relative_indices(shape[2], self.max_relative_distance), axis=1)
        embeddings = tf.broadcast_to(embeddings[None], tf.concat([shape[:1], tf.shape(embeddings)], axis=0))
        return skew(tf.matmul(q, embeddings, transpose_b=True))

    def call(self, x):
        q = self._heads(x, self.w_query) * (self.depth ** -0.5)
        k = self._heads(x, self.w_key)
        v = self._heads(x, self.w_value)
        logits = tf.matmul(q, k, transpose_b=True) + self.relative_logits(q)
        length = tf.shape(x)[1]
        future = 1.0 - tf.linalg.band_part(tf.ones([length, length], logits.dtype), -1, 0)
        logits += future * -1e9  # an additive mask: its gradient is cheaper than tf.where's
        return self._merge(tf.matmul(tf.nn.softmax(logits, axis=-1), v))

    def step(self, x, keys, values):
        """One new position ``x [B, D]`` attending over the cache ``[B, H, T, depth]`` and itself.

        The relative term needs one dot product per distance (``q · E_r`` for the R+1 embeddings),
        gathered by each cached key's distance; returns ``(output [B, D], keys, values)`` with the
        new position appended to the cache.
        """
        x = x[:, None, :]
        q = self._heads(x, self.w_query)[:, :, 0] * (self.depth ** -0.5)  # [B, H, depth]
        keys = tf.concat([keys, self._heads(x, self.w_key)], axis=2)
        values = tf.concat([values, self._heads(x, self.w_value)], axis=2)
        position = tf.shape(keys)[2] - 1
        per_distance = tf.einsum("bhd,hrd->bhr", q, self.relative)
        distances = tf.minimum(position - tf.range(position + 1), self.max_relative_distance)
        logits = tf.einsum("bhd,bhtd->bht", q, keys) + tf.gather(per_distance, distances, axis=2)
        context = tf.einsum("bht,bhtd->bhd", tf.nn.softmax(logits, axis=-1), values)
        return self._merge(context[:, :, None])[:, 0], keys, values

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "max_relative_distance": self.max_relative_distance}


def build_transformer(input_size: int, num_classes: int, hparams: TransformerHParams) -> keras.Model:
    """Embedding → ``num_layers`` pre-LN blocks → LayerNorm → logits over the config's classes."""
    rate = hparams.dropout_rate
    inputs = keras.Input(shape=(None, input_size), dtype="float32", name="inputs")
    x = keras.layers.Dense(hparams.d_model, name="embedding")(inputs)
    x = keras.layers.Dropout(rate, name="embedding_dropout")(x)  # layers exist even at rate 0: one
    for i in range(hparams.num_layers):                            # weight layout for every dropout
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{i}_attention_norm")(x)
        h = RelativeSelfAttention(hparams.num_heads, hparams.max_relative_distance, name=f"block_{i}_attention")(h)
        h = keras.layers.Dropout(rate, name=f"block_{i}_attention_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_attention_residual")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{i}_ffn_norm")(x)
        h = keras.layers.Dense(hparams.d_ff, activation="relu", name=f"block_{i}_ffn_hidden")(h)
        h = keras.layers.Dense(hparams.d_model, name=f"block_{i}_ffn_output")(h)
        h = keras.layers.Dropout(rate, name=f"block_{i}_ffn_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_ffn_residual")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="music_transformer")


class IncrementalDecoder:
    """One position at a time with cached keys and values: step t costs O(t), not a rerun of the prefix.

    State is a list ``[keys_0, values_0, keys_1, values_1, …]`` of ``[B, H, T, depth]`` tensors (T = steps
    so far); :meth:`reorder` selects batch rows for beam search.  Built from the trained model's own
    layers, so each step computes what the full forward pass computes at that position.
    """

    def __init__(self, model: keras.Model, hparams: TransformerHParams):
        self.hparams = hparams
        self.depth = hparams.d_model // hparams.num_heads
        get = model.get_layer
        self.embedding, self.final_norm, self.logits = get("embedding"), get("final_norm"), get("logits")
        self.blocks = [(get(f"block_{i}_attention_norm"), get(f"block_{i}_attention"), get(f"block_{i}_ffn_norm"),
                        get(f"block_{i}_ffn_hidden"), get(f"block_{i}_ffn_output"))
                       for i in range(hparams.num_layers)]
        input_size = int(model.input_shape[-1])
        cache = tf.TensorSpec([None, hparams.num_heads, None, self.depth], tf.float32)
        self._step = tf.function(self._step_impl, input_signature=[
            tf.TensorSpec([None, input_size], tf.float32), [cache] * (2 * hparams.num_layers)])

    def zero_state(self, batch: int) -> list:
        empty = tf.zeros([batch, self.hparams.num_heads, 0, self.depth], tf.float32)
        return [empty] * (2 * self.hparams.num_layers)

    def _step_impl(self, x, state):
        h = self.embedding(x)
        new_state = []
        for i, (attention_norm, attention, ffn_norm, ffn_hidden, ffn_output) in enumerate(self.blocks):
            a, keys, values = attention.step(attention_norm(h), state[2 * i], state[2 * i + 1])
            h = h + a
            h = h + ffn_output(ffn_hidden(ffn_norm(h)))
            new_state += [keys, values]
        return self.logits(self.final_norm(h)), new_state

    def step(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        logits, new_state = self._step(tf.convert_to_tensor(x, tf.float32), state)
        return logits.numpy(), new_state

    @staticmethod
    def reorder(state: list, indices) -> list:
        index = tf.constant(np.asarray(indices, np.int32))
        return [tf.gather(s, index, axis=0) for s in state]
