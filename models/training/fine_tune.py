"""Fine-tuning: start a new run from a bundle's weights (``train --init-from BUNDLE_OR_RUN_DIR``).

The new run has a fresh optimizer and starts at step 0 in its own RUN_DIR; only the weights come from
the parent.  The parent must be a bundle of the same config and encoding as the dataset, and its
architecture is kept: the hparams are the parent's, and an override may change only keys outside
``ARCHITECTURE`` (learning rate, batch size, dropout, clipping, warm-up).  The new bundle records the
parent (``parent``) and the chain of bundles before it (``lineage``).
"""

from __future__ import annotations

from dataclasses import dataclass

from melodyflow.models.hparams import AnyHParams, HParamsError, hparams_from_dict
from melodyflow.transforms.io import storage

ENCODING_KEYS = ("encoding", "input_size", "num_classes", "min_note", "max_note", "transpose_to_key",
                 "steps_per_quarter")


class FineTuneError(ValueError):
    """The parent bundle cannot seed this run (other config, encoding or architecture)."""


@dataclass(frozen=True)
class Parent:
    url: str
    metadata: dict

    @property
    def config(self) -> str:
        return str(self.metadata["config"])

    def record(self) -> dict:
        """What the child's bundle.json says about its parent."""
        m = self.metadata
        return {"url": self.url, "config": m["config"], "step": m.get("step"), "version": m.get("version"),
                "dataset_fingerprint": (m.get("dataset") or {}).get("fingerprint"),
                "eval_loss": (m.get("eval_metrics") or {}).get("loss")}

    def lineage(self) -> list[str]:
        """Bundle URLs from the oldest ancestor to the parent."""
        return [*self.metadata.get("lineage", []), self.url]


def open_parent(bundle_or_run_dir: str) -> Parent:
    """The parent's metadata (a bundle URL, or a RUN_DIR's latest bundle); raises BundleError if absent."""
    from melodyflow.models.bundles.bundle import check_bundle

    metadata = check_bundle(bundle_or_run_dir)
    return Parent(url=storage.absolute(metadata.pop("url")), metadata=metadata)


def fine_tune_hparams(parent: Parent, overrides: str | dict | None) -> AnyHParams:
    """The parent's hparams with ``overrides`` applied; refuses a change of architecture."""
    base = hparams_from_dict(parent.config, parent.metadata["hparams"])
    try:
        merged = base.override(overrides)
    except HParamsError as exc:
        raise FineTuneError(str(exc)) from None
    before, after = base.architecture(), merged.architecture()
    changed = [k for k in before if before[k] != after[k]]
    if changed:
        raise FineTuneError(f"--init-from keeps the parent's architecture; cannot change {', '.join(changed)} "
                            f"(parent {parent.url} has {before})")
    return merged


def check_compatible(parent: Parent, config: str, info: dict, hparams: AnyHParams) -> None:
    """Refuse a parent of another config, encoding or architecture than this run's."""
    if parent.config != config:
        raise FineTuneError(f"--init-from {parent.url} is a {parent.config} bundle, not {config}; "
                            f"train with --config {parent.config} or choose another bundle")
    differ = [k for k in ENCODING_KEYS if k in parent.metadata and parent.metadata[k] != info.get(k)]
    if differ:
        theirs = ", ".join(f"{k}={parent.metadata[k]!r}" for k in differ)
        ours = ", ".join(f"{k}={info.get(k)!r}" for k in differ)
        raise FineTuneError(f"--init-from {parent.url} was trained on another encoding ({theirs}) than the "
                            f"dataset {info.get('url')} ({ours})")
    parent_hparams = hparams_from_dict(parent.config, parent.metadata["hparams"])
    if type(parent_hparams) is not type(hparams) or parent_hparams.architecture() != hparams.architecture():
        raise FineTuneError(f"--init-from {parent.url} has architecture {parent_hparams.architecture()}; "
                            f"this run asks for {hparams.architecture()}")


def load_parent_weights(parent: Parent, model) -> None:
    """Copy the parent's weights into ``model`` (same architecture, any dropout)."""
    from melodyflow.models.bundles.bundle import load_bundle

    parent_model, _ = load_bundle(parent.url)
    model.set_weights(parent_model.get_weights())
