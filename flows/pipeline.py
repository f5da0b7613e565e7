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
from melodyflow.flows.evaluate import EVALUATIONS_DIR, evaluate_melodies
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
                    primers: str | None = None, keep_best: int | None = None) -> dict:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    Each stage skips work whose outputs are already complete for the same inputs and settings. The
    model trains in ``DATA_ROOT/runs/<config>-<dataset fingerprint>``, so new data means a new run.
    ``primers`` (glob, directory or file) replaces the default primers cut from the corpus; with
    ``keep_best`` K only the K best-scored of each primer's outputs are kept. The run ends by evaluating
    its model (held-out metrics and samples judged against the eval split) into
    ``DATA_ROOT/evaluations/<run>-<bundle version>``.
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
            and previous.get("options", {}).get("keep_best") == keep_best):
        get_run_logger().info("Melodies from %s already generated in %s; skipping", bundle, out)
        generation = {**previous, "status": "up_to_date", "index": index_url}
    else:
        if primers is None:
            primers_task(source, primer_spec)
        generation = {"status": "generated", **generate_melodies(
            bundle=bundle, output=out, primers=primer_spec, num_outputs=DEMO_OUTPUTS, num_steps=DEMO_STEPS,
            keep_best=keep_best)}
    evaluation = _evaluate_model(data_root, config, bundle, dataset["info"]["counts"]["eval"], storage.join(
        data_root, EVALUATIONS_DIR, f"{run_name}-{bundle.rstrip('/').rsplit('/', 1)[-1]}"))
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset,
            "training": training, "generation": generation, "evaluation": evaluation}


def _evaluate_model(data_root: str, config: str, bundle: str, eval_melodies: int, out: str) -> dict:
    """Held-out metrics and judged samples of the run's bundle; skipped when ``out`` already has them,
    and when the dataset's eval split is empty (a corpus of a few files), which leaves nothing to judge by."""
    from melodyflow.models.evaluation.report import RESULT
    from melodyflow.transforms.io import storage

    if not eval_melodies:
        reason = "the dataset's eval split is empty"
        get_run_logger().warning("Not evaluating %s: %s", bundle, reason)
        return {"status": "skipped", "reason": reason}
    result_url = storage.join(out, RESULT)
    if storage.exists(result_url):
        previous = json.loads(storage.read_text(result_url))
        if previous.get("settings", {}).get("bundle") == bundle:
            get_run_logger().info("Model %s already evaluated in %s; skipping", bundle, out)
            return {**previous, "status": "up_to_date", "output": out}
    return {"status": "evaluated", **evaluate_melodies(data_root=data_root, config=config, bundle=bundle,
                                                        output=out)}
