"""Prefect flow ``build_melody_dataset``: NoteSequence batches → train/eval melody records."""

from __future__ import annotations

import json

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from melodyflow.flows.ingest import default_workers
from melodyflow.flows.reporting import artifact_key, browser_url, dataset_charts_png, progress_reporter
from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import (INFO, MARKER, STATS, DatasetPlan, DatasetSettings, plan_dataset,
                                       read_marker)
from melodyflow.transforms.melodies.extraction_reference import MelodySettings, parse_transpose_range
from melodyflow.transforms.beam.runners import RunnerConfig


@task(name="plan-melody-dataset", cache_policy=NONE)
def plan_task(data_root: str, settings: DatasetSettings) -> DatasetPlan:
    plan = plan_dataset(data_root, settings)
    get_run_logger().info("%d completed ingestion batch(es), %d NoteSequences → %s (%s, %s)",
                          len(plan.batches), plan.num_sequences, plan.out_dir, settings.config.name,
                          settings.format)
    return plan


@task(name="extract-melodies-with-beam", cache_policy=NONE)
def build_task(plan: DatasetPlan, runner: RunnerConfig) -> dict:
    from melodyflow.transforms.melodies.job import run_dataset_pipeline  # Beam import only when needed

    logger = get_run_logger()
    logger.info("Running the Beam dataset job on %s runner with %d worker(s)", runner.runner, runner.workers)
    result = run_dataset_pipeline(plan, runner, on_progress=progress_reporter(
        logger, artifact_key("dataset-progress", plan.settings.config.name),
        f"Extracting melodies for {plan.settings.config.name}", "NoteSequences"))
    logger.info("Dataset complete: %s", result["info"]["counts"])
    return result


def _publish(summary: dict) -> None:
    stats, info = summary["stats"], summary["info"]
    names = sorted(set(stats["per_split"]["train"]) | set(stats["per_split"]["eval"]))
    rows = [{"counter": n, "train": stats["per_split"]["train"].get(n, 0),
             "eval": stats["per_split"]["eval"].get(n, 0)} for n in names]
    create_table_artifact(key=artifact_key("dataset-counters", info["config"]), table=rows,
                          description=f"Melody dataset counters per split ({info['config']})")
    chart_url = storage.join(summary["out_dir"], "charts.png")
    storage.write_bytes(chart_url, dataset_charts_png(stats, f"{info['config']} — {summary['data_root']}"))
    create_image_artifact(image_url=browser_url(chart_url), key=artifact_key("dataset-charts", info["config"]),
                          description="Melody-length histogram and pitch distribution")
    create_markdown_artifact(
        key=artifact_key("dataset-summary", info["config"]),
        markdown="\n".join([
            f"# Melody dataset `{info['config']}` ({summary['status'].replace('_', ' ')})", "",
            f"- **Location:** `{summary['out_dir']}`",
            f"- **Examples:** train {info['counts']['train']}, eval {info['counts']['eval']} "
            f"({info['format']} format, input size {info['input_size']}, {info['num_classes']} classes)",
            f"- **Source batches:** {', '.join(info['source_batches'])}",
            f"- **Charts:** [{chart_url}]({browser_url(chart_url)})",
        ]),
        description="Where the melody dataset is")
    summary["charts"] = chart_url


@flow(name="build-melody-dataset")
def build_melody_dataset(
    data_root: str,
    config: str = "basic_rnn",
    eval_ratio: float = 0.1,
    transpose_range: str = "0:0",
    format: str = "compact",  # noqa: A002 - the CLI flag's name
    keep_polyphonic_tracks: bool = False,
    workers: int | None = None,
    runner: str = "direct",
    runner_options: dict[str, str] | None = None,
    force: bool = False,
    sequence_timeout_s: float | None = None,
    memory_limit_mb: int | None = None,
) -> dict:
    """Build ``DATA_ROOT/melodies/<config>`` from every completed ingestion batch.

    Skips the build when a completed dataset already exists for the same batches and settings.
    ``sequence_timeout_s`` / ``memory_limit_mb``: limits per NoteSequence (``None``: the defaults of
    :class:`DatasetSettings`).
    """
    melody_config = get_config(config)
    limits = {name: value for name, value in (("sequence_timeout_s", sequence_timeout_s),
                                              ("memory_limit_mb", memory_limit_mb)) if value is not None}
    settings = DatasetSettings(
        config=melody_config, eval_ratio=eval_ratio, format=format,
        melody=MelodySettings(transpositions=parse_transpose_range(transpose_range),
                              ignore_polyphonic_notes=keep_polyphonic_tracks,
                              steps_per_quarter=melody_config.steps_per_quarter), **limits)
    runner_config = RunnerConfig(runner=runner, workers=workers or default_workers(),
                                 options=dict(runner_options or {}))
    plan = plan_task(data_root, settings)
    marker = read_marker(plan.out_dir)
    summary = {"data_root": data_root, "out_dir": plan.out_dir}
    if marker and marker.get("fingerprint") == plan.fingerprint and not force:
        get_run_logger().info("Dataset %s is up to date (same batches and settings); nothing to do",
                              plan.out_dir)
        summary.update(status="up_to_date",
                       info=json.loads(storage.read_text(storage.join(plan.out_dir, INFO))),
                       stats=json.loads(storage.read_text(storage.join(plan.out_dir, STATS))))
    else:
        result = build_task(plan, runner_config)
        summary.update(status="built", info=result["info"], stats=result["stats"])
    _publish(summary)
    summary["marker"] = storage.join(plan.out_dir, MARKER)
    return summary
