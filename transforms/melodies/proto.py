"""note-seq's ``NoteSequence`` message class without importing the rest of note-seq.

``import note_seq.protobuf.music_pb2`` runs note-seq's package ``__init__``, which imports its audio,
notebook and plotting helpers (librosa, pydub, IPython, bokeh, pandas): about a second of CPU, most of a
small dataset build, for a class the compiled extraction needs only to parse records. The generated
module itself needs nothing but protobuf, so it is loaded under its own name with a placeholder parent
package, which is then removed: a later ``import note_seq`` runs note-seq's real ``__init__`` and finds
this very module (and message class) in ``sys.modules``.
"""

from __future__ import annotations

from typing import Any

import importlib
import importlib.util
import sys
import threading
import types

_NAME = "note_seq.protobuf.music_pb2"
_LOCK = threading.Lock()


def music_pb2() -> types.ModuleType:
    with _LOCK:
        if _NAME in sys.modules:
            return sys.modules[_NAME]
        if "note_seq" in sys.modules:  # note-seq is loaded anyway: the ordinary import costs nothing more
            return importlib.import_module(_NAME)
        spec = importlib.util.find_spec("note_seq")
        assert spec is not None and spec.submodule_search_locations, "note-seq is not installed"
        placeholders = {}
        for name, path in (("note_seq", list(spec.submodule_search_locations)),
                           ("note_seq.protobuf", [p + "/protobuf" for p in spec.submodule_search_locations])):
            module = types.ModuleType(name)
            module.__path__ = path
            placeholders[name] = sys.modules[name] = module
        try:
            return importlib.import_module(_NAME)
        finally:
            for name, module in placeholders.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]


def note_sequence_class() -> Any:
    return music_pb2().NoteSequence
