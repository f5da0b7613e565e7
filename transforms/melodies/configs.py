"""The four Melody RNN configurations: encodings and pitch ranges exactly as Magenta defines them.

Only the data side lives here (what a melody becomes as model input); hyperparameters belong to
``models``.  Encoders are note-seq's own classes, so inputs and labels match Magenta's bit for bit.

Model configs that learn from another config's records are aliases (:data:`SHARED_DATASETS`):
``music_transformer`` reads basic_rnn's examples, so :func:`get_config` answers basic_rnn's data config
for it and its dataset is ``DATA_ROOT/melodies/basic_rnn`` — built once, shared, and its held-out loss
directly comparable with basic_rnn's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

DEFAULT_MIN_NOTE = 48
DEFAULT_MAX_NOTE = 84
DEFAULT_TRANSPOSE_TO_KEY = 0


@dataclass(frozen=True)
class MelodyConfig:
    name: str
    encoding: str  # one_hot | lookback | key_melody
    min_note: int = DEFAULT_MIN_NOTE
    max_note: int = DEFAULT_MAX_NOTE  # exclusive
    transpose_to_key: int | None = DEFAULT_TRANSPOSE_TO_KEY
    steps_per_quarter: int = 4

    def __post_init__(self) -> None:
        if self.encoding not in ("one_hot", "lookback", "key_melody"):
            raise ValueError(f"unknown encoding {self.encoding!r}")
        if not 0 <= self.min_note < self.max_note <= 128:
            raise ValueError("need 0 <= min_note < max_note <= 128")

    @cached_property
    def encoder_decoder(self):
        import note_seq

        if self.encoding == "key_melody":
            return note_seq.KeyMelodyEncoderDecoder(min_note=self.min_note, max_note=self.max_note)
        one_hot = note_seq.MelodyOneHotEncoding(min_note=self.min_note, max_note=self.max_note)
        if self.encoding == "lookback":
            return note_seq.LookbackEventSequenceEncoderDecoder(one_hot)
        return note_seq.OneHotEventSequenceEncoderDecoder(one_hot)

    @property
    def input_size(self) -> int:
        return self.encoder_decoder.input_size

    @property
    def num_classes(self) -> int:
        return self.encoder_decoder.num_classes

    def __getstate__(self):  # the cached encoder is rebuilt on unpickling (Beam ships configs)
        state = dict(self.__dict__)
        state.pop("encoder_decoder", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


CONFIGS: dict[str, MelodyConfig] = {
    "basic_rnn": MelodyConfig("basic_rnn", "one_hot"),
    "mono_rnn": MelodyConfig("mono_rnn", "one_hot", min_note=0, max_note=128, transpose_to_key=None),
    "lookback_rnn": MelodyConfig("lookback_rnn", "lookback"),
    "attention_rnn": MelodyConfig("attention_rnn", "key_melody"),
}


# Model config -> the config whose dataset (encoding, labels, records) it trains on.
SHARED_DATASETS: dict[str, str] = {"music_transformer": "basic_rnn"}
CONFIG_NAMES: tuple[str, ...] = (*CONFIGS, *SHARED_DATASETS)


def get_config(name: str) -> MelodyConfig:
    """The data config of ``name`` (an alias answers the config whose records it shares)."""
    try:
        return CONFIGS[SHARED_DATASETS.get(name, name)]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIG_NAMES)}") from None
