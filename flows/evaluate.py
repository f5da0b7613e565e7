"""Prefect flow ``evaluate_melodies``: held-out metrics of a bundle and judgement of melodies.

Wiring only; what is measured and how lives in ``models/evaluation`` (definitions: docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from melodyflow.flows.reporting import artifact_key, link, markdown_image
from melodyflow.transforms.io import storage

if TYPE_CHECKING:
    from melodyflow.models.evaluation.corpus import Corpus
    from melodyflow.models.evaluation.judge import Judged, Judgement

EVALUATIONS_DIR = "evaluations"
DEFAULT_SAMPLES = 64


def default_output(data_root: str, config: str, bundle: str | None, generated: str | None, num_samples: int,
                   num_steps: int | None, seed: int) -> str:
    """``DATA_ROOT/evaluations/<config>-<hash of what is evaluated and how>``: reruns land in one place."""
    key = json.dumps([bundle, generated, num_samples, num_steps, seed])
    return storage.join(data_root, EVALUATIONS_DIR, f"{config}-{hashlib.sha1(key.encode()).hexdigest()[:12]}")


@task(name="load-reference-melodies", cache_policy=NONE)
def reference_task(data_root: str, config: str) -> Corpus:
    from melodyflow.models.evaluation.corpus import dataset_url, load_corpus

    corpus = load_corpus(dataset_url(data_root, config), config)
    get_run_logger().info("Reference %s: %d eval melodies, %d training melodies", corpus.info["url"],
                          len(corpus.eval), len(corpus.train))
    if not len(corpus.eval):
        raise ValueError(f"the eval split of {corpus.info['url']} is empty: rebuild the dataset with "
                         "--eval-ratio above 0 to have melodies to compare with")
    return corpus


@task(name="heldout-metrics", cache_policy=NONE)
def heldout_task(bundle: str, info: dict) -> dict:
    from melodyflow.models.evaluation.heldout import heldout_metrics
    from melodyflow.models.generation.sampling import load_generator

    generator = load_generator(bundle)
    metrics = heldout_metrics(generator.model, generator.metadata, info)
    get_run_logger().info("Held-out on %d eval melodies: loss %.4f perplexity %.3f accuracy %.3f",
                          metrics["melodies"], metrics["loss"], metrics["perplexity"], metrics["accuracy"])
    return metrics


@task(name="sample-melodies", cache_policy=NONE)
def sample_task(bundle: str, corpus: Corpus, settings) -> Judged:
    from melodyflow.models.evaluation.judge import Judged
    from melodyflow.models.evaluation.samples import sample_melodies
    from melodyflow.models.generation.sampling import load_generator

    samples = sample_melodies(load_generator(bundle), corpus.eval.events, corpus.eval.ids, settings)
    judged = Judged()
    for i, s in enumerate(samples):
        judged.add(f"sample-{i:03d} (primer: {s.primer_source})", s.events, s.primer_steps)
    get_run_logger().info("Sampled %d melodies, each primed with the first bar of an eval melody", len(samples))
    return judged


@task(name="read-judged-midi", cache_policy=NONE)
def read_generated_task(spec: str, config_name: str, max_steps: int) -> Judged:
    from melodyflow.flows.generate import find_primers
    from melodyflow.models.evaluation.judge import Judged, melody_from_midi
    from melodyflow.models.generation.primers import MAX_PRIMER_BYTES
    from melodyflow.transforms.melodies.configs import get_config

    config = get_config(config_name)
    files = find_primers(spec)
    if not files:
        raise FileNotFoundError(f"no MIDI files at {spec}")
    judged = Judged()
    for rel, url in files:
        try:
            if storage.size(url) > MAX_PRIMER_BYTES:
                raise ValueError(f"the file is over the {MAX_PRIMER_BYTES}-byte limit")
            judged.add(rel, melody_from_midi(storage.read_bytes(url), config, max_steps))
        except (ValueError, FileNotFoundError) as exc:
            judged.failed.append({"name": rel, "error": storage.redact(str(exc))})
    logger = get_run_logger()
    logger.info("%d of %d MIDI files give a melody to judge", len(judged.names), len(files))
    for f in judged.failed:
        logger.warning("Not judged: %s: %s", f["name"], f["error"])
    return judged


@task(name="judge-melodies", cache_policy=NONE)
def judge_task(judged: Judged, corpus: Corpus) -> Judgement:
    from melodyflow.models.evaluation.copy_index import CopyIndex
    from melodyflow.models.evaluation.judge import judge

    judgement = judge(judged, corpus.eval.events, CopyIndex(corpus.train.events))
    copied = judgement.copied()
    get_run_logger().info("similarity %.3f, copied.fraction %.3f (longest %d steps)", judgement.similarity,
                          copied["fraction"], copied["max_steps"])
    return judgement


def _publish(document: dict, urls: dict[str, str], config: str) -> None:
    from melodyflow.models.evaluation.report import feature_rows

    create_table_artifact(key=artifact_key("evaluation-features", config), table=feature_rows(document),
                          description="Judged melodies against the eval split, feature by feature")
    charts = [markdown_image(storage.read_bytes(url), f"{name}: judged (blue) against the reference (grey)")
              for name, url in urls.items() if url.endswith(".png")]
    if charts:
        create_markdown_artifact(key=artifact_key("evaluation-charts", config), markdown="\n\n".join(charts),
                                 description="Each feature: judged melodies (blue) against the reference (grey)")
    gen = document["generated"]
    lines = [f"# Evaluation of `{config}`", "",
             f"- **similarity:** {gen['similarity']:.3f} (mean overlap area over {len(gen['features'])} features)",
             f"- **copied.fraction:** {gen['copied']['fraction']:.3f} (longest copied span "
             f"{gen['copied']['max_steps']} steps)", f"- **judged melodies:** {gen['count']}"]
    if "heldout" in document:
        h = document["heldout"]
        lines.append(f"- **held-out loss:** {h['loss']:.4f} nats/step (perplexity {h['perplexity']:.3f}, "
                     f"accuracy {h['accuracy']:.3f})")
    lines += [f"- **report:** {link(urls['report'])}", f"- **results:** {link(urls['result'])}"]
    create_markdown_artifact(key=artifact_key("evaluation-summary", config), markdown="\n".join(lines),
                             description="Evaluation summary")


@flow(name="evaluate-melodies")
def evaluate_melodies(data_root: str, config: str = "basic_rnn", bundle: str | None = None,
                      generated: str | None = None, num_samples: int = DEFAULT_SAMPLES, num_steps: int | None = None,
                      seed: int = 0, output: str | None = None) -> dict:
    """Judge melodies against ``DATA_ROOT/melodies/<config>``: ``generated`` MIDI files, or else
    ``num_samples`` melodies sampled from ``bundle``; with ``bundle``, also its held-out metrics."""
    from melodyflow.models.bundles.bundle import resolve_bundle
    from melodyflow.models.evaluation.judge import DEFAULT_MAX_STEPS
    from melodyflow.models.evaluation.report import result_document, write_evaluation
    from melodyflow.models.evaluation.samples import SampleSettings

    if bundle is None and generated is None:
        raise ValueError("give --bundle (held-out metrics and samples) or --generated (MIDI files to judge)")
    sampling = SampleSettings(num_samples=num_samples, num_steps=num_steps, seed=seed)
    bundle_url = resolve_bundle(bundle) if bundle is not None else None
    out = output or default_output(data_root, config, bundle_url, generated, num_samples, num_steps, seed)
    corpus: Corpus = reference_task(data_root, config)
    heldout = heldout_task(bundle_url, corpus.info) if bundle_url else None
    max_steps = int(corpus.info["settings"]["melody"].get("max_steps_truncate") or DEFAULT_MAX_STEPS)
    judged: Judged
    # quote(): thousands of melody arrays need not be searched for Prefect futures on every task call
    if generated is not None:
        judged = read_generated_task(generated, config, max_steps)
        what = f"melodies of the MIDI files at {generated}"
    else:
        assert bundle_url is not None
        judged = sample_task(bundle_url, quote(corpus), sampling)  # type: ignore[call-overload]
        what = (f"samples of {bundle_url}, each continuing the first bar of an eval melody, judged without "
                "that bar")
    judgement: Judgement = judge_task(quote(judged), quote(corpus))  # type: ignore[call-overload]
    reference = {"dataset": corpus.info["url"], "config": config, "fingerprint": corpus.fingerprint,
                 "eval_melodies": len(corpus.eval), "train_melodies": len(corpus.train), "train_ids": corpus.train.ids}
    settings = {"bundle": bundle_url, "generated": generated, "judged": what, "seed": seed,
                "num_samples": None if generated else num_samples, "num_steps": None if generated else num_steps}
    document = result_document(judged, judgement, reference, heldout, settings)
    urls = write_evaluation(out, document, judgement, f"{config}: {what}")
    _publish(document, urls, config)
    get_run_logger().info("Evaluation written to %s", out)
    return {**document, "output": out, "charts": {k: v for k, v in urls.items() if v.endswith(".png")}}
