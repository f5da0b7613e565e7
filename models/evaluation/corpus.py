"""A dataset's melodies, decoded once and cached locally: what judged melodies are compared with.

``Corpus`` holds both splits of ``DATA_ROOT/melodies/<config>`` as event lists: ``eval`` is the
feature reference (melodies the model never trained on), ``train`` the reference of the copy check
and of the ranking's feature profile.

Decoding a large dataset takes seconds, and generation needs it on every run, so the decoded events
are cached under the user cache (``~/.cache/melodyflow/evaluation/<fingerprint>-v<N>.npz``, written
to a temporary name and renamed). The cache lives beside the user, not beside the dataset or the
bundle: those are published, marker-completed artifacts that may sit in a read-only bucket, and the
cache is only a faster way to read what they already hold. A dataset's fingerprint changes whenever
its inputs or settings do, so a stale entry is never read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from melodyflow.models.evaluation.reference import MelodySplit, open_dataset_dir, read_split
from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import MELODIES_DIR

CACHE_VERSION = 1


@dataclass
class Corpus:
    info: dict
    train: MelodySplit
    eval: MelodySplit

    @property
    def fingerprint(self) -> str:
        return self.info["fingerprint"]


def dataset_url(data_root: str, config: str) -> str:
    return storage.join(data_root, MELODIES_DIR, config)


def _cache_path(fingerprint: str) -> str:
    return os.path.join(storage.cache_dir("evaluation"), f"{fingerprint}-v{CACHE_VERSION}.npz")


def _pack(split: MelodySplit, prefix: str) -> dict[str, np.ndarray]:
    sizes = np.array([e.size for e in split.events], dtype=np.int64)
    events = np.concatenate(split.events).astype(np.int16) if split.events else np.zeros(0, np.int16)
    return {f"{prefix}_events": events, f"{prefix}_sizes": sizes,
            f"{prefix}_ids": np.array(json.dumps(split.ids))}


def _unpack(data, prefix: str) -> MelodySplit:
    sizes = data[f"{prefix}_sizes"]
    events = data[f"{prefix}_events"].astype(np.int64)
    return MelodySplit(events=list(np.split(events, np.cumsum(sizes)[:-1])) if sizes.size else [],
                       ids=json.loads(str(data[f"{prefix}_ids"])))


def _read_cache(path: str) -> tuple[MelodySplit, MelodySplit] | None:
    try:
        with np.load(path) as data:
            return _unpack(data, "train"), _unpack(data, "eval")
    except (OSError, ValueError, KeyError):  # missing, partial or from another layout: rebuild it
        return None


def _write_cache(path: str, train: MelodySplit, evaluation: MelodySplit) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    arrays: dict[str, Any] = {**_pack(train, "train"), **_pack(evaluation, "eval")}
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_corpus(url: str, config: str | None = None) -> Corpus:
    """Both splits of the completed dataset at ``url``, from the local cache when it has them."""
    info = open_dataset_dir(url)
    if config is not None and info["config"] != config:
        raise ValueError(f"{url} holds a {info['config']} dataset, not {config}")
    path = _cache_path(info["fingerprint"])
    cached = _read_cache(path)
    if cached is not None and (len(cached[0]), len(cached[1])) == (info["counts"]["train"], info["counts"]["eval"]):
        return Corpus(info=info, train=cached[0], eval=cached[1])
    cfg = get_config(info["config"])
    train, evaluation = read_split(info, "train", cfg), read_split(info, "eval", cfg)
    try:
        _write_cache(path, train, evaluation)
    except OSError:
        pass  # an unwritable cache only costs the next run the same decoding
    return Corpus(info=info, train=train, eval=evaluation)
