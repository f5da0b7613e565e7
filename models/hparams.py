"""Melody RNN hyperparameters with Magenta's names and defaults, parsed from JSON or ``k=v,...``."""

from __future__ import annotations

import ast
import json
from typing import Any
from dataclasses import asdict, dataclass, fields, replace


class HParamsError(ValueError):
    """Unknown key, bad value or unparseable hparams string; the message says which."""


@dataclass(frozen=True)
class HParams:
    batch_size: int = 128
    rnn_layer_sizes: tuple[int, ...] = (128, 128)
    dropout_keep_prob: float = 0.5
    clip_norm: float = 5.0
    learning_rate: float = 0.001
    attn_length: int = 0  # > 0 only for attention_rnn (40)

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rnn_layer_sizes"] = list(self.rnn_layer_sizes)
        return d

    def override(self, text: str | dict | None) -> "HParams":
        """Apply overrides given as JSON (``{"rnn_layer_sizes": [64]}``) or ``batch_size=64,rnn_layer_sizes=[64,64]``."""
        if not text:
            return self
        values = text if isinstance(text, dict) else parse_hparams(text)
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise HParamsError(f"unknown hparams {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        typed: dict[str, Any] = {}
        for key, value in values.items():
            try:
                if key == "rnn_layer_sizes":
                    if not isinstance(value, (list, tuple)):
                        raise TypeError("expected a list")
                    typed[key] = tuple(int(v) for v in value)
                elif known[key].type in ("int", int):
                    if isinstance(value, float) and not value.is_integer():
                        raise TypeError("expected an integer")
                    typed[key] = int(value)
                else:
                    typed[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise HParamsError(f"hparam {key}={value!r}: {exc}") from None
        return replace(self, **typed)


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


def default_hparams(config_name: str) -> HParams:
    """Magenta's defaults per config (attention_rnn: attn_length 40, clip_norm 3)."""
    if config_name == "attention_rnn":
        return HParams(attn_length=40, clip_norm=3.0)
    return HParams()


DEBUG_OVERRIDES = {"batch_size": 8, "rnn_layer_sizes": [16, 16], "dropout_keep_prob": 1.0, "learning_rate": 0.01}


def debug_hparams(config_name: str) -> HParams:
    """A tiny preset so tests train real steps in seconds (attention keeps a short window)."""
    hp = default_hparams(config_name).override(DEBUG_OVERRIDES)
    return hp.override({"attn_length": 4}) if hp.attn_length else hp
