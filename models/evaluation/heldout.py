"""Held-out metrics of a bundle: training's own evaluation, over the whole eval split.

``melodyflow train`` evaluates with ``models/training/steps.make_evaluator``; this runs that same
function once on a loaded bundle, so the figures mean exactly what training's eval figures mean: loss
(mean cross-entropy per predicted step, nats), perplexity (``exp(loss)``), accuracy, event accuracy
and no-event accuracy, over every non-padded step of every eval melody.
"""

from __future__ import annotations

from melodyflow.models.training.input_pipeline import stage_locally
from melodyflow.models.training.loop import no_event_label
from melodyflow.models.training.steps import make_evaluator
from melodyflow.transforms.io import storage


class BundleMismatchError(ValueError):
    """The bundle was trained for another config or encoding than the dataset holds."""


def check_bundle_matches(meta: dict, info: dict) -> None:
    from melodyflow.transforms.melodies.configs import get_config

    data_config = get_config(meta["config"]).name if meta.get("config") else None  # music_transformer: basic_rnn's
    for key, value in (("config", data_config), ("input_size", meta.get("input_size")),
                       ("num_classes", meta.get("num_classes"))):
        if value != info.get(key):
            raise BundleMismatchError(
                f"the bundle {meta.get('url')} has {key} {value!r} but the dataset {info['url']} has "
                f"{info.get(key)!r}; evaluate it against a {meta.get('config')} dataset")


def heldout_metrics(model, meta: dict, info: dict) -> dict:
    """Training's eval metrics of ``model`` (a loaded bundle) on ``info``'s eval split, plus counts."""
    check_bundle_matches(meta, info)
    paths = [stage_locally(storage.join(info["url"], name)) for name in info["shards"]["eval"]]
    metrics = make_evaluator(model, paths=paths if info["counts"]["eval"] else [], fmt=info["format"],
                             input_size=info["input_size"], batch_size=int(meta["hparams"]["batch_size"]),
                             no_event=no_event_label(info))()
    same_data = meta.get("dataset", {}).get("fingerprint") == info["fingerprint"]
    return {**metrics, "melodies": info["counts"]["eval"], "bundle_step": meta.get("step"),
            "same_dataset_as_training": same_data}
