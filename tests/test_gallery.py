"""OUT/index.html: outputs best first, relative links that resolve, escaping; the generate flow writes it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from note_seq.protobuf import music_pb2  # at collection: note_seq's first import must not happen inside a test

from melodyflow.models.generation.audio import choose_synthesizer, read_wav
from melodyflow.models.generation.gallery import GALLERY, render_gallery, write_gallery
from melodyflow.models.generation.outputs import piano_roll_png, write_files
from melodyflow.transforms.io import storage

EVALUATION = {"summary": {"outputs": 6, "mean_score": 0.61, "pitch_range": {"mean": 11.5}},
              "reference": "eval split"}


def melody(seed: int, notes: int, qpm: float = 120.0):
    """A random monophonic line in C major, eighth notes."""
    rng = random.Random(seed)
    sequence = music_pb2.NoteSequence(ticks_per_quarter=220)
    sequence.tempos.add(qpm=qpm)
    step = 30.0 / qpm
    for i in range(notes):
        sequence.notes.add(pitch=60 + rng.choice([0, 2, 4, 5, 7, 9, 11, 12]), velocity=90, start_time=i * step,
                           end_time=(i + 1) * step)
    sequence.total_time = notes * step
    return sequence


def fake_run(out: str, synth, primers=("folk-tune-1a2b", "chorale-3c4d"), outputs: int = 3,
             ranked: bool = True) -> dict:
    """A generation run's files and index without a model: real MIDI, piano rolls and WAVs, made-up scores.

    Ranks run opposite to file order (000 is ranked last), so a page in file order is caught.
    """
    entries = []
    for p, pid in enumerate(primers):
        directory = storage.child(out, pid)
        primer = melody(100 + p, 8)
        entry = {"id": pid, "source": f"primers/{pid}.mid", "status": "ok", "outputs": [],
                 "primer_files": write_files(storage.child(out, "primers"), "primers", pid, primer,
                                             piano_roll_png(primer, primer.total_time, f"{pid} primer"), synth)}
        for n in range(outputs):
            sequence = melody(10 * p + n, 16)
            png = piano_roll_png(sequence, 2.0, f"{pid} #{n}")
            output = {**write_files(directory, pid, f"{n:03d}", sequence, png, synth),
                      "log_likelihood": -20.0 - n, "notes": len(sequence.notes), "steps": 64, "primer_steps": 16}
            if ranked:
                output.update(rank=outputs - n, score=0.5 + 0.1 * n,
                              score_components={"in_key": 1.0, "repetition": 0.1 * n})
            entry["outputs"].append(output)
        entries.append(entry)
    entries.append({"id": "broken-9f9f", "source": "primers/<b>broken</b>.mid", "status": "error",
                    "error": "not a readable MIDI file: <script>alert(1)</script>", "outputs": []})
    index = {"bundle": "", "primers_spec": "primers/", "options": {"num_outputs": outputs, "temperature": 1.0},
             "audio": {**synth.to_dict(), "description": synth.describe()} if synth else None,
             "primers": entries, "gallery": storage.join(out, GALLERY),
             "counts": {"primers": len(entries), "ok": len(primers), "failed": 1, "outputs": outputs * len(primers)}}
    storage.write_text(storage.join(out, "index.json"), json.dumps(index))
    return index


class _Page(HTMLParser):
    """Media and links of a page, and the output names per primer section in page order."""

    def __init__(self):
        super().__init__()
        self.sources, self.links, self.sections, self.text = [], [], {}, []
        self._section, self._in_code = None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self._section = attrs["id"]
            self.sections[self._section] = []
        if tag in ("img", "audio") and attrs.get("src"):
            self.sources.append((tag, attrs["src"]))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        self._in_code = tag == "code"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_code and self._section and re.fullmatch(r"\d{3}\.mid", data):
            self.sections[self._section].append(data)
        self._in_code = False


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_gallery_shows_each_primer_and_its_outputs_best_first_with_links_that_resolve(tmp_path):
    out = str(tmp_path / "gen")
    index = fake_run(out, choose_synthesizer("additive"))
    bundle = tmp_path / "run" / "bundles" / "v0003"
    bundle.mkdir(parents=True)
    (bundle / "bundle.json").write_text(json.dumps({"config": "lookback_rnn", "step": 777, "version": 3,
                                                    "hparams": {"rnn_layer_sizes": [64, 64]},
                                                    "eval_metrics": {"perplexity": 3.25}}))
    index["bundle"] = str(bundle)
    write_gallery(out, index, evaluation=EVALUATION)
    html = (tmp_path / "gen" / GALLERY).read_text()
    page = parse(html)

    assert page.sections["folk-tune-1a2b"] == ["002.mid", "001.mid", "000.mid"]  # rank 1 first
    assert page.sections["chorale-3c4d"] == ["002.mid", "001.mid", "000.mid"]
    targets = [src for _, src in page.sources] + [h for h in page.links if not h.startswith("#")]
    assert targets and all("://" not in t and not t.startswith("/") for t in targets)  # relative only
    for target in targets:
        assert (tmp_path / "gen" / target).stat().st_size > 0, target
    kinds = [kind for kind, _ in page.sources]
    assert kinds.count("img") == kinds.count("audio") == 2 * 4  # primer + 3 outputs, each with roll and player
    assert {h[1:] for h in page.links if h.startswith("#")} == set(page.sections)
    text = " ".join(page.text)
    assert "mean_score" in text and "0.61" in text and "summary.pitch_range.mean" not in text  # summary only
    assert "in_key" in text and "repetition" in text and "additive" in text
    assert all(fact in text for fact in ("lookback_rnn", "777", "[64, 64]", "eval perplexity", "3.25"))
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "<b>broken" not in html
    assert "http" not in html.replace('name="viewport"', "")  # nothing fetched from elsewhere


def test_without_ranks_outputs_keep_file_order_and_without_audio_there_are_no_players(tmp_path):
    out = str(tmp_path / "gen")
    index = fake_run(out, None, primers=("solo-0000",), ranked=False)
    page = parse(render_gallery(index))
    assert page.sections["solo-0000"] == ["000.mid", "001.mid", "002.mid"]
    assert [kind for kind, _ in page.sources] == ["img"] * 4
    assert not list((tmp_path / "gen").rglob("*.wav"))


@pytest.mark.slow
def test_generate_writes_midi_png_and_wav_per_output_and_a_gallery(prefect_harness, gcs_bucket, tmp_path):
    """The CLI end to end on a trained debug bundle: 6 outputs per primer, each with its three files; the page.

    Only stdout is redirected (not capsys): Prefect's console handler keeps the ``sys.stderr`` it first saw, and
    capsys closes its stream when the test ends while the session's Prefect server still logs to it.
    """
    from support import write_corpus
    from test_generation import PRIMERS

    bundle = _trained_bundle(tmp_path)
    primers = write_corpus(tmp_path / "primers", {"single.mid": PRIMERS["single.mid"],
                                                  "multi track.mid": PRIMERS["multi track.mid"]})
    out = tmp_path / "gen"
    printed = _stdout_of(["generate", bundle, "--primers", str(primers), "--output", str(out),
                          "--num-outputs", "6", "--num-steps", "48"])
    assert f"gallery  {out / GALLERY}" in printed and "audio    " in printed
    index = json.loads((out / "index.json").read_text())
    assert index["audio"]["name"] == choose_synthesizer().name and (out / GALLERY).stat().st_size
    assert str(out) not in (out / "index.json").read_text()  # the same run into another OUT writes the same bytes
    for entry in index["primers"]:
        names = sorted(p.name for p in (out / entry["id"]).iterdir())
        assert names == sorted(f"{n:03d}.{ext}" for n in range(6) for ext in ("mid", "png", "wav"))
        assert all((out / "primers" / f"{entry['id']}.{ext}").stat().st_size for ext in ("mid", "png", "wav"))
        for output in entry["outputs"]:
            samples, rate = read_wav((out / output["wav"]).read_bytes())
            assert len(samples) / rate > 48 * 0.15 * 0.5 and abs(samples).max() > 0.5  # 48 steps at 100 qpm
    page = parse((out / GALLERY).read_text())
    for _, src in page.sources:
        assert (out / src).is_file()
    assert len([1 for kind, _ in page.sources if kind == "audio"]) == 2 * 7

    quiet = json.loads(_stdout_of(["generate", bundle, "--primers", str(primers), "--output",
                                   str(tmp_path / "quiet"), "--num-outputs", "2", "--num-steps", "48", "--no-audio",
                                   "--json"]))
    assert quiet["audio"] is None and not list((tmp_path / "quiet").rglob("*.wav"))
    assert "<audio" not in (tmp_path / "quiet" / GALLERY).read_text()
    _check_ui_artifact_for_a_bucket(bundle, str(primers), gcs_bucket)


def _stdout_of(argv: list[str]) -> str:
    from melodyflow.flows.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def _check_ui_artifact_for_a_bucket(bundle: str, primers: str, bucket: str) -> None:
    """On object storage the UI's gallery links by HTTP URL; pictures are embedded, never ``file://``."""
    from test_flows import _artifacts_of

    from melodyflow.flows.generate import generate_melodies

    state = generate_melodies(bundle=bundle, output=f"{bucket}/gen", primers=primers, num_outputs=1, num_steps=48,
                              return_state=True)
    index = state.result()
    assert storage.exists(index["gallery"]) and index["gallery"].startswith(bucket)
    markdown = {a.key: a for a in _artifacts_of(state.state_details.flow_run_id)}["generation-gallery"].data
    emulator = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
    assert markdown.count("](data:image/png;base64,") == 2 and "file://" not in markdown
    assert f"]({emulator}/{bucket[len('gs://'):]}/gen/index.html)" in markdown
    assert f"]({emulator}/{bucket[len('gs://'):]}/gen/{index['primers'][0]['outputs'][0]['wav']})" in markdown


def _trained_bundle(tmp_path: Path) -> str:
    import midi_factory
    from support import write_corpus
    from test_training import build_data

    from melodyflow.models.hparams import debug_hparams
    from melodyflow.models.training.loop import TrainSettings, train

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(10)})
    data = build_data(corpus, tmp_path / "data", configs=("basic_rnn",))
    result = train(data, os.fspath(tmp_path / "run"), TrainSettings(config="basic_rnn", num_training_steps=4,
                                                                     eval_every=4), debug_hparams("basic_rnn"))
    return result.bundle
