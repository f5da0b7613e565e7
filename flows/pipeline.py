"""Prefect flow ``melody_pipeline``: the main job, end to end on the embedded defaults.

Stages: build (or reuse) the demo corpus when no SOURCE is given, ingest it, build a melody dataset,
train a small model, and generate melodies from primers: by default, the first bars of the corpus' first
tunes. A stage whose outputs are complete for the same inputs and settings is skipped.
"""

from __future__ import annotations

import json
import os

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.states import Failed, State

from melodyflow.flows.dataset import build_melody_dataset
from melodyflow.flows.generate import INDEX, generate_melodies
from melodyflow.flows.ingest import ingest_corpus
from melodyflow.flows.settings import RunSettings, StageError
from melodyflow.flows.train import resolve_hparams, train_melody_model
from melodyflow.models.generation.primers import PrimerWindow
from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir
from melodyflow.transforms.io import storage

DEFAULTS = RunSettings()


@task(name="make-primers-from-corpus", cache_policy=NONE)
def primers_task(source: str, directory: str, window: PrimerWindow, count: int = DEFAULTS.corpus_primers) -> str:
    """Excerpts of the corpus' first MIDI files, written where people can listen to them: primers that
    sound like the training data."""
    from melodyflow.models.generation.primers import PrimerError, excerpt_midi
    from melodyflow.transforms.ingest.convert import MIDI_EXTENSIONS

    made = 0
    for rel, _ in storage.walk_files(source):
        if made == count:
            break
        if not rel.lower().endswith(MIDI_EXTENSIONS):
            continue
        try:
            primer = excerpt_midi(storage.read_bytes(storage.join(source, rel)), window)
        except PrimerError:
            continue
        storage.write_bytes(storage.join(directory, rel.replace("/", "__")), primer)
        made += 1
    get_run_logger().info("%d primer(s) of %s from %s in %s", made, window.describe(), source, directory)
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


def _train(data_root: str, config: str, dataset: dict, hparams: str, num_training_steps: int) -> dict:
    """The model for this dataset and these settings: the finished one, or trained now."""
    from melodyflow.models.bundles.bundle import finished_bundle

    fingerprint = dataset["info"]["fingerprint"]
    run_dir = storage.join(data_root, "runs", f"{config}-{fingerprint[:12]}")
    wanted = resolve_hparams(config, "magenta", hparams).to_dict()
    done = finished_bundle(run_dir, num_training_steps, fingerprint, wanted)
    if done:
        get_run_logger().info("Model %s already trained to step %d on this dataset; skipping training",
                              done["url"], done["step"])
        return {"status": "up_to_date", "bundle": done["url"], "step": done["step"], "run_dir": run_dir,
                "eval_metrics": done["eval_metrics"], "train_metrics": done["train_metrics"]}
    return {"status": "trained", "run_dir": run_dir, **train_melody_model(
        data_root=data_root, run_dir=run_dir, config=config, hparams=hparams,
        num_training_steps=num_training_steps, eval_every=DEFAULTS.eval_every)}


def _same_request(previous: dict | None, bundle: str, primers: str, options: dict) -> bool:
    if previous is None:
        return False
    return previous["bundle"] == bundle and previous.get("primers_spec") == primers and all(
        previous["options"].get(k) == v for k, v in options.items())


def _generate(source: str, data_root: str, training: dict, primers: str | None, window: PrimerWindow | None,
              sampling: dict, audio: bool) -> dict:
    """Melodies from the model for the primers: the ones already written for the same request, or new."""
    bundle = training["bundle"]
    run_name = training["run_dir"].rstrip("/").rsplit("/", 1)[-1]
    out = storage.join(data_root, "generated", f"{run_name}-{bundle.rstrip('/').rsplit('/', 1)[-1]}")
    if primers is None:  # excerpts of the corpus, in a directory named after the window
        window = window or PrimerWindow(DEFAULTS.corpus_primer_bars)
        label = f"{window.bars}-bars-from-" + (f"bar-{window.start_bar}" if window.start_bar else "first-note")
        primer_spec, file_window = storage.join(data_root, "primers", label), None
    else:
        primer_spec, file_window = primers, window
    index_url = storage.join(out, INDEX)
    previous = json.loads(storage.read_text(index_url)) if storage.exists(index_url) else None
    request = {**sampling, "primer_window": file_window.describe() if file_window else None}
    if previous is not None and _same_request(previous, bundle, primer_spec, request) \
            and bool(previous.get("audio")) == audio:
        get_run_logger().info("Melodies from %s for these primers and options already in %s; skipping", bundle, out)
        return {**previous, "status": "up_to_date", "index": index_url}
    if primers is None:
        assert window is not None  # set above for corpus excerpts
        primers_task(source, primer_spec, window)
    return {"status": "generated", **generate_melodies(
        bundle=bundle, output=out, primers=primer_spec, primer_bars=file_window.bars if file_window else None,
        primer_start_bar=file_window.start_bar if file_window else None, audio=audio, **sampling)}


@flow(name="melody-pipeline")
def melody_pipeline(source: str | None = None, data_root: str = DEFAULTS.data_root,
                    workers: int | None = None, config: str = DEFAULTS.config,
                    num_training_steps: int = DEFAULTS.num_training_steps, hparams: str = DEFAULTS.hparams,
                    primers: str | None = None, num_outputs: int = DEFAULTS.num_outputs,
                    num_steps: int = DEFAULTS.num_steps, temperature: float = DEFAULTS.temperature,
                    primer_bars: int | None = None, primer_start_bar: int | None = None,
                    audio: bool = True) -> dict | State:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    The model trains in ``DATA_ROOT/runs/<config>-<dataset fingerprint>``, so new data means a new run.
    ``primers`` (glob, directory or file) replaces the default primers, excerpts of the corpus;
    ``primer_bars`` and ``primer_start_bar`` choose the window of each primer file (default for the
    corpus excerpts: two bars from the first note's bar; for ``primers``: the whole file).
    ``audio=False`` writes no WAVs. The run ends with the gallery, ``<generated>/index.html``.
    """
    if source is None:
        source = demo_corpus_task(default_cache_dir())
    data_root = os.fspath(data_root)
    ingest = ingest_corpus(source=source, data_root=data_root, workers=workers)
    dataset = build_melody_dataset(data_root=data_root, config=config, workers=workers)
    if not dataset["info"]["counts"]["train"]:
        error = StageError(f"nothing to train on: {dataset['warnings'][0]}")
        return Failed(message=str(error), data=error)  # a clear end, without a traceback in the log
    training = _train(data_root, config, dataset, hparams, num_training_steps)
    window = PrimerWindow(primer_bars, primer_start_bar) if primer_bars else None
    generation = _generate(source, data_root, training, primers, window,
                           {"num_outputs": num_outputs, "num_steps": num_steps, "temperature": temperature},
                           audio)
    gallery = gallery_task(generation["index"].rsplit("/", 1)[0])
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset,
            "training": training, "generation": {**generation, "gallery": gallery}, "gallery": gallery}
