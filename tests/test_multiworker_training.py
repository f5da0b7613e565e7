"""Two training processes on loopback with TF_CONFIG train one model; only the chief writes the run; after a
worker is killed, restarting both resumes from the chief's last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import midi_factory
from support import free_port, write_corpus


WORKER = """
import json, sys
from melodyflow.models.hparams import debug_hparams
from melodyflow.models.training.loop import TrainSettings, train
data_root, run_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = TrainSettings(config="basic_rnn", num_training_steps=steps, eval_every=10, checkpoint_every=5,
                         summary_every=5)
result = train(data_root, run_dir, settings, debug_hparams("basic_rnn"))
print("RESULT " + json.dumps({"bundle": result.bundle, "step": result.step, "start_step": result.start_step,
                              "eval_loss": result.eval_metrics.get("loss")}), flush=True)
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from melodyflow.transforms.beam.runners import RunnerConfig
    from melodyflow.transforms.ingest.batches import plan_ingest
    from melodyflow.transforms.ingest.files import IngestSettings
    from melodyflow.transforms.ingest.job import run_ingest_pipeline
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
    from melodyflow.transforms.melodies.job import run_dataset_pipeline

    tmp = tmp_path_factory.mktemp("multiworker")
    corpus = write_corpus(tmp / "corpus", {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(16)})
    data = str(tmp / "data")
    run_ingest_pipeline(plan_ingest(str(corpus), data, IngestSettings(collection="mw")), RunnerConfig(workers=1))
    settings = DatasetSettings(config=get_config("basic_rnn"), eval_ratio=0.2)
    run_dataset_pipeline(plan_dataset(data, settings), RunnerConfig(workers=1))
    return data


def _start(cluster: list[str], index: int, data_root: str, run_dir: str, steps: int) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})}
    return subprocess.Popen([sys.executable, "-c", WORKER, data_root, run_dir, str(steps)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def _scratch_dirs() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("melodyflow-worker-")}


def _cluster() -> list[str]:
    return [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(data_root, tmp_path):
    run_dir = str(tmp_path / "run")
    cluster = _cluster()
    scratch_before = _scratch_dirs()
    procs = [_start(cluster, i, data_root, run_dir, 12) for i in range(2)]
    chief, worker = (_result(p) for p in procs)
    assert chief["step"] == worker["step"] == 12
    assert chief["bundle"].endswith("bundles/v0001") and worker["bundle"] == ""
    assert chief["eval_loss"] == pytest.approx(worker["eval_loss"], rel=1e-5)  # the same weights everywhere
    assert sorted(os.listdir(os.path.join(run_dir, "bundles"))) == ["LATEST", "v0001"]
    assert _scratch_dirs() <= scratch_before  # the worker's scratch checkpoints are gone


@pytest.mark.slow
def test_killing_a_worker_then_restarting_both_resumes_from_the_last_checkpoint(data_root, tmp_path):
    run_dir = str(tmp_path / "run")
    checkpoints = os.path.join(run_dir, "checkpoints")
    cluster = _cluster()
    procs = [_start(cluster, i, data_root, run_dir, 400) for i in range(2)]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the chief has checkpointed past step 10
        steps = [int(n.split("-")[1].split(".")[0]) for n in os.listdir(checkpoints)
                 if n.startswith("ckpt-") and n.endswith(".index")] if os.path.isdir(checkpoints) else []
        if steps and max(steps) >= 10:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no checkpoint past step 10 within 240 s")
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait(timeout=30)
    procs[0].send_signal(signal.SIGKILL)  # its collectives would wait for the dead worker
    procs[0].wait(timeout=30)
    assert not os.path.exists(os.path.join(run_dir, "bundles"))
    cluster = _cluster()
    procs = [_start(cluster, i, data_root, run_dir, 60) for i in range(2)]
    chief, worker = (_result(p) for p in procs)
    assert chief["start_step"] >= 10 and chief["start_step"] == worker["start_step"]
    assert chief["step"] == worker["step"] == 60
    assert chief["bundle"].endswith("bundles/v0001")


@pytest.mark.slow
def test_two_melodyflow_train_commands_with_tf_config_train_one_model(data_root, tmp_path):
    """The CLI as an operator runs it on a cluster: each process its own `melodyflow train` and TF_CONFIG;
    the non-chief says so and writes nothing into the run directory (no bundle, no loss curve)."""
    run_dir = str(tmp_path / "run")
    cluster = _cluster()
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "melodyflow.flows.cli", "train", data_root, run_dir, "--config", "basic_rnn",
             "--hparams", '{"batch_size": 8, "rnn_layer_sizes": [16]}', "--num-training-steps", "6", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    chief, worker = results
    assert chief["writes_run"] and not worker["writes_run"]
    assert "worker 1 of a 2-task cluster" in worker["role"] and worker["bundle"] == ""
    assert chief["step"] == worker["step"] == 6
    assert chief["eval_metrics"]["loss"] == pytest.approx(worker["eval_metrics"]["loss"], rel=1e-5)
    assert chief["loss_curve"] == os.path.join(run_dir, "loss_curve.png") and "loss_curve" not in worker
    assert sorted(os.listdir(os.path.join(run_dir, "bundles"))) == ["LATEST", "v0001"]
