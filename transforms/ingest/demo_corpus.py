"""A real demo corpus rendered from public-domain music that the music21 package ships.

The main job must run on a fresh machine with no files supplied and nothing downloaded, so we render a
fixed, deterministic selection of tunes to MIDI: folk songs from the Essen collection and O'Neill's
"Music of Ireland" (ABC, single melody line), Bach chorales (MusicXML, four voices, so multi-track
MIDI), plus a few untouched ABC and MusicXML files so every reader is exercised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass

DEMO_CORPUS_VERSION = 1
MANIFEST_NAME = "demo-corpus.json"


@dataclass(frozen=True)
class DemoCorpusSpec:
    """How many pieces to take from each collection; the selection is the first N that qualify."""

    essen_per_book: int = 6
    oneills_per_book: int = 8
    chorales: int = 40
    raw_abc_books: tuple[str, ...] = ("oneills1850/0487-0500.abc",)
    raw_musicxml: tuple[str, ...] = ("bach/bwv269.mxl", "bach/bwv347.mxl")
    min_notes: int = 24

    def __post_init__(self) -> None:
        if min(self.essen_per_book, self.oneills_per_book, self.chorales) < 0:
            raise ValueError("counts must be non-negative")


def music21_corpus_dir() -> str:
    """Where music21 keeps its corpus, found without importing music21 (which takes seconds)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the music21 package is required for the demo corpus: pip install music21")
    return os.path.join(list(spec.submodule_search_locations)[0], "corpus")


def default_cache_dir() -> str:
    from melodyflow.transforms.io.storage import cache_dir

    return cache_dir(f"demo-corpus-v{DEMO_CORPUS_VERSION}")


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _write_midi(sequence, path: str) -> None:
    import note_seq

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    note_seq.sequence_proto_to_midi_file(sequence, tmp)
    os.replace(tmp, path)


def _abc_selection(corpus: str, collection: str, per_book: int, min_notes: int):
    from note_seq import abc_parser

    folder = os.path.join(corpus, collection)
    for book in sorted(f for f in os.listdir(folder) if f.endswith(".abc")):
        tunes, _errors = abc_parser.parse_abc_tunebook(_read_text(os.path.join(folder, book)))
        taken = 0
        for idx in sorted(tunes):
            if taken == per_book:
                break
            tune = tunes[idx]
            if len(tune.notes) < min_notes:
                continue
            if not tune.tempos:
                tune.tempos.add(qpm=120)
            taken += 1
            yield f"{os.path.splitext(book)[0]}_{idx:03d}", tune


def build_demo_corpus(directory: str, spec: DemoCorpusSpec = DemoCorpusSpec(),
                      progress=lambda message: None) -> dict:
    """Render the demo corpus into ``directory`` (cached: a finished corpus is not rebuilt).

    Returns the manifest: version, spec and the relative path of every file.
    """
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        if manifest.get("version") == DEMO_CORPUS_VERSION and manifest.get("spec") == _spec_dict(spec) and all(
            os.path.exists(os.path.join(directory, f)) for f in manifest["files"]
        ):
            progress(f"demo corpus already built at {directory} ({len(manifest['files'])} files)")
            return manifest
    from note_seq import musicxml_reader

    corpus = music21_corpus_dir()
    files: list[str] = []
    for collection, folder, per_book in (("essenFolksong", "essen", spec.essen_per_book),
                                         ("oneills1850", "oneills", spec.oneills_per_book)):
        progress(f"rendering {collection} tunes")
        for name, tune in _abc_selection(corpus, collection, per_book, spec.min_notes):
            rel = f"{folder}/{name}.mid"
            _write_midi(tune, os.path.join(directory, rel))
            files.append(rel)
    progress("rendering Bach chorales")
    chorales = sorted(f for f in os.listdir(os.path.join(corpus, "bach")) if f.endswith(".mxl"))
    for name in chorales[: spec.chorales]:
        sequence = musicxml_reader.musicxml_file_to_sequence_proto(os.path.join(corpus, "bach", name))
        rel = f"chorales/{os.path.splitext(name)[0]}.mid"
        _write_midi(sequence, os.path.join(directory, rel))
        files.append(rel)
    for src in spec.raw_abc_books + spec.raw_musicxml:
        rel = f"raw/{os.path.basename(src)}"
        os.makedirs(os.path.join(directory, "raw"), exist_ok=True)
        shutil.copyfile(os.path.join(corpus, src), os.path.join(directory, rel))
        files.append(rel)
    manifest = {"version": DEMO_CORPUS_VERSION, "spec": _spec_dict(spec), "files": sorted(files),
                "license": "public domain tunes from the music21 corpus (see music21/corpus/license.txt)"}
    with open(manifest_path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)
    progress(f"demo corpus ready at {directory} ({len(files)} files)")
    return manifest


def _spec_dict(spec: DemoCorpusSpec) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()}
