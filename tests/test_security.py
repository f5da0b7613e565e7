"""Security: services bind to loopback only; secrets never reach logs, reports, artifacts or errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import midi_factory
from support import write_corpus

CLI = [sys.executable, "-m", "melodyflow.flows.cli"]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                pids.append(int(entry))
    return pids


def _listening_sockets(pids: list[int]) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state owned by ``pids`` (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            if v6:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            found.add((addr, int(hex_port, 16)))
    return found


def _is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1") or addr.startswith("::ffff:127.")


def _watch_listeners(cmd: list[str], env: dict) -> tuple[int, set[tuple[str, int]]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= _listening_sockets(_session_pids(proc.pid))
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(), seen


@pytest.mark.slow
def test_every_service_a_run_starts_listens_on_loopback_only(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"t{i}.mid": midi_factory.melodic_midi(i) for i in range(12)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    data = tmp_path / "data"
    # Ingestion on Beam's multi-processing runner (gRPC control/data/state/logging servers) behind
    # Prefect's ephemeral API server; the dataset build on a local Dask cluster (scheduler, dashboard).
    rc, ingest_listeners = _watch_listeners([*CLI, "ingest", str(corpus), str(data), "--workers", "2"], env)
    assert rc == 0
    rc, dask_listeners = _watch_listeners([*CLI, "dataset", str(data), "--runner", "dask", "--workers", "2"], env)
    assert rc == 0
    assert len(ingest_listeners) >= 5, ingest_listeners  # the API server and Beam's four gRPC servers
    assert len(dask_listeners) >= 3, dask_listeners  # the API server, the scheduler and its dashboard
    exposed = sorted(a for a in ingest_listeners | dask_listeners if not _is_loopback(a[0]))
    assert not exposed, f"listening beyond loopback: {exposed}"


FAKE_TOKEN = "ya29.FAKE-ACCESS-TOKEN-4f9c2e"
FAKE_REFRESH = "1//FAKE-REFRESH-TOKEN-77aa"
FAKE_CLIENT_SECRET = "FAKE-CLIENT-SECRET-1b2c"
FAKE_PASSWORD = "FAKE-ENDPOINT-PASSWORD-9d8e"
FAKE_AWS = "FAKE/AWS/SECRET+KEY/0123456789abcdef"
SECRETS = (FAKE_TOKEN, FAKE_REFRESH, FAKE_CLIENT_SECRET, FAKE_PASSWORD, FAKE_AWS)


def _leaks(blob: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in blob]


@pytest.mark.slow
def test_fake_credentials_never_reach_logs_reports_artifacts_or_errors(tmp_path, gcs_emulator, gcs_bucket):
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"type": "authorized_user", "client_id": "fake.apps.googleusercontent.com",
                                 "client_secret": FAKE_CLIENT_SECRET, "refresh_token": FAKE_REFRESH,
                                 "token": FAKE_TOKEN, "expiry": "2999-01-01T00:00:00Z"}))
    corpus = write_corpus(tmp_path / "corpus", {"good.mid": midi_factory.melodic_midi(1), "bad.mid": b"garbage"})
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    host = gcs_emulator.split("://", 1)[1]
    env.update(PREFECT_HOME=str(home), GOOGLE_APPLICATION_CREDENTIALS=str(creds),
               AWS_ACCESS_KEY_ID="AKIAFAKEFAKEFAKEFAKE", AWS_SECRET_ACCESS_KEY=FAKE_AWS,
               # credentials in the endpoint URL, as a proxy or S3-compatible endpoint would carry them
               STORAGE_EMULATOR_HOST=f"http://melody:{FAKE_PASSWORD}@{host}")
    data = f"{gcs_bucket}/data"
    ok = subprocess.run([*CLI, "ingest", str(corpus), data, "--json"], env=env, capture_output=True, timeout=400)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert json.loads(ok.stdout)["counts"]["failed"] == 1

    # The same endpoint, now dead: the failure message names the URL but not the password.
    dead = {**env, "MELODYFLOW_STORAGE_RETRIES": "0",
            "STORAGE_EMULATOR_HOST": f"http://melody:{FAKE_PASSWORD}@127.0.0.1:9"}
    failed = subprocess.run([*CLI, "ingest", str(corpus), f"{gcs_bucket}/other", "--json"], env=dead,
                            capture_output=True, timeout=400)
    assert failed.returncode != 0
    assert b"storage failure, nothing was published: listing gs://" in failed.stderr, failed.stderr[-3000:]

    from melodyflow.transforms.io import storage

    fs = storage.filesystem(data)
    fs.invalidate_cache()
    written = {p: fs.cat_file(p) for p in fs.find(data.split("://", 1)[1])}
    assert any(p.endswith("/COMPLETED") for p in written) and any("dead_letters" in p for p in written)
    places = {"stdout": ok.stdout, "stderr": ok.stderr, "failed stdout": failed.stdout,
              "failed stderr": failed.stderr, **written}
    places.update({str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()})  # API database: logs, artifacts
    assert any(p.endswith(".db") for p in places), "the Prefect database was not found"
    leaked = {where: _leaks(blob) for where, blob in places.items() if _leaks(blob)}
    assert not leaked, leaked
