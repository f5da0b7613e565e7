"""``--stop-at-eval-loss``: training stops at the first evaluation that reaches a held-out loss."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import midi_factory
from support import write_corpus
from test_training import build_data
from melodyflow.models.hparams import debug_hparams
from melodyflow.models.training.loop import TrainSettings, train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop")
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(24)})
    return build_data(corpus, tmp / "data", configs=("basic_rnn",))


def _settings(target: float | None) -> TrainSettings:
    return TrainSettings(config="basic_rnn", num_training_steps=12, eval_every=4, checkpoint_every=100,
                         summary_every=3, stop_at_eval_loss=target)


@pytest.mark.slow
def test_stops_at_the_first_evaluation_at_or_below_the_target(data_root, tmp_path):
    # A loss every model beats: the first evaluation (step 4) stops the run, which still ends like one that
    # ran out of steps: last train summary, checkpoint and a bundle that records why.
    run = tmp_path / "run"
    result = train(data_root, str(run), _settings(50.0), debug_hparams("basic_rnn"))
    assert (result.step, result.stop_reason) == (4, "eval_loss_reached")
    assert [h["step"] for h in result.history if h["split"] == "eval"] == [4]
    assert [h["step"] for h in result.history if h["split"] == "train"] == [3, 4]
    assert result.eval_metrics["loss"] <= 50.0
    assert (run / "checkpoints" / "ckpt-4.index").exists()
    meta = json.loads((run / "bundles" / "v0001" / "bundle.json").read_text())
    assert (meta["step"], meta["stop_reason"], meta["stop_at_eval_loss"]) == (4, "eval_loss_reached", 50.0)

    # A loss no model reaches: every evaluation runs and the step limit ends training.
    unreached = train(data_root, str(tmp_path / "run2"), _settings(1e-9), debug_hparams("basic_rnn"))
    assert (unreached.step, unreached.stop_reason) == (12, "num_training_steps")
    assert [h["step"] for h in unreached.history if h["split"] == "eval"] == [4, 8, 12]

    # Between the two: the run stops exactly at the first evaluation whose loss is at or below the target.
    losses = {h["step"]: h["loss"] for h in unreached.history if h["split"] == "eval"}
    target = losses[8] + 1e-3
    expected = min(s for s, loss in losses.items() if loss <= target)
    again = train(data_root, str(tmp_path / "run3"), _settings(target), debug_hparams("basic_rnn"))
    assert again.step == expected and again.eval_metrics["loss"] <= target


def test_settings_refuse_a_target_that_is_not_a_positive_loss():
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="eval loss to stop at"):
            _settings(bad)


@pytest.mark.slow
def test_command_line_stops_at_the_target_and_refuses_bad_values(data_root, tmp_path):
    cmd = [sys.executable, "-m", "melodyflow.flows.cli", "train", data_root, str(tmp_path / "run"), "--preset",
           "debug", "--num-training-steps", "50", "--eval-every", "3", "--stop-at-eval-loss", "40", "--json"]
    result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert (result["step"], result["stop_reason"]) == (3, "eval_loss_reached")
    for bad in ("0", "-2", "x"):
        proc = subprocess.run(cmd[:-3] + ["--stop-at-eval-loss", bad], capture_output=True, text=True)
        assert proc.returncode == 2 and "--stop-at-eval-loss" in proc.stderr and "Traceback" not in proc.stderr
