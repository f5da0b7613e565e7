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


@task(name="write-gallery", cache_policy=NONE)
def gallery_task(out: str) -> str:
    """``OUT/index.html`` from the generation index and, when present, ``OUT/evaluation.json``."""
    from melodyflow.models.generation.gallery import write_gallery

    url = write_gallery(out)
    get_run_logger().info("Gallery: %s", url)
    return url


@task(name="build-demo-corpus", cache_policy=NONE)
def demo_corpus_task(directory: str) -> str:
    logger = get_run_logger()
    manifest = build_demo_corpus(directory, progress=logger.info)
    logger.info("Demo corpus: %d files in %s", len(manifest["files"]), directory)
    return directory


@flow(name="melody-pipeline")
def melody_pipeline(source: str | None = None, data_root: str = DEFAULT_DATA_ROOT,
                    workers: int | None = None, config: str = "basic_rnn",
                    num_training_steps: int = DEFAULT_TRAINING_STEPS, hparams: str = DEFAULT_HPARAMS,
                    primers: str | None = None, audio: bool = True) -> dict:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    Each stage skips work whose outputs are already complete for the same inputs and settings. The
    model trains in ``DATA_ROOT/runs/<config>-<dataset fingerprint>``, so new data means a new run.
    ``primers`` (glob, directory or file) replaces the default primers cut from the corpus. ``audio=False``
    writes no WAVs. The run ends with the gallery, ``<generated>/index.html``.
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

    wanted = resolve_hparams(config, "magenta", hparams).to_dict()
    run_name = f"{config}-{fingerprint[:12]}"
    run_dir = storage.join(data_root, "runs", run_name)
    done = finished_bundle(run_dir, num_training_steps, fingerprint, wanted)
    if done:
        get_run_logger().info("Model %s already trained to step %d on this dataset; skipping training",
                              done["url"], done["step"])
        training = {"status": "up_to_date", "bundle": done["url"], "step": done["step"], "run_dir": run_dir,
                    "eval_metrics": done["eval_metrics"], "train_metrics": done["train_metrics"]}
    else:
        training = {"status": "trained", **train_melody_model(
            data_root=data_root, run_dir=run_dir, config=config, hparams=hparams,
            num_training_steps=num_training_steps, eval_every=100)}
    bundle = training["bundle"]
    out = storage.join(data_root, "generated", f"{run_name}-{bundle.rstrip('/').rsplit('/', 1)[-1]}")
    index_url = storage.join(out, INDEX)
    previous = json.loads(storage.read_text(index_url)) if storage.exists(index_url) else None
    primer_spec = primers or storage.join(data_root, "primers")
    if (previous and previous.get("bundle") == bundle and previous.get("primers_spec") == primer_spec
            and bool(previous.get("audio")) == audio):
        get_run_logger().info("Melodies from %s already generated in %s; skipping", bundle, out)
        generation = {**previous, "status": "up_to_date", "index": index_url}
    else:
        if primers is None:
            primers_task(source, primer_spec)
        generation = {"status": "generated", **generate_melodies(
            bundle=bundle, output=out, primers=primer_spec, num_outputs=DEMO_OUTPUTS, num_steps=DEMO_STEPS,
            audio=audio)}
    gallery = gallery_task(out)
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset,
            "training": training, "generation": {**generation, "gallery": gallery}, "gallery": gallery}
