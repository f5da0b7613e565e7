"""The shared local Prefect server: started once, reused, every flow and task recorded on it, stopped when
idle or asked to. Real processes: a server on 127.0.0.1 and CLI commands in their own interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

import midi_factory
from support import write_corpus


CLI = [sys.executable, "-m", "melodyflow.flows.cli"]


def _env(home, idle_minutes: str = "5") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MELODYFLOW_PREFECT_SERVER")}
    return {**env, "PREFECT_HOME": str(home), "MELODYFLOW_SERVER_IDLE_MINUTES": idle_minutes}


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _names(url: str, kind: str) -> set[str]:
    """Names of the flows (or task runs, ...) the server has recorded."""
    request = urllib.request.Request(f"{url}/api/{kind}/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return {item["name"] for item in json.load(response)}


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_commands_share_one_server_that_records_every_flow_and_task(tmp_path):
    env = _env(tmp_path / "prefect-home")
    started = json.loads(_cli(env, "server", "start", "--json").stdout)
    try:
        assert started["running"] and started["url"].startswith("http://127.0.0.1:")
        corpus = write_corpus(tmp_path / "corpus", {f"t{i}.mid": midi_factory.random_midi(i) for i in range(3)})
        done = _cli(env, "ingest", str(corpus), str(tmp_path / "data"), "--json")
        assert "Starting" not in done.stderr and json.loads(done.stdout)["counts"]["converted"] == 3
        assert "ingest-corpus" in _names(started["url"], "flows")
        tasks = _names(started["url"], "task_runs")
        assert any(t.startswith("plan-ingest-batch") for t in tasks)
        assert any(t.startswith("convert-files") for t in tasks)
        status = json.loads(_cli(env, "server", "status", "--json").stdout)
        assert status["pid"] == started["pid"] and status["running"]
    finally:
        stopped = json.loads(_cli(env, "server", "stop", "--json").stdout)
    assert stopped["url"] == started["url"] and not _alive(started["pid"])
    assert "no melodyflow server was running" in _cli(env, "server", "stop").stdout


@pytest.mark.slow
def test_an_idle_server_stops_by_itself(tmp_path):
    env = _env(tmp_path / "prefect-home", idle_minutes="0.1")
    started = json.loads(_cli(env, "server", "start", "--json").stdout)
    deadline = time.monotonic() + 60
    while _alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _alive(started["pid"])
    assert "idle for 0.1 minutes: stopping" in (tmp_path / "prefect-home" / "melodyflow-server.log").read_text()
    assert not json.loads(_cli(env, "server", "status", "--json").stdout)["running"]


def test_a_users_prefect_api_url_wins(tmp_path):
    env = {**_env(tmp_path / "prefect-home"), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = subprocess.run([*CLI, "server", "start"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "PREFECT_API_URL is set" in done.stderr
    assert not (tmp_path / "prefect-home" / "melodyflow-server.json").exists()
