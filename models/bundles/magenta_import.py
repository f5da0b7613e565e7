"""Import a Magenta Melody RNN (``.mag`` bundle or ``melody_rnn_train`` run directory) as a melodyflow bundle.

The config comes from the bundle's generator id (Magenta's config name) or, for a run directory, from
``--config``; its encoding, pitch range and key are melodyflow's copy of Magenta's config, so inputs and
outputs mean the same.  Layer sizes come from the checkpoint's shapes; the other hparams (used only to
fine-tune) are Magenta's defaults for the config unless overridden.  The weights are mapped by
:mod:`~melodyflow.models.bundles.magenta_weights`, and every import checks itself: the Keras model's
probabilities on a probe melody must equal Magenta's equations (computed exactly from the raw tensors)
within :data:`SELF_CHECK_TOLERANCE`, and the difference is recorded in ``bundle.json``.

Output: ``OUT/bundles/v0001/{bundle.json, model.weights.h5}`` and ``OUT/bundles/LATEST`` — the layout
``melodyflow train`` writes, so every command that takes a bundle or a RUN_DIR takes it.  It appears
complete or not at all: built in a temporary sibling and renamed (object stores: ``LATEST`` last, and the
partial prefix removed on failure).  ``bundle.json``'s ``source`` records where the model came from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from melodyflow.models.bundles.bundle import BUNDLE_FORMAT, BUNDLES, LATEST, METADATA, WEIGHTS
from melodyflow.models.bundles.magenta_checkpoint import MagentaImportError, MagentaSource, read_source
from melodyflow.models.bundles.magenta_weights import (KerasWeights, WeightMappingError, magenta_softmax,
                                                       map_weights, uses_attention)
from melodyflow.models.hparams import HParams, HParamsError, default_hparams
from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.configs import CONFIGS, MelodyConfig

IMPORTABLE = ("basic_rnn", "mono_rnn", "lookback_rnn")
# A mapping error (a gate out of order, the forget bias lost) moves probabilities by 1e-2 or more; float32
# rounding, even where a model amplifies it (measured up to 7e-5 for a plain float32 evaluation of a trained
# basic_rnn), stays far below this, so a correct import is never refused for it.
SELF_CHECK_TOLERANCE = 1e-3
VERSION = "v0001"
# A melody that touches rests, repeats and leaps: every config's encoder turns it into a probe input.
PROBE_EVENTS = (60, -2, 62, -2, 64, -1, 65, -2, 67, -2, -2, -2, 72, 71, -2, 69, 67, -1, -2, -2,
                60, -2, 62, -2, 64, -1, 65, -2, 55, -2, -2, -2)
ATTENTION_REFUSED = (
    "attention_rnn models cannot be imported: Magenta's AttentionCellWrapper mixes an attention over the "
    "first LSTM's last attn_length outputs back into that LSTM's inputs and outputs, and melodyflow's "
    "attention_rnn is a different layer, so these weights have no equivalent. The import is refused rather "
    "than approximated; train attention_rnn with `melodyflow train --config attention_rnn` instead")

__all__ = ["IMPORTABLE", "ImportPlan", "MagentaImportError", "check_target", "import_magenta", "plan_import"]


@dataclass(frozen=True)
class ImportPlan:
    """A validated import, ready to build and write (nothing has been written yet)."""

    source: MagentaSource
    config: MelodyConfig
    hparams: HParams
    weights: KerasWeights


def _resolve_config(source: MagentaSource, config: str | None) -> MelodyConfig:
    known = ", ".join(IMPORTABLE)
    if config is not None and config not in CONFIGS:
        raise MagentaImportError(f"--config {config!r} is not a melodyflow config; importable: {known}")
    if source.generator_id is None and config is None:
        raise MagentaImportError(f"{source.location}: a Magenta run directory does not record its config; "
                                 f"pass --config (one of {known})")
    generator_id = source.generator_id
    if generator_id is not None and generator_id in CONFIGS and config not in (None, generator_id):
        raise MagentaImportError(f"{source.location} holds a {generator_id} model; --config {config} contradicts it")
    name = config or generator_id
    if name == "attention_rnn" or uses_attention(source.tensors):
        raise MagentaImportError(f"{source.location}: {ATTENTION_REFUSED}")
    if name not in IMPORTABLE:
        raise MagentaImportError(f"{source.location}: unknown generator id {generator_id!r}; melodyflow imports "
                                 f"Magenta's melody_rnn configs {known}. If the model was trained with one of "
                                 "their encodings under another id, pass --config NAME")
    return CONFIGS[name]


def _resolve_hparams(config: MelodyConfig, weights: KerasWeights, overrides: str | None) -> HParams:
    inferred = default_hparams(config.name).override({"rnn_layer_sizes": list(weights.rnn_layer_sizes)})
    try:
        hparams = inferred.override(overrides)
    except HParamsError as exc:
        raise MagentaImportError(f"--hparams: {exc}") from None
    for key in ("rnn_layer_sizes", "attn_length"):
        given, found = hparams.to_dict()[key], inferred.to_dict()[key]
        if given != found:
            raise MagentaImportError(f"--hparams {key}={given} contradicts the checkpoint, which has {found}")
    assert isinstance(hparams, HParams)  # the LSTM configs' hparams
    return hparams


def plan_import(location: str, config: str | None = None, hparams: str | None = None) -> ImportPlan:
    """Read and check everything; raises :class:`MagentaImportError` with the reason, writes nothing."""
    source = read_source(location)
    melody_config = _resolve_config(source, config)
    if source.graph_input_size is not None and source.graph_input_size != melody_config.input_size:
        raise MagentaImportError(f"{location}: shape mismatch: its graph takes {source.graph_input_size} inputs per "
                                 f"step, melodyflow's {melody_config.name} encoding has {melody_config.input_size}")
    try:
        weights = map_weights(source.tensors, melody_config.input_size, melody_config.num_classes,
                              melody_config.name)
    except WeightMappingError as exc:
        raise MagentaImportError(f"{location}: {exc}") from None
    return ImportPlan(source=source, config=melody_config, hparams=_resolve_hparams(melody_config, weights, hparams),
                      weights=weights)


def probe_inputs(config: MelodyConfig) -> np.ndarray:
    """``[steps, input_size]``: :data:`PROBE_EVENTS` squashed and encoded as Magenta would."""
    from note_seq.melodies_lib import Melody

    melody = Melody(list(PROBE_EVENTS))
    melody.squash(config.min_note, config.max_note, config.transpose_to_key)
    return np.asarray(config.encoder_decoder.get_inputs_batch([melody], full_length=True)[0], np.float32)


def build_model(plan: ImportPlan):
    """The Keras model with the mapped weights, and its max |Δp| against Magenta's equations on the probe."""
    from melodyflow.models.network.melody_rnn import build_model as build_melody_rnn

    model = build_melody_rnn(plan.config.input_size, plan.config.num_classes, plan.hparams)
    for i, layer_weights in enumerate(plan.weights.lstm):
        model.get_layer(f"lstm_{i}").set_weights(list(layer_weights))
    model.get_layer("logits").set_weights(list(plan.weights.logits))
    inputs = probe_inputs(plan.config)
    logits = np.asarray(model(inputs[None], training=False))[0].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    delta = float(np.max(np.abs(probs - magenta_softmax(plan.source.tensors, inputs))))
    if not delta <= SELF_CHECK_TOLERANCE:
        raise MagentaImportError(f"{plan.source.location}: the imported model's probabilities differ from Magenta's "
                                 f"by {delta:.2e} (> {SELF_CHECK_TOLERANCE:g}); nothing was written")
    return model, delta


def bundle_metadata(plan: ImportPlan, self_check: float) -> dict:
    """``bundle.json``: the fields ``melodyflow train`` writes, plus ``source`` (the Magenta lineage)."""
    c, s = plan.config, plan.source
    return {
        "config": c.name, "encoding": c.encoding, "input_size": c.input_size, "num_classes": c.num_classes,
        "min_note": c.min_note, "max_note": c.max_note, "transpose_to_key": c.transpose_to_key,
        "steps_per_quarter": c.steps_per_quarter, "hparams": plan.hparams.to_dict(), "step": 0,
        "eval_metrics": {}, "train_metrics": {}, "learning_rate": plan.hparams.learning_rate, "dataset": {},
        "divergence_events": [], "seed": None, "version": 1, "bundle_format": BUNDLE_FORMAT,
        "source": {
            "kind": f"magenta_{s.kind}", "location": s.location, "sha256": s.sha256,
            "generator_id": s.generator_id, "generator_description": s.generator_description,
            "bundle_description": s.bundle_description, "checkpoint": s.checkpoint,
            "magenta_global_step": s.global_step, "tensor_naming": plan.weights.naming,
            "tensors": list(plan.weights.tensor_names),
            "hparams_from": "rnn_layer_sizes from the checkpoint's shapes; the rest Magenta's defaults for "
                            "the config, with --hparams overrides",
            "self_check": {"probe_steps": len(PROBE_EVENTS), "max_abs_prob_diff": self_check,
                           "tolerance": SELF_CHECK_TOLERANCE},
        },
    }


def _existing_import(out: str) -> dict | None:
    """``bundle.json`` of a finished import at ``out`` (None when there is none)."""
    try:
        name = storage.read_text(storage.join(out, BUNDLES, LATEST)).strip()
        return json.loads(storage.read_text(storage.join(out, BUNDLES, name, METADATA)))
    except (FileNotFoundError, ValueError):
        return None


def _partial_import(out: str) -> bool:
    """``out`` on an object store holds nothing but part of an import's files and no ``LATEST``: what an
    import killed mid-upload leaves (a local import is built aside and renamed, so it leaves none)."""
    if storage.protocol_of(out) == "file" or not storage.list_dir(out):
        return False
    ours = {f"{BUNDLES}/{VERSION}/{WEIGHTS}", f"{BUNDLES}/{VERSION}/{METADATA}"}
    return all(rel in ours for rel, _ in storage.walk_files(out))


def _weights_bytes(model) -> bytes:
    with tempfile.TemporaryDirectory(prefix="melodyflow-import-") as tmp:
        path = os.path.join(tmp, WEIGHTS)
        model.save_weights(path)
        with open(path, "rb") as fh:
            return fh.read()


def _write_tree(root: str, weights: bytes, metadata: dict) -> None:
    storage.write_bytes(storage.join(root, BUNDLES, VERSION, WEIGHTS), weights)
    storage.write_text(storage.join(root, BUNDLES, VERSION, METADATA), json.dumps(metadata, indent=2, sort_keys=True))
    storage.write_text(storage.join(root, BUNDLES, LATEST), VERSION + "\n")


def write_bundle(out: str, weights: bytes, metadata: dict) -> str:
    """Publish ``OUT/bundles/v0001`` all at once; on any failure nothing is left at ``out``."""
    if storage.protocol_of(out) != "file":
        if _partial_import(out):
            storage.remove_tree(out)
        try:
            _write_tree(out, weights, metadata)  # objects appear whole; LATEST, written last, is the marker
        except BaseException:
            storage.remove_tree(out)
            raise
        return storage.join(out, BUNDLES, VERSION)
    target = os.path.abspath(storage.local_path(out))
    parent = os.path.dirname(target)
    created = [] if os.path.isdir(parent) else [parent]
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(target)}.importing-"
    for stale in os.listdir(parent):  # a killed import into the same OUT left its build directory
        if stale.startswith(prefix):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        _write_tree(tmp, weights, metadata)
        os.rename(tmp, target)  # replaces an empty directory; a non-empty one was refused before
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for directory in created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return os.path.join(out, BUNDLES, VERSION)


def check_target(out: str, plan: ImportPlan) -> dict | None:
    """The finished import of the same model at ``out`` (to skip), None when ``out`` is free; else an error."""
    existing = _existing_import(out)
    if existing is not None:
        src = existing.get("source") or {}
        if (src.get("sha256") == plan.source.sha256 and existing.get("config") == plan.config.name
                and existing.get("hparams") == plan.hparams.to_dict()):
            return existing
    if storage.list_dir(out) and not _partial_import(out):
        raise MagentaImportError(f"{out} already exists and is not empty; an import never overwrites, "
                                 "choose a new directory")
    return None


def import_magenta(location: str, out: str, config: str | None = None, hparams: str | None = None) -> dict:
    """Import ``location`` (``.mag`` file or run directory) into ``out``; returns a summary.

    Re-running with the same model and settings finds the finished import and returns ``up_to_date``.
    """
    plan = plan_import(location, config, hparams)
    existing = check_target(out, plan)
    if existing is not None:
        status, bundle = "up_to_date", storage.join(out, BUNDLES, VERSION)
        delta = existing["source"].get("self_check", {}).get("max_abs_prob_diff")
    else:
        model, delta = build_model(plan)
        bundle = write_bundle(out, _weights_bytes(model), bundle_metadata(plan, delta))
        status = "imported"
    return {
        "status": status, "source": location, "out": out, "bundle": bundle, "config": plan.config.name,
        "generator_id": plan.source.generator_id, "source_kind": plan.source.kind,
        "rnn_layer_sizes": list(plan.weights.rnn_layer_sizes), "input_size": plan.config.input_size,
        "num_classes": plan.config.num_classes, "tensor_naming": plan.weights.naming,
        "tensors": len(plan.weights.tensor_names), "self_check_max_abs_prob_diff": delta,
        "sha256": plan.source.sha256,
    }
