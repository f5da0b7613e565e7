"""Prefect flow ``generate_melodies``: fan out over primers, write outputs and an index."""

from __future__ import annotations

import hashlib
import json

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from melodyflow.flows.reporting import http_url, link, markdown_image
from melodyflow.models.generation.sampling import GenerationOptions
from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.convert import MIDI_EXTENSIONS

INDEX = "index.json"
# Pictures embedded in the UI's gallery artifact (the best output of the first primers): the markdown is stored
# in Prefect's database, so it stays a few hundred KB at most. The full gallery is OUT/index.html.
MAX_ARTIFACT_IMAGES = 8


def find_primers(spec: str) -> list[tuple[str, str]]:
    """``(relative name, url)`` for a glob, a directory/prefix (recursive) or a single file."""
    fs = storage.filesystem(spec)
    if any(ch in spec for ch in "*?["):
        matches = sorted(fs.glob(spec))
        return [(m.rsplit("/", 1)[-1], storage.with_protocol(spec, m)) for m in matches
                if m.lower().endswith(MIDI_EXTENSIONS)]
    if fs.isdir(spec):
        return [(rel, storage.join(spec, rel)) for rel, _ in storage.walk_files(spec)
                if rel.lower().endswith(MIDI_EXTENSIONS)]
    if not fs.exists(spec):
        raise FileNotFoundError(f"no primer file, directory or glob match at {spec}")
    return [(spec.rstrip("/").rsplit("/", 1)[-1], spec)]


def _seed_offset(primer_id: str) -> int:
    return int.from_bytes(hashlib.sha256(primer_id.encode()).digest()[:4], "big")


@task(name="prepare-ranking-reference", cache_policy=NONE)
def ranking_reference_task(bundle: str) -> dict:
    """Build (once per process) what candidates are scored against: the bundle's training corpus."""
    import time

    from melodyflow.models.evaluation.ranking import reference_for_bundle
    from melodyflow.models.generation.sampling import load_generator

    logger = get_run_logger()
    metadata = load_generator(bundle).metadata  # the model, loaded once for this run's tasks too
    started = time.monotonic()
    reference, why = reference_for_bundle(metadata)
    if reference is None:
        logger.warning("Ranking without the training corpus (closeness and copy count 0): %s", why)
        return {"reference": None, "why": why}
    logger.info("Ranking reference: %d training melodies of %s (%.1f s)", len(reference.copy_index),
                reference.dataset_url, time.monotonic() - started)
    return {"reference": reference.dataset_url, "melodies": len(reference.copy_index)}


def _scorer(generator):
    from melodyflow.models.evaluation.ranking import reference_for_bundle, score_generated

    reference, _ = reference_for_bundle(generator.metadata)  # built by ranking_reference_task
    return lambda results: score_generated(generator, results, reference)


@task(name="generate-for-primer", cache_policy=NONE, task_run_name="generate-{primer_id}")
def generate_task(primer_id: str, primer_url: str | None, events: list[int] | None, bundle: str, output: str,
                  options, qpm: float | None, continuation_only: bool, window=None, audio=None,
                  keep_best: int | None = None) -> dict:
    from melodyflow.models.generation.sampling import load_generator
    from melodyflow.models.generation.outputs import generate_for_primer, load_primer
    from melodyflow.models.generation.primers import PrimerError, primer_from_events

    logger = get_run_logger()
    generator = load_generator(bundle)  # once per process, shared by mapped tasks
    primer, error = None, None
    try:
        if primer_url is not None:
            primer = load_primer(primer_url, window)
        elif events is not None:
            primer = primer_from_events(events, qpm or 120.0)
        else:
            primer = primer_from_events([60], qpm or 120.0)  # Magenta's default: a single middle C
    except PrimerError as exc:
        error = str(exc)
    entry = generate_for_primer(generator, primer_id, primer, output, options,
                                source=primer_url or ("--primer-melody" if events else "default: middle C"),
                                qpm=qpm, continuation_only=continuation_only,
                                seed_offset=_seed_offset(primer_id), error=error, audio=audio,
                                scorer=_scorer(generator), keep_best=keep_best)
    if entry["status"] == "ok":
        logger.info("%s: %d of %d candidates written to %s", primer_id, len(entry["outputs"]),
                    entry["candidates"], storage.join(output, primer_id))
    else:
        logger.warning("%s: skipped: %s", primer_id, entry["error"])
    return entry


@flow(name="generate-melodies")
def generate_melodies(
    bundle: str,
    output: str,
    primers: str | None = None,
    primer_melody: list[int] | None = None,
    num_outputs: int = GenerationOptions.num_outputs,
    num_steps: int = GenerationOptions.num_steps,
    temperature: float = GenerationOptions.temperature,
    beam_size: int = GenerationOptions.beam_size,
    branch_factor: int = GenerationOptions.branch_factor,
    steps_per_iteration: int = GenerationOptions.steps_per_iteration,
    qpm: float | None = None,
    seed: int = GenerationOptions.seed,
    continuation_only: bool = False,
    primer_bars: int | None = None,
    primer_start_bar: int | None = None,
    audio: bool = True,
    keep_best: int | None = None,
) -> dict:
    """Generate ``num_outputs`` melodies per primer from a bundle (or a RUN_DIR's latest bundle), score
    and rank them (``docs/evaluation.md``); with ``keep_best`` K keep only the K best of each primer.

    ``primer_bars`` (and ``primer_start_bar``) take that window of each primer file instead of all of it.
    Writes a WAV beside every MIDI unless ``audio`` is false, ``OUT/index.json``, and the gallery
    ``OUT/index.html``.
    """
    from melodyflow.models.bundles.bundle import resolve_bundle
    from melodyflow.models.generation.gallery import GALLERY, write_gallery
    from melodyflow.models.generation.primers import PrimerWindow

    logger = get_run_logger()
    options = GenerationOptions(num_outputs=num_outputs, num_steps=num_steps, temperature=temperature,
                                beam_size=beam_size, branch_factor=branch_factor,
                                steps_per_iteration=steps_per_iteration, seed=seed)
    if keep_best is not None and not 1 <= keep_best <= num_outputs:
        raise ValueError(f"--keep-best must be between 1 and --num-outputs ({num_outputs}), got {keep_best}")
    bundle_url = resolve_bundle(bundle)
    window = PrimerWindow(primer_bars, primer_start_bar) if primer_bars else None
    from melodyflow.models.quiet_import import import_tensorflow

    import_tensorflow()  # before anything loads the model, and before the mapped tasks' threads need it
    scoring = ranking_reference_task(bundle_url)
    jobs = _primer_jobs(primers, primer_melody, logger)
    from melodyflow.models.generation.outputs import clear_output

    clear_output(output, [j[0] for j in jobs])  # unpublished, and a killed run's leftovers gone, before any write
    synth = _synthesizer(audio, logger)
    futures = generate_task.map([j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs],
                                unmapped(bundle_url), unmapped(output), unmapped(options), unmapped(qpm),
                                unmapped(continuation_only), unmapped(window), unmapped(synth), unmapped(keep_best))
    entries = [f.result() for f in futures]
    from melodyflow.models.evaluation.ranking import ScoreWeights

    weights = ScoreWeights()
    index = {"bundle": bundle_url, "primers_spec": primers,
             "options": {**options.__dict__, "qpm": qpm, "continuation_only": continuation_only,
                         "primer_window": window.describe() if window else None, "keep_best": keep_best},
             "scoring": {"formula": f"score = {weights.formula()}", "weights": weights.__dict__,
                         "reference": scoring["reference"], "reference_missing_because": scoring.get("why"),
                         "docs": "docs/evaluation.md"},
             "audio": {**synth.to_dict(), "description": synth.describe()} if synth else None,
             "primers": sorted(entries, key=lambda e: e["id"]),
             "counts": {"primers": len(entries), "ok": sum(e["status"] == "ok" for e in entries),
                        "failed": sum(e["status"] != "ok" for e in entries),
                        "outputs": sum(len(e["outputs"]) for e in entries)}}
    write_gallery(output, index)
    # The marker, last; it names no location of its own, so the same run into another OUT writes the same bytes.
    storage.write_text(storage.join(output, INDEX), json.dumps(index, indent=2, sort_keys=True))
    index["gallery"] = storage.join(output, GALLERY)
    logger.info("Gallery: %s", index["gallery"])
    _publish(index, output)
    index["index"] = storage.join(output, INDEX)
    return index


def _primer_jobs(primers: str | None, primer_melody: list[int] | None,
                 logger) -> list[tuple[str, str | None, list[int] | None]]:
    """``(primer id, primer file, primer events)`` per primer to generate for."""
    from melodyflow.models.generation.primers import primer_id

    if primers:
        jobs: list[tuple[str, str | None, list[int] | None]] = [
            (primer_id(rel), url, None) for rel, url in find_primers(primers)]
        logger.info("%d primer file(s) from %s", len(jobs), primers)
        return jobs
    if primer_melody:
        return [("primer-melody", None, list(primer_melody))]
    logger.warning("No primer given: generating from a single middle C, as Magenta does")
    return [("middle-c", None, None)]


def _synthesizer(audio: bool, logger):
    from melodyflow.models.generation.audio import choose_synthesizer

    if not audio:
        logger.info("Audio off: no WAV files")
        return None
    synth = choose_synthesizer()
    logger.info("Audio: WAV files rendered by %s", synth.describe())
    if synth.name == "additive":
        logger.warning("No soundfont synthesizer here: WAVs use a plain additive voice (install FluidSynth for "
                       "General MIDI instruments)")
    return synth


def _publish(index: dict, output: str) -> None:
    """The table of outputs and a markdown gallery (best piano rolls embedded, links where a browser can go)."""
    from melodyflow.models.generation.gallery import ranked_outputs

    rows = [{"primer": e["id"], "output": o["midi"], "rank": o.get("rank"), "score": o.get("score"),
             "log_likelihood": round(o["log_likelihood"], 3), "notes": o["notes"]}
            for e in index["primers"] for o in ranked_outputs(e)]
    create_table_artifact(key="generated-outputs", table=rows or [{"primer": "-", "output": "none"}],
                          description="Generated melodies, best first when ranked")
    audio = index["audio"]["description"] if index["audio"] else "off (--no-audio)"
    lines = [f"# Generated melodies from `{index['bundle']}`", "",
             f"- **Gallery** (piano rolls, players, MIDI): {link(index['gallery'], 'index.html')}",
             f"- **Audio:** {audio}", ""]
    images = 0
    for e in index["primers"]:
        if e["status"] != "ok":
            lines.append(f"- **{e['id']}** — failed: {e['error']}")
            continue
        lines.append(f"## {e['id']}")
        outputs = ranked_outputs(e)
        if outputs and images < MAX_ARTIFACT_IMAGES:
            images += 1
            png = storage.read_bytes(storage.join(output, outputs[0]["png"]))
            lines += [markdown_image(png, f"piano roll of {outputs[0]['midi']}"), ""]
        for o in outputs:
            score = f"score {o['score']:.3f}, " if o.get("score") is not None else ""
            files = [link(storage.join(output, o[kind]), kind.upper()) for kind in ("midi", "wav") if o.get(kind)]
            # Local files: the paths are in the gallery; a browser cannot follow them from the UI anyway.
            links = ": " + " · ".join(files) if http_url(output) else ""
            lines.append(f"- `{o['midi']}` {score}ll {o['log_likelihood']:.1f}{links}")
    create_markdown_artifact(key="generation-gallery", markdown="\n".join(lines), description="Generated outputs")
