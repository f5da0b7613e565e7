"""Prefect flow ``build_melody_dataset``: NoteSequence batches → train/eval melody records."""

from __future__ import annotations

import json
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from melodyflow.flows.settings import DEFAULT_CONFIG
from melodyflow.flows.reporting import artifact_key, dataset_charts_png, link, markdown_image, progress_reporter
from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import (INFO, MARKER, STATS, DatasetPlan, DatasetSettings, plan_dataset,
                                       up_to_date)
from melodyflow.transforms.melodies.extraction_reference import MelodySettings, parse_transpose_range
from melodyflow.transforms.beam import sizing
from melodyflow.transforms.beam.runners import RunnerConfig


@task(name="plan-melody-dataset", cache_policy=NONE)
def plan_task(data_root: str, settings: DatasetSettings) -> DatasetPlan:
    plan = plan_dataset(data_root, settings)
    get_run_logger().info("%d completed ingestion batch(es), %d NoteSequences → %s (%s, %s)",
                          len(plan.batches), plan.num_sequences, plan.out_dir, settings.config.name,
                          settings.format)
    return plan


@task(name="extract-melodies", cache_policy=NONE)
def build_task(plan: DatasetPlan, runner: RunnerConfig, execution: sizing.Execution) -> dict:
    logger = get_run_logger()
    logger.info("Extracting melodies from %d NoteSequence(s) %s", plan.num_sequences,
                execution.describe(runner.runner))
    on_progress = progress_reporter(logger, artifact_key("dataset-progress", plan.settings.config.name),
                                    f"Extracting melodies for {plan.settings.config.name}", "NoteSequences")
    if execution.in_process:
        from melodyflow.transforms.melodies.steps import run_dataset_in_process

        result = run_dataset_in_process(plan, on_progress=on_progress)
    else:
        from melodyflow.transforms.melodies.job import run_dataset_pipeline  # Beam import only when needed

        result = run_dataset_pipeline(plan, runner, on_progress=on_progress)
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
    if summary["status"] != "up_to_date" or not storage.exists(chart_url):  # drawing costs a matplotlib import
        charts = dataset_charts_png(stats, f"{info['config']} — {summary['data_root']}")
        storage.write_bytes(chart_url, charts)
    else:
        charts = storage.read_bytes(chart_url)
    create_markdown_artifact(key=artifact_key("dataset-charts", info["config"]),
                             markdown=markdown_image(charts, "melody lengths and pitches") + "\n\n" + link(chart_url),
                             description="Melody-length histogram and pitch distribution")
    create_markdown_artifact(
        key=artifact_key("dataset-summary", info["config"]),
        markdown="\n".join([
            f"# Melody dataset `{info['config']}` ({summary['status'].replace('_', ' ')})", "",
            f"- **Location:** `{summary['out_dir']}`",
            f"- **Examples:** train {info['counts']['train']}, eval {info['counts']['eval']} "
            f"({info['format']} format, input size {info['input_size']}, {info['num_classes']} classes)",
            f"- **Source batches:** {', '.join(info['source_batches'])}",
            f"- **Charts:** {link(chart_url)}",
        ]),
        description="Where the melody dataset is")
    summary["charts"] = chart_url


@flow(name="build-melody-dataset")
def build_melody_dataset(
    data_root: str,
    config: str = DEFAULT_CONFIG,
    eval_ratio: float = DatasetSettings.eval_ratio,
    transpose_range: str = "0:0",
    format: str = DatasetSettings.format,  # noqa: A002 - the CLI flag's name
    keep_polyphonic_tracks: bool = False,
    workers: int | None = None,
    runner: str = "direct",
    runner_options: dict[str, str] | None = None,
    force: bool = False,
    sequence_timeout_s: float = DatasetSettings.sequence_timeout_s,
    memory_limit_mb: int = DatasetSettings.memory_limit_mb,
) -> dict:
    """Build ``DATA_ROOT/melodies/<config>`` from every completed ingestion batch.

    Skips the build when a completed dataset already exists for the same batches and settings.
    ``sequence_timeout_s`` / ``memory_limit_mb``: limits per NoteSequence (0 s: no time limit).
    """
    melody_config = get_config(config)
    settings = DatasetSettings(
        config=melody_config, eval_ratio=eval_ratio, format=format,
        melody=MelodySettings(transpositions=parse_transpose_range(transpose_range),
                              ignore_polyphonic_notes=keep_polyphonic_tracks,
                              steps_per_quarter=melody_config.steps_per_quarter),
        sequence_timeout_s=sequence_timeout_s, memory_limit_mb=memory_limit_mb)
    RunnerConfig(runner=runner, workers=workers or 1, options=dict(runner_options or {}))  # fail before planning
    plan = cast(DatasetPlan, plan_task(data_root, settings))  # a sync task returns its value
    summary: dict[str, Any] = {"data_root": data_root, "out_dir": plan.out_dir}
    if not force and up_to_date(plan):
        get_run_logger().info("Dataset %s is up to date (same batches and settings); nothing to do",
                              plan.out_dir)
        summary.update(status="up_to_date",
                       info=json.loads(storage.read_text(storage.join(plan.out_dir, INFO))),
                       stats=json.loads(storage.read_text(storage.join(plan.out_dir, STATS))))
    else:
        work_s = sizing.dataset_seconds(sum(storage.size(url) for url in plan.input_shards))
        execution = sizing.plan_execution(workers, runner, work_s, sizing.DATASET)
        result = build_task(plan, RunnerConfig(runner=runner, workers=execution.workers,
                                               options=dict(runner_options or {})), execution)
        summary.update(status="built", workers=execution.workers, in_process=execution.in_process,
                       info=result["info"], stats=result["stats"])
    summary["warnings"] = empty_split_warnings(summary["info"], eval_ratio)
    for warning in summary["warnings"]:
        get_run_logger().warning(warning)
    _publish(summary)
    summary["marker"] = storage.join(plan.out_dir, MARKER)
    return summary


def empty_split_warnings(info: dict, eval_ratio: float) -> list[str]:
    """What a dataset with an empty split cannot do, and how to get one that can."""
    counts = info["counts"]
    if not counts["train"] and not counts["eval"]:
        return ["the dataset has no examples: no melody of at least 7 bars with 5 distinct pitches was found; "
                "training needs more (or longer, monophonic-line) scores"]
    if not counts["train"]:
        return [f"the train split is empty ({counts['eval']} eval examples): nothing to train on; lower "
                "--eval-ratio or add files"]
    if not counts["eval"] and eval_ratio > 0:
        return [f"the eval split is empty ({counts['train']} train examples, --eval-ratio {eval_ratio:g}): "
                "training will report no eval metrics; add files or raise --eval-ratio"]
    return []
