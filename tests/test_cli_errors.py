"""Bad invocations: exit status 2 and one line that says what is wrong and what to do, no traceback.

These are found before Prefect or its API starts, so most tests here need no harness.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import midi_factory
from support import write_corpus
from test_generation import bundle  # noqa: F401 - the trained debug bundle fixture
from melodyflow.flows.cli import main


def _one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", {f"t{i}.mid": midi_factory.random_midi(i) for i in range(2)})


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_data_root_that_is_a_file(command, corpus, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("x")
    assert main([command, str(corpus), str(target)]) == 2
    _one_error_line(capsys, f"melodyflow {command}: error:", "is a file", "give a directory")


def test_data_root_that_cannot_be_written(corpus, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["ingest", str(corpus), str(blocker / "data")]) == 2
    _one_error_line(capsys, "not writable")
    if os.path.isdir("/sys"):  # read-only even for root
        assert main(["ingest", str(corpus), "/sys/melodyflow-data"]) == 2
        _one_error_line(capsys, "/sys/melodyflow-data is not writable")


@pytest.mark.parametrize("source", ["", "   "])
@pytest.mark.parametrize("command", ["ingest", "run"])
def test_empty_source_is_not_the_current_directory(command, source, tmp_path, capsys):
    assert main([command, source, str(tmp_path / "data")]) == 2
    _one_error_line(capsys, "SOURCE is empty (an unset shell variable?)")
    assert not (tmp_path / "data").exists()


def test_empty_data_root(corpus, capsys):
    assert main(["ingest", str(corpus), ""]) == 2
    _one_error_line(capsys, "DATA_ROOT is empty")


def test_missing_source_and_source_that_is_a_file(corpus, tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nowhere"), str(tmp_path / "data")]) == 2
    _one_error_line(capsys, "does not exist")
    assert main(["run", str(corpus / "t0.mid"), str(tmp_path / "data")]) == 2
    _one_error_line(capsys, "is a file: give the directory that holds it")


@pytest.mark.parametrize("data_root", ["", "sub/data"])
def test_source_equal_to_or_containing_data_root(corpus, data_root, capsys):
    assert main(["ingest", str(corpus), str(corpus / data_root) if data_root else str(corpus)]) == 2
    _one_error_line(capsys, "is inside SOURCE", "put DATA_ROOT outside SOURCE")
    assert not (corpus / "sub").exists()


@pytest.mark.parametrize("value", ["0", "-3", "two"])
@pytest.mark.parametrize("command", ["ingest", "dataset", "run"])
def test_workers_below_one(command, value, corpus, tmp_path, capsys):
    args = [str(corpus), str(tmp_path / "d")] if command != "dataset" else [str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main([command, *args, "--workers", value])
    assert exit_.value.code == 2
    _one_error_line(capsys, "--workers", f"see `melodyflow {command} --help`")


def test_dataset_of_a_data_root_without_batches(tmp_path, capsys):
    assert main(["dataset", str(tmp_path)]) == 2
    _one_error_line(capsys, "no completed ingestion batch", "run `melodyflow ingest SOURCE")
    assert main(["dataset", str(tmp_path / "nothing-here")]) == 2
    _one_error_line(capsys, "does not exist")


def test_primer_start_bar_needs_primer_bars(tmp_path, capsys):
    assert main(["run", "--primer-start-bar", "3", str(tmp_path / "c"), str(tmp_path / "d")]) == 2
    _one_error_line(capsys, "--primer-start-bar needs --primer-bars")


def test_bad_hparams_and_training_without_a_dataset(tmp_path, capsys):
    assert main(["run", "--hparams", "batchsize=3"]) == 2
    _one_error_line(capsys, "melodyflow run: error:", "batchsize")
    assert main(["train", str(tmp_path / "data"), str(tmp_path / "run"), "--preset", "debug"]) == 2
    _one_error_line(capsys, "has no COMPLETED marker", "melodyflow dataset")


def test_debug_shows_the_traceback(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    cmd = [sys.executable, "-m", "melodyflow.flows.cli", "ingest", str(tmp_path), str(target), "--debug"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "UsageError" in done.stderr


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_source_without_a_readable_file(command, tmp_path, capsys):
    source = tmp_path / "notes"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "readme.txt").write_text("no music here")
    assert main([command, str(source), str(tmp_path / "data")]) == 2
    _one_error_line(capsys, "holds no MIDI, MusicXML or ABC files")


def test_remote_source_without_a_readable_file_fails_in_the_flow_without_a_traceback(prefect_harness, tmp_path,
                                                                                      capsys):
    """A URL prefix is only listed once, by the flow: the same error, found there, still ends in one line."""
    from melodyflow.transforms.io import storage

    storage.write_text("memory://empty-source/readme.txt", "no music here")
    assert main(["ingest", "memory://empty-source", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("melodyflow ingest: error: SOURCE memory://empty-source holds no MIDI, "
                                            "MusicXML or ABC files (1 other file(s) ignored): check the path")


@pytest.mark.parametrize("primers", ["{out}/primers", "{out}/primers/*.mid", "{out}"])
def test_primers_inside_the_output_they_would_be_removed_from(primers, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", str(tmp_path / "no-bundle"), "--output", str(out),
                 "--primers", primers.format(out=out)]) == 2
    _one_error_line(capsys, "is inside --output", "copy them elsewhere first")


# --- with flows: errors found once a stage has run --------------------------------------------------

@pytest.mark.slow
def test_run_stops_with_one_line_when_the_corpus_gives_nothing_to_train_on(prefect_harness, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", {f"noise{i}.mid": midi_factory.random_midi(i) for i in range(2)})
    assert main(["run", str(corpus), str(tmp_path / "data"), "--num-training-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("melodyflow run: error: nothing to train on: the dataset has no "
                                                   "examples")
    assert not (tmp_path / "data" / "runs").exists()


@pytest.mark.slow
def test_dataset_with_an_empty_eval_split_warns(prefect_harness, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", {f"tune{i}.mid": midi_factory.melodic_midi(i) for i in range(3)})
    data = str(tmp_path / "data")
    assert main(["ingest", str(corpus), data]) == 0
    assert main(["dataset", data, "--eval-ratio", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "warning: the eval split is empty" in out and "raise --eval-ratio" in out
    assert main(["train", data, str(tmp_path / "run"), "--preset", "debug", "--num-training-steps", "1"]) == 0
    assert "melodyflow train: warning: the eval split" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_exits_1_when_no_primer_succeeds_and_a_window_makes_a_song_a_primer(
        prefect_harness, bundle, tmp_path, capsys):  # noqa: F811 - `bundle` is test_generation's fixture
    from test_primers import SONG  # 8 bars of 3/4: 96 steps

    song = write_corpus(tmp_path / "primers", {"song.mid": SONG}) / "song.mid"
    args = ["generate", bundle, "--primers", str(song), "--num-steps", "48", "--num-outputs", "1"]
    assert main([*args, "--output", str(tmp_path / "whole")]) == 1
    captured = capsys.readouterr()
    assert "more than --num-steps 48: take a few bars of it with --primer-bars N" in captured.out
    assert captured.err.strip().splitlines()[-1] == ("melodyflow generate: error: no primer succeeded (1 failed; "
                                                      "the reasons are listed above)")
    assert main([*args, "--output", str(tmp_path / "window"), "--primer-bars", "2", "--primer-start-bar", "3"]) == 0
    assert "Generated 1 melodies for 1 of 1 primer(s)" in capsys.readouterr().out
