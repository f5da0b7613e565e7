"""Storage helpers against the local filesystem and a real GCS emulator."""

from __future__ import annotations

import os

import pytest

from melodyflow.transforms.io import storage


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("gcs_bucket") + "/root"


def test_write_read_list_walk_remove(root):
    payloads = {"a.mid": b"MThd", "sub/b.MID": b"x\r", "sub/deeper/c.abc": bytes(range(256)) + b"\r"}
    for rel, data in payloads.items():
        storage.write_bytes(storage.join(root, *rel.split("/")), data)
    for rel, data in payloads.items():  # binary data ending in \r survives (emulator multipart quirk)
        assert storage.read_bytes(storage.join(root, *rel.split("/"))) == data
    assert list(storage.walk_files(root)) == sorted((rel, len(d)) for rel, d in payloads.items())
    assert [u.rsplit("/", 1)[-1] for u in storage.list_dir(storage.join(root, "sub"))] == ["b.MID", "deeper"]
    assert storage.exists(storage.join(root, "a.mid"))
    storage.remove_tree(storage.join(root, "sub"))
    assert not storage.exists(storage.join(root, "sub", "b.MID"))
    assert storage.list_dir(storage.join(root, "missing")) == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "missing.mid"))


def test_walking_a_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list(storage.walk_files(str(tmp_path / "nope")))


def test_symlink_loops_do_not_recurse_forever(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mid").write_bytes(b"1")
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")
    assert list(storage.walk_files(str(tmp_path))) == [("a/x.mid", 1)]


def test_walk_keeps_os_walk_rules_for_links_and_nesting(tmp_path):
    """Symlinked files are listed with their target's size, dangling ones with -1 (the reader reports
    them), symlinked directories are not entered; the listing is sorted by relative path."""
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "deep.mid").write_bytes(b"123")
    (tmp_path / "a.mid").write_bytes(b"12")
    os.symlink(tmp_path / "a.mid", tmp_path / "b" / "link.mid")
    os.symlink(tmp_path / "missing.mid", tmp_path / "b" / "dangling.mid")
    os.symlink(tmp_path / "b" / "c", tmp_path / "dirlink")
    expected = [("a.mid", 2), ("b/c/deep.mid", 3), ("b/dangling.mid", -1), ("b/link.mid", 2)]
    assert list(storage.walk_files(str(tmp_path))) == expected
    assert list(storage.walk_files(str(tmp_path) + "/")) == expected


def test_failing_io_is_retried_then_names_the_url():
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("reset by peer")

    with pytest.raises(storage.StorageError, match="gs://b/k.mid failed after 2 attempts"):
        storage.retrying("reading", "gs://b/k.mid", flaky, retries=1)
    assert len(calls) == 2


def test_progress_watcher_sums_worker_reports(tmp_path):
    from melodyflow.transforms.beam.progress import ProgressWatcher, report

    seen = []
    with ProgressWatcher(str(tmp_path / "_progress"), 10, lambda d, t: seen.append((d, t)), every_s=0.05):
        report(str(tmp_path / "_progress"), 4)
        report(str(tmp_path / "_progress"), 0)
        report(str(tmp_path / "_progress"), 6)
    assert seen[-1] == (10, 10)
    assert not (tmp_path / "_progress").exists()


def test_answers_about_one_object_are_not_retried_and_faults_name_the_url():
    calls = []

    def forbidden():
        calls.append(1)
        raise OSError("Forbidden: b/k.mid\naccess denied")

    with pytest.raises(PermissionError, match="gs://b/k.mid"):
        storage.retrying("reading", "gs://b/k.mid", forbidden, retries=3)
    with pytest.raises(FileNotFoundError):
        storage.retrying("reading", "gs://b/k.mid", lambda: storage.read_bytes("/nonexistent/x.mid"), retries=3)
    assert len(calls) == 1


def test_secrets_never_reach_error_messages(monkeypatch):
    token = "ya29.FAKE-token-0123456789"

    def leaky():
        raise ConnectionError(f"GET https://storage.example/o?access_token={token}&alt=media "
                              f"headers={{'Authorization': 'Bearer {token}'}} via s3://AKIAFAKEFAKEFAKEFAKE:s3cr3t@b/")

    with pytest.raises(storage.StorageError) as info:
        storage.retrying("reading", "gs://b/k.mid", leaky, retries=0)
    message = str(info.value)
    assert "gs://b/k.mid" in message and "[REDACTED]" in message
    for secret in (token, "s3cr3t", "AKIAFAKEFAKEFAKEFAKE"):
        assert secret not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no unredacted chained cause
    monkeypatch.setenv("MELODYFLOW_STORAGE_RETRIES", "-1")
    with pytest.raises(ValueError, match="MELODYFLOW_STORAGE_RETRIES"):
        storage.default_retries()


def test_streamed_reads_and_writes_match_whole_ones(root):
    """Shard writers, the manifest and the staged listing are streamed (flat memory at any corpus size)."""
    text = "".join(f"line {i} {'é' * (i % 7)}\n" for i in range(3000)) + "no newline at the end"
    url = storage.join(root, "stream", "lines.txt")
    storage.write_stream(url, lambda: (text[i:i + 777].encode("utf-8") for i in range(0, len(text), 777)))
    data = storage.read_bytes(url)
    assert data == text.encode("utf-8")
    assert b"".join(storage.iter_blocks(url, block_size=1000)) == data
    assert all(len(b) <= 1000 for b in storage.iter_blocks(url, block_size=1000))
    assert list(storage.iter_lines(url, block_size=333)) == text.split("\n")
    assert storage.read_range(url, 1234, 567) == data[1234:1234 + 567]
    assert storage.read_range(url, len(data) - 3, 100) == data[-3:]
    empty = storage.join(root, "stream", "empty.bin")
    storage.write_stream(empty, lambda: iter(()))
    assert storage.read_bytes(empty) == b"" and list(storage.iter_blocks(empty)) == []


def test_a_failed_streamed_write_leaves_no_object(tmp_path):
    url = str(tmp_path / "out.bin")

    def pieces():
        yield b"half"
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        storage.write_stream(url, pieces)
    assert os.listdir(tmp_path) == []
