"""How an ingestion batch is cut into shards and chunks, and how duplicates are found across chunks —
the arithmetic that lets shard writers work without holding the listing."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from melodyflow.transforms.ingest.dedup import FirstCopies, first_copies, mark_duplicates, merge_first_copies
from melodyflow.transforms.ingest.job import CHUNK_FILES, ChunkLayout
from melodyflow.transforms.ingest.records import FileEntry, FileOutcome, FileStatus


@pytest.mark.parametrize("num_files,num_shards", [(0, 1), (1, 1), (63, 1), (64, 1), (65, 1), (129, 2),
                                                  (10, 4), (4001, 3), (30890, 16), (5000, 7)])
def test_chunks_cover_the_listing_in_order_and_never_straddle_shards(num_files, num_shards, tmp_path):
    files = tuple(FileEntry(f"d/{i:06d}-é.mid", i) for i in range(num_files))
    layout = ChunkLayout(num_files, num_shards)
    listing = str(tmp_path / "listing.jsonl")
    chunks = layout.stage_listing(files, listing)
    assert [c.index for c in chunks] == sorted({c.index for c in chunks})
    seen = []
    for chunk in chunks:
        got = chunk.files(listing)
        assert 0 < len(got) <= CHUNK_FILES
        assert got == files[chunk.start:chunk.start + len(got)]
        assert all(i in layout.shard_files(chunk.shard) for i in range(chunk.start, chunk.start + len(got)))
        assert chunk.index in layout.shard_chunks(chunk.shard)
        assert layout.chunk_files(chunk.index) == range(chunk.start, chunk.start + len(got))
        for position in range(len(got)):
            assert layout.chunk_of(chunk.start + position) == (chunk.index, position)
        seen += got
    assert tuple(seen) == files
    shard_sizes = [len(layout.shard_files(k)) for k in range(num_shards)]
    full = [size for size in shard_sizes if size == layout.files_per_shard]
    assert sum(shard_sizes) == num_files
    assert shard_sizes[:len(full)] == full  # full shards first, then at most one partial, then empty ones
    assert all(size == 0 for size in shard_sizes[len(full) + 1:])


def _outcome(path: str, digest: str, status=FileStatus.CONVERTED) -> FileOutcome:
    return FileOutcome(path=path, size=1, status=status, sha256=digest, sequence_ids=(f"id-{path}",))


def test_first_copies_keep_the_first_path_whatever_the_merge_order():
    rng = random.Random(3)
    digests = [rng.randbytes(32).hex() for _ in range(40)]
    digests[5] = digests[5][:-2] + "00"  # trailing zero bytes survive the fixed-width table
    listing = [_outcome(f"f{i:04d}.mid", rng.choice(digests)) for i in range(500)]
    listing[7] = _outcome("f0007.mid", digests[0], FileStatus.FAILED)  # failed files are never folded
    chunks = [(start, listing[start:start + 37]) for start in range(0, len(listing), 37)]
    tables = [first_copies(outcomes, start) for start, outcomes in chunks]
    merged = merge_first_copies(tables)
    for order in itertools.islice(itertools.permutations(range(len(tables))), 5):
        shuffled = merge_first_copies(merge_first_copies([tables[i]]) for i in order)
        assert shuffled.tobytes() == merged.tobytes()

    first_index = {}
    for i, o in enumerate(listing):
        if o.status is FileStatus.CONVERTED:
            first_index.setdefault(o.sha256, i)
    first = FirstCopies.from_buffer(FirstCopies.from_table(merged).to_bytes())  # as shard writers read it
    marked = [m for start, outcomes in chunks
              for m in mark_duplicates(outcomes, start, first, lambda i: listing[i].path)]
    for i, (before, after) in enumerate(zip(listing, marked)):
        if before.status is FileStatus.CONVERTED and first_index[before.sha256] != i:
            assert after.status is FileStatus.DUPLICATE
            assert after.duplicate_of == listing[first_index[before.sha256]].path and not after.sequence_ids
        else:
            assert after is before
    assert merged.dtype.itemsize == 40 and len(merged) == len(first_index)
    assert np.all(merged["digest"][1:] > merged["digest"][:-1])
