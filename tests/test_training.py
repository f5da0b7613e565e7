"""Real training runs with the debug preset: every config, learning, resume, the divergence guard, gs://."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import midi_factory
from support import write_corpus
from melodyflow.models.bundles.bundle import BundleError, load_bundle, resolve_bundle
from melodyflow.models.training.input_pipeline import make_dataset
from melodyflow.models.hparams import debug_hparams
from melodyflow.models.training.loop import DivergenceError, TrainResult, TrainSettings, train
from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, open_dataset, plan_dataset
from melodyflow.transforms.beam.runners import RunnerConfig

CONFIGS = ("basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn")


def build_data(source, data_root, configs=CONFIGS, fmt="compact", eval_ratio=0.2):
    plan = plan_ingest(str(source), str(data_root), IngestSettings(collection="gen"))
    if not plan.is_empty:
        run_ingest_pipeline(plan, RunnerConfig(workers=1))
    for name in configs:
        settings = DatasetSettings(config=get_config(name), format=fmt, eval_ratio=eval_ratio)
        run_dataset_pipeline(plan_dataset(str(data_root), settings), RunnerConfig(workers=1))
    return str(data_root)


def train_debug_model(tmp, files: int, steps: int) -> tuple[str, str, TrainResult]:
    """A basic_rnn dataset (30% eval) of ``files`` melodic tunes under ``tmp`` and a debug model trained on it
    for ``steps`` steps: (data root, run dir, result)."""
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(files)})
    data = build_data(corpus, tmp / "data", configs=("basic_rnn",), eval_ratio=0.3)
    result = train(data, str(tmp / "run"), TrainSettings(config="basic_rnn", num_training_steps=steps,
                                                         eval_every=steps), debug_hparams("basic_rnn"))
    return data, str(tmp / "run"), result


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(24)})
    return build_data(corpus, tmp / "data")


def _settings(config, steps, **kw):
    return TrainSettings(config=config, num_training_steps=steps, eval_every=kw.pop("eval_every", 10),
                         checkpoint_every=kw.pop("checkpoint_every", 10), summary_every=5, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_trains_real_steps_and_exports_a_loadable_bundle(data_root, tmp_path, config):
    result = train(data_root, str(tmp_path / "run"), _settings(config, 12), debug_hparams(config))
    assert result.step == 12 and result.start_step == 0
    assert set(result.eval_metrics) == {"loss", "perplexity", "accuracy", "event_accuracy", "no_event_accuracy"}
    assert np.isfinite(result.train_metrics["loss"])
    model, meta = load_bundle(str(tmp_path / "run"))
    info = open_dataset(data_root, config)
    assert meta["url"] == result.bundle and meta["step"] == 12 and meta["config"] == config
    assert (meta["input_size"], meta["num_classes"]) == (info["input_size"], info["num_classes"])
    logits = model(np.zeros((2, 5, info["input_size"]), np.float32))
    assert logits.shape == (2, 5, info["num_classes"])
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run" / "train"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run" / "eval"))


@pytest.mark.slow
def test_loss_goes_down_on_a_learnable_dataset(tmp_path):
    pattern = [(60 + p, 2 * i, 2 * i + 2) for i, p in enumerate([0, 4, 7, 12, 7, 4, 2, 5, 9, 12, 9, 5] * 12)]
    files = {}
    for k in range(12):
        import note_seq
        from note_seq.protobuf import music_pb2

        seq = music_pb2.NoteSequence(ticks_per_quarter=220)
        seq.tempos.add(qpm=120)
        seq.time_signatures.add(numerator=4, denominator=4)
        for pitch, start, end in pattern:
            seq.notes.add(pitch=pitch + k % 3, velocity=80, start_time=start * 0.125, end_time=end * 0.125)
        seq.total_time = pattern[-1][2] * 0.125
        path = tmp_path / f"p{k}.mid"
        note_seq.sequence_proto_to_midi_file(seq, str(path))
        files[path.name] = path.read_bytes()
    data = build_data(write_corpus(tmp_path / "toy", files), tmp_path / "data", configs=("basic_rnn",))
    result = train(data, str(tmp_path / "run"), _settings("basic_rnn", 120, eval_every=60),
                   debug_hparams("basic_rnn"))
    losses = [h["loss"] for h in result.history if h["split"] == "train"]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_resume_continues_at_the_saved_step_with_optimizer_state(data_root, tmp_path):
    run = str(tmp_path / "run")
    first = train(data_root, run, _settings("basic_rnn", 20), debug_hparams("basic_rnn"))
    assert first.step == 20
    second = train(data_root, run, _settings("basic_rnn", 30), debug_hparams("basic_rnn"))
    assert (second.start_step, second.step) == (20, 30)
    assert resolve_bundle(run).endswith("v0002")
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(data_root, run, _settings("basic_rnn", 40, resume=False), debug_hparams("basic_rnn"))


def _weights(bundle: str) -> dict:
    import h5py

    out = {}
    with h5py.File(os.path.join(bundle, "model.weights.h5")) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    """The reference: 60 steps with dropout on (its random stream must survive a restart too)."""
    hp = dataclasses.replace(debug_hparams("basic_rnn"), dropout_keep_prob=0.5)
    result = train(data_root, str(tmp_path_factory.mktemp("ref") / "run"), _settings("basic_rnn", 60), hp)
    return hp, result


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_training_killed_at_a_random_step_resumes_to_the_uninterrupted_result(data_root, tmp_path, uninterrupted, seed):
    import random

    hp, reference = uninterrupted
    rng = random.Random(seed)
    wait_for = rng.choice([10, 20, 30, 40])
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "melodyflow.flows.cli", "train", data_root, str(run), "--preset", "debug",
           "--hparams", '{"dropout_keep_prob": 0.5}', "--num-training-steps", "100000", "--eval-every", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (run / "checkpoints" / f"ckpt-{wait_for}.index").exists():
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.5))  # somewhere between two checkpoints
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoints" / f"ckpt-{wait_for}.index").exists(), f"training never reached step {wait_for}"
    with pytest.raises(BundleError):
        resolve_bundle(str(run))  # the killed run exported nothing

    result = train(data_root, str(run), _settings("basic_rnn", 60), hp)
    assert result.start_step >= wait_for and result.step == reference.step == 60
    # Same batches, same dropout masks, same optimizer state: on CPU the weights come out equal.
    ours, theirs = _weights(result.bundle), _weights(reference.bundle)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6, err_msg=name)
    assert result.train_metrics == pytest.approx(reference.train_metrics, abs=1e-6)


@pytest.mark.slow
def test_forced_nan_triggers_the_guard_then_gives_up_after_k_tries(data_root, tmp_path):
    hp = debug_hparams("basic_rnn")
    result = train(data_root, str(tmp_path / "run"), _settings("basic_rnn", 25, inject_nan_at_step=15), hp)
    assert result.step == 25
    (event,) = result.divergence_events
    assert event["reason"] == "non-finite loss" and event["restored_step"] == 10
    assert event["learning_rate"] == pytest.approx(hp.learning_rate * 0.5)
    assert np.isfinite(result.train_metrics["loss"])
    with pytest.raises(DivergenceError, match="after 0 recoveries"):
        train(data_root, str(tmp_path / "run2"),
              _settings("basic_rnn", 25, inject_nan_at_step=3, max_divergence_recoveries=0), hp)


@pytest.mark.slow
def test_both_record_formats_feed_identical_batches(tmp_path):
    corpus = write_corpus(tmp_path / "c", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(6)})
    dense_root = build_data(corpus, tmp_path / "dense", configs=("attention_rnn",), fmt="sequence-example")
    compact_root = build_data(corpus, tmp_path / "compact", configs=("attention_rnn",))
    batches = []
    for root in (dense_root, compact_root):
        info = open_dataset(root, "attention_rnn")
        paths = [storage.join(info["url"], n) for n in info["shards"]["train"]]
        ds = make_dataset(paths, fmt=info["format"], input_size=74, batch_size=4, training=False)
        batches.append([tuple(t.numpy() for t in b) for b in ds])
    assert len(batches[0]) == len(batches[1]) > 0
    for a, b in zip(*batches):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_input_datasets_run_without_autotuning(tmp_path):
    """Deleting an autotuned iterator can wait for tf.data's optimizer thread for up to a minute
    (input_pipeline.PREFETCH_BATCHES); both kinds of dataset must run without it."""
    corpus = write_corpus(tmp_path / "c", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(3)})
    info = open_dataset(build_data(corpus, tmp_path / "d", configs=("basic_rnn",)), "basic_rnn")
    paths = [storage.join(info["url"], n) for n in info["shards"]["train"]]
    for training in (True, False):
        ds = make_dataset(paths, fmt=info["format"], input_size=38, batch_size=2, training=training)
        assert ds.options().autotune.enabled is False
        assert next(iter(ds))[0].shape[-1] == 38


@pytest.mark.slow
def test_training_from_and_to_gcs_resumes_on_a_fresh_machine(gcs_bucket, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(10)})
    for path in corpus.iterdir():
        storage.write_bytes(f"{gcs_bucket}/corpus/{path.name}", path.read_bytes())
    data = build_data(f"{gcs_bucket}/corpus", f"{gcs_bucket}/data", configs=("basic_rnn",))
    run = f"{gcs_bucket}/runs/one"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine1"))
    first = train(data, run, _settings("basic_rnn", 10), debug_hparams("basic_rnn"))
    assert storage.exists(f"{run}/checkpoints/checkpoint") and first.bundle.startswith(run)
    assert any("tfevents" in u for u in storage.list_dir(f"{run}/train"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine2"))  # nothing local: pull from gs://
    second = train(data, run, _settings("basic_rnn", 15), debug_hparams("basic_rnn"))
    assert (second.start_step, second.step) == (10, 15)
    model, meta = load_bundle(run)
    assert meta["step"] == 15 and meta["url"] == f"{run}/bundles/v0002"


class StepClock:
    """A clock that advances one unit per finished step: time budgets become exact step counts."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_progress(self, event: dict) -> None:
        if event["event"] == "step":
            self.now += 1.0


@pytest.mark.slow
def test_time_budget_stops_between_steps_then_evaluates_checkpoints_and_exports(data_root, tmp_path):
    import json

    run = tmp_path / "run"
    clock = StepClock()
    settings = TrainSettings(config="basic_rnn", num_training_steps=None, time_budget_s=7, eval_every=5,
                             checkpoint_every=5, summary_every=1)
    result = train(data_root, str(run), settings, debug_hparams("basic_rnn"), progress=clock.on_progress, clock=clock)
    assert (result.start_step, result.step, result.stop_reason) == (0, 7, "time_budget")
    assert [h["step"] for h in result.history if h["split"] == "eval"] == [5, 7]  # a last eval at the stop
    assert (run / "checkpoints" / "ckpt-7.index").exists()
    meta = json.loads((run / "bundles" / "v0001" / "bundle.json").read_text())
    assert (meta["step"], meta["stop_reason"], meta["time_budget_s"]) == (7, "time_budget", 7)
    assert meta["eval_metrics"] == result.eval_metrics and np.isfinite(result.eval_metrics["loss"])

    # Resumed, the budget is this run's: 4 more steps from step 7; a step limit still applies.
    clock = StepClock()
    resumed = train(data_root, str(run), dataclasses.replace(settings, time_budget_s=4), debug_hparams("basic_rnn"),
                    progress=clock.on_progress, clock=clock)
    assert (resumed.start_step, resumed.step, resumed.stop_reason) == (7, 11, "time_budget")
    capped = train(data_root, str(run), dataclasses.replace(settings, num_training_steps=13, time_budget_s=100),
                   debug_hparams("basic_rnn"))
    assert (capped.start_step, capped.step, capped.stop_reason) == (11, 13, "num_training_steps")


@pytest.mark.slow
def test_time_budget_on_the_command_line_reports_the_steps_reached(data_root, tmp_path):
    import json

    cmd = [sys.executable, "-m", "melodyflow.flows.cli", "train", data_root, str(tmp_path / "run"), "--preset",
           "debug", "--time-budget", "12", "--eval-every", "1000000", "--json"]
    result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert result["stop_reason"] == "time_budget" and result["time_budget_s"] == 12
    assert result["elapsed_s"] >= 12 and result["step"] >= 0 and result["eval_metrics"]
    bad = subprocess.run(cmd[:-5] + ["--time-budget=0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "positive number of seconds" in bad.stderr and "Traceback" not in bad.stderr


def test_a_bundle_trained_from_a_relative_data_root_finds_its_dataset_from_any_directory(data_root, tmp_path,
                                                                                         monkeypatch):
    """Ranking at generation reads the bundle's training dataset: the bundle must not record a path that
    only means something in the directory training ran from."""
    from melodyflow.models.evaluation.ranking import reference_for_bundle

    monkeypatch.chdir(os.path.dirname(data_root))
    result = train(os.path.basename(data_root), "run", _settings("basic_rnn", 1), debug_hparams("basic_rnn"))
    monkeypatch.chdir(tmp_path)
    _, meta = load_bundle(os.path.join(os.path.dirname(data_root), result.bundle))
    assert meta["dataset"]["url"] == os.path.join(data_root, "melodies", "basic_rnn")
    reference, why = reference_for_bundle(meta)
    assert reference is not None, why
