"""Model hyperparameters, parsed from JSON or Magenta's ``k=v,...`` form.

Two families: :class:`HParams` for the Melody RNN configs (Magenta's names and defaults) and
:class:`TransformerHParams` for ``music_transformer``.  Each default lives in its dataclass; presets are
overrides of them.  ``ARCHITECTURE`` names the keys that change the shape of the weights: fine-tuning
may override every other key, never these.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar, TypeVar, Union


class HParamsError(ValueError):
    """Unknown key, bad value or unparseable hparams string; the message says which."""


_H = TypeVar("_H", bound="_Overridable")


class _Overridable:
    """``to_dict`` and typed ``override`` shared by both families (fields typed int, float or int tuples)."""

    ARCHITECTURE: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    def override(self: _H, text: str | dict | None) -> _H:
        """Apply overrides given as JSON (``{"batch_size": 64}``) or ``batch_size=64,rnn_layer_sizes=[64,64]``."""
        if not text:
            return self
        values = text if isinstance(text, dict) else parse_hparams(text)
        known = {f.name: f for f in fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise HParamsError(f"unknown hparams {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        typed = {}
        for key, value in values.items():
            try:
                typed[key] = _coerce(str(known[key].type), value)
            except (TypeError, ValueError) as exc:
                raise HParamsError(f"hparam {key}={value!r}: {exc}") from None
        return replace(self, **typed)  # type: ignore[type-var]

    def architecture(self) -> dict:
        """The keys that fix the weights' shapes, with their values."""
        return {k: v for k, v in self.to_dict().items() if k in self.ARCHITECTURE}


def _coerce(type_name: str, value):
    if type_name.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        return tuple(int(v) for v in value)
    if type_name == "int":
        if isinstance(value, float) and not value.is_integer():
            raise TypeError("expected an integer")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class HParams(_Overridable):
    """Melody RNN hyperparameters with Magenta's names and defaults."""

    batch_size: int = 128
    rnn_layer_sizes: tuple[int, ...] = (128, 128)
    dropout_keep_prob: float = 0.5
    clip_norm: float = 5.0
    learning_rate: float = 0.001
    attn_length: int = 0  # > 0 only for attention_rnn (40)

    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("rnn_layer_sizes", "attn_length")

    def __post_init__(self) -> None:
        object.__setattr__(self, "rnn_layer_sizes", tuple(int(s) for s in self.rnn_layer_sizes))
        if self.batch_size < 1:
            raise HParamsError("batch_size must be at least 1")
        if not self.rnn_layer_sizes or min(self.rnn_layer_sizes) < 1:
            raise HParamsError("rnn_layer_sizes must be a non-empty list of positive sizes")
        if not 0.0 < self.dropout_keep_prob <= 1.0:
            raise HParamsError("dropout_keep_prob must be in (0, 1]")
        if self.clip_norm <= 0 or self.learning_rate <= 0:
            raise HParamsError("clip_norm and learning_rate must be positive")
        if self.attn_length < 0:
            raise HParamsError("attn_length must be >= 0")

    def learning_rate_factor(self, step: int) -> float:
        """Constant learning rate, as in Magenta."""
        return 1.0


@dataclass(frozen=True)
class TransformerHParams(_Overridable):
    """``music_transformer``: a decoder-only Transformer with relative attention (Huang et al. 2018).

    The defaults are sized to train well in minutes on two CPU cores (see docs/models.md for what was
    tried).  tensor2tensor's names, for readers of the paper's code: ``num_layers`` =
    num_hidden_layers, ``d_model`` = hidden_size, ``d_ff`` = filter_size, ``max_relative_distance`` =
    max_relative_position, ``warmup_steps`` = learning_rate_warmup_steps.
    """

    batch_size: int = 16
    num_layers: int = 2
    num_heads: int = 4
    d_model: int = 128
    d_ff: int = 512
    dropout_rate: float = 0.1
    max_relative_distance: int = 256  # distances beyond share the last relative embedding
    learning_rate: float = 0.002  # the peak, reached at the end of the warm-up
    warmup_steps: int = 100  # linear warm-up, then inverse-square-root decay
    clip_norm: float = 1.0

    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("num_layers", "num_heads", "d_model", "d_ff", "max_relative_distance")

    def __post_init__(self) -> None:
        if min(self.batch_size, self.num_layers, self.num_heads, self.d_model, self.d_ff,
               self.max_relative_distance) < 1:
            raise HParamsError("batch_size, num_layers, num_heads, d_model, d_ff and max_relative_distance "
                               "must be at least 1")
        if self.d_model % self.num_heads:
            raise HParamsError(f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise HParamsError("dropout_rate must be in [0, 1)")
        if self.clip_norm <= 0 or self.learning_rate <= 0:
            raise HParamsError("clip_norm and learning_rate must be positive")
        if self.warmup_steps < 0:
            raise HParamsError("warmup_steps must be >= 0")

    def learning_rate_factor(self, step: int) -> float:
        """Multiplier of ``learning_rate`` at 1-based ``step``: ``min(step/w, sqrt(w/step))``."""
        if self.warmup_steps == 0:
            return 1.0
        step = max(step, 1)
        return min(step / self.warmup_steps, math.sqrt(self.warmup_steps / step))


AnyHParams = Union[HParams, TransformerHParams]
TRANSFORMER_CONFIGS = ("music_transformer",)


def parse_hparams(text: str) -> dict:
    text = text.strip()
    if text.startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HParamsError(f"hparams are not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise HParamsError("hparams JSON must be an object")
        return values
    values, depth, current = {}, 0, ""
    parts = []
    for ch in text:  # split on commas outside brackets: rnn_layer_sizes=[64,64]
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for part in filter(None, (p.strip() for p in parts)):
        key, sep, raw = part.partition("=")
        if not sep:
            raise HParamsError(f"hparams expects key=value pairs, got {part!r}")
        try:
            values[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise HParamsError(f"cannot parse the value of {key.strip()!r}: {raw.strip()!r}") from None
    return values


def default_hparams(config_name: str) -> AnyHParams:
    """Magenta's defaults per RNN config (attention_rnn: attn_length 40, clip_norm 3); ours for the Transformer."""
    if config_name in TRANSFORMER_CONFIGS:
        return TransformerHParams()
    return _rnn_defaults(config_name)


def _rnn_defaults(config_name: str) -> HParams:
    return HParams(attn_length=40, clip_norm=3.0) if config_name == "attention_rnn" else HParams()


def hparams_from_dict(config_name: str, values: dict) -> AnyHParams:
    """The hparams a bundle recorded (keys it lacks take today's defaults)."""
    return default_hparams(config_name).override(values)


DEBUG_OVERRIDES = {"batch_size": 8, "rnn_layer_sizes": [16, 16], "dropout_keep_prob": 1.0, "learning_rate": 0.01}
DEBUG_TRANSFORMER_OVERRIDES = {"batch_size": 8, "num_layers": 2, "num_heads": 2, "d_model": 16, "d_ff": 32,
                               "dropout_rate": 0.0, "max_relative_distance": 8, "learning_rate": 0.01,
                               "warmup_steps": 0}


def debug_hparams(config_name: str) -> AnyHParams:
    """A tiny preset so tests train real steps in seconds (attention keeps a short window)."""
    if config_name in TRANSFORMER_CONFIGS:
        return TransformerHParams().override(DEBUG_TRANSFORMER_OVERRIDES)
    hp = _rnn_defaults(config_name).override(DEBUG_OVERRIDES)
    return hp.override({"attn_length": 4}) if hp.attn_length else hp
