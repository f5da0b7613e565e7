"""Prefect flow ``melody_pipeline``: the main job, end to end on the embedded defaults.

Stages so far: build (or reuse) the demo corpus when no SOURCE is given, ingest it, build a melody
dataset.  Training and generation are added as subflows when they exist.
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows.dataset import build_melody_dataset
from flows.ingest import ingest_corpus
from transforms.demo_corpus import build_demo_corpus, default_cache_dir

DEFAULT_DATA_ROOT = "melodyflow-data"


@task(name="build-demo-corpus", cache_policy=NONE)
def demo_corpus_task(directory: str) -> str:
    logger = get_run_logger()
    manifest = build_demo_corpus(directory, progress=logger.info)
    logger.info("Demo corpus: %d files in %s", len(manifest["files"]), directory)
    return directory


@flow(name="melody-pipeline")
def melody_pipeline(source: str | None = None, data_root: str = DEFAULT_DATA_ROOT,
                    workers: int | None = None, config: str = "basic_rnn") -> dict:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    Each stage skips work whose outputs are already complete for the same inputs and settings.
    """
    if source is None:
        source = demo_corpus_task(default_cache_dir())
    data_root = os.fspath(data_root)
    ingest = ingest_corpus(source=source, data_root=data_root, workers=workers)
    dataset = build_melody_dataset(data_root=data_root, config=config, workers=workers)
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset}
