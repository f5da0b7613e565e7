"""Prefect flow ``melody_pipeline``: the main job, end to end on the embedded defaults.

Stages: build (or reuse) the demo corpus when no SOURCE is given, ingest it, build a melody dataset,
train a small model, and generate melodies from two-bar excerpts of the corpus' first tunes.
"""

from __future__ import annotations

import json
import os

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from melodyflow.flows.dataset import build_melody_dataset
from melodyflow.flows.generate import INDEX, generate_melodies
from melodyflow.flows.ingest import ingest_corpus
from melodyflow.flows.train import train_melody_model
from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir

DEFAULT_DATA_ROOT = "melodyflow-data"
# Small enough to train in about a minute on two CPU cores, big enough to learn something.
DEFAULT_HPARAMS = '{"batch_size": 32, "rnn_layer_sizes": [64, 64], "learning_rate": 0.005}'
DEFAULT_TRANSFORMER_HPARAMS = "{}"  # music_transformer's own defaults are sized for minutes on a CPU
DEFAULT_TRAINING_STEPS = 300
DEMO_PRIMERS = 4
DEMO_OUTPUTS = 4
DEMO_STEPS = 128


@task(name="make-primers-from-corpus", cache_policy=NONE)
def primers_task(source: str, directory: str, count: int = DEMO_PRIMERS) -> str:
    """Two-bar excerpts of the corpus' first MIDI files: primers that sound like the training data."""
    from melodyflow.transforms.io import storage
    from melodyflow.transforms.ingest.convert import MIDI_EXTENSIONS
    from melodyflow.models.generation.primers import PrimerError, excerpt_midi

    made = 0
    for rel, _ in storage.walk_files(source):
        if made == count:
            break
        if not rel.lower().endswith(MIDI_EXTENSIONS):
            continue
        try:
            primer = excerpt_midi(storage.read_bytes(storage.join(source, rel)))
        except PrimerError:
            continue
        storage.write_bytes(storage.join(directory, rel.replace("/", "__")), primer)
        made += 1
    get_run_logger().info("%d primer(s) from %s in %s", made, source, directory)
    return directory


@task(name="build-demo-corpus", cache_policy=NONE)
def demo_corpus_task(directory: str) -> str:
    logger = get_run_logger()
    manifest = build_demo_corpus(directory, progress=logger.info)
    logger.info("Demo corpus: %d files in %s", len(manifest["files"]), directory)
    return directory


def demo_hparams(config: str) -> str:
    from melodyflow.models.hparams import TRANSFORMER_CONFIGS

    return DEFAULT_TRANSFORMER_HPARAMS if config in TRANSFORMER_CONFIGS else DEFAULT_HPARAMS


def run_name(config: str, fingerprint: str, init_from: str | None) -> str:
    """``<config>-<dataset fingerprint>``, plus a hash of the parent for a fine-tuning run."""
    import hashlib

    name = f"{config}-{fingerprint[:12]}"
    return f"{name}-from-{hashlib.sha256(init_from.encode()).hexdigest()[:8]}" if init_from else name


@flow(name="melody-pipeline")
def melody_pipeline(source: str | None = None, data_root: str = DEFAULT_DATA_ROOT,
                    workers: int | None = None, config: str = "basic_rnn",
                    num_training_steps: int = DEFAULT_TRAINING_STEPS, hparams: str | None = None,
                    primers: str | None = None, time_budget_s: float | None = None,
                    init_from: str | None = None) -> dict:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    Each stage skips work whose outputs are already complete for the same inputs and settings. The
    model trains in ``DATA_ROOT/runs/<config>-<dataset fingerprint>``, so new data means a new run.
    ``primers`` (glob, directory or file) replaces the default primers cut from the corpus.
    ``hparams`` defaults to a small demo model per config (the parent's when fine-tuning with
    ``init_from``); ``time_budget_s`` also stops training after that many seconds.
    """
    from melodyflow.models.bundles.bundle import finished_bundle
    from melodyflow.transforms.io import storage

    if source is None:
        source = demo_corpus_task(default_cache_dir())
    data_root = os.fspath(data_root)
    ingest = ingest_corpus(source=source, data_root=data_root, workers=workers)
    dataset = build_melody_dataset(data_root=data_root, config=config, workers=workers)
    fingerprint = dataset["info"]["fingerprint"]
    from melodyflow.flows.train import resolve_hparams

    if init_from:
        from melodyflow.models.bundles.bundle import resolve_bundle

        init_from = resolve_bundle(init_from)  # a RUN_DIR's bundle of today: the run name hashes it
    elif hparams is None:
        hparams = demo_hparams(config)
    wanted = resolve_hparams(config, None, hparams, init_from).to_dict()
    name = run_name(config, fingerprint, init_from)
    run_dir = storage.join(data_root, "runs", name)
    done = finished_bundle(run_dir, num_training_steps, fingerprint, wanted, time_budget_s)
    if done:
        get_run_logger().info("Model %s already trained to step %d on this dataset; skipping training",
                              done["url"], done["step"])
        training = {"status": "up_to_date", "bundle": done["url"], "step": done["step"], "run_dir": run_dir,
                    "eval_metrics": done["eval_metrics"], "train_metrics": done["train_metrics"]}
    else:
        training = {"status": "trained", **train_melody_model(
            data_root=data_root, run_dir=run_dir, config=config, hparams=hparams,
            num_training_steps=num_training_steps, eval_every=100, time_budget_s=time_budget_s,
            init_from=init_from)}
    bundle = training["bundle"]
    out = storage.join(data_root, "generated", f"{name}-{bundle.rstrip('/').rsplit('/', 1)[-1]}")
    index_url = storage.join(out, INDEX)
    previous = json.loads(storage.read_text(index_url)) if storage.exists(index_url) else None
    primer_spec = primers or storage.join(data_root, "primers")
    if previous and previous.get("bundle") == bundle and previous.get("primers_spec") == primer_spec:
        get_run_logger().info("Melodies from %s already generated in %s; skipping", bundle, out)
        generation = {**previous, "status": "up_to_date", "index": index_url}
    else:
        if primers is None:
            primers_task(source, primer_spec)
        generation = {"status": "generated", **generate_melodies(
            bundle=bundle, output=out, primers=primer_spec, num_outputs=DEMO_OUTPUTS, num_steps=DEMO_STEPS)}
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset,
            "training": training, "generation": generation}
