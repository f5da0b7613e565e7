"""Defaults of the flows that no stage's own settings dataclass holds: the config every command starts
from, and what ``melodyflow run`` does when it is given nothing else.

Light on purpose (no Prefect, Beam or TensorFlow): the CLI reads its defaults from here before it
knows which command it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONFIG = "basic_rnn"


@dataclass(frozen=True)
class RunSettings:
    """``melodyflow run``: small enough to train in about a minute on two CPU cores, big enough to learn
    something, and short enough to listen to."""

    data_root: str = "melodyflow-data"
    config: str = DEFAULT_CONFIG
    hparams: str = '{"batch_size": 32, "rnn_layer_sizes": [64, 64], "learning_rate": 0.005}'  # the LSTM configs
    transformer_hparams: str = '{"batch_size": 16, "d_model": 64, "d_ff": 256}'  # music_transformer
    num_training_steps: int = 300
    eval_every: int = 100
    # Primers cut from the corpus when --primers is not given: the first bars of its first MIDI files.
    corpus_primers: int = 4
    corpus_primer_bars: int = 2
    num_outputs: int = 4
    num_steps: int = 128
    temperature: float = 1.0


class StageError(ValueError):
    """A stage cannot go on with what it was given (an empty train split, say); the message says what to
    change. Commands exit with status 2 on it."""
