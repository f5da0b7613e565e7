"""Prefect flow ``ingest_corpus``: plan a batch, run the Beam job, publish counts to the UI."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from melodyflow.flows.reporting import progress_reporter
from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.batches import IngestPlan, plan_ingest
from melodyflow.transforms.ingest.files import IngestSettings, parsing_bytes
from melodyflow.transforms.beam import sizing
from melodyflow.transforms.beam.runners import RunnerConfig


MB = 1024 * 1024


def collection_name(source: str) -> str:
    """Like Magenta: the corpus directory's base name."""
    name = source.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    return name.split("://")[-1] or "corpus"


@task(name="plan-ingest-batch", cache_policy=NONE)
def plan_batch(source: str, data_root: str, settings: IngestSettings) -> IngestPlan:
    logger = get_run_logger()
    logger.info("Listing %s and comparing with completed batches in %s", source, data_root)
    plan = plan_ingest(source, data_root, settings)
    if plan.files:
        logger.info("%d new file(s) for %s; %d already ingested; %d ignored (not MIDI/MusicXML/ABC)",
                    len(plan.files), plan.batch_id, plan.already_ingested, plan.ignored)
    else:
        logger.info("No new files: %d already ingested; %d ignored (not MIDI/MusicXML/ABC)",
                    plan.already_ingested, plan.ignored)
    if plan.stale_batches:
        logger.warning("Removing %d incomplete batch(es) left by killed runs: %s",
                       len(plan.stale_batches), ", ".join(plan.stale_batches))
    return plan


@task(name="convert-files", cache_policy=NONE)
def convert_batch(plan: IngestPlan, runner: RunnerConfig, execution: sizing.Execution) -> dict:
    logger = get_run_logger()
    logger.info("Converting %d file(s) %s, %d shard(s) → %s", len(plan.files),
                execution.describe(runner.runner), plan.num_shards, plan.batch_dir)
    on_progress = progress_reporter(logger, "ingest-progress", f"Converting files of {plan.batch_id}", "files")
    if execution.in_process:
        from melodyflow.transforms.ingest.steps import run_ingest_in_process

        report = run_ingest_in_process(plan, on_progress=on_progress)
    else:
        from melodyflow.transforms.ingest.job import run_ingest_pipeline  # Beam import only when needed

        report = run_ingest_pipeline(plan, runner, on_progress=on_progress)
    logger.info("Batch %s complete: %s", plan.batch_id, _counts_line(report["counts"]))
    return report


def _counts_line(counts: dict) -> str:
    keys = ("found", "converted", "duplicates", "failed", "sequences")
    return ", ".join(f"{k}={counts[k]}" for k in keys)


def _publish_artifacts(summary: dict) -> None:
    counts = summary["counts"]
    rows = [{"count": k, "value": counts[k]} for k in
            ("found", "converted", "duplicates", "failed", "sequences", "tunes_failed",
             "already_ingested", "ignored")]
    rows += [{"count": f"failed: {reason}", "value": n} for reason, n in counts["failure_reasons"].items()]
    create_table_artifact(key="ingest-counts", table=rows,
                          description=f"Ingestion counts for {summary['batch_id'] or 'no new batch'}")
    lines = [f"# Ingestion of `{summary['source']}`", ""]
    if summary["status"] == "up_to_date":
        lines.append(f"Nothing new: all {counts['already_ingested']} files are in completed batches.")
    else:
        lines += [
            f"- **Batch:** `{summary['batch_id']}`",
            f"- **Shards:** `{summary['batch_dir']}` ({len(summary['shards'])} TFRecord shard(s), "
            f"{counts['sequences']} NoteSequences)",
            f"- **Report:** `{summary['report']}`",
            f"- **Dead letters:** `{summary['dead_letters']}` ({counts['failed']} failed file(s))",
            "",
            f"found {counts['found']} = converted {counts['converted']} + duplicates "
            f"{counts['duplicates']} + failed {counts['failed']}",
        ]
    create_markdown_artifact(key="ingest-summary", markdown="\n".join(lines),
                             description="Where the ingested NoteSequences are")


@flow(name="ingest-corpus")
def ingest_corpus(
    source: str,
    data_root: str,
    workers: int | None = None,
    runner: str = "direct",
    runner_options: dict[str, str] | None = None,
    collection: str | None = None,
    max_file_mb: float = IngestSettings.max_file_bytes / MB,
    max_notes: int = IngestSettings.max_notes,
    file_timeout_s: float = IngestSettings.file_timeout_s,
    memory_limit_mb: int = IngestSettings.memory_limit_mb,
) -> dict:
    """Convert every new score file under ``source`` into NoteSequence shards under ``data_root``.

    Incremental: files recorded by a completed batch are skipped, so the nightly run only does new
    work; a run with nothing new writes nothing.
    """
    settings = IngestSettings(
        collection=collection or collection_name(source),
        max_file_bytes=int(max_file_mb * MB),
        max_notes=max_notes,
        file_timeout_s=file_timeout_s,
        memory_limit_mb=memory_limit_mb,
    )
    RunnerConfig(runner=runner, workers=workers or 1, options=dict(runner_options or {}))  # fail before listing
    plan = cast(IngestPlan, plan_batch(source, data_root, settings))  # a sync task returns its value
    plan.refuse_empty_source()
    summary: dict[str, Any] = {"source": source, "data_root": data_root, "batch_id": plan.batch_id if plan.files else None,
               "batch_dir": plan.batch_dir if plan.files else None}
    if plan.is_empty:
        get_run_logger().info("Nothing new to ingest from %s", source)
        summary.update(status="up_to_date", shards=[], report=None, dead_letters=None,
                       counts={"found": 0, "converted": 0, "duplicates": 0, "failed": 0, "sequences": 0,
                               "tunes_failed": 0, "failure_reasons": {},
                               "already_ingested": plan.already_ingested, "ignored": plan.ignored})
    else:
        # quote(): Prefect would otherwise walk the plan's listing looking for futures (≈40 µs a file).
        work_s = sizing.ingest_seconds(*parsing_bytes(plan.files, settings))
        execution = sizing.plan_execution(workers, runner, work_s, sizing.INGEST)
        report = convert_batch(quote(plan), RunnerConfig(runner=runner, workers=execution.workers,  # type: ignore[call-overload]
                                                         options=dict(runner_options or {})), execution)
        summary.update(status="ingested", workers=execution.workers, in_process=execution.in_process,
                       shards=report["shards"], counts=report["counts"],
                       report=storage.join(plan.batch_dir, "report.json"),
                       dead_letters=report["dead_letters"], elapsed_s=report["elapsed_s"])
    _publish_artifacts(summary)
    return summary
