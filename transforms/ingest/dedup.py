"""Duplicate files within and across a batch: the first path in listing order keeps the content.

Workers convert disjoint chunks, so each writes a small table of (content digest, listing index) for
its converted files; the tables merge associatively into the batch's first copies, and each shard
writer then marks every later copy of a content as a duplicate of the first.  Which copy is kept never
depends on scheduling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from melodyflow.transforms.ingest.records import FileOutcome, FileStatus
from melodyflow.transforms.io import storage

# Content digest → listing index of the first converted file with that content, sorted by digest.
# 40 bytes a file: the table that every shard writer needs stays small even for LMD-sized batches
# (176,581 files ≈ 7 MB), where a dict of hex digests to paths would cost about 300 bytes a file.
FIRST_COPIES = np.dtype([("digest", "S32"), ("index", "<i8")])


def first_copies(outcomes: Iterable[FileOutcome], first_index: int) -> np.ndarray:
    """The :data:`FIRST_COPIES` table of consecutive listed files, the first being listing entry
    ``first_index``.  Listings are sorted by path, so the lowest index is the first path."""
    rows = [(bytes.fromhex(o.sha256), first_index + i) for i, o in enumerate(outcomes)
            if o.status is FileStatus.CONVERTED]
    return merge_first_copies([np.array(rows, dtype=FIRST_COPIES)])


def merge_first_copies(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Combine tables of disjoint file sets, in any order (associative and commutative)."""
    table = np.sort(np.concatenate([np.empty(0, FIRST_COPIES), *parts]), order=["digest", "index"])
    keep = np.ones(len(table), dtype=bool)
    keep[1:] = table["digest"][1:] != table["digest"][:-1]
    return table[keep]


@dataclass(frozen=True)
class FirstCopies:
    """A merged :data:`FIRST_COPIES` table as two contiguous columns, stored one after the other, so a
    shard writer can memory-map it and look up a chunk's digests with one binary search."""

    digests: np.ndarray  # "S32", sorted
    indices: np.ndarray  # int64, same order

    @classmethod
    def from_table(cls, table: np.ndarray) -> "FirstCopies":
        return cls(np.ascontiguousarray(table["digest"]), np.ascontiguousarray(table["index"]))

    def to_bytes(self) -> bytes:
        return self.digests.tobytes() + self.indices.tobytes()

    @classmethod
    def from_buffer(cls, buffer) -> "FirstCopies":
        """``buffer``: bytes or a uint8 memory map of :meth:`to_bytes`'s output."""
        count = len(buffer) // FIRST_COPIES.itemsize
        data = np.frombuffer(buffer, dtype=np.uint8)
        return cls(data[:32 * count].view("S32"), data[32 * count:].view("<i8"))

    def first_of(self, sha256s: list[str]) -> np.ndarray:
        """The listing index of the first copy of each content, or -1 for contents not in the table."""
        if not sha256s or not len(self.digests):
            return np.full(len(sha256s), -1, dtype=np.int64)
        wanted = np.array([bytes.fromhex(h) for h in sha256s], dtype="S32")
        pos = np.minimum(np.searchsorted(self.digests, wanted), len(self.digests) - 1)
        return np.where(self.digests[pos] == wanted, self.indices[pos], -1)


def mark_duplicates(outcomes: list[FileOutcome], first_index: int, first: FirstCopies,
                    path_at: Callable[[int], str]) -> list[FileOutcome]:
    """Among converted files with the same content hash, keep the first path; the rest are duplicates.

    ``first`` is built from :func:`first_copies` over the whole batch, so identical files converted by
    different workers are stored once, and which copy is kept does not depend on scheduling.  Failed
    files are never folded together: each one gets its own dead letter.  ``path_at(index)`` names the
    kept copy; it is asked only for duplicates.  Unchanged outcomes are returned as the same objects.
    """
    converted = [i for i, o in enumerate(outcomes) if o.status is FileStatus.CONVERTED]
    marked = list(outcomes)
    for i, found in zip(converted, first.first_of([outcomes[i].sha256 for i in converted]).tolist()):
        if found >= 0 and found != first_index + i:
            marked[i] = replace(outcomes[i], status=FileStatus.DUPLICATE, duplicate_of=path_at(found),
                                sequences=(), sequence_ids=(), tune_errors=())
    return marked


def read_first_copies(url: str) -> FirstCopies:
    """The batch's first-copies table; a local one is memory-mapped, so a shard writer's lookups touch
    a few pages of it rather than loading 40 bytes per file of the batch."""
    if storage.protocol_of(url) == "file" and storage.size(url) > 0:
        return FirstCopies.from_buffer(np.memmap(storage.local_path(url), dtype=np.uint8, mode="r"))
    return FirstCopies.from_buffer(storage.read_bytes(url))
