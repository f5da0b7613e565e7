"""music_transformer: skewed relative attention, cached incremental decoding, training and generation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from melodyflow.models.hparams import HParamsError, TransformerHParams, debug_hparams, default_hparams
from melodyflow.models.network.music_transformer import IncrementalDecoder, RelativeSelfAttention, build_transformer
from melodyflow.transforms.melodies.configs import CONFIG_NAMES, get_config

SMALL = TransformerHParams(num_layers=2, num_heads=2, d_model=16, d_ff=32, dropout_rate=0.1,
                           max_relative_distance=5)


def _model(hparams=SMALL, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return build_transformer(38, 38, hparams)


def _one_hot(batch, steps, seed=0):
    return np.eye(38, dtype=np.float32)[np.random.default_rng(seed).integers(0, 38, (batch, steps))]


def _naive_relative_logits(q, table, max_distance):
    """``q_i · E[min(i - j, R)]`` by looking up one embedding per (i, j) pair."""
    batch, heads, length, _ = q.shape
    out = np.zeros((batch, heads, length, length), np.float32)
    for i in range(length):
        for j in range(i + 1):
            out[:, :, i, j] = np.einsum("bhd,hd->bh", q[:, :, i], table[:, min(i - j, max_distance)])
    return out


@pytest.mark.parametrize("length,max_distance", [(1, 3), (7, 3), (7, 6), (7, 20), (12, 1)])
def test_skewed_relative_logits_equal_the_gathered_ones(length, max_distance):
    layer = RelativeSelfAttention(num_heads=3, max_relative_distance=max_distance)
    layer.build((None, None, 12))
    q = np.random.default_rng(length).normal(size=(2, 3, length, 4)).astype(np.float32)
    skewed = layer.relative_logits(q).numpy()
    naive = _naive_relative_logits(q, layer.relative.numpy(), max_distance)
    causal = np.tril(np.ones((length, length), bool))
    assert skewed.shape == naive.shape
    np.testing.assert_allclose(skewed[..., causal], naive[..., causal], atol=1e-5)


def test_attention_is_causal():
    model = _model()
    x = _one_hot(2, 10)
    changed = x.copy()
    changed[:, 6:] = _one_hot(2, 4, seed=9)
    a, b = model(x).numpy(), model(changed).numpy()
    np.testing.assert_array_equal(a[:, :6], b[:, :6])
    assert not np.allclose(a[:, 6:], b[:, 6:])


def test_cached_incremental_decoding_matches_the_full_forward_pass():
    model = _model()
    steps = 14  # beyond max_relative_distance, so clipping is exercised on both paths
    x = _one_hot(3, steps)
    full = model(x, training=False).numpy()
    decoder = IncrementalDecoder(model, SMALL)
    state = decoder.zero_state(3)
    for t in range(steps):
        logits, state = decoder.step(x[:, t], state)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-5, err_msg=f"position {t}")
    assert [tuple(s.shape) for s in state[:2]] == [(3, 2, steps, 8)] * 2  # the cache grew one step at a time


def test_reordered_cache_continues_the_selected_rows():
    """Beam search keeps and duplicates rows: the cache must follow them."""
    model = _model()
    x = _one_hot(3, 9)
    decoder = IncrementalDecoder(model, SMALL)
    state = decoder.zero_state(3)
    for t in range(5):
        _, state = decoder.step(x[:, t], state)
    rows = [2, 2, 0]
    state = decoder.reorder(state, rows)
    for t in range(5, 9):
        logits, state = decoder.step(x[rows, t], state)
    np.testing.assert_allclose(logits, model(x[rows]).numpy()[:, -1], atol=1e-5)


def test_hparams_defaults_names_and_validation():
    hp = default_hparams("music_transformer")
    assert isinstance(hp, TransformerHParams)
    assert set(hp.to_dict()) == {"batch_size", "num_layers", "num_heads", "d_model", "d_ff", "dropout_rate",
                                 "max_relative_distance", "learning_rate", "warmup_steps", "clip_norm"}
    assert set(hp.architecture()) == {"num_layers", "num_heads", "d_model", "d_ff", "max_relative_distance"}
    assert hp.override("num_layers=3,d_model=64").num_layers == 3
    with pytest.raises(HParamsError, match="multiple of num_heads"):
        hp.override({"d_model": 30, "num_heads": 4})
    with pytest.raises(HParamsError, match="unknown hparams rnn_layer_sizes"):
        hp.override({"rnn_layer_sizes": [64]})
    with pytest.raises(HParamsError, match="dropout_rate"):
        hp.override({"dropout_rate": 1.0})
    assert debug_hparams("music_transformer").d_model < hp.d_model


def test_learning_rate_warms_up_then_decays():
    hp = TransformerHParams(warmup_steps=100)
    factors = [hp.learning_rate_factor(s) for s in (1, 50, 100, 400)]
    assert factors == pytest.approx([0.01, 0.5, 1.0, 0.5])
    assert TransformerHParams(warmup_steps=0).learning_rate_factor(7) == 1.0


def test_graph_schedule_matches_the_logged_one():
    from melodyflow.models.training.steps import schedule_factor

    hp = TransformerHParams(warmup_steps=30)
    for step in (1, 10, 30, 31, 500):
        assert float(schedule_factor(step, 30)) == pytest.approx(hp.learning_rate_factor(step), rel=1e-6)


def test_music_transformer_shares_basic_rnn_records():
    assert "music_transformer" in CONFIG_NAMES
    assert get_config("music_transformer") is get_config("basic_rnn")
    assert get_config("music_transformer").num_classes == 38


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import midi_factory
    from support import write_corpus
    from test_training import build_data

    from melodyflow.models.training.loop import TrainSettings, train

    tmp = tmp_path_factory.mktemp("mt")
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(16)})
    data = build_data(corpus, tmp / "data", configs=("basic_rnn",))
    settings = TrainSettings(config="music_transformer", num_training_steps=12, eval_every=6, checkpoint_every=6,
                             summary_every=3)
    return data, train(data, str(tmp / "run"), settings, debug_hparams("music_transformer"))


@pytest.mark.slow
def test_trains_on_basic_rnn_records_and_exports_a_loadable_bundle(trained):
    from melodyflow.models.bundles.bundle import load_bundle

    data, result = trained
    assert result.step == 12 and np.isfinite(result.eval_metrics["loss"])
    model, meta = load_bundle(result.bundle)
    assert meta["config"] == "music_transformer" and meta["encoding"] == "one_hot"
    assert meta["dataset"]["url"].endswith("melodies/basic_rnn") and meta["num_classes"] == 38
    assert meta["hparams"] == debug_hparams("music_transformer").to_dict()
    assert model(_one_hot(1, 5)).shape == (1, 5, 38)


@pytest.mark.slow
def test_generation_samples_and_beam_searches_with_the_cache(trained):
    from melodyflow.models.generation.primers import primer_from_events
    from melodyflow.models.generation.sampling import GenerationOptions, load_generator

    _, result = trained
    generator = load_generator(result.bundle)
    assert isinstance(generator.stepper, IncrementalDecoder)
    primer = primer_from_events([60, -2, 62, -2, 64, -2]).melody
    options = GenerationOptions(num_outputs=2, num_steps=24, seed=5)
    a = generator.generate(primer, options)
    assert [len(r.melody) for r in a] == [24, 24] and list(a[0].melody)[:6] == [60, -2, 62, -2, 64, -2]
    assert [list(r.melody) for r in a] == [list(r.melody) for r in generator.generate(primer, options)]
    beams = generator.generate(primer, GenerationOptions(num_outputs=2, num_steps=24, beam_size=3, branch_factor=2,
                                                         steps_per_iteration=4, seed=5))
    assert [len(r.melody) for r in beams] == [24, 24] and all(r.log_likelihood < 0 for r in beams)


@pytest.mark.slow
def test_generated_log_likelihood_equals_the_full_models(trained):
    """The score sampling reports is the full forward pass' probability of the sampled events."""
    import tensorflow as tf

    from melodyflow.models.generation.primers import primer_from_events
    from melodyflow.models.generation.sampling import GenerationOptions, load_generator

    _, result = trained
    generator = load_generator(result.bundle)
    primer = primer_from_events([60, -2, 62]).melody
    (out,) = generator.generate(primer, GenerationOptions(num_outputs=1, num_steps=20, seed=2))
    encoder = generator.encoder
    inputs = np.asarray([[encoder.events_to_input(out.melody, i) for i in range(len(out.melody) - 1)]], np.float32)
    labels = [encoder.events_to_label(out.melody, i) for i in range(1, len(out.melody))]
    log_probs = tf.nn.log_softmax(generator.model(inputs)).numpy()[0]
    expected = sum(log_probs[i, label] for i, label in enumerate(labels) if i >= len(primer) - 1)
    assert out.log_likelihood == pytest.approx(float(expected), abs=1e-3)


@pytest.mark.slow
def test_dataset_and_train_commands_for_music_transformer_share_basic_rnn_records(prefect_harness, tmp_path):
    import subprocess
    import sys

    import midi_factory
    from support import write_corpus

    from melodyflow.flows.dataset import build_melody_dataset
    from melodyflow.flows.ingest import ingest_corpus

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(6)})
    data = str(tmp_path / "data")
    ingest_corpus(source=str(corpus), data_root=data, workers=1)
    summary = build_melody_dataset(data_root=data, config="music_transformer", workers=1)
    assert summary["info"]["config"] == "basic_rnn" and summary["out_dir"].endswith("melodies/basic_rnn")
    assert build_melody_dataset(data_root=data, config="basic_rnn", workers=1)["status"] == "up_to_date"
    # The CLI in its own process (its output capture is then the real one).
    out = subprocess.run([sys.executable, "-m", "melodyflow.flows.cli", "train", data, str(tmp_path / "run"),
                          "--config", "music_transformer", "--preset", "debug", "--num-training-steps", "3",
                          "--eval-every", "3", "--json"], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["step"] == 3 and result["stop_reason"] == "num_training_steps"
    out = subprocess.run([sys.executable, "-m", "melodyflow.flows.cli", "generate", str(tmp_path / "run"),
                          "--output", str(tmp_path / "gen"), "--primer-melody", "[60,-2,62,-2]", "--num-outputs",
                          "2", "--num-steps", "32", "--beam-size", "2", "--branch-factor", "2", "--json"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["counts"] == {"primers": 1, "ok": 1, "failed": 0, "outputs": 2}
