"""Magenta's Melody RNN tensors → the weights of melodyflow's Keras layers, and Magenta's math in numpy.

Magenta's ``BasicLSTMCell`` computes ``z = [x, h] @ W + b`` with one kernel ``W`` of shape
``[inputs + units, 4·units]``, splits ``z`` into gates ``i, j, f, o`` and adds ``forget_bias`` (1.0)
to ``f`` at run time.  A Keras ``LSTM`` computes ``z = x @ K + h @ R + b`` with gates ``i, f, c, o``.
So ``K`` is the first ``inputs`` rows of ``W``, ``R`` the rest, the columns are reordered
``(i, j, f, o) → (i, f, j, o)``, and the forget bias is folded into the ``f`` slice of ``b``.  The output
layer (``fully_connected/{weights,biases}``, from ``tf_slim.layers.linear``) maps one to one.

Three generations of variable names are recognised (see :data:`NAMINGS`).  Anything that is not one of
these tensors is refused, so a variant this mapping does not reproduce (attention, residual or input
projection wrappers, another cell type) can never be imported into a model that computes something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

FORGET_BIAS = 1.0  # BasicLSTMCell's default, which Magenta never changes


@dataclass(frozen=True)
class Naming:
    """Where one TensorFlow generation put the LSTM weights of layer ``i``."""

    label: str
    cell: str  # format string with {i}
    kernel: str
    bias: str

    def kernel_name(self, i: int) -> str:
        return self.cell.format(i=i) + self.kernel

    def bias_name(self, i: int) -> str:
        return self.cell.format(i=i) + self.bias


NAMINGS = (
    Naming("TensorFlow >= 1.3", "rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/", "kernel", "bias"),
    Naming("TensorFlow 1.0-1.2", "rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/", "weights", "biases"),
    Naming("TensorFlow < 1.0 (2016 bundles)", "RNN/MultiRNNCell/Cell{i}/BasicLSTMCell/Linear/", "Matrix", "Bias"),
)
OUTPUT_WEIGHTS = "fully_connected/weights"
OUTPUT_BIASES = "fully_connected/biases"
_ATTENTION = re.compile(r"(?i)attention|attn")


class WeightMappingError(ValueError):
    """The tensors do not form a Magenta Melody RNN that melodyflow's model reproduces."""


@dataclass(frozen=True)
class KerasWeights:
    """Weights in the order ``keras.layers.LSTM`` / ``Dense`` take them."""

    lstm: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]  # (kernel, recurrent_kernel, bias) per layer
    logits: tuple[np.ndarray, np.ndarray]  # (kernel, bias)
    rnn_layer_sizes: tuple[int, ...]
    naming: str
    tensor_names: tuple[str, ...]  # every source tensor that was used


def uses_attention(names) -> bool:
    """Whether the tensors include Magenta's ``AttentionCellWrapper`` (``attention_cell_wrapper/…``)."""
    return any(_ATTENTION.search(n) for n in names)


def _naming_of(tensors: dict[str, np.ndarray]) -> Naming:
    for naming in NAMINGS:
        if naming.kernel_name(0) in tensors or naming.bias_name(0) in tensors:
            return naming
    raise WeightMappingError(f"missing tensor {NAMINGS[0].kernel_name(0)}: no LSTM weights under any known name "
                             f"({', '.join(n.kernel_name(0) for n in NAMINGS)})")


def _tensor(tensors: dict[str, np.ndarray], name: str, ndim: int) -> np.ndarray:
    if name not in tensors:
        raise WeightMappingError(f"missing tensor {name}")
    value = tensors[name]
    if value.ndim != ndim or not np.issubdtype(value.dtype, np.floating):
        raise WeightMappingError(f"shape mismatch: {name} is a {value.dtype} tensor of shape {list(value.shape)}, "
                                 f"expected a {ndim}-D float tensor")
    if not np.all(np.isfinite(value)):
        raise WeightMappingError(f"{name} holds NaN or infinite values (the model diverged before it was saved)")
    return value.astype(np.float32)


def lstm_to_keras(kernel: np.ndarray, bias: np.ndarray, input_rows: int,
                  forget_bias: float = FORGET_BIAS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ``BasicLSTMCell``'s ``(kernel, bias)`` → Keras ``(kernel, recurrent_kernel, bias)``."""
    i, j, f, o = np.split(kernel, 4, axis=1)
    reordered = np.concatenate([i, f, j, o], axis=1)
    bi, bj, bf, bo = np.split(bias, 4)
    keras_bias = np.concatenate([bi, bf + np.float32(forget_bias), bj, bo]).astype(np.float32)
    return reordered[:input_rows].copy(), reordered[input_rows:].copy(), keras_bias


def map_weights(tensors: dict[str, np.ndarray], input_size: int, num_classes: int, config_name: str) -> KerasWeights:
    """Map and check every tensor; ``input_size``/``num_classes`` are the config's encoding's."""
    naming = _naming_of(tensors)
    layers, used, rows_in = [], [], input_size
    i = 0
    while naming.kernel_name(i) in tensors or naming.bias_name(i) in tensors or i == 0:
        kname, bname = naming.kernel_name(i), naming.bias_name(i)
        kernel, bias = _tensor(tensors, kname, 2), _tensor(tensors, bname, 1)
        if bias.shape[0] == 0 or bias.shape[0] % 4:
            raise WeightMappingError(f"shape mismatch: {bname} has shape {list(bias.shape)}, expected 4 x units")
        units = bias.shape[0] // 4
        expected = [rows_in + units, 4 * units]
        if list(kernel.shape) != expected:
            feeds = f"a {config_name} model's {input_size} inputs" if i == 0 else f"layer {i - 1}'s {rows_in} units"
            raise WeightMappingError(f"shape mismatch: {kname} has shape {list(kernel.shape)}; layer {i} with {units} "
                                     f"units fed by {feeds} needs {expected}")
        layers.append(lstm_to_keras(kernel, bias, rows_in))
        used += [kname, bname]
        rows_in = units
        i += 1
    out_w, out_b = _tensor(tensors, OUTPUT_WEIGHTS, 2), _tensor(tensors, OUTPUT_BIASES, 1)
    if list(out_w.shape) != [rows_in, num_classes] or list(out_b.shape) != [num_classes]:
        raise WeightMappingError(f"shape mismatch: {OUTPUT_WEIGHTS} {list(out_w.shape)} and {OUTPUT_BIASES} "
                                 f"{list(out_b.shape)}; a {config_name} model with {rows_in} units in its last layer "
                                 f"needs [{rows_in}, {num_classes}] and [{num_classes}]")
    used += [OUTPUT_WEIGHTS, OUTPUT_BIASES]
    extra = sorted(set(tensors) - set(used))
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise WeightMappingError(f"unexpected tensors {shown}: this is a Magenta variant melodyflow's model does not "
                                 "reproduce (e.g. residual or input-projection wrappers, or another cell type)")
    return KerasWeights(lstm=tuple(layers), logits=(out_w, out_b),
                        rnn_layer_sizes=tuple(layer[1].shape[0] for layer in layers),
                        naming=naming.label, tensor_names=tuple(used))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def magenta_softmax(tensors: dict[str, np.ndarray], inputs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Magenta's generate graph in float64 numpy: ``[steps, inputs]`` → ``[steps, classes]`` probabilities.

    Written from Magenta's equations (``BasicLSTMCell`` with its run-time forget bias, ``MultiRNNCell``,
    ``tf_slim.layers.linear``, ``softmax(logits / temperature)``), independently of the Keras mapping, so
    an import can check itself against it.
    """
    naming = _naming_of(tensors)
    layers = []
    i = 0
    while naming.kernel_name(i) in tensors:
        layers.append((tensors[naming.kernel_name(i)].astype(np.float64),
                       tensors[naming.bias_name(i)].astype(np.float64)))
        i += 1
    state = [(np.zeros(b.shape[0] // 4), np.zeros(b.shape[0] // 4)) for _, b in layers]
    out = []
    for x in np.asarray(inputs, np.float64):
        for n, (kernel, bias) in enumerate(layers):
            c, h = state[n]
            gi, gj, gf, go = np.split(np.concatenate([x, h]) @ kernel + bias, 4)
            c = c * _sigmoid(gf + FORGET_BIAS) + _sigmoid(gi) * np.tanh(gj)
            h = np.tanh(c) * _sigmoid(go)
            state[n] = (c, h)
            x = h
        logits = (x @ tensors[OUTPUT_WEIGHTS].astype(np.float64) + tensors[OUTPUT_BIASES]) / temperature
        e = np.exp(logits - logits.max())
        out.append(e / e.sum())
    return np.asarray(out)
