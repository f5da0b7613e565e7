"""Checks of an invocation that run before any flow starts, so a mistake costs a second and one line.

Each raises :class:`UsageError` with what is wrong and what to do instead. Remote URLs (``gs://``,
``s3://``) are checked only where a listing is needed anyway; local paths fully.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from melodyflow.flows.cli.command import UsageError


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return os.path.realpath(url[len("file://"):] if url.startswith("file://") else url)


def require_nonempty(value: str | None, name: str, what: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"{name} is empty (an unset shell variable?): give {what}")
    return value


def writable_data_root(data_root: str, name: str = "DATA_ROOT") -> None:
    """DATA_ROOT must be a directory this process can write (created here when missing)."""
    require_nonempty(data_root, name, "the directory for melodyflow's outputs (created if missing)")
    if not _is_local(data_root):
        return
    path = _local_path(data_root)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{name} {data_root} is a file, not a directory: give a directory for melodyflow's "
                         "outputs (it is created if missing)")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".melodyflow-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{name} {data_root} is not writable ({exc.strerror or exc}): give a directory you "
                         "can write to") from None


def readable_source(source: str, data_root: str | None = None) -> None:
    """SOURCE must be an existing directory (or URL prefix) that does not hold DATA_ROOT."""
    require_nonempty(source, "SOURCE", "the directory (or URL) that holds your MIDI, MusicXML or ABC files")
    if _is_local(source):
        path = _local_path(source)
        if not os.path.exists(path):
            raise UsageError(f"SOURCE {source} does not exist: give the directory that holds your MIDI, "
                             "MusicXML or ABC files")
        if not os.path.isdir(path):
            raise UsageError(f"SOURCE {source} is a file: give the directory that holds it")
        if not _holds_a_readable_file(path):
            raise UsageError(f"SOURCE {source} holds no MIDI, MusicXML or ABC files: give the directory that "
                             "holds them")
    else:
        from melodyflow.transforms.io import storage

        if not storage.exists(source):
            raise UsageError(f"SOURCE {source} does not exist (nothing at that URL prefix)")
    if data_root is not None and _contains(source, data_root):
        raise UsageError(f"DATA_ROOT {data_root} is inside SOURCE {source}: melodyflow would ingest its own "
                         "outputs; put DATA_ROOT outside SOURCE")


def _holds_a_readable_file(path: str) -> bool:
    """Whether any file under ``path`` has an extension ingestion reads; stops at the first one."""
    from melodyflow.transforms.ingest.convert import format_for_path

    return any(format_for_path(name) for _, _, names in os.walk(path) for name in names)


def inputs_outside_output(inputs: str | None, output: str, flag: str) -> None:
    """A stage that rewrites OUT must not read its inputs from inside OUT: it would remove them first."""
    if not inputs:
        return
    wildcards = [inputs.index(c) for c in "*?[" if c in inputs]
    base = inputs[:min(wildcards)].rsplit("/", 1)[0] or "." if wildcards else inputs
    if _contains(output, base):
        raise UsageError(f"{flag} {inputs} is inside --output {output}, which this command rewrites: copy them "
                         "elsewhere first, or choose another --output")


def _contains(outer: str, inner: str) -> bool:
    if _is_local(outer) != _is_local(inner):
        return False
    if _is_local(outer):
        a, b = _local_path(outer), _local_path(inner)
        return b == a or b.startswith(a.rstrip(os.sep) + os.sep)
    a, b = outer.rstrip("/"), inner.rstrip("/")
    return b == a or b.startswith(a + "/")


def ingested_data_root(data_root: str) -> None:
    """DATA_ROOT must hold at least one completed ingestion batch."""
    require_nonempty(data_root, "DATA_ROOT", "the DATA_ROOT given to `melodyflow ingest`")
    from melodyflow.transforms.ingest.batches import completed_batches

    if _is_local(data_root) and not os.path.isdir(_local_path(data_root)):
        raise UsageError(f"DATA_ROOT {data_root} does not exist: give the DATA_ROOT of an earlier "
                         "`melodyflow ingest SOURCE DATA_ROOT`")
    if not completed_batches(data_root):
        raise UsageError(f"DATA_ROOT {data_root} has no completed ingestion batch: run "
                         f"`melodyflow ingest SOURCE {data_root}` first")


def trainable_dataset(data_root: str, config: str, needs_eval: str | None = None) -> None:
    """The dataset must be complete and have training examples; an empty eval split is only a warning
    (training then reports no eval metrics), or an error naming ``needs_eval``, the option that needs one."""
    import sys

    from melodyflow.transforms.melodies.dataset import open_dataset

    counts = open_dataset(data_root, config)["counts"]
    if not counts["train"]:
        raise UsageError(f"the train split of {data_root}'s {config} dataset is empty ({counts['eval']} eval "
                         "examples): add files with `melodyflow ingest`, or rebuild it with a lower --eval-ratio")
    if not counts["eval"] and needs_eval:
        raise UsageError(f"{needs_eval}: the eval split of {data_root}'s {config} dataset is empty; rebuild it "
                         "with a higher --eval-ratio")
    if not counts["eval"]:
        print(f"melodyflow train: warning: the eval split of {data_root}'s {config} dataset is empty: training "
              "reports no eval metrics", file=sys.stderr)


# Arguments that name storage locations, checked for a reachable store before any flow starts.
_STORAGE_ARGS = ("source", "data_root", "run_dir", "output", "out", "bundle")


def storage_reachable(args: argparse.Namespace) -> None:
    """Fail fast, in one line and before Prefect starts, when a remote store is unreachable: one cheap
    call per remote location, retried within the storage deadline (``--storage-deadline``)."""
    from melodyflow.transforms.io import storage

    for name in _STORAGE_ARGS:
        url = getattr(args, name, None)
        if isinstance(url, str) and storage.protocol_of(url) not in ("file", "memory"):
            try:
                storage.probe(url)
            except PermissionError as exc:
                raise storage.StorageError(f"checking {url}: access denied: {exc}") from None
