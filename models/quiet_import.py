"""TensorFlow's import without its start-up banners.

TensorFlow 2.21's C++ runtime writes two banners per shared library straight to file descriptor 2 while
it loads ("All log messages before absl::InitializeLog() ...", "oneDNN custom operations are on ..."),
before ``TF_CPP_MIN_LOG_LEVEL`` applies, so no setting hides them. The import here sends descriptor 2 to
a temporary file for its duration and passes on every line that is not one of those banners.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from types import ModuleType

_BANNERS = re.compile(r"absl::InitializeLog\(\)|oneDNN custom operations are on")
_LOCK = threading.Lock()  # descriptor 2 is process-wide: one redirection at a time


def import_tensorflow() -> ModuleType:
    with _LOCK:
        return _import()


def _import() -> ModuleType:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO lines after the import (dataset buffers, ...)
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        captured = sink.read().decode("utf-8", errors="replace")
    sys.stderr.write("".join(line for line in captured.splitlines(keepends=True) if not _BANNERS.search(line)))
    return tensorflow
