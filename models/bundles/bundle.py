"""Model bundles: everything generation needs, versioned under ``RUN_DIR/bundles/vNNNN/``.

A bundle is ``bundle.json`` (config and encoding, hparams, step, eval metrics, dataset info; for a
fine-tuned model its ``parent`` and ``lineage``) plus ``model.weights.h5``.  ``RUN_DIR/bundles/LATEST``
names the newest version and is written last.  Keys added later are optional: older bundles load.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from melodyflow.models.hparams import hparams_from_dict
from melodyflow.transforms.io import storage

BUNDLES = "bundles"
LATEST = "LATEST"
METADATA = "bundle.json"
WEIGHTS = "model.weights.h5"
BUNDLE_FORMAT = 1


class BundleError(RuntimeError):
    """A bundle is missing or incomplete."""


_VERSION_NAME = re.compile(r"v(\d{4,})")  # a bundle version directory: v0001, v0002, ...


def _versions(run_dir: str) -> list[int]:
    out = []
    for url in storage.list_dir(storage.join(run_dir, BUNDLES)):
        m = _VERSION_NAME.fullmatch(url.rstrip("/").rsplit("/", 1)[-1])
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _latest_name(run_dir: str) -> str | None:
    """What ``RUN_DIR/bundles/LATEST`` says (``""`` when it is not text); None when there is no ``LATEST``."""
    try:
        return storage.read_text(storage.join(run_dir, BUNDLES, LATEST)).strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""


def _published_version(run_dir: str) -> int:
    """The version ``LATEST`` names (0 when none is published); every existing one if ``LATEST`` is unreadable,
    so a damaged pointer never costs a finished training run its export."""
    name = _latest_name(run_dir)
    if name is None:
        return 0
    m = _VERSION_NAME.fullmatch(name)
    return int(m.group(1)) if m else max(_versions(run_dir), default=0)


def export_bundle(model, run_dir: str, metadata: dict) -> str:
    """Write the next version after the published one, ``LATEST`` last.  A version directory past ``LATEST``
    is what a killed export left (``LATEST`` never named it): it is removed and written again, so the re-run
    gives the version number, and the files, a run without the kill gives."""
    version = _published_version(run_dir) + 1
    url = storage.join(run_dir, BUNDLES, f"v{version:04d}")
    for stale in _versions(run_dir):
        if stale >= version:
            storage.remove_tree(storage.join(run_dir, BUNDLES, f"v{stale:04d}"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, WEIGHTS)
        model.save_weights(path)
        with open(path, "rb") as fh:
            storage.write_bytes(storage.join(url, WEIGHTS), fh.read())
    meta = {**metadata, "version": version, "bundle_format": BUNDLE_FORMAT}
    storage.write_text(storage.join(url, METADATA), json.dumps(meta, indent=2, sort_keys=True))
    storage.write_text(storage.join(run_dir, BUNDLES, LATEST), f"v{version:04d}\n")
    return url


def resolve_bundle(bundle_or_run_dir: str) -> str:
    """Accept a bundle URL or a RUN_DIR (then its LATEST bundle)."""
    if storage.exists(storage.join(bundle_or_run_dir, METADATA)):
        return bundle_or_run_dir
    name = _latest_name(bundle_or_run_dir)
    if name is None:
        raise BundleError(f"{bundle_or_run_dir} is neither a bundle nor a run directory with a finished "
                          "bundle (train it with `melodyflow train`)")
    url = storage.join(bundle_or_run_dir, BUNDLES, name)
    if not _VERSION_NAME.fullmatch(name) or not storage.exists(storage.join(url, METADATA)):
        latest = storage.join(bundle_or_run_dir, BUNDLES, LATEST)
        raise BundleError(f"{latest} names {name[:40]!r}, which is not a bundle under {bundle_or_run_dir}/{BUNDLES}: "
                          "the run directory is damaged")
    return url


REQUIRED_KEYS = ("config", "hparams", "input_size", "num_classes")


def read_metadata(url: str) -> dict:
    """A bundle's ``bundle.json``, or a :class:`BundleError` that says what is wrong with it."""
    where = storage.join(url, METADATA)
    try:
        meta = json.loads(storage.read_text(where))
    except FileNotFoundError:
        raise BundleError(f"{url} is not a bundle: it has no {METADATA}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where} is corrupt: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise BundleError(f"{where} is not a bundle's metadata: it lacks {', '.join(missing)}")
    return meta


def check_bundle(bundle_or_run_dir: str) -> dict:
    """The metadata of a bundle (or a RUN_DIR's latest) whose files are whole, without TensorFlow: a command
    checks its bundle with this before it starts, so a damaged one fails in one line, not in a task."""
    import io

    import h5py

    url = resolve_bundle(bundle_or_run_dir)
    meta = read_metadata(url)
    where = storage.join(url, WEIGHTS)
    try:
        with h5py.File(io.BytesIO(storage.read_bytes(where)), "r"):
            pass
    except FileNotFoundError:
        raise BundleError(f"{url} is incomplete: it has no {WEIGHTS}") from None
    except OSError as exc:  # h5py's error for truncated or foreign files
        raise BundleError(f"{where} is corrupt or truncated: {str(exc).splitlines()[0]}") from None
    return {**meta, "url": url}


def load_bundle(bundle_or_run_dir: str):
    """``(keras model with weights, metadata)``."""
    from melodyflow.models.network.registry import build_network

    url = resolve_bundle(bundle_or_run_dir)
    meta = read_metadata(url)
    model = build_network(meta["input_size"], meta["num_classes"], hparams_from_dict(meta["config"], meta["hparams"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, WEIGHTS)
        with open(path, "wb") as fh:
            fh.write(storage.read_bytes(storage.join(url, WEIGHTS)))
        try:
            model.load_weights(path)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{storage.join(url, WEIGHTS)} does not load into the model {METADATA} describes: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    meta["url"] = url
    return model, meta


def finished_bundle(run_dir: str, num_training_steps: int, dataset_fingerprint: str,
                    hparams: dict | None = None, time_budget_s: float | None = None) -> dict | None:
    """Metadata of RUN_DIR's latest bundle if it already covers this many steps on this dataset
    (and, when given, with these hparams), or, with ``time_budget_s``, stopped at that time budget."""
    try:
        url = resolve_bundle(run_dir)
    except BundleError:
        return None
    meta = json.loads(storage.read_text(storage.join(url, METADATA)))
    if hparams is not None and meta.get("hparams") != hparams:
        return None
    budget_spent = time_budget_s is not None and meta.get("stop_reason") == "time_budget" and \
        meta.get("time_budget_s") == time_budget_s
    if (meta.get("step", 0) >= num_training_steps or budget_spent) and \
            meta.get("dataset", {}).get("fingerprint") == dataset_fingerprint:
        meta["url"] = url
        return meta
    return None
