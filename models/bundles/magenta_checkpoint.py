"""Reading Magenta models: ``.mag`` generator bundles and training run directories → named numpy tensors.

A ``.mag`` file is note-seq's ``generator_pb2.GeneratorBundle``: the generator id (Magenta's config
name), descriptions, one TF1 checkpoint file written by ``tf.train.Saver(write_version=V1)`` and the
metagraph.  A run directory holds the V2 checkpoints of ``melody_rnn_train`` under ``train/``.  Both
are read with TensorFlow's own checkpoint reader (no graph is built, nothing of Magenta is imported);
every failure becomes one :class:`MagentaImportError` whose message says what is wrong with which file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

from melodyflow.transforms.io import storage

# Files of one TF checkpoint state ("checkpoint") and of a V2 checkpoint prefix.
_STATE_FILE = "checkpoint"
_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)
_OPTIMIZER_STATE = re.compile(r"(^|/)(Adam(_\d+)?|beta[12]_power)$")
# Anything bigger is not a melody model; refuse before reading it into memory.
MAX_SOURCE_BYTES = 2 * 1024 ** 3


class MagentaImportError(ValueError):
    """A Magenta model cannot be imported; the message names the file and the reason."""


@dataclass(frozen=True)
class MagentaSource:
    """What was read from a Magenta bundle or run directory, before any mapping."""

    kind: str  # "generator_bundle" | "run_dir"
    location: str
    generator_id: str | None  # None for a run directory (Magenta does not record the config there)
    generator_description: str
    bundle_description: str
    tensors: dict[str, np.ndarray] = field(repr=False)
    sha256: str
    checkpoint: str  # "V1 (in bundle)" or the V2 prefix's name
    global_step: int | None = None
    graph_input_size: int | None = None  # last dimension of the metagraph's "inputs" placeholder


def _read_checkpoint(prefix: str, what: str) -> dict[str, np.ndarray]:
    """Every tensor of a V1 or V2 checkpoint at local ``prefix``."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
        return {name: np.asarray(reader.get_tensor(name)) for name in names}
    except (tf.errors.OpError, ValueError) as exc:
        reason = str(exc).replace(prefix, "<checkpoint>").splitlines()[0]
        raise MagentaImportError(f"{what}: its checkpoint is corrupt or truncated ({reason})") from None


def _graph_input_size(metagraph: bytes, what: str) -> int | None:
    """Input width recorded in the metagraph (Magenta's "inputs" collection), for a cross-check."""
    if not metagraph:
        return None
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import meta_graph_pb2

    try:
        meta = meta_graph_pb2.MetaGraphDef.FromString(metagraph)
    except DecodeError:
        raise MagentaImportError(f"{what}: its metagraph is corrupt or truncated") from None
    names = list(meta.collection_def["inputs"].node_list.value) if "inputs" in meta.collection_def else []
    if not names:
        return None
    node_name = names[0].split(":")[0]
    for node in meta.graph_def.node:
        if node.name == node_name and "shape" in node.attr:
            dims = [d.size for d in node.attr["shape"].shape.dim]
            return int(dims[-1]) if dims and dims[-1] > 0 else None
    return None


def read_generator_bundle(url: str) -> MagentaSource:
    """Parse a ``.mag`` file (local path or fsspec URL)."""
    from google.protobuf.message import DecodeError
    from note_seq.protobuf import generator_pb2

    what = f"{url} is not a usable Magenta bundle"
    try:
        size = storage.size(url)
    except FileNotFoundError:
        raise MagentaImportError(f"{url}: no such file") from None
    if size > MAX_SOURCE_BYTES:
        raise MagentaImportError(f"{what}: {size} bytes is far more than any melody model")
    data = storage.read_bytes(url)
    try:
        bundle = generator_pb2.GeneratorBundle.FromString(data)
    except DecodeError as exc:
        raise MagentaImportError(f"{what}: the file is corrupt or truncated ({exc})") from None
    if not bundle.generator_details.id:
        raise MagentaImportError(f"{what}: it names no generator (an empty, truncated or foreign file)")
    if len(bundle.checkpoint_file) != 1 or not bundle.checkpoint_file[0]:
        raise MagentaImportError(f"{what}: it must hold exactly one checkpoint file, found "
                                 f"{sum(1 for c in bundle.checkpoint_file if c)}")
    with tempfile.TemporaryDirectory(prefix="melodyflow-mag-") as tmp:
        prefix = os.path.join(tmp, "model.ckpt")
        with open(prefix, "wb") as fh:
            fh.write(bundle.checkpoint_file[0])
        tensors = _read_checkpoint(prefix, what)
    return MagentaSource(
        kind="generator_bundle", location=url, generator_id=bundle.generator_details.id,
        generator_description=bundle.generator_details.description,
        bundle_description=bundle.bundle_details.description, tensors=tensors,
        sha256=hashlib.sha256(data).hexdigest(), checkpoint="V1 (in bundle)",
        graph_input_size=_graph_input_size(bundle.metagraph_file, what))


def _checkpoint_dir(run_dir: str) -> str:
    for candidate in (storage.join(run_dir, "train"), run_dir):
        if storage.exists(storage.join(candidate, _STATE_FILE)):
            return candidate
    raise MagentaImportError(f"{run_dir} is not a Magenta run directory: no {_STATE_FILE} file in it or in "
                             "its train/ folder (melody_rnn_train writes RUN_DIR/train/checkpoint)")


def read_run_dir(run_dir: str) -> MagentaSource:
    """The latest checkpoint of a ``melody_rnn_train`` run directory (local or fsspec URL)."""
    directory = _checkpoint_dir(run_dir)
    state = storage.read_text(storage.join(directory, _STATE_FILE))
    match = _STATE_LINE.search(state)
    if not match:
        raise MagentaImportError(f"{storage.join(directory, _STATE_FILE)} names no checkpoint")
    name = match.group(1).replace("\\", "/").rsplit("/", 1)[-1]
    files = [u for u in storage.list_dir(directory) if u.rsplit("/", 1)[-1].startswith(name + ".")
             and not u.endswith(".meta")]
    if not any(u.endswith(".index") for u in files):
        raise MagentaImportError(f"{run_dir}: checkpoint {name} is missing (no {name}.index in {directory})")
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="melodyflow-run-") as tmp:
        for url in sorted(files):
            data = storage.read_bytes(url)
            digest.update(data)
            with open(os.path.join(tmp, url.replace("\\", "/").rsplit("/", 1)[-1]), "wb") as fh:
                fh.write(data)
        tensors = _read_checkpoint(os.path.join(tmp, name), f"{run_dir} is not a usable Magenta run directory")
    step = tensors.pop("global_step", None)
    tensors = {k: v for k, v in tensors.items() if not _OPTIMIZER_STATE.search(k)}  # Adam slots, beta powers
    return MagentaSource(
        kind="run_dir", location=run_dir, generator_id=None, generator_description="", bundle_description="",
        tensors=tensors, sha256=digest.hexdigest(), checkpoint=name,
        global_step=int(step) if step is not None else None)


def read_source(location: str) -> MagentaSource:
    """A ``.mag`` file or a run directory, whichever ``location`` is."""
    fs = storage.filesystem(location)
    if storage.retrying("checking", location, lambda: fs.isdir(location)):
        return read_run_dir(location)
    return read_generator_bundle(location)
