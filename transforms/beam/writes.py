"""Beam transforms that write through fsspec and behave the same on every runner."""

from __future__ import annotations

import apache_beam as beam

from melodyflow.transforms.io import storage
from melodyflow.transforms.io.sharded_staging import json_lines


class WriteJsonLines(beam.PTransform):
    """Write dicts as one JSON-lines file sorted by ``sort_field`` (small outputs: manifests)."""

    def __init__(self, url: str, sort_field: str):
        super().__init__()
        self._url = url
        self._sort_field = sort_field

    def expand(self, pcoll):
        url, field = self._url, self._sort_field

        def write(_key, records):
            records = [r for r in records if r is not None]
            storage.write_text(url, json_lines(records, field))
            return url, len(records)

        placeholder = pcoll.pipeline | "Placeholder" >> beam.Create([(None, None)])
        return (
            (pcoll | "KeyAll" >> beam.Map(lambda r: (None, r)), placeholder)
            | "WithPlaceholder" >> beam.Flatten()
            | "GroupAll" >> beam.GroupByKey()
            | "WriteFile" >> beam.MapTuple(write)
        )


def join_writes(*written):
    """Make every write branch an ancestor of one final step.

    Beam's Dask runner computes only the last transform's bag and relies on it depending on the whole
    graph; a pipeline with several sinks would silently skip all but one. Joining the sinks' outputs
    (each ``(url, count)``) into a final step keeps every branch reachable on every runner.
    """
    return written | "AllWrites" >> beam.Flatten() | "WritesDone" >> beam.Map(lambda url_count: url_count)
