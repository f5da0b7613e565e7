"""The Beam job of ingestion: files → NoteSequence shards + manifest, on any runner."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from melodyflow.transforms.ingest import batches

from melodyflow.transforms.sandbox import fork_template

from melodyflow.transforms.beam import progress

from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.convert import preload_readers
from melodyflow.transforms.ingest.files import (FIRST_COPIES, FirstCopies, expects_isolated_parsing, first_copies,
                                     mark_duplicates, merge_first_copies, process_files)
from melodyflow.transforms.ingest.records import FileEntry, FileOutcome, FileStatus
from melodyflow.transforms.sandbox.isolated_worker import IsolatedWorker
from melodyflow.transforms.beam.runners import RunnerConfig, run
from melodyflow.transforms.io.sharded_staging import STAGING_DIR, count_records, shard_name
from melodyflow.transforms.io.tfrecord import encode_record, encode_records, iter_records_from_blocks
from melodyflow.transforms.beam.work_order import spread

CHUNK_FILES = 64  # files per Beam element: real work per element (Beam's per-element cost is high)


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive listed files, all destined for the same output shard.

    It names its files by a byte range of the staged listing rather than carrying them: Beam then holds
    about 50 bytes per 64 files, and no process but the planner ever holds the whole listing.
    """

    index: int
    shard: int
    start: int  # listing index of the chunk's first file
    listing_offset: int
    listing_length: int

    def files(self, listing_url: str) -> tuple[FileEntry, ...]:
        text = storage.read_range(listing_url, self.listing_offset, self.listing_length).decode("utf-8")
        return tuple(FileEntry(path, size) for path, size in map(json.loads, text.splitlines()))


@dataclass(frozen=True)
class ChunkLayout:
    """Shard ``k`` holds the ``k``-th contiguous slice of the listing, cut into chunks of
    :data:`CHUNK_FILES` that never straddle two shards.

    The layout depends on the listing's length and the shard count only — never on the runner or its
    worker count — so a re-run writes the same bytes.  It is arithmetic, not a list: a shard writer
    finds its chunks, and the chunk of any listed file, without holding the listing.
    """

    num_files: int
    num_shards: int

    def __post_init__(self) -> None:
        if self.num_files < 0 or self.num_shards < 1:
            raise ValueError(f"bad layout: {self.num_files} files in {self.num_shards} shards")

    @property
    def files_per_shard(self) -> int:
        return max(1, -(-self.num_files // self.num_shards))

    @property
    def chunks_per_full_shard(self) -> int:
        return -(-self.files_per_shard // CHUNK_FILES)

    def shard_files(self, shard: int) -> range:
        per = self.files_per_shard
        return range(min(self.num_files, shard * per), min(self.num_files, (shard + 1) * per))

    def shard_chunks(self, shard: int) -> range:
        first = shard * self.chunks_per_full_shard
        return range(first, first + -(-len(self.shard_files(shard)) // CHUNK_FILES))

    def chunk_files(self, chunk: int) -> range:
        shard, nth = divmod(chunk, self.chunks_per_full_shard)
        files = self.shard_files(shard)
        start = files.start + nth * CHUNK_FILES
        return range(start, min(files.stop, start + CHUNK_FILES))

    def all_chunks(self) -> Iterator[tuple[int, int]]:
        """``(shard, chunk)`` for every chunk, in listing order."""
        for shard in range(self.num_shards):
            for chunk in self.shard_chunks(shard):
                yield shard, chunk

    def chunk_of(self, file_index: int) -> tuple[int, int]:
        """(chunk, position in it) of listing entry ``file_index``."""
        shard, within = divmod(file_index, self.files_per_shard)
        return shard * self.chunks_per_full_shard + within // CHUNK_FILES, within % CHUNK_FILES

    def stage_listing(self, files: tuple[FileEntry, ...], listing_url: str) -> list[Chunk]:
        """Write the listing (a JSON line per file) where workers read their chunk's part of it."""
        if len(files) != self.num_files:
            raise ValueError(f"layout is for {self.num_files} files, got {len(files)}")
        chunks: list[Chunk] = []

        def lines():  # chunks are found while writing: one pass over the listing (a retry starts over)
            chunks.clear()
            offset = 0
            for shard, index in self.all_chunks():
                span = self.chunk_files(index)
                piece = "".join(_listing_line(files[i]) for i in span).encode("ascii")
                chunks.append(Chunk(index, shard, span.start, offset, len(piece)))
                offset += len(piece)
                yield piece

        storage.write_stream(listing_url, lines, durable=False)
        return chunks


def _listing_line(entry: FileEntry) -> str:
    """``json.dumps([path, size])``, without its per-call overhead (the driver writes a line per listed
    file).  ASCII escapes keep undecodable names (surrogate escapes) intact through the round trip."""
    return f"[{_json_string(entry.path)}, {entry.size}]\n"


def listing_url(batch_dir: str) -> str:
    return storage.join(batch_dir, STAGING_DIR, "listing.jsonl")


def staging_url(batch_dir: str, chunk: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"chunk-{chunk:06d}.tfrecord")


def outcomes_url(batch_dir: str, chunk: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"chunk-{chunk:06d}.jsonl")


def first_copies_url(batch_dir: str, chunk: int | None = None) -> str:
    """A chunk's first-copies table, or (``chunk=None``) the batch's merged one."""
    name = "first-copies.bin" if chunk is None else f"chunk-{chunk:06d}.first-copies.bin"
    return storage.join(batch_dir, STAGING_DIR, name)


def read_first_copies(url: str) -> FirstCopies:
    """The batch's first-copies table; a local one is memory-mapped, so a shard writer's lookups touch
    a few pages of it rather than loading 40 bytes per file of the batch."""
    if storage.protocol_of(url) == "file" and storage.size(url) > 0:
        return FirstCopies.from_buffer(np.memmap(storage.local_path(url), dtype=np.uint8, mode="r"))
    return FirstCopies.from_buffer(storage.read_bytes(url))


def manifest_part_url(batch_dir: str, shard: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"manifest-{shard:05d}.jsonl")


def dead_letters_part_url(batch_dir: str, shard: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"dead-letters-{shard:05d}.jsonl")


def shard_report_url(batch_dir: str, shard: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"shard-{shard:05d}.report.json")


class ConvertFilesDoFn(beam.DoFn):
    """Reads and converts a chunk of files; small MIDI files in-process, the rest in an isolated child.

    The chunk's NoteSequences, outcomes and first-copies table go to staging files; only the chunk's
    index travels through Beam, so no runner holds a corpus worth of anything.  The DoFn carries the
    settings, not the plan: a pickled plan would carry the listing.
    """

    def __init__(self, plan: batches.IngestPlan, parser_template: str | None = None):
        """``parser_template``: the address of the job's :class:`~melodyflow.transforms.sandbox.fork_template.ParserTemplate`
        when workers run on the driver's machine; a worker that cannot reach it starts its own parser."""
        self._progress_dir = storage.join(plan.batch_dir, progress.PROGRESS_DIR)
        self._batch_dir = plan.batch_dir
        self._source = plan.source
        self._settings = plan.settings
        self._known = plan.known_hashes
        self._parser_template = parser_template
        self._worker: IsolatedWorker | None = None

    def setup(self):
        self._worker = IsolatedWorker(self._settings.limits, prepare=preload_readers,
                                      template=self._parser_template)

    def teardown(self):
        if self._worker is not None:
            self._worker.close()

    def process(self, chunk: Chunk):
        outcomes = process_files(chunk.files(listing_url(self._batch_dir)), source=self._source,
                                 settings=self._settings, known_hashes=self._known, worker=self._worker)
        # Staged sequences are framed as the shard will hold them, in outcome order: a chunk without
        # duplicates is copied to its shard as it is.  Outcome lines are written as the manifest has them.
        storage.write_bytes(staging_url(self._batch_dir, chunk.index), encode_records(
            seq for o in outcomes for seq in o.sequences), durable=False)
        storage.write_text(outcomes_url(self._batch_dir, chunk.index), "".join(
            _manifest_line(o) for o in outcomes), durable=False)
        for outcome in outcomes:
            Metrics.counter("ingest", f"files_{outcome.status.value}").inc()
            if outcome.reason:
                Metrics.counter("ingest", f"failed_{outcome.reason}").inc()
        storage.write_bytes(first_copies_url(self._batch_dir, chunk.index),
                            first_copies(outcomes, chunk.start).tobytes(), durable=False)
        progress.report(self._progress_dir, len(outcomes))
        yield chunk.index


class MergeFirstCopiesDoFn(beam.DoFn):
    """Once every chunk is converted: the batch's first-copies table, from the chunks' tables, to a
    staging file that the shard writers look up (40 bytes a file; the one step holding all of it)."""

    def __init__(self, batch_dir: str, layout: ChunkLayout):
        self._batch_dir = batch_dir
        self._layout = layout

    def process(self, _element, _chunks_done):
        table = merge_first_copies(np.frombuffer(storage.read_bytes(first_copies_url(self._batch_dir, c)),
                                                 dtype=FIRST_COPIES) for _, c in self._layout.all_chunks())
        url = first_copies_url(self._batch_dir)
        storage.write_bytes(url, FirstCopies.from_table(table).to_bytes(), durable=False)
        yield url


class WriteShardFromStagingDoFn(beam.DoFn):
    """Shard ``k`` ← the staged sequences of its chunks whose file was kept, in listing order; plus the
    shard's parts of the manifest and of the dead letters, and a report of what it wrote (read back).

    Sequences are streamed from staging to the shard; the parts are bounded by the shard's size, never
    by the corpus's.  Reading back and summarizing here, in parallel, leaves the driver only sums.
    """

    def __init__(self, plan: batches.IngestPlan, layout: ChunkLayout):
        self._batch_dir = plan.batch_dir
        self._source = plan.source
        self._batch_id = plan.batch_id
        self._layout = layout

    def _chunk_outcomes(self, chunk: int) -> tuple[list[str], list[FileOutcome]]:
        lines = storage.read_text(outcomes_url(self._batch_dir, chunk)).splitlines(keepends=True)
        return lines, [FileOutcome.from_manifest_record(json.loads(line)) for line in lines]

    def _path_finder(self):
        """``path_at(file_index)`` for :func:`mark_duplicates`, reading few chunks' outcomes however
        many duplicates point into them."""
        @functools.lru_cache(maxsize=64)
        def paths_of(chunk: int) -> tuple[str, ...]:
            return tuple(o.path for o in self._chunk_outcomes(chunk)[1])

        def path_at(file_index: int) -> str:
            chunk, position = self._layout.chunk_of(file_index)
            return paths_of(chunk)[position]

        return path_at

    def _kept_sequences(self, keep: dict[int, list[tuple[int, bool]] | None]):
        """Framed records for the shard, chunk by chunk: a chunk without duplicates is copied whole;
        otherwise its records are walked, ``(sequences, kept)`` per file in order."""
        for chunk, files in keep.items():
            url = staging_url(self._batch_dir, chunk)
            if files is None:
                yield storage.read_bytes(url)
                continue
            records = iter_records_from_blocks(storage.iter_blocks(url), source=url)
            for count, kept in files:
                for record in itertools.islice(records, count):
                    if kept:
                        yield encode_record(record)

    def process(self, shard: int, first_copies_at: str):
        first = read_first_copies(first_copies_at)
        outcomes, lines, keep, path_at = [], [], {}, self._path_finder()
        for chunk in self._layout.shard_chunks(shard):
            chunk_lines, raw = self._chunk_outcomes(chunk)
            marked = mark_duplicates(raw, self._layout.chunk_files(chunk).start, first, path_at)
            unchanged = [m is o for m, o in zip(marked, raw)]
            keep[chunk] = (None if all(unchanged)
                           else [(len(o.sequence_ids), same) for o, same in zip(raw, unchanged)])
            lines += [line if same else _manifest_line(m) for line, m, same in zip(chunk_lines, marked, unchanged)]
            outcomes += marked
        storage.write_text(manifest_part_url(self._batch_dir, shard), "".join(lines), durable=False)
        storage.write_text(dead_letters_part_url(self._batch_dir, shard), "".join(
            json.dumps(batches.dead_letter_record(self._source, self._batch_id, o), ensure_ascii=False,
                       sort_keys=True) + "\n" for o in outcomes if o.status is FileStatus.FAILED), durable=False)
        url = storage.join(self._batch_dir, shard_name(batches.SHARD_PREFIX, shard, self._layout.num_shards))
        storage.write_stream(url, lambda: self._kept_sequences(keep))
        records = count_records(url)
        report = batches.shard_report(url, self._layout.shard_files(shard).start, outcomes, records)
        storage.write_text(shard_report_url(self._batch_dir, shard), json.dumps(report), durable=False)
        yield url, records


def _manifest_line(outcome: FileOutcome) -> str:
    return json.dumps(outcome.manifest_record(), sort_keys=True, ensure_ascii=False) + "\n"


def build_ingest_pipeline(pipeline: beam.Pipeline, plan: batches.IngestPlan,
                          parser_template: str | None = None) -> None:
    """Convert chunks (sequences, outcomes and first-copies tables to staging files) → once every chunk
    is done, one merged first-copies table → per shard: duplicates marked, NoteSequences, manifest and
    dead-letter parts written, and a read-back report."""
    layout = ChunkLayout(len(plan.files), plan.num_shards)
    converted = (
        pipeline
        | "ListNewFiles" >> beam.Create(spread(layout.stage_listing(plan.files, listing_url(plan.batch_dir)),
                                              seed=plan.batch_id))
        | "ReadAndConvert" >> beam.ParDo(ConvertFilesDoFn(plan, parser_template))
    )
    first_copies_table = (
        pipeline
        | "OneTable" >> beam.Create([None])
        | "FirstCopiesOfBatch" >> beam.ParDo(MergeFirstCopiesDoFn(plan.batch_dir, layout),
                                             beam.pvalue.AsList(converted | "ChunksDone"
                                                                >> beam.combiners.Count.Globally()))
    )
    (
        pipeline
        | "AllShards" >> beam.Create(list(range(plan.num_shards)))
        | "WriteShardsAndManifest" >> beam.ParDo(WriteShardFromStagingDoFn(plan, layout),
                                                 beam.pvalue.AsSingleton(first_copies_table))
        | "ShardsWritten" >> beam.Map(lambda url_count: url_count)  # a last step, so Dask runs it all
    )


def _publish_manifest(plan: batches.IngestPlan) -> None:
    """Concatenate the manifest parts, one at a time: shards are contiguous slices of the sorted
    listing, so the result is sorted by path."""
    storage.write_stream(storage.join(plan.batch_dir, batches.MANIFEST), lambda: (
        storage.read_bytes(manifest_part_url(plan.batch_dir, k)) for k in range(plan.num_shards)))


def _parser_template_for(plan: batches.IngestPlan, runner: RunnerConfig):
    """One parser template for all workers when they run on this machine (see
    :mod:`melodyflow.transforms.sandbox.fork_template`), started at once if the listing shows it will be needed."""
    if not (runner.workers_on_this_machine and fork_template.SUPPORTED):
        return contextlib.nullcontext(None)
    return fork_template.ParserTemplate([preload_readers],
                                      start_now=expects_isolated_parsing(plan.files, plan.settings))


def run_ingest_pipeline(plan: batches.IngestPlan, runner: RunnerConfig,
                        on_progress=lambda done, total: None) -> dict:
    """Run the Beam job for ``plan`` and publish the batch; returns the batch report.

    ``on_progress(files_done, files_total)`` is called from a watcher thread while the job runs.
    """
    started = time.monotonic()
    batches.remove_stale_batches(plan)
    storage.remove_tree(plan.batch_dir)  # a killed run of this very batch left partial files
    storage.make_dirs(plan.batch_dir)
    pipeline = beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options())
    with _parser_template_for(plan, runner) as template:
        build_ingest_pipeline(pipeline, plan, template.address if template else None)
        with progress.ProgressWatcher(storage.join(plan.batch_dir, progress.PROGRESS_DIR), len(plan.files),
                                      on_progress):
            run(pipeline)
    _publish_manifest(plan)
    reports = [json.loads(storage.read_text(shard_report_url(plan.batch_dir, k))) for k in range(plan.num_shards)]
    dead_letter_parts = [dead_letters_part_url(plan.batch_dir, k) for k in range(plan.num_shards)]
    return batches.finalize_batch(plan, reports, dead_letter_parts, time.monotonic() - started,
                                  before_publishing=lambda: storage.remove_tree(storage.join(plan.batch_dir,
                                                                                              STAGING_DIR)))
