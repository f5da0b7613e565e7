"""Fine-tuning with --init-from: the parent's weights, a fresh optimizer at step 0, lineage, refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import midi_factory
from support import write_corpus
from test_training import _weights, build_data
from melodyflow.models.bundles.bundle import BundleError
from melodyflow.models.hparams import debug_hparams
from melodyflow.models.training.fine_tune import FineTuneError, fine_tune_hparams, open_parent
from melodyflow.models.training.loop import TrainSettings, train



def _settings(config="basic_rnn", steps=1, **kw):
    return TrainSettings(config=config, num_training_steps=steps, eval_every=kw.pop("eval_every", 1000),
                         checkpoint_every=1000, summary_every=1, **kw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(20)})
    return build_data(corpus, tmp / "data", configs=("basic_rnn",))


@pytest.fixture(scope="module")
def parent(data_root, tmp_path_factory):
    """A basic_rnn trained well past a fresh model's loss."""
    run = str(tmp_path_factory.mktemp("parent") / "run")
    return train(data_root, run, _settings(steps=60), debug_hparams("basic_rnn"))


@pytest.mark.slow
def test_one_step_from_the_parent_keeps_its_held_out_loss(data_root, parent, tmp_path):
    child = train(data_root, str(tmp_path / "child"), _settings(init_from=parent.bundle), debug_hparams("basic_rnn"))
    fresh = train(data_root, str(tmp_path / "fresh"), _settings(), debug_hparams("basic_rnn"))
    assert (child.start_step, child.step) == (0, 1) and child.bundle.endswith("child/bundles/v0001")
    gap = abs(fresh.eval_metrics["loss"] - parent.eval_metrics["loss"])
    assert gap > 0.5, (fresh.eval_metrics, parent.eval_metrics)
    assert abs(child.eval_metrics["loss"] - parent.eval_metrics["loss"]) < 0.1 * gap

    import tensorflow as tf

    ckpt = tf.train.load_checkpoint(str(tmp_path / "child" / "checkpoints" / "ckpt-1"))
    assert ckpt.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 1  # a fresh optimizer
    assert ckpt.get_tensor("learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(0.01)

    meta = json.loads(open(os.path.join(child.bundle, "bundle.json")).read())
    assert meta["parent"] == child.parent == {
        "url": parent.bundle, "config": "basic_rnn", "step": 60, "version": 1,
        "dataset_fingerprint": meta["dataset"]["fingerprint"], "eval_loss": parent.eval_metrics["loss"]}
    assert meta["lineage"] == [parent.bundle]

    grandchild = train(data_root, str(tmp_path / "grandchild"), _settings(init_from=str(tmp_path / "child")),
                       debug_hparams("basic_rnn"))
    assert json.loads(open(os.path.join(grandchild.bundle, "bundle.json")).read())["lineage"] == [
        parent.bundle, child.bundle]


@pytest.mark.slow
def test_the_new_run_starts_from_exactly_the_parents_weights(data_root, parent, tmp_path):
    ticks = iter([0.0])  # the clock starts, then jumps past the budget: the bundle holds the starting weights
    settings = TrainSettings(config="basic_rnn", num_training_steps=None, time_budget_s=1, init_from=parent.run_dir)
    child = train(data_root, str(tmp_path / "child"), settings, debug_hparams("basic_rnn"),
                  clock=lambda: next(ticks, 1e9))
    assert child.step == 0 and child.stop_reason == "time_budget"
    ours, theirs = _weights(child.bundle), _weights(parent.bundle)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert child.eval_metrics["loss"] == pytest.approx(parent.eval_metrics["loss"], abs=1e-6)


@pytest.mark.slow
def test_non_architectural_overrides_apply_and_architecture_changes_are_refused(parent):
    p = open_parent(parent.run_dir)
    hp = fine_tune_hparams(p, '{"learning_rate": 0.0001, "batch_size": 4, "dropout_keep_prob": 0.8}')
    assert (hp.learning_rate, hp.batch_size, hp.dropout_keep_prob) == (0.0001, 4, 0.8)
    assert hp.rnn_layer_sizes == (16, 16)  # the parent's, not Magenta's 128x128
    assert fine_tune_hparams(p, "rnn_layer_sizes=[16,16]").rnn_layer_sizes == (16, 16)  # unchanged is fine
    with pytest.raises(FineTuneError, match="cannot change rnn_layer_sizes"):
        fine_tune_hparams(p, "rnn_layer_sizes=[32,32]")
    with pytest.raises(FineTuneError, match="unknown hparams"):
        fine_tune_hparams(p, "num_layers=3")


@pytest.mark.slow
def test_refuses_another_config_encoding_architecture_or_its_own_run(data_root, parent, tmp_path):
    with pytest.raises(FineTuneError, match="is a basic_rnn bundle, not music_transformer"):
        train(data_root, str(tmp_path / "a"), _settings("music_transformer", init_from=parent.bundle),
              debug_hparams("music_transformer"))
    other = tmp_path / "other-encoding"
    shutil.copytree(parent.bundle, other)
    meta = json.loads((other / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps({**meta, "min_note": 36, "max_note": 96}))
    with pytest.raises(FineTuneError, match="another encoding .*min_note=36"):
        train(data_root, str(tmp_path / "b"), _settings(init_from=str(other)), debug_hparams("basic_rnn"))
    with pytest.raises(FineTuneError, match="architecture"):
        train(data_root, str(tmp_path / "c"), _settings(init_from=parent.bundle),
              debug_hparams("basic_rnn").override("rnn_layer_sizes=[8]"))
    with pytest.raises(FineTuneError, match="RUN_DIR itself"):
        train(data_root, parent.run_dir, _settings(steps=70, init_from=parent.run_dir), debug_hparams("basic_rnn"))
    with pytest.raises(BundleError, match="neither a bundle nor a run directory"):
        train(data_root, str(tmp_path / "d"), _settings(init_from=str(tmp_path / "nothing")),
              debug_hparams("basic_rnn"))


@pytest.mark.slow
def test_music_transformer_fine_tunes_with_its_own_architecture(data_root, tmp_path):
    first = train(data_root, str(tmp_path / "mt"), _settings("music_transformer", steps=4),
                  debug_hparams("music_transformer"))
    hp = fine_tune_hparams(open_parent(first.bundle), '{"dropout_rate": 0.2, "warmup_steps": 5}')
    settings = _settings("music_transformer", steps=2, init_from=first.bundle)
    child = train(data_root, str(tmp_path / "mt-child"), settings, hp)
    assert child.step == 2 and child.parent["config"] == "music_transformer"
    with pytest.raises(FineTuneError, match="cannot change d_model"):
        fine_tune_hparams(open_parent(first.bundle), "d_model=32")


@pytest.mark.slow
def test_cli_and_flow_show_the_parent(prefect_harness, data_root, parent, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from melodyflow.flows.train import train_melody_model

    state = train_melody_model(data_root=data_root, run_dir=str(tmp_path / "run"), init_from=parent.run_dir,
                               num_training_steps=2, eval_every=2, hparams='{"learning_rate": 0.001}',
                               return_state=True)
    result = state.result()
    assert result["parent"]["url"] == parent.bundle and result["step"] == 2
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    summary = {a.key: a for a in artifacts}["training-summary-basic-rnn"].data
    assert "Fine-tuned from" in summary and parent.bundle in summary and "step 60" in summary

    cli = [sys.executable, "-m", "melodyflow.flows.cli", "train", data_root, str(tmp_path / "cli")]
    ok = subprocess.run(cli + ["--init-from", parent.run_dir, "--num-training-steps", "1", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    out = json.loads(ok.stdout)
    assert out["parent"]["url"] == parent.bundle and out["step"] == 1  # --config came from the bundle
    for extra, message in ((["--config", "mono_rnn"], "is a basic_rnn bundle, not mono_rnn"),
                           (["--hparams", "rnn_layer_sizes=[4]"], "cannot change rnn_layer_sizes"),
                           (["--preset", "debug"], "--preset does not apply")):
        bad = subprocess.run(cli + ["--init-from", parent.run_dir, *extra], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.slow
def test_pipeline_fine_tunes_a_bundle_and_honours_a_time_budget(prefect_harness, tmp_path):
    from melodyflow.flows.cli import build_parser
    from melodyflow.flows.pipeline import melody_pipeline

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(8)})
    common = dict(source=str(corpus), data_root=str(tmp_path / "data"), workers=1)
    first = melody_pipeline(**common, num_training_steps=4, hparams='{"batch_size": 4, "rnn_layer_sizes": [8]}')
    parent_run, parent_bundle = first["training"]["run_dir"], first["training"]["bundle"]

    tuned = melody_pipeline(**common, num_training_steps=10**6, time_budget_s=2, init_from=parent_run)
    training = tuned["training"]
    assert training["status"] == "trained" and training["stop_reason"] == "time_budget"
    assert "-from-" in training["run_dir"] and training["parent"]["url"] == parent_bundle
    assert training["start_step"] == 0 and tuned["generation"]["counts"]["ok"] >= 1
    meta = json.loads(open(os.path.join(training["bundle"], "bundle.json")).read())
    assert meta["hparams"]["rnn_layer_sizes"] == [8] and meta["lineage"] == [parent_bundle]

    again = melody_pipeline(**common, num_training_steps=10**6, time_budget_s=2, init_from=parent_run)
    assert again["training"]["status"] == "up_to_date" and again["training"]["bundle"] == training["bundle"]
    args = build_parser().parse_args(["run", "--time-budget", "60", "--init-from", parent_run])
    assert (args.time_budget, args.init_from) == (60.0, parent_run)
