"""Importing Magenta ``.mag`` bundles and run directories: same probabilities, same greedy notes, clear errors.

Magenta cannot be installed here, so the fixtures are built the way Magenta builds them: a TF1 graph
(``tf.compat.v1``) with Magenta's variable names, whose LSTM layers are TensorFlow's own fused
``LSTMBlockCell`` kernel (``BasicLSTMCell``'s equations: gates i, j, f, o, forget bias 1.0 added at run
time — not melodyflow's code), a checkpoint written by ``Saver(write_version=V1)``, the exported metagraph,
and note-seq's ``GeneratorBundle`` proto around them.  That graph's softmax is the reference.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import numpy as np
import pytest

from melodyflow.flows.cli import main
from melodyflow.models.bundles.magenta_import import import_magenta
from melodyflow.transforms.melodies.configs import get_config

NAMINGS = {
    "tf13": ("rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/", "kernel", "bias"),
    "tf10": ("rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/", "weights", "biases"),
    "pre10": ("RNN/MultiRNNCell/Cell{i}/BasicLSTMCell/Linear/", "Matrix", "Bias"),
}
STEPS = 48  # the reference graph is unrolled over this many steps; longer inputs are cut, shorter padded
MELODY = [60, -2, 62, -2, 64, -1, 65, -2, 67, -2, -2, -2, 72, 71, -2, 69, 67, -1, -2, -2, 60, 62, 64, -2]


def magenta_tensors(config: str, sizes=(12, 10), naming: str = "tf13", seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights (large enough that every gate matters) under Magenta's names for ``config``."""
    cfg = get_config(config)
    rng = np.random.default_rng(seed)
    cell, kernel, bias = NAMINGS[naming]
    tensors, rows = {}, cfg.input_size
    for i, units in enumerate(sizes):
        tensors[cell.format(i=i) + kernel] = rng.normal(0, 1.0, (rows + units, 4 * units)).astype(np.float32)
        tensors[cell.format(i=i) + bias] = rng.normal(0, 0.5, 4 * units).astype(np.float32)
        rows = units
    tensors["fully_connected/weights"] = rng.normal(0, 0.8, (rows, cfg.num_classes)).astype(np.float32)
    tensors["fully_connected/biases"] = rng.normal(0, 0.3, cfg.num_classes).astype(np.float32)
    return tensors


class MagentaGraph:
    """Magenta's generate graph for ``tensors`` in TF1: ``softmax(inputs)`` and the metagraph to bundle."""

    def __init__(self, tensors: dict[str, np.ndarray], naming: str = "tf13"):
        import tensorflow as tf

        tf1 = tf.compat.v1
        cell, kernel, bias = NAMINGS[naming]
        layers = []
        while cell.format(i=len(layers)) + kernel in tensors:
            layers.append((tensors[cell.format(i=len(layers)) + kernel], tensors[cell.format(i=len(layers)) + bias]))
        out_w, out_b = tensors["fully_connected/weights"], tensors["fully_connected/biases"]
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs = tf1.placeholder(tf.float32, [1, STEPS, layers[0][0].shape[0] - layers[0][1].shape[0] // 4])
            self.temperature = tf1.placeholder(tf.float32, [])
            state = [(tf.zeros([1, b.shape[0] // 4]), tf.zeros([1, b.shape[0] // 4])) for _, b in layers]
            outputs = []
            for x in tf.unstack(self.inputs, axis=1):
                for n, (w, b) in enumerate(layers):
                    units = b.shape[0] // 4
                    no_peephole = tf.zeros([units])
                    _, cs, _, _, _, _, h = tf.raw_ops.LSTMBlockCell(
                        x=x, cs_prev=state[n][0], h_prev=state[n][1], w=tf.constant(w), wci=no_peephole,
                        wcf=no_peephole, wco=no_peephole, b=tf.constant(b), forget_bias=1.0, cell_clip=-1.0,
                        use_peephole=False)
                    state[n] = (cs, h)
                    x = h
                outputs.append(x)
            logits = tf.matmul(tf.concat(outputs, 0), tf.constant(out_w)) + tf.constant(out_b)
            self.softmax_op = tf.reshape(tf.nn.softmax(logits / self.temperature), [1, STEPS, out_b.shape[0]])
            for key, value in (("inputs", self.inputs), ("softmax", self.softmax_op),
                               ("temperature", self.temperature)):
                tf1.add_to_collection(key, value)
            self.metagraph = tf1.train.export_meta_graph(graph=self.graph).SerializeToString()
        self.session = tf1.Session(graph=self.graph)

    def softmax(self, inputs: np.ndarray) -> np.ndarray:
        steps = min(len(inputs), STEPS)
        padded = np.zeros((1, STEPS, inputs.shape[1]), np.float32)
        padded[0, :steps] = inputs[:steps]
        return self.session.run(self.softmax_op, {self.inputs: padded, self.temperature: 1.0})[0, :steps]


def v1_checkpoint(tensors: dict[str, np.ndarray]) -> bytes:
    """The single checkpoint file ``tf.train.Saver(write_version=V1)`` writes, as Magenta's bundles hold it."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    with tf.Graph().as_default(), tempfile.TemporaryDirectory() as tmp:
        variables = [tf1.Variable(value, name=name) for name, value in tensors.items()]
        saver = tf1.train.Saver(variables, write_version=tf1.train.SaverDef.V1)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            path = saver.save(session, os.path.join(tmp, "model.ckpt"), write_meta_graph=False)
        with open(path, "rb") as fh:
            return fh.read()


def write_mag(path, generator_id: str, tensors: dict[str, np.ndarray], metagraph: bytes = b"") -> str:
    from note_seq.protobuf import generator_pb2

    bundle = generator_pb2.GeneratorBundle()
    bundle.generator_details.id = generator_id
    bundle.generator_details.description = f"test {generator_id}"
    bundle.bundle_details.description = "built by tests/test_magenta_import.py"
    bundle.checkpoint_file.append(v1_checkpoint(tensors))
    bundle.metagraph_file = metagraph
    path.write_bytes(bundle.SerializeToString())
    return str(path)


def encoded(config: str, events=MELODY) -> np.ndarray:
    from note_seq.melodies_lib import Melody

    cfg = get_config(config)
    melody = Melody(list(events))
    melody.squash(cfg.min_note, cfg.max_note, cfg.transpose_to_key)
    return np.asarray(cfg.encoder_decoder.get_inputs_batch([melody], full_length=True)[0], np.float32)


def keras_softmax(bundle_dir: str, inputs: np.ndarray) -> np.ndarray:
    from melodyflow.models.bundles.bundle import load_bundle

    model, _ = load_bundle(bundle_dir)
    logits = np.asarray(model(inputs[None], training=False))[0].astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_greedy(graph: MagentaGraph, config: str, primer: list[int], num_steps: int) -> list[int]:
    """Magenta's ``generate_melody`` at temperature -> 0: squash the primer into the config's range and key,
    repeatedly re-encode the whole melody and append the most likely event, then transpose back."""
    from note_seq.melodies_lib import Melody

    cfg = get_config(config)
    melody = Melody(list(primer))
    shift = melody.squash(cfg.min_note, cfg.max_note, cfg.transpose_to_key)
    while len(melody) < num_steps:
        inputs = np.asarray(cfg.encoder_decoder.get_inputs_batch([melody], full_length=True)[0], np.float32)
        probs = graph.softmax(inputs)[len(melody) - 1]
        melody.append(cfg.encoder_decoder.class_index_to_event(int(np.argmax(probs)), melody))
    melody.transpose(-shift)
    return list(melody)


def cli(*argv: str) -> tuple[int, str, str]:
    """``melodyflow ARGV``: exit status, stdout, stderr (redirected, not capsys: Prefect's console handler would
    keep a captured stream past the test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def leftovers(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if "importing" in n)


@pytest.mark.parametrize("config", ["basic_rnn", "mono_rnn", "lookback_rnn"])
def test_import_reproduces_magentas_probabilities_and_greedy_melody(config, tmp_path):
    from melodyflow.models.generation.primers import primer_from_events
    from melodyflow.models.generation.sampling import GenerationOptions, load_generator

    tensors = magenta_tensors(config, seed=2)  # a seed whose greedy continuation moves in all three configs
    graph = MagentaGraph(tensors)
    mag = write_mag(tmp_path / f"{config}.mag", config, tensors, graph.metagraph)
    result = import_magenta(mag, str(tmp_path / "out"))
    assert result["status"] == "imported" and result["rnn_layer_sizes"] == [12, 10]
    inputs = encoded(config)
    assert np.max(np.abs(keras_softmax(result["bundle"], inputs) - graph.softmax(inputs))) < 1e-5

    generator = load_generator(str(tmp_path / "out"))
    greedy = GenerationOptions(num_outputs=1, num_steps=STEPS, temperature=0)
    # C major, and D major high up: basic_rnn and lookback_rnn move it to C in their range and back after.
    for primer in ([60, -2, 62, -2, 64, -2, 65, -2], [86, -2, 88, -2, 90, -2, 91, -2, 93, -1]):
        expected = reference_greedy(graph, config, primer, STEPS)
        (ours,) = generator.generate(primer_from_events(primer).melody, greedy)
        assert list(ours.melody) == expected and expected[0] == primer[0]
        assert len(set(expected[len(primer):])) > 2  # the continuation is a melody, not one held note

    meta = json.loads((tmp_path / "out" / "bundles" / "v0001" / "bundle.json").read_text())
    assert meta["config"] == config and meta["input_size"] == get_config(config).input_size
    assert meta["source"]["generator_id"] == config and meta["source"]["tensor_naming"] == "TensorFlow >= 1.3"
    assert meta["hparams"]["rnn_layer_sizes"] == [12, 10] and meta["hparams"]["dropout_keep_prob"] == 0.5
    assert (tmp_path / "out" / "bundles" / "LATEST").read_text().strip() == "v0001"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("naming,label", [("tf10", "TensorFlow 1.0-1.2"), ("pre10", "TensorFlow < 1.0 (2016 bundles)")])
def test_older_tensorflow_variable_names_map_the_same(naming, label, tmp_path):
    tensors = magenta_tensors("basic_rnn", sizes=(8, 8, 6), naming=naming, seed=3)
    graph = MagentaGraph(tensors, naming)
    result = import_magenta(write_mag(tmp_path / "old.mag", "basic_rnn", tensors), str(tmp_path / "out"))
    assert result["tensor_naming"] == label and result["rnn_layer_sizes"] == [8, 8, 6]
    inputs = encoded("basic_rnn")
    assert np.max(np.abs(keras_softmax(result["bundle"], inputs) - graph.softmax(inputs))) < 1e-5


def test_run_directory_imports_its_latest_checkpoint_without_optimizer_state(tmp_path):
    import tensorflow as tf

    tf1 = tf.compat.v1
    tensors = magenta_tensors("lookback_rnn", sizes=(6,), seed=5)
    train_dir = tmp_path / "run" / "train"
    train_dir.mkdir(parents=True)
    with tf.Graph().as_default():
        variables = [tf1.Variable(v, name=k) for k, v in tensors.items()]
        variables += [tf1.Variable(np.zeros_like(v), name=f"{k}/Adam") for k, v in tensors.items()]
        variables += [tf1.Variable(np.int64(1234), name="global_step"), tf1.Variable(0.9, name="beta1_power")]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver(variables).save(session, str(train_dir / "model.ckpt"), global_step=1234)
    assert cli("import-magenta", str(tmp_path / "run"), str(tmp_path / "out"))[0] == 2  # needs --config
    result = import_magenta(str(tmp_path / "run"), str(tmp_path / "out"), config="lookback_rnn",
                            hparams="batch_size=64,learning_rate=0.01")
    meta = json.loads((tmp_path / "out" / "bundles" / "v0001" / "bundle.json").read_text())
    assert meta["source"]["magenta_global_step"] == 1234 and meta["source"]["checkpoint"] == "model.ckpt-1234"
    assert meta["hparams"]["batch_size"] == 64 and meta["hparams"]["rnn_layer_sizes"] == [6]
    inputs = encoded("lookback_rnn")
    graph = MagentaGraph(tensors)
    assert np.max(np.abs(keras_softmax(result["bundle"], inputs) - graph.softmax(inputs))) < 1e-5


def _error_case(case: str, tmp_path) -> list[str]:
    """CLI arguments for one bad input (files built here)."""
    good = magenta_tensors("basic_rnn", seed=1)
    mag = tmp_path / "model.mag"
    if case in ("corrupt", "truncated", "empty", "bad_checkpoint"):
        data = open(write_mag(mag, "basic_rnn", good), "rb").read()
        if case == "corrupt":
            data = bytes(range(256)) * 8
        elif case == "truncated":
            data = data[: len(data) // 2]
        elif case == "empty":
            data = b""
        else:  # a well-formed proto whose checkpoint bytes were damaged
            from note_seq.protobuf import generator_pb2

            bundle = generator_pb2.GeneratorBundle.FromString(data)
            ckpt = bytearray(bundle.checkpoint_file[0])
            ckpt[len(ckpt) // 3] ^= 0xFF
            bundle.checkpoint_file[0] = bytes(ckpt)
            data = bundle.SerializeToString()
        mag.write_bytes(data)
    elif case == "unknown_id":
        write_mag(mag, "drum_kit", good)
    elif case == "attention":
        write_mag(mag, "attention_rnn", {**good, "rnn/multi_rnn_cell/cell_0/attention_cell_wrapper/attention/attn_v":
                                         np.ones(12, np.float32)})
    elif case == "missing_tensor":
        write_mag(mag, "basic_rnn", {k: v for k, v in good.items() if k != "fully_connected/biases"})
    elif case == "shape_mismatch":  # a lookback_rnn-shaped first layer in a basic_rnn bundle
        write_mag(mag, "basic_rnn", {**good, **{k: v for k, v in magenta_tensors("lookback_rnn", seed=1).items()
                                                if "cell_0" in k}})
    elif case == "graph_mismatch":  # the metagraph says lookback inputs
        write_mag(mag, "basic_rnn", good, MagentaGraph(magenta_tensors("lookback_rnn")).metagraph)
    elif case == "unexpected_tensor":
        write_mag(mag, "basic_rnn", {**good, "rnn/multi_rnn_cell/cell_0/input_projection_wrapper/kernel":
                                     np.ones((38, 12), np.float32)})
    elif case == "nan":
        write_mag(mag, "basic_rnn", {**good, "fully_connected/biases": np.full(38, np.nan, np.float32)})
    return [str(mag), str(tmp_path / "out" / "imported")]


@pytest.mark.parametrize("case,message", [
    ("corrupt", "is corrupt or truncated"),
    ("truncated", "is corrupt or truncated"),
    ("empty", "names no generator"),
    ("bad_checkpoint", "its checkpoint is corrupt or truncated"),
    ("unknown_id", "unknown generator id 'drum_kit'"),
    ("attention", "attention_rnn models cannot be imported"),
    ("missing_tensor", "missing tensor fully_connected/biases"),
    ("shape_mismatch", "shape mismatch: rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel has shape [133, 48]"),
    ("graph_mismatch", "its graph takes 121 inputs per step"),
    ("unexpected_tensor", "unexpected tensors rnn/multi_rnn_cell/cell_0/input_projection_wrapper/kernel"),
    ("nan", "fully_connected/biases holds NaN"),
])
def test_bad_inputs_fail_with_one_clear_line_and_write_nothing(case, message, tmp_path):
    status, _, stderr = cli("import-magenta", *_error_case(case, tmp_path))
    assert status == 2
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("melodyflow import-magenta: error: ") and message in err[0], err
    assert not os.path.exists(tmp_path / "out") and leftovers(tmp_path) == []


def test_hparams_that_contradict_the_checkpoint_and_unknown_configs_are_refused(tmp_path):
    mag = write_mag(tmp_path / "m.mag", "basic_rnn", magenta_tensors("basic_rnn"))
    status, _, err = cli("import-magenta", mag, str(tmp_path / "o"), "--hparams", "rnn_layer_sizes=[64,64]")
    assert status == 2 and "contradicts the checkpoint, which has [12, 10]" in err
    status, _, err = cli("import-magenta", mag, str(tmp_path / "o"), "--config", "lookback_rnn")
    assert status == 2 and "holds a basic_rnn model; --config lookback_rnn contradicts it" in err
    custom = write_mag(tmp_path / "c.mag", "my_melodies", magenta_tensors("basic_rnn"))
    assert import_magenta(custom, str(tmp_path / "o"), config="basic_rnn")["config"] == "basic_rnn"
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_cli_import_is_idempotent_refuses_to_overwrite_and_feeds_generate(prefect_harness, tmp_path):
    from melodyflow.flows.generate import generate_melodies

    mag = write_mag(tmp_path / "b.mag", "basic_rnn", magenta_tensors("basic_rnn", seed=7))
    out = tmp_path / "imported"
    out.mkdir()  # an empty directory is fine: it is replaced whole
    status, stdout, _ = cli("import-magenta", mag, str(out), "--json")
    first = json.loads(stdout)
    assert status == 0 and first["status"] == "imported" and first["self_check_max_abs_prob_diff"] < 1e-5
    weights = (out / "bundles" / "v0001" / "model.weights.h5").read_bytes()
    status, stdout, _ = cli("import-magenta", mag, str(out), "--json")
    assert status == 0 and json.loads(stdout)["status"] == "up_to_date"
    other = write_mag(tmp_path / "other.mag", "basic_rnn", magenta_tensors("basic_rnn", seed=8))
    status, _, err = cli("import-magenta", other, str(out))
    assert status == 2 and "already exists and is not empty" in err
    assert (out / "bundles" / "v0001" / "model.weights.h5").read_bytes() == weights
    index = generate_melodies(bundle=str(out), output=str(tmp_path / "gen"), primer_melody=[60, -2, 62, -2],
                              num_outputs=2, num_steps=32)
    assert index["counts"] == {"primers": 1, "ok": 1, "failed": 0, "outputs": 2}
    assert leftovers(tmp_path) == []


def test_import_to_object_storage(gcs_bucket, tmp_path):
    from melodyflow.models.bundles.bundle import load_bundle

    tensors = magenta_tensors("mono_rnn", sizes=(8,), seed=2)
    mag = write_mag(tmp_path / "m.mag", "mono_rnn", tensors)
    result = import_magenta(mag, f"{gcs_bucket}/models/mono")
    assert result["bundle"] == f"{gcs_bucket}/models/mono/bundles/v0001"
    _, meta = load_bundle(f"{gcs_bucket}/models/mono")
    assert meta["config"] == "mono_rnn" and meta["source"]["sha256"] == result["sha256"]


def test_temperature_zero_is_exactly_greedy_where_a_tiny_temperature_still_draws(tmp_path):
    """Magenta's greedy is --temperature=0.001, which still samples between near-tied events; 0 never does."""
    from melodyflow.models.generation.primers import primer_from_events
    from melodyflow.models.generation.sampling import GenerationOptions, load_generator

    tensors = magenta_tensors("basic_rnn", seed=4)
    tensors["fully_connected/weights"][:, :2] = 0.0  # no event (class 0) and note-off (class 1) tie exactly,
    tensors["fully_connected/biases"][:2] = 20.0  # far above every note
    generator = load_generator(import_magenta(write_mag(tmp_path / "tie.mag", "basic_rnn", tensors),
                                              str(tmp_path / "out"))["out"])
    primer = primer_from_events([60, -2, 62]).melody

    def continuation(temperature: float, seed: int) -> list[int]:
        (result,) = generator.generate(primer, GenerationOptions(num_outputs=1, num_steps=24,
                                                                 temperature=temperature, seed=seed))
        return list(result.melody)[3:]

    assert all(continuation(0, seed) == [-2] * 21 for seed in range(3))  # the first of the tied events, always
    assert any(-1 in continuation(0.001, seed) for seed in range(3))


@pytest.mark.slow
def test_imported_bundle_is_evaluated_and_fine_tuned_like_a_trained_one(tmp_path):
    import midi_factory
    from support import write_corpus
    from test_training import build_data

    from melodyflow.models.bundles.bundle import load_bundle
    from melodyflow.models.evaluation.heldout import heldout_metrics
    from melodyflow.models.training.fine_tune import fine_tune_hparams, open_parent
    from melodyflow.models.training.loop import TrainSettings, train
    from melodyflow.transforms.melodies.dataset import open_dataset

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(8)})
    data = build_data(corpus, tmp_path / "data", configs=("basic_rnn",), eval_ratio=0.5)
    imported = import_magenta(write_mag(tmp_path / "b.mag", "basic_rnn", magenta_tensors("basic_rnn", seed=6)),
                              str(tmp_path / "imported"))["bundle"]
    model, meta = load_bundle(imported)
    metrics = heldout_metrics(model, meta, open_dataset(data, "basic_rnn"))
    assert metrics["melodies"] > 0 and np.isfinite(metrics["loss"]) and metrics["same_dataset_as_training"] is False

    hparams = fine_tune_hparams(open_parent(str(tmp_path / "imported")), {"batch_size": 4})
    child = train(data, str(tmp_path / "child"), TrainSettings(config="basic_rnn", num_training_steps=1,
                                                               init_from=str(tmp_path / "imported")), hparams)
    child_meta = json.loads(open(os.path.join(child.bundle, "bundle.json")).read())
    assert (child.start_step, child.step) == (0, 1) and child_meta["lineage"] == [imported]
    assert child_meta["parent"]["url"] == imported and child_meta["hparams"]["rnn_layer_sizes"] == [12, 10]
