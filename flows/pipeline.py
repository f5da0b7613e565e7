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
from melodyflow.flows.evaluate import EVALUATIONS_DIR, evaluate_melodies
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
def gallery_task(out: str, evaluation: dict | None = None) -> str:
    """``OUT/index.html`` from the generation index and the model's evaluation (default: ``OUT/evaluation.json``)."""
    from melodyflow.models.generation.gallery import write_gallery

    url = write_gallery(out, evaluation=evaluation)
    get_run_logger().info("Gallery: %s", url)
    return url


@task(name="build-demo-corpus", cache_policy=NONE)
def demo_corpus_task(directory: str) -> str:
    logger = get_run_logger()
    manifest = build_demo_corpus(directory, progress=logger.info)
    logger.info("Demo corpus: %d files in %s", len(manifest["files"]), directory)
    return directory


def demo_hparams(config: str) -> str:
    """The small model ``melodyflow run`` trains when given no ``--hparams``, per kind of network."""
    from melodyflow.models.hparams import TRANSFORMER_CONFIGS

    return DEFAULTS.transformer_hparams if config in TRANSFORMER_CONFIGS else DEFAULTS.hparams


def run_name(config: str, fingerprint: str, init_from: str | None) -> str:
    """``<config>-<dataset fingerprint>``, plus a hash of the parent for a fine-tuning run."""
    import hashlib

    name = f"{config}-{fingerprint[:12]}"
    return f"{name}-from-{hashlib.sha256(init_from.encode()).hexdigest()[:8]}" if init_from else name


def _train(data_root: str, config: str, dataset: dict, hparams: str | None, num_training_steps: int,
           time_budget_s: float | None = None, init_from: str | None = None) -> dict:
    """The model for this dataset and these settings: the finished one, or trained now."""
    from melodyflow.models.bundles.bundle import finished_bundle, resolve_bundle

    fingerprint = dataset["info"]["fingerprint"]
    if init_from:
        init_from = resolve_bundle(init_from)  # a RUN_DIR's bundle of today: the run name hashes it
    elif hparams is None:
        hparams = demo_hparams(config)
    run_dir = storage.join(data_root, "runs", run_name(config, fingerprint, init_from))
    wanted = resolve_hparams(config, None, hparams, init_from).to_dict()
    done = finished_bundle(run_dir, num_training_steps, fingerprint, wanted, time_budget_s)
    if done:
        get_run_logger().info("Model %s already trained to step %d on this dataset; skipping training",
                              done["url"], done["step"])
        return {"status": "up_to_date", "bundle": done["url"], "step": done["step"], "run_dir": run_dir,
                "eval_metrics": done["eval_metrics"], "train_metrics": done["train_metrics"]}
    return {"status": "trained", "run_dir": run_dir, **train_melody_model(
        data_root=data_root, run_dir=run_dir, config=config, hparams=hparams,
        num_training_steps=num_training_steps, eval_every=DEFAULTS.eval_every, time_budget_s=time_budget_s,
        init_from=init_from)}


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
                    num_training_steps: int = DEFAULTS.num_training_steps, hparams: str | None = None,
                    primers: str | None = None, num_outputs: int = DEFAULTS.num_outputs,
                    num_steps: int = DEFAULTS.num_steps, temperature: float = DEFAULTS.temperature,
                    primer_bars: int | None = None, primer_start_bar: int | None = None,
                    audio: bool = True, keep_best: int | None = None, time_budget_s: float | None = None,
                    init_from: str | None = None) -> dict | State:
    """Run every stage for ``source`` (default: the demo corpus) into ``data_root``.

    The model trains in ``DATA_ROOT/runs/<config>-<dataset fingerprint>``, so new data means a new run.
    ``primers`` (glob, directory or file) replaces the default primers, excerpts of the corpus;
    ``primer_bars`` and ``primer_start_bar`` choose the window of each primer file (default for the
    corpus excerpts: two bars from the first note's bar; for ``primers``: the whole file).
    ``audio=False`` writes no WAVs; with ``keep_best`` K only the K best-scored of each primer's outputs are
    kept. The run then evaluates its model (held-out metrics and samples judged against the eval split) into
    ``DATA_ROOT/evaluations/<run>-<bundle version>`` and ends with the gallery, ``<generated>/index.html``.
    ``hparams`` defaults to a small demo model per config (the parent's when fine-tuning with
    ``init_from``); ``time_budget_s`` also stops training after that many seconds.
    """
    if source is None:
        source = demo_corpus_task(default_cache_dir())
    data_root = os.fspath(data_root)
    ingest = ingest_corpus(source=source, data_root=data_root, workers=workers)
    dataset = build_melody_dataset(data_root=data_root, config=config, workers=workers)
    if not dataset["info"]["counts"]["train"]:
        error = StageError(f"nothing to train on: {dataset['warnings'][0]}")
        return Failed(message=str(error), data=error)  # a clear end, without a traceback in the log
    training = _train(data_root, config, dataset, hparams, num_training_steps, time_budget_s, init_from)
    window = PrimerWindow(primer_bars, primer_start_bar) if primer_bars else None
    generation = _generate(source, data_root, training, primers, window,
                           {"num_outputs": num_outputs, "num_steps": num_steps, "temperature": temperature,
                            "keep_best": keep_best}, audio)
    bundle = training["bundle"]
    run_name = training["run_dir"].rstrip("/").rsplit("/", 1)[-1]
    evaluation = _evaluate_model(data_root, config, bundle, dataset["info"]["counts"]["eval"], storage.join(
        data_root, EVALUATIONS_DIR, f"{run_name}-{bundle.rstrip('/').rsplit('/', 1)[-1]}"))
    gallery = gallery_task(generation["index"].rsplit("/", 1)[0], evaluation if "generated" in evaluation else None)
    return {"source": source, "data_root": data_root, "ingest": ingest, "dataset": dataset,
            "training": training, "generation": {**generation, "gallery": gallery}, "gallery": gallery,
            "evaluation": evaluation}


def _evaluate_model(data_root: str, config: str, bundle: str, eval_melodies: int, out: str) -> dict:
    """Held-out metrics and judged samples of the run's bundle; skipped when ``out`` already has them,
    and when the dataset's eval split is empty (a corpus of a few files), which leaves nothing to judge by."""
    from melodyflow.models.evaluation.report import RESULT

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
