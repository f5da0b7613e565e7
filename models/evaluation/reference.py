"""A melody dataset's records turned back into Magenta event lists: the reference for evaluation.

A record holds the labels of steps 1..T-1 (class indices of the config's encoder) and the inputs of
steps 0..T-2. Event 0 comes from the first input row (the one-hot block of the current event; for the
key-melody encoding the "note is an attack" bit and the pitch block), every later event from its label
as note-seq's ``class_index_to_event`` decodes it: one-hot classes are a fixed table; the lookback
classes of ``lookback_rnn`` and ``attention_rnn`` repeat the event 16 or 32 steps back (a no-event
before the melody is that long, as note-seq has it). Tests check the round trip against the
encoder on random melodies for all four configs.

The decoded events are the *squashed* melodies the model was trained on (transposed into the config's
key and range), which is what judged melodies are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from melodyflow.models.evaluation.records import READERS, RecordError
from melodyflow.transforms.io import storage
from melodyflow.transforms.io.tfrecord import iter_records
from melodyflow.transforms.melodies.configs import MelodyConfig
from melodyflow.transforms.io.stage_contract import read_marker
from melodyflow.transforms.melodies.dataset import INFO, MARKER, IncompleteDatasetError

NO_EVENT = -2
LOOKBACK_DISTANCES = (16, 32)  # note-seq's DEFAULT_LOOKBACK_DISTANCES
_LOOKBACK = -100  # table marker of a lookback class


@dataclass(frozen=True)
class LabelDecoder:
    """Class index → event for one config; lookback classes are resolved against earlier events."""

    table: np.ndarray  # event per class, or -100 - i for lookback distance i
    encoding: str
    min_note: int
    note_range: int

    def first_event(self, columns: np.ndarray) -> int:
        """Event 0 from the columns of input row 0 that are 1."""
        if self.encoding == "key_melody":
            attack = self.note_range + 2
            pitch = columns[columns < self.note_range]
            return int(self.min_note + pitch[0]) if attack in columns and pitch.size else NO_EVENT
        one_hot = columns[columns < self.note_range + 2]
        if not one_hot.size:
            raise RecordError("the first input row names no event")
        return int(self.table[one_hot[0]])

    def events(self, labels: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The melody's events: event 0 from ``columns``, events 1.. from ``labels``."""
        if labels.size and (labels.min() < 0 or labels.max() >= self.table.size):
            raise RecordError(f"label outside the {self.table.size} classes of this config")
        ev = np.empty(labels.size + 1, dtype=np.int64)
        ev[0] = self.first_event(columns)
        ev[1:] = self.table[labels]
        lookback = np.flatnonzero(ev <= _LOOKBACK)
        if lookback.size:
            # A lookback refers 16 or 32 steps back, so resolving one bar of positions at a time only ever
            # reads events already resolved.
            distances = np.asarray(LOOKBACK_DISTANCES)[_LOOKBACK - ev[lookback]]
            sources = lookback - distances
            for bar in np.unique(lookback // LOOKBACK_DISTANCES[0]):
                sel = lookback // LOOKBACK_DISTANCES[0] == bar
                src = sources[sel]
                ev[lookback[sel]] = np.where(src >= 0, ev[np.maximum(src, 0)], NO_EVENT)
        return ev


def decoder_for(config: MelodyConfig) -> LabelDecoder:
    note_range = config.max_note - config.min_note
    notes = np.arange(config.min_note, config.max_note)
    lookbacks = _LOOKBACK - np.arange(len(LOOKBACK_DISTANCES))
    if config.encoding == "key_melody":  # pitches, no event, note off, lookbacks
        table = np.concatenate((notes, [NO_EVENT, -1], lookbacks))
    else:  # no event, note off, pitches (+ lookbacks)
        table = np.concatenate(([NO_EVENT, -1], notes, lookbacks if config.encoding == "lookback" else []))
    return LabelDecoder(table=table.astype(np.int64), encoding=config.encoding, min_note=config.min_note,
                        note_range=note_range)


@dataclass
class MelodySplit:
    """Decoded melodies of one split, with an id per melody (``<shard>#<record index>``)."""

    events: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)


def open_dataset_dir(url: str) -> dict:
    """``info.json`` of the completed dataset at ``url`` (``DATA_ROOT/melodies/<config>``)."""
    if read_marker(url) is None:
        raise IncompleteDatasetError(f"{url} is not a completed melody dataset (no {MARKER} marker): build it "
                                     "with `melodyflow dataset DATA_ROOT --config NAME`")
    import json

    info = json.loads(storage.read_text(storage.join(url, INFO)))
    info["url"] = url
    return info


def read_split(info: dict, split: str, config: MelodyConfig, limit: int | None = None) -> MelodySplit:
    """Every melody of ``split`` (or the first ``limit``), decoded back to events, in shard order."""
    reader = READERS[info["format"]]
    decoder = decoder_for(config)
    out = MelodySplit()
    for shard in info["shards"][split]:
        url = storage.join(info["url"], shard)
        for i, record in enumerate(iter_records(storage.read_bytes(url), source=url)):
            if limit is not None and len(out) >= limit:
                return out
            try:
                labels, columns = reader(record)
                out.events.append(decoder.events(labels, columns))
            except RecordError as exc:
                raise RecordError(f"{url} record {i}: {exc}") from None
            out.ids.append(f"{shard}#{i}")
    return out
