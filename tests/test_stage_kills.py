"""SIGKILL the real `melodyflow evaluate`, `generate` (audio, gallery, several primers, --keep-best) and
`import-magenta` commands at seeded random moments after they started writing their output; a re-run must
give exactly what a clean run gives, byte for byte (nothing here carries a time: no field is normalised
beyond the output root's own path), and a killed run must never leave a published but partial output.

The commands run as separate processes, Prefect and all, against one local Prefect server (the default
setting outside tests; it lives in its own session, so a kill of the command's process group spares it).
More seeds: ``MELODYFLOW_CRASH_SEEDS=1,2,3,4,5,6,7,8,9,10``; ``-s`` prints where each kill landed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import midi_factory
from support import snapshot, write_corpus
from test_magenta_import import magenta_tensors, write_mag

SEEDS = [int(s) for s in os.environ.get("MELODYFLOW_CRASH_SEEDS", "11,22,33").split(",")]
CLI = [sys.executable, "-m", "melodyflow.flows.cli"]
POLL_S = 0.005
IMPORT_WRITE_S = 0.05


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """The environment of the commands: a private Prefect home with one local server, a private cache."""
    tmp = tmp_path_factory.mktemp("stage-kills-env")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MELODYFLOW_PREFECT_SERVER")}
    env.update(PREFECT_HOME=str(tmp / "prefect"), MELODYFLOW_SERVER_IDLE_MINUTES="15",
               XDG_CACHE_HOME=str(tmp / "cache"))
    subprocess.run([*CLI, "server", "start"], env=env, check=True, capture_output=True, timeout=300)
    yield env
    subprocess.run([*CLI, "server", "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A basic_rnn dataset (eval split included) and a debug model trained on it for 10 steps."""
    from test_training import train_debug_model

    tmp = tmp_path_factory.mktemp("stage-kills")
    data, run, _ = train_debug_model(tmp, files=40, steps=10)
    primers = write_corpus(tmp / "primers", {f"p{i}.mid": midi_factory.melodic_midi(100 + i) for i in range(3)})
    return {"data": data, "run": run, "primers": str(primers)}


def _anything_under(path: Path) -> bool:
    return any(files for _, _, files in os.walk(path))


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def clean_run(args: list[str], env: dict, writing: Callable[[], bool]) -> float:
    """Run to the end; returns the seconds from its first write (``writing()`` true) to its exit."""
    proc = _start(args, env)
    first = None
    while proc.poll() is None:
        if first is None and writing():
            first = time.monotonic()
        time.sleep(POLL_S)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert proc.returncode == 0, stderr[-3000:]
    assert first is not None, "the command wrote nothing"
    return time.monotonic() - first


def kill_while_writing(args: list[str], env: dict, writing: Callable[[], bool], window: float, seed: int) -> bool:
    """Start the command; once ``writing()`` is true, SIGKILL its process group after a delay drawn with
    ``seed`` from ``[0, window)`` (the clean run's time from first write to exit). True if it was killed."""
    delay = random.Random(seed).uniform(0.0, window)
    proc = _start(args, env)
    try:
        deadline = time.monotonic() + 600
        while not writing():
            assert proc.poll() is None, "the command ended before it wrote anything"
            assert time.monotonic() < deadline, "the command never started writing"
            time.sleep(POLL_S)
        seen = time.monotonic()
        try:
            proc.wait(timeout=delay)
            print(f"\n  finished {time.monotonic() - seen:.2f} s after its first write; kill planned at {delay:.2f} s "
                  f"of a {window:.2f}-s window")
            return False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rerun(args: list[str], env: dict) -> None:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def kill_rerun_and_compare(args: list[str], env: dict, writing: Callable[[], bool], window: float, seed: int,
                           out: Path, marker: Path, clean: Path) -> None:
    """Kill the command while it writes; with its marker present the output must already be the clean run's
    (a marker vouches for complete output), and a re-run must always give the clean run's output."""
    killed = kill_while_writing(args, env, writing, window, seed)
    published = marker.exists()
    where = "after its marker" if published else "before its marker"
    print(f"\n{args[0]} seed {seed}: " + (f"killed {where}" if killed else "finished before the kill"))
    if published:
        assert snapshot(out) == snapshot(clean)
    rerun(args, env)
    assert snapshot(out) == snapshot(clean)


# -- generate -------------------------------------------------------------------------------------------------

def generate_args(trained: dict, out: Path) -> list[str]:
    return ["generate", trained["run"], "--output", str(out), "--primers", trained["primers"], "--primer-bars", "2",
            "--num-outputs", "4", "--keep-best", "2", "--num-steps", "64", "--seed", "5"]


@pytest.fixture(scope="module")
def clean_generation(trained, cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean-gen") / "out"
    window = clean_run(generate_args(trained, out), cli_env, lambda: _anything_under(out))
    files = snapshot(out)
    assert any(name.endswith(".wav") for name in files) and "index.html" in files and "index.json" in files
    return out, window


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_generate_killed_while_writing_reruns_to_the_clean_result(trained, cli_env, clean_generation, tmp_path,
                                                                  seed):
    clean, window = clean_generation
    out = tmp_path / "out"
    kill_rerun_and_compare(generate_args(trained, out), cli_env, lambda: _anything_under(out), window, seed,
                           out, out / "index.json", clean)


@pytest.mark.slow
def test_generate_over_a_killed_runs_leftovers_equals_the_clean_run(trained, cli_env, clean_generation, tmp_path):
    """The leftovers a kill can leave, planted on purpose: a temporary file, a candidate that this run's
    --keep-best discards, and the index of another request (which must not vouch for the files rewritten)."""
    clean, _ = clean_generation
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    primer_dir = next(p for p in out.iterdir() if p.is_dir() and p.name != "primers")
    (primer_dir / "001.wav.tmp-4242").write_bytes(b"half a wav")
    (out / "primers" / f"{primer_dir.name}.mid.tmp-4243").write_bytes(b"half a midi")
    for n in range(4):
        (primer_dir / f"{n:03d}.mid").write_bytes(b"another run's candidate")
    (out / "index.json").write_text('{"primers": []}')
    rerun(generate_args(trained, out), cli_env)
    assert snapshot(out) == snapshot(clean)


# -- evaluate -------------------------------------------------------------------------------------------------

def evaluate_args(trained: dict, out: Path) -> list[str]:
    return ["evaluate", trained["data"], "--bundle", trained["run"], "--num-samples", "16", "--seed", "3",
            "--output", str(out)]


@pytest.fixture(scope="module")
def clean_evaluation(trained, cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean-eval") / "out"
    window = clean_run(evaluate_args(trained, out), cli_env, lambda: _anything_under(out))
    assert "evaluation.json" in snapshot(out) and "charts/overview.png" in snapshot(out)
    return out, window


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_evaluate_killed_while_writing_reruns_to_the_clean_result(trained, cli_env, clean_evaluation, tmp_path,
                                                                  seed):
    clean, window = clean_evaluation
    out = tmp_path / "out"
    kill_rerun_and_compare(evaluate_args(trained, out), cli_env, lambda: _anything_under(out), window, seed,
                           out, out / "evaluation.json", clean)


@pytest.mark.slow
def test_evaluate_over_a_killed_runs_leftovers_equals_the_clean_run(trained, cli_env, clean_evaluation, tmp_path):
    clean, _ = clean_evaluation
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / "charts" / "pitch_range.png.tmp-4242").write_bytes(b"half a chart")
    (out / "report.md.tmp-4243").write_text("half a report")
    (out / "charts" / "a_feature_of_another_run.png").write_bytes(b"stale")
    (out / "evaluation.json").write_text("{}")
    rerun(evaluate_args(trained, out), cli_env)
    assert snapshot(out) == snapshot(clean)


# -- import-magenta -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mag(tmp_path_factory) -> str:
    return write_mag(tmp_path_factory.mktemp("mag") / "basic.mag", "basic_rnn",
                     magenta_tensors("basic_rnn", sizes=(24, 16), seed=4))


def _import_writing(parent: Path, name: str) -> Callable[[], bool]:
    return lambda: any(n == name or n.startswith(f".{name}.importing-") for n in os.listdir(parent))


@pytest.fixture(scope="module")
def clean_import(mag, cli_env, tmp_path_factory):
    parent = tmp_path_factory.mktemp("clean-import")
    window = clean_run(["import-magenta", mag, str(parent / "out")], cli_env, _import_writing(parent, "out"))
    assert os.listdir(parent) == ["out"]
    return parent / "out", window


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_import_killed_while_writing_reruns_to_the_clean_result(mag, cli_env, clean_import, tmp_path, seed):
    clean, window = clean_import
    parent = tmp_path / "imports"
    parent.mkdir()
    args = ["import-magenta", mag, str(parent / "out")]
    # The import writes for milliseconds (a build directory, then one rename) before seconds of reporting and
    # shutdown: kills drawn from the whole window would all land after the rename.
    # OUT itself is the marker: it appears by one rename of a complete build directory.
    kill_rerun_and_compare(args, cli_env, _import_writing(parent, "out"), min(window, IMPORT_WRITE_S), seed,
                           parent / "out", parent / "out", clean)
    assert os.listdir(parent) == ["out"], "a killed import's build directory was left behind"


def test_a_killed_imports_build_directory_is_removed_by_the_next_import(mag, tmp_path):
    """The moment the random kills rarely hit (the build directory exists, OUT not yet), made on purpose."""
    from melodyflow.models.bundles.magenta_import import import_magenta

    stale = tmp_path / ".out.importing-abc123" / "bundles" / "v0001"
    stale.mkdir(parents=True)
    (stale / "model.weights.h5").write_bytes(b"half")
    assert import_magenta(mag, str(tmp_path / "out"))["status"] == "imported"
    assert os.listdir(tmp_path) == ["out"]


def test_a_partial_import_on_an_object_store_is_redone(mag, gcs_bucket, tmp_path):
    """An import killed mid-upload leaves objects without ``LATEST``; the re-run replaces them."""
    from melodyflow.models.bundles.magenta_import import import_magenta
    from melodyflow.transforms.io import storage

    local = import_magenta(mag, str(tmp_path / "local"))
    out = f"{gcs_bucket}/partial-import"
    storage.write_bytes(f"{out}/bundles/v0001/model.weights.h5", b"half an upload")
    result = import_magenta(mag, out)
    assert result["status"] == "imported"
    weights = Path(local["bundle"]) / "model.weights.h5"
    assert storage.read_bytes(f"{out}/bundles/v0001/model.weights.h5") == weights.read_bytes()
    assert storage.read_text(f"{out}/bundles/LATEST") == "v0001\n"
    shutil.rmtree(tmp_path / "local")


def test_remove_temporaries_takes_only_write_streams_leftovers_in_the_directory_itself(tmp_path):
    from melodyflow.transforms.io import storage

    for name in ("000.mid.tmp-4242", "000.mid", "notes.tmp-draft", "sub/001.mid.tmp-77"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert storage.remove_temporaries(str(tmp_path)) == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
        ["000.mid", "notes.tmp-draft", "sub/001.mid.tmp-77"]
    assert storage.remove_temporaries(str(tmp_path / "absent")) == 0
