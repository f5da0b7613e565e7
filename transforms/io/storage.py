"""Object-storage helpers: one fsspec code path for local paths, ``gs://`` and ``s3://``.

Everything melodyflow reads or writes goes through these functions so that a local directory and a
bucket behave the same, and so that the GCS emulator (``STORAGE_EMULATOR_HOST``) is honoured without
callers knowing about it.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

# gcsfs probes for hierarchical-namespace buckets on every operation; against the emulator that stalls
# for about a minute per call.  Must be set before gcsfs is imported anywhere in the process.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec  # noqa: E402

T = TypeVar("T")

_RETRIES_ENV = "MELODYFLOW_STORAGE_RETRIES"
_DEFAULT_RETRIES = 8
_DEADLINE_ENV = "MELODYFLOW_STORAGE_DEADLINE_S"
_DEFAULT_DEADLINE_S = 30.0
_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 4.0

# Secrets that can ride along in URLs, headers or library error messages.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(access_token|refresh_token|id_token|client_secret|password|api_key|apikey|"
                r"secret_access_key|x-goog-signature|x-goog-credential|x-amz-signature|x-amz-credential|"
                r"x-amz-security-token)=([^&\s\"']+)"), r"\1=[REDACTED]"),
    # Short generic names only as URL query parameters ("?key=…&sig=…"), not in prose ("KEY=VALUE").
    (re.compile(r"(?i)([?&](?:token|key|secret|signature|sig))=([^&\s\"']+)"), r"\1=[REDACTED]"),
    (re.compile(r"(?i)\b(authorization|x-goog-api-key|x-amz-security-token)(\"?\s*[:=]\s*\"?)"
                r"(bearer\s+|basic\s+)?[^\s\"',}]+"), r"\1\2[REDACTED]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [REDACTED]"),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]+"), "[REDACTED]"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "[REDACTED]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[REDACTED]@"),
)


class StorageError(RuntimeError):
    """An object-storage operation failed after retries; the message names the URL."""


# Answers about one object, not faults of the store: never retried.
_ANSWERS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def cache_dir(*parts: str) -> str:
    """A local directory under the user's cache (``$XDG_CACHE_HOME/melodyflow`` or ``~/.cache/melodyflow``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "melodyflow", *parts)


def protocol_of(url: str) -> str:
    """``'file'`` for plain paths, otherwise the URL scheme (``gs``, ``s3``, ``memory`` ...)."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0]


def absolute(url: str) -> str:
    """A URL that means the same from any working directory: local relative paths made absolute."""
    return os.path.abspath(url) if "://" not in url else url


def storage_options_for(url: str) -> dict:
    """Default fsspec options for ``url``'s protocol; points gcsfs at the emulator when one is set."""
    proto = protocol_of(url)
    if proto in ("gs", "gcs"):
        from melodyflow.transforms.io import gcs

        options: dict = {"requests_timeout": gcs.request_timeout()}
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            if not emulator.startswith("http"):
                emulator = "http://" + emulator
            options.update(endpoint_url=emulator, token="anon")
        return options
    return {}


def filesystem(url: str) -> fsspec.AbstractFileSystem:
    """The (cached) fsspec filesystem for ``url``.  ``gs://`` gets gcsfs with quick, bounded retries per
    request instead of its own (see :mod:`melodyflow.transforms.io.gcs`), under :func:`retrying`'s
    deadline."""
    proto = protocol_of(url)
    if proto in ("gs", "gcs"):
        from melodyflow.transforms.io import gcs

        return gcs.BoundedGCSFileSystem(**storage_options_for(url))
    return fsspec.filesystem(proto, **storage_options_for(url))


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and the OS separator for local paths."""
    if protocol_of(base) == "file":
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *parts)


class UnsafePathError(ValueError):
    """A name taken from input data would leave the directory it must stay in."""


def child(base: str, *names: str) -> str:
    """``join(base, *names)`` for names that come from data (file names, ids): each must be a plain,
    non-empty path component, so the result can never leave ``base``."""
    for name in names:
        if (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
                or ":" in name or name != name.strip()):
            raise UnsafePathError(f"refusing to build an output path under {base} from {name!r}")
    return join(base, *names)


def strip_protocol(url: str) -> str:
    return filesystem(url)._strip_protocol(url)


def with_protocol(url_like: str, path: str) -> str:
    """Re-attach ``url_like``'s scheme to a bare path returned by an fsspec listing."""
    proto = protocol_of(url_like)
    if proto == "file":
        return path
    return f"{proto}://{path}"


def redact(text: str) -> str:
    """``text`` with tokens, keys, signatures and URL passwords replaced by ``[REDACTED]``.

    Applied to every error message melodyflow writes (dead letters, reports, logs of storage
    failures): library exceptions sometimes quote a request URL or header verbatim.
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def default_retries() -> int:
    """At most this many retries after a failed storage call (``MELODYFLOW_STORAGE_RETRIES``, default 8);
    with the default deadline, the deadline is what binds."""
    raw = os.environ.get(_RETRIES_ENV, str(_DEFAULT_RETRIES))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{_RETRIES_ENV} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{_RETRIES_ENV} must be >= 0, got {value}")
    return value


def default_deadline_s() -> float:
    """Seconds after its first attempt within which a failing storage call gives up
    (``MELODYFLOW_STORAGE_DEADLINE_S``, default 30; 0: no retries)."""
    raw = os.environ.get(_DEADLINE_ENV, str(_DEFAULT_DEADLINE_S))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{_DEADLINE_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{_DEADLINE_ENV} must be >= 0, got {value}")
    return value


def _attempt_bound_s(url: str) -> float:
    """The longest one failing attempt can take: the socket timeouts on ``gs://``; local calls do not
    hang.  Other protocols bring their own timeouts (unknown here: 0, so one attempt may overrun)."""
    if protocol_of(url) in ("gs", "gcs"):
        from melodyflow.transforms.io import gcs

        return gcs.ATTEMPT_BOUND_S
    return 0.0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError) and not str(exc).strip():  # fsspec's and asyncio's say nothing
        return f"{type(exc).__name__}: no answer in time"
    return f"{type(exc).__name__}: {exc}"


def retrying(what: str, url: str, fn: Callable[[], T], retries: int | None = None) -> T:
    """Run an I/O call with exponential backoff (0.5 s, 1 s, 2 s, 4 s, 4 s, …) within a deadline; the final
    error is one line that names the URL.

    Answers about the object itself (missing, forbidden, a directory) are raised at once, unwrapped:
    retrying cannot change them, and callers treat them as a property of that one file.  Anything else
    is a fault of the store or the network.  It is retried while another attempt (its backoff plus the
    longest a failing attempt can take) still ends within :func:`default_deadline_s` of the first one,
    and at most :func:`default_retries` times; then it becomes a ``StorageError``, which callers must let
    stop the run rather than record a file as bad.  An attempt that is making progress is never cut
    short: the deadline bounds failing, not working.
    """
    retries = default_retries() if retries is None else retries
    deadline_s, bound_s = default_deadline_s(), _attempt_bound_s(url)
    started = time.monotonic()
    delay = _BACKOFF_S
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except _ANSWERS:
            raise
        except Exception as exc:  # noqa: BLE001 - storage backends raise anything
            if isinstance(exc, OSError) and str(exc).startswith("Forbidden"):  # gcsfs's 403
                raise PermissionError(_one_line(redact(f"{what} {url}: {exc}"))) from None
            elapsed = time.monotonic() - started
            if attempt > retries or elapsed + delay + bound_s > deadline_s:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise StorageError(_one_line(redact(f"{what} {url} failed after {tries} in {elapsed:.1f} s: "
                                                    f"{_describe(exc)}"))) from None
            time.sleep(delay)
            delay = min(2 * delay, _MAX_BACKOFF_S)


def local_path(url: str) -> str:
    """The filesystem path of a local URL (``file://`` or a plain path)."""
    return url[len("file://"):] if url.startswith("file://") else url


def read_bytes(url: str) -> bytes:
    if protocol_of(url) == "file":  # plain open(): fsspec's per-call overhead costs more than a small file
        path = local_path(url)

        def read_local() -> bytes:
            with open(path, "rb") as fh:
                return fh.read()

        return retrying("reading", url, read_local)
    return retrying("reading", url, lambda: filesystem(url).cat_file(url))


def iter_blocks(url: str, block_size: int = 1 << 20) -> Iterator[bytes]:
    """Read an object in pieces of at most ``block_size`` bytes, so a reader's memory is bounded by the
    block and never by the object.  Remote objects are read by ranged requests, each retried on its own:
    a fault in the middle of a large shard costs one block, not the whole read."""
    if protocol_of(url) == "file":
        with retrying("reading", url, lambda: open(local_path(url), "rb")) as fh:
            while block := fh.read(block_size):
                yield block
        return
    fs = filesystem(url)
    total = size(url)
    for start in range(0, total, block_size):
        yield retrying("reading", url, functools.partial(fs.cat_file, url, start=start, end=min(total, start + block_size)))


def read_range(url: str, offset: int, length: int) -> bytes:
    """``length`` bytes of an object from ``offset`` (fewer only where the object ends)."""
    if protocol_of(url) == "file":
        def read_local() -> bytes:
            with open(local_path(url), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)

        return retrying("reading", url, read_local)
    return retrying("reading", url, lambda: filesystem(url).cat_file(url, start=offset, end=offset + length))


def iter_lines(url: str, block_size: int = 1 << 20) -> Iterator[str]:
    """The lines of a UTF-8 text object without their line breaks, read block by block."""
    pending = b""
    for block in iter_blocks(url, block_size):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line.decode("utf-8")
    if pending:
        yield pending.decode("utf-8")


TEMPORARY_SUFFIX = ".tmp-"  # write_stream writes a local file as NAME.tmp-PID, then renames it to NAME


def write_stream(url: str, produce: Callable[[], Iterable[bytes]], *, durable: bool = True) -> None:
    """Write an object from the pieces ``produce()`` yields, holding one piece at a time.

    Local files are written to a temporary sibling and renamed, so a reader never sees half a file.
    Object stores publish an object only when its upload completes, which gives the same guarantee.
    A retried upload calls ``produce`` again, so it must yield the same pieces every time.
    ``durable=False`` skips the local fsync, for scratch files a re-run rewrites anyway (staging,
    progress counts): an fsync per small file costs more than converting the files it holds.
    """
    if protocol_of(url) == "file":
        path = local_path(url)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}{TEMPORARY_SUFFIX}{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                for piece in produce():
                    fh.write(piece)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    fs = filesystem(url)

    def upload() -> None:
        # Through a file object rather than ``pipe_file``: gcsfs sends small ``pipe_file`` payloads as a
        # multipart upload, and the GCS emulator's multipart parser drops a trailing b"\r" — binary
        # shards ending in 0x0D came back one byte short.
        try:
            with fs.open(url, "wb") as fh:
                for piece in produce():
                    fh.write(piece)
        except FileNotFoundError as exc:
            # A retried request of a resumable upload whose session the server already closed (its
            # answer was lost on the way back) is answered 404: the upload must start over, not stop.
            raise ConnectionError(f"upload session lost: {exc}") from exc

    retrying("writing", url, upload)


_TEMPORARY = re.compile(rf".+{re.escape(TEMPORARY_SUFFIX)}\d+")  # write_stream's temporary files


def remove_temporaries(url: str) -> int:
    """Remove the temporary files :func:`write_stream` leaves in a local directory ``url`` (not below it:
    a stage removes its own subdirectories whole) when its process is killed mid-write; returns how many.
    A stage calls this before rewriting an output directory, so a re-run after a kill leaves exactly what a
    clean run leaves.  Object stores have no such files (an upload that did not complete publishes nothing)."""
    if protocol_of(url) != "file" or not os.path.isdir(local_path(url)):
        return 0
    removed = 0
    with os.scandir(local_path(url)) as entries:
        for entry in entries:
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                removed += 1
    return removed


def write_bytes(url: str, data: bytes, *, durable: bool = True) -> None:
    """Write a whole object (see :func:`write_stream` for the guarantees)."""
    write_stream(url, lambda: (data,), durable=durable)


def write_text(url: str, text: str, *, durable: bool = True) -> None:
    write_bytes(url, text.encode("utf-8"), durable=durable)


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def size(url: str) -> int:
    return int(retrying("sizing", url, lambda: filesystem(url).size(url)))


def exists(url: str) -> bool:
    fs = filesystem(url)
    fs.invalidate_cache()
    return retrying("checking", url, lambda: fs.exists(url))


def probe(url: str) -> None:
    """One cheap request to ``url``'s store, retried like any call: raises ``StorageError`` when the
    store cannot be reached, so a run can fail in one line before it starts anything.  Whether ``url``
    exists does not matter.  On ``gs://`` a listing of at most one entry; elsewhere an existence check."""
    fs = filesystem(url)
    try:
        if protocol_of(url) in ("gs", "gcs"):
            retrying("listing", url, lambda: fs.ls(url, detail=False, max_results=1))
        else:
            retrying("checking", url, lambda: fs.exists(url))
    except FileNotFoundError:
        pass


def list_dir(url: str) -> list[str]:
    """Immediate children of ``url`` as URLs (empty when it does not exist)."""
    fs = filesystem(url)
    fs.invalidate_cache()
    try:
        entries = retrying("listing", url, lambda: fs.ls(url, detail=False))
    except FileNotFoundError:
        return []
    return sorted(with_protocol(url, e) for e in entries)


def remove_tree(url: str) -> None:
    """Remove ``url`` and everything under it.  On an object store each object is removed (and retried) on
    its own: one recursive call makes a request per object, and a single faulty request among hundreds
    would otherwise fail (and repeat) the whole call."""
    fs = filesystem(url)
    fs.invalidate_cache()
    try:
        if not retrying("checking", url, lambda: fs.exists(url)):
            return
        if protocol_of(url) == "file":
            retrying("removing", url, lambda: fs.rm(url, recursive=True))
        else:
            for path in retrying("listing", url, lambda: fs.find(url)):
                try:
                    retrying("removing", path, functools.partial(fs.rm_file, path))
                except FileNotFoundError:
                    pass  # an earlier attempt removed it before its answer was lost
    except FileNotFoundError:
        pass
    fs.invalidate_cache()


def make_dirs(url: str) -> None:
    if protocol_of(url) == "file":
        os.makedirs(url, exist_ok=True)


def _walk_local(base: str) -> Iterator[tuple[str, int]]:
    """``(relative path, size)`` under ``base``, in no particular order, with ``os.walk``'s rules: a
    symlink to a directory is neither a file nor entered; a directory that cannot be read is skipped.

    ``os.scandir`` entries rather than ``os.walk`` plus a joined path and ``os.stat`` per file: planning
    runs in the driver, serially, so its cost per file is paid once per listed file however many workers
    there are (LMD-full has 176,581 files; docs/performance.md has the figures).
    """
    pending = [(base, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
            except OSError:
                pass
            try:
                size = entry.stat().st_size
            except OSError:
                size = -1  # dangling symlink: reported as a failed file by the reader
            yield f"{prefix}{entry.name}", size


def walk_files(root: str) -> Iterator[tuple[str, int]]:
    """Yield ``(relative_path, size)`` for every file under ``root``, sorted by path.

    Local trees are walked without following directory symlinks, so a symlink loop in a corpus cannot
    recurse forever; symlinked *files* are read like regular files.
    """
    if protocol_of(root) == "file":
        base = os.path.abspath(root)
        if not os.path.isdir(base):
            raise FileNotFoundError(f"source directory not found: {root}")
        yield from sorted(_walk_local(base))
        return
    fs = filesystem(root)
    fs.invalidate_cache()
    bare = fs._strip_protocol(root).rstrip("/")
    listing = retrying("listing", root, lambda: fs.find(bare, detail=True))
    if not listing and not fs.exists(bare):
        raise FileNotFoundError(f"source not found: {root}")
    for path in sorted(listing):
        info = listing[path]
        if info.get("type") == "directory":
            continue
        rel = path[len(bare) :].lstrip("/")
        yield rel, int(info.get("size") or 0)
