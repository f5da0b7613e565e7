"""The data-plane jobs the crash tests kill: ``python crash_jobs.py ingest SOURCE DATA_ROOT`` or
``python crash_jobs.py dataset DATA_ROOT``, each optionally followed by ``RUNNER WORKERS`` (default:
``direct 1``).

They call the same functions the Prefect flows call, without Prefect's API start-up, so a test can
afford several random kill points per job.
"""

from __future__ import annotations

import sys


def ingest(source: str, data_root: str, runner: str = "direct", workers: str = "1") -> None:
    from melodyflow.transforms.ingest.batches import plan_ingest
    from melodyflow.transforms.ingest.files import IngestSettings
    from melodyflow.transforms.ingest.job import run_ingest_pipeline
    from melodyflow.transforms.beam.runners import RunnerConfig

    plan = plan_ingest(source, data_root, IngestSettings(collection="corpus", files_per_shard=40))
    if not plan.is_empty:
        run_ingest_pipeline(plan, RunnerConfig(runner=runner, workers=int(workers)))


def dataset(data_root: str, runner: str = "direct", workers: str = "1") -> None:
    from melodyflow.transforms.melodies.job import run_dataset_pipeline
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
    from melodyflow.transforms.beam.runners import RunnerConfig

    settings = DatasetSettings(config=get_config("basic_rnn"), examples_per_shard=40)
    run_dataset_pipeline(plan_dataset(data_root, settings), RunnerConfig(runner=runner, workers=int(workers)))


if __name__ == "__main__":
    job, *args = sys.argv[1:]
    {"ingest": ingest, "dataset": dataset}[job](*args)
