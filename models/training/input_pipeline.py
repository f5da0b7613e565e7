"""tf.data input over melody datasets written by ``melodyflow dataset`` (either record format).

TensorFlow cannot read ``gs://`` from an emulator and has no ``s3://`` at all, so remote shards are staged
to a local cache through fsspec first (once per shard: the cache key is the URL and size).
"""

from __future__ import annotations

import hashlib
import os

import tensorflow as tf

from melodyflow.transforms.io import storage

# Training batches group melodies of similar length, so a batch is padded only to its longest melody and
# that is close to the others. One bucket per 32 steps (2 bars of 4/4): on the demo corpus a batch of 128
# then averages 206 steps against 225 with boundaries at 64/128/192/256/384, and 436 against 471 on
# Nottingham (its mean length is 429), where nothing shorter than the melodies themselves is possible.
# Finer buckets gained under 3% more and hold more partly filled batches in memory.
BUCKET_BOUNDARIES = tuple(range(32, 512, 32))

# Batches made ahead of the step that needs them. A fixed number, with tf.data's autotuning off: an
# autotuned iterator runs an optimizer thread whose timed waits grow to a minute, and deleting the
# iterator blocks on that thread, holding Python's lock: at the end of training this cost 17-35 s of a
# whole idle process in 9 runs of 24 (2 cores, TF 2.21; native stacks in docs/models.md). A
# batch takes about 10 ms of CPU to make against 300 ms and more to train on, so two ahead never starve.
PREFETCH_BATCHES = 2


def cache_root() -> str:
    return storage.cache_dir("staged")


def stage_locally(url: str) -> str:
    """A local path holding ``url``'s bytes; local paths are returned as they are."""
    if storage.protocol_of(url) == "file":
        return url
    data = storage.read_bytes(url)
    key = hashlib.sha256(f"{url}\n{len(data)}\n{hashlib.sha256(data).hexdigest()}".encode()).hexdigest()[:24]
    path = os.path.join(cache_root(), key, url.rsplit("/", 1)[-1])
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def _parse_sequence_example(input_size: int):
    features = {"inputs": tf.io.FixedLenSequenceFeature([input_size], tf.float32),
                "labels": tf.io.FixedLenSequenceFeature([], tf.int64)}

    def parse(serialized):
        _, seq = tf.io.parse_single_sequence_example(serialized, sequence_features=features)
        return seq["inputs"], seq["labels"]

    return parse


def _parse_compact(input_size: int):
    features = {name: tf.io.VarLenFeature(tf.int64) for name in ("labels", "input_lengths", "input_codes")}

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        labels = tf.sparse.to_dense(ex["labels"])
        lengths = tf.sparse.to_dense(ex["input_lengths"])
        codes = tf.sparse.to_dense(ex["input_codes"])
        steps = tf.shape(labels, out_type=tf.int64)[0]
        rows = tf.repeat(tf.range(steps), lengths)
        columns = codes // 2
        values = 1.0 - 2.0 * tf.cast(codes % 2, tf.float32)
        inputs = tf.scatter_nd(tf.stack([rows, columns], axis=1), values, tf.stack([steps, input_size]))
        return inputs, labels

    return parse


def parse_fn(fmt: str, input_size: int):
    if fmt == "compact":
        return _parse_compact(input_size)
    if fmt == "sequence-example":
        return _parse_sequence_example(input_size)
    raise ValueError(f"unknown dataset format {fmt!r}")


def make_dataset(paths: list[str], *, fmt: str, input_size: int, batch_size: int, training: bool,
                 seed: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of ``(inputs [B,T,D] float32, labels [B,T] int64, lengths [B] int32)``, zero-padded.

    Training: shuffled, repeated, bucketed by length so little compute goes to padding.
    Evaluation: one pass in file order, the last batch may be smaller than ``batch_size``.
    ``skip_batches`` replays the training stream past batches a resumed run already trained on, so a
    run killed and resumed at step k sees the same batches as one that never stopped.
    """
    ds = tf.data.TFRecordDataset(sorted(paths))
    ds = ds.map(parse_fn(fmt, input_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x, y: (x, y, tf.shape(y, out_type=tf.int32)[0]))
    padded_shapes: tuple[list[int | None], list[int | None], list[int]] = ([None, input_size], [None], [])
    if training:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda x, y, n: n,
            bucket_boundaries=list(BUCKET_BOUNDARIES),
            bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1),
            padded_shapes=padded_shapes, drop_remainder=False)
        if skip_batches:
            ds = ds.skip(skip_batches)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes)
    options = tf.data.Options()
    options.autotune.enabled = False  # AUTOTUNE parallelism then means one per core (see PREFETCH_BATCHES)
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)
