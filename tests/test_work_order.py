"""Work handed to Beam in a seeded, shuffled order: costly chunks spread over statically partitioned
workers, and the same order on every run."""

from __future__ import annotations

from melodyflow.transforms.ingest.job import ChunkLayout
from melodyflow.transforms.beam.work_order import spread


def _costly_chunk_positions(order: list[int], costly: set[int]) -> list[int]:
    return [position for position, chunk in enumerate(order) if chunk in costly]


def test_spread_is_a_seeded_permutation():
    items = list(range(1000))
    assert sorted(spread(items, "batch-1")) == items
    assert spread(items, "batch-1") == spread(iter(items), "batch-1")
    assert spread(items, "batch-1") != spread(items, "batch-2")
    assert spread([], "x") == []


def test_clustered_costly_chunks_are_spread_over_round_robin_and_contiguous_partitions():
    # 60 copies of a 504-file corpus whose last 3 files (ABC and MusicXML) cost ~50x a MIDI file:
    # in listing order every chunk holding them sits at an odd position, so a runner that deals
    # elements round-robin to 2 workers gave all of them to one worker.
    copies, per_copy = 60, 504
    layout = ChunkLayout(copies * per_copy, 16)
    order = [chunk for _, chunk in layout.all_chunks()]
    costly = {layout.chunk_of(copy * per_copy + offset)[0] for copy in range(copies) for offset in (501, 502, 503)}
    in_listing_order = _costly_chunk_positions(order, costly)
    assert {p % 2 for p in in_listing_order} == {1}

    for seed in ("batch-00001-4f0bd3a68cbc", "batch-00002-0123456789ab", "x"):
        positions = _costly_chunk_positions(spread(order, seed), costly)
        for workers in (2, 4):
            share = [sum(1 for p in positions if p % workers == w) for w in range(workers)]
            assert max(share) <= 1.5 * len(costly) / workers, (seed, workers, share)
            size = -(-len(order) // workers)
            ranges = [sum(1 for p in positions if p // size == w) for w in range(workers)]
            assert max(ranges) <= 1.5 * len(costly) / workers, (seed, workers, ranges)
