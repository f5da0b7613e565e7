"""Hostile inputs to the model-side stages: each bad item gets a clear reason, the good ones still succeed,
and a bad invocation fails in one line (exit status 2) before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import midi_factory
from support import write_corpus
from test_magenta_import import magenta_tensors, write_mag

CLI = [sys.executable, "-m", "melodyflow.flows.cli"]
HUGE_NOTES = 1_000_000  # 8 MB of MIDI: refused by size before it is read
MANY_NOTES = 100_000  # 800 KB: under the size limit, refused by the note-count scan before parsing


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from test_training import train_debug_model

    data, run, result = train_debug_model(tmp_path_factory.mktemp("hostile-stages"), files=30, steps=4)
    return {"data": data, "run": run, "bundle": result.bundle}


def hostile_midi_dir(root: Path, good: int) -> Path:
    files = {f"good{i}.mid": midi_factory.melodic_midi(200 + i) for i in range(good)}
    files.update({"corrupt.mid": b"MThd\x00\x00\x00\x06garbage", "zero.mid": b"",
                  "truncated.mid": midi_factory.truncated(midi_factory.melodic_midi(7), 0.4),
                  "many-notes.mid": midi_factory.huge_file(tracks=1, notes=MANY_NOTES),
                  "million-notes.mid": midi_factory.huge_file(tracks=1, notes=HUGE_NOTES)})
    return write_corpus(root, files)


def cli_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, message: str, status: int = 2) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr[-3000:]
    assert len(lines) == 1 and message in lines[0], done.stderr[-3000:]


REASONS = {"corrupt.mid": "not a readable MIDI file", "zero.mid": "empty (0 bytes)",
           "truncated.mid": "not a readable MIDI file", "many-notes.mid": "more than 20000 notes",
           "million-notes.mid": "over the 1048576-byte limit"}


@pytest.mark.slow
def test_evaluate_generated_judges_the_good_files_and_gives_each_bad_one_a_reason(trained, tmp_path):
    files = hostile_midi_dir(tmp_path / "judged", good=4)
    done = cli_process("evaluate", trained["data"], "--generated", str(files), "--output", str(tmp_path / "ev"),
                       "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    generated = json.loads(done.stdout)["generated"]
    assert generated["count"] == 4
    assert {m["name"] for m in json.loads((tmp_path / "ev" / "evaluation.json").read_text())["melodies"]} == \
        {f"good{i}.mid" for i in range(4)}
    reasons = {f["name"]: f["error"] for f in generated["failed"]}
    assert set(reasons) == set(REASONS)
    for name, reason in REASONS.items():
        assert reason.replace("the primer", "the file") in reasons[name], reasons
        assert "\n" not in reasons[name]
    report = (tmp_path / "ev" / "report.md").read_text()
    assert f"## Not judged ({len(REASONS)})" in report


@pytest.mark.slow
def test_generate_reports_bad_primers_in_the_index_and_succeeds_with_the_good_ones(trained, tmp_path):
    primers = hostile_midi_dir(tmp_path / "primers", good=2)
    done = cli_process("generate", trained["run"], "--output", str(tmp_path / "gen"), "--primers", str(primers),
                       "--primer-bars", "2", "--num-outputs", "2", "--num-steps", "48", "--no-audio", "--json")
    assert done.returncode == 0, done.stderr[-3000:]  # some primers succeeded
    index = json.loads((tmp_path / "gen" / "index.json").read_text())
    assert json.loads(done.stdout)["counts"] == index["counts"] == {"primers": 7, "ok": 2, "failed": 5, "outputs": 4}
    errors = {e["source"].rsplit("/", 1)[-1]: e.get("error") for e in index["primers"] if e["status"] != "ok"}
    assert set(errors) == set(REASONS)
    for name, reason in REASONS.items():
        assert reason in errors[name], errors
    for entry in index["primers"]:
        if entry["status"] == "ok":
            assert all((tmp_path / "gen" / o["midi"]).stat().st_size > 0 for o in entry["outputs"])
        else:  # a failed primer writes nothing of its own
            assert not (tmp_path / "gen" / entry["id"]).exists()

    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    for name in ("corrupt.mid", "million-notes.mid"):
        shutil.copy(primers / name, only_bad / name)
    done = cli_process("generate", trained["run"], "--output", str(tmp_path / "none"), "--primers", str(only_bad),
                       "--num-steps", "48", "--no-audio")
    assert done.returncode == 1 and "melodyflow generate: error: no primer succeeded" in done.stderr, \
        done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    index = json.loads((tmp_path / "none" / "index.json").read_text())
    assert index["counts"] == {"primers": 2, "ok": 0, "failed": 2, "outputs": 0}


def _damaged_bundles(trained: dict, root: Path) -> dict[str, tuple[str, str]]:
    """name → (bundle or RUN_DIR, what the error must say)."""
    good = Path(trained["bundle"])
    cases = {}
    for name in ("truncated-weights", "corrupt-metadata", "missing-weights", "latest-to-nowhere"):
        run = root / name
        shutil.copytree(good, run / "bundles" / "v0001")
        (run / "bundles" / "LATEST").write_text("v0001\n")
        cases[name] = run
    weights = cases["truncated-weights"] / "bundles" / "v0001" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:2000])
    (cases["corrupt-metadata"] / "bundles" / "v0001" / "bundle.json").write_text('{"config": "basic')
    os.remove(cases["missing-weights"] / "bundles" / "v0001" / "model.weights.h5")
    (cases["latest-to-nowhere"] / "bundles" / "LATEST").write_text("v0007\n")
    return {"truncated-weights": (str(cases["truncated-weights"]), "model.weights.h5 is corrupt or truncated"),
            "corrupt-metadata": (str(cases["corrupt-metadata"]), "bundle.json is corrupt"),
            "missing-weights": (str(cases["missing-weights"] / "bundles" / "v0001"), "has no model.weights.h5"),
            "latest-to-nowhere": (str(cases["latest-to-nowhere"]), "names 'v0007', which is not a bundle")}


@pytest.mark.slow
def test_a_damaged_bundle_fails_evaluate_and_generate_in_one_line(trained, tmp_path):
    for name, (bundle, message) in _damaged_bundles(trained, tmp_path).items():
        out = tmp_path / f"ev-{name}"
        assert_one_line_error(cli_process("evaluate", trained["data"], "--bundle", bundle, "--output", str(out)),
                              message)
        assert not out.exists()
    other = tmp_path / "other-config"
    shutil.copytree(trained["bundle"], other)
    meta = json.loads((other / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps({**meta, "config": "mono_rnn"}))
    assert_one_line_error(cli_process("evaluate", trained["data"], "--bundle", str(other), "--output",
                                      str(tmp_path / "ev-other")), "is a mono_rnn model")
    bundle, message = _damaged_bundles(trained, tmp_path / "gen")["truncated-weights"]
    assert_one_line_error(cli_process("generate", bundle, "--output", str(tmp_path / "gen-out")), message)
    assert not (tmp_path / "gen-out").exists()


@pytest.mark.slow
def test_import_magenta_refuses_a_truncated_bundle_and_a_non_bundle_in_one_line(tmp_path):
    mag = Path(write_mag(tmp_path / "good.mag", "basic_rnn", magenta_tensors("basic_rnn", sizes=(8, 8))))
    truncated = tmp_path / "truncated.mag"
    truncated.write_bytes(mag.read_bytes()[: len(mag.read_bytes()) // 2])
    not_a_bundle = tmp_path / "song.mag"
    not_a_bundle.write_bytes(midi_factory.melodic_midi(3))
    for source in (truncated, not_a_bundle):
        out = tmp_path / f"out-{source.stem}"
        assert_one_line_error(cli_process("import-magenta", str(source), str(out)), "is corrupt or truncated")
        assert sorted(os.listdir(tmp_path)) == ["good.mag", "song.mag", "truncated.mag"]  # nothing published


@pytest.mark.slow
def test_fine_tuning_refuses_a_bundle_of_another_config_or_encoding_in_one_line(trained, tmp_path):
    bundle = Path(trained["bundle"])
    for name, change, message in (
            ("other-config", {"config": "mono_rnn"}, "is a mono_rnn bundle, not basic_rnn"),
            ("other-encoding", {"min_note": 36, "max_note": 96}, "another encoding")):
        parent = tmp_path / name
        shutil.copytree(bundle, parent)
        meta = json.loads((parent / "bundle.json").read_text())
        (parent / "bundle.json").write_text(json.dumps({**meta, **change}))
        run = tmp_path / f"run-{name}"
        done = cli_process("train", trained["data"], str(run), "--config", "basic_rnn", "--init-from", str(parent),
                           "--num-training-steps", "1")
        assert_one_line_error(done, message)
        assert not run.exists()


def test_an_export_killed_before_latest_is_redone_under_the_same_version(tmp_path):
    """A version directory past ``LATEST`` is a killed export's: the next export replaces it instead of
    numbering past it, so the re-run's bundle has the version a run without the kill gives."""
    from melodyflow.models.bundles.bundle import export_bundle, load_bundle
    from melodyflow.models.hparams import debug_hparams
    from melodyflow.models.network.registry import build_network

    model = build_network(38, 38, debug_hparams("basic_rnn"))
    meta = {"config": "basic_rnn", "hparams": debug_hparams("basic_rnn").to_dict(), "input_size": 38,
            "num_classes": 38, "step": 1}
    run = tmp_path / "run"
    export_bundle(model, str(run), meta)
    partial = run / "bundles" / "v0002"
    partial.mkdir()
    (partial / "model.weights.h5").write_bytes(b"half")
    url = export_bundle(model, str(run), {**meta, "step": 2})
    assert url.endswith("v0002") and (run / "bundles" / "LATEST").read_text() == "v0002\n"
    assert sorted(os.listdir(run / "bundles")) == ["LATEST", "v0001", "v0002"]
    assert load_bundle(str(run))[1]["step"] == 2
