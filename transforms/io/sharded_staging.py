"""Shard naming and writers that behave the same on every Beam runner.

Beam's ``WriteToTFRecord`` fails or silently writes empty shards on the Dask runner.  Melodyflow's jobs
stage records in files and write each shard whole through fsspec (see ``ingest_pipeline`` and
``dataset_pipeline``): a shard holds the same records in the same order on every run, so re-running a
job yields byte-identical files.  No Beam here: the jobs' in-process paths use these too (the Beam
transforms are in :mod:`melodyflow.transforms.beam.writes`).
"""

from __future__ import annotations

import hashlib
import json

from melodyflow.transforms.io import storage
from melodyflow.transforms.io.tfrecord import iter_records_from_blocks


STAGING_DIR = "_staging"  # scratch records under a job's output directory, removed before publishing


def staged_record(key: str, payload: bytes) -> bytes:
    """A staging record: the key (a path or an example key, never containing NUL), NUL, the payload."""
    return key.encode("utf-8") + b"\0" + payload


def split_staged_record(record: bytes) -> tuple[str, bytes]:
    key, _, payload = record.partition(b"\0")
    return key.decode("utf-8"), payload


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    return f"{prefix}-{index:05d}-of-{num_shards:05d}"


def shard_index(key: str, num_shards: int) -> int:
    """Stable shard for ``key`` (Python's ``hash`` is salted per process, so it cannot be used)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def write_shard(url: str, framed_pieces) -> int:
    """Stream a shard's framed records (``framed_pieces()`` yields bytes) to ``url``, then read it back and
    return its record count: what the stage's marker may vouch for."""
    storage.write_stream(url, framed_pieces)
    return count_records(url)


def count_records(url: str) -> int:
    """Read a written shard back and count its records (checksums verified): what a completion marker
    may vouch for.  Shard writers call it on their own shard, so the read-back runs in parallel."""
    return sum(1 for _ in iter_records_from_blocks(storage.iter_blocks(url), source=url))


def json_lines(records, sort_field: str) -> str:
    """Dicts as JSON lines sorted by ``sort_field`` (small outputs: partial stats, manifests)."""
    rows = sorted((r for r in records if r is not None), key=lambda r: r[sort_field])
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
