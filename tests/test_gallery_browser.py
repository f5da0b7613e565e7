"""The gallery and the Prefect UI in a real headless Chromium: pictures load, players know their length, no errors.

Screenshots are kept under ``test-artifacts/`` (or ``$MELODYFLOW_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chromium import MEDIA_REPORT_JS, artifacts_dir, find_chromium, open_page
from support import free_port
from test_gallery import EVALUATION, fake_run

from melodyflow.models.generation.audio import choose_synthesizer, read_wav
from melodyflow.models.generation.gallery import GALLERY, write_gallery

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (.ci/run installs "
                                                         "Debian's chromium-headless-shell)")


def _check_media(report: dict, wav_seconds: dict[str, float]) -> None:
    assert report["images"] and all(img["width"] > 0 for img in report["images"]), report["images"]
    assert len(report["audio"]) == len(wav_seconds)
    for audio in report["audio"]:
        assert audio["error"] is None and audio["duration"] == pytest.approx(wav_seconds[audio["src"]], abs=0.05)


def _wav_seconds(index: dict, read) -> dict[str, float]:
    out = {}
    for entry in index["primers"]:
        for files in [entry.get("primer_files")] + entry["outputs"]:
            if files and files.get("wav"):
                samples, rate = read_wav(read(files["wav"]))
                out[files["wav"]] = len(samples) / rate
    return out


def test_gallery_opened_from_disk_shows_every_picture_and_player(tmp_path):
    out = tmp_path / "gen"
    index = fake_run(str(out), choose_synthesizer())
    write_gallery(str(out), index, evaluation=EVALUATION)
    with open_page(CHROMIUM, tmp_path / "profile") as page:
        page.navigate((out / GALLERY).as_uri())
        report = page.evaluate(MEDIA_REPORT_JS)
        page.screenshot(artifacts_dir("gallery-from-disk.png"))
        errors = page.errors()
    assert errors == []
    _check_media(report, _wav_seconds(index, lambda rel: (out / rel).read_bytes()))
    for href in report["links"]:
        assert href.startswith("file://")
        assert Path(urllib.request.url2pathname(href.split("#")[0][len("file://"):])).is_file(), href


def test_gallery_served_from_a_bucket_works_through_relative_links(tmp_path, gcs_bucket):
    """The emulator serves objects at ``/<bucket>/<key>`` as storage.googleapis.com does."""
    from melodyflow.flows.reporting import http_url
    from melodyflow.transforms.io import storage

    out = f"{gcs_bucket}/runs/gen"
    index = fake_run(out, choose_synthesizer("additive"), primers=("bucket-tune-0001",), outputs=2)
    url = http_url(write_gallery(out, index))
    assert url.startswith(os.environ["STORAGE_EMULATOR_HOST"])
    with urllib.request.urlopen(url) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
    with open_page(CHROMIUM, tmp_path / "profile") as page:
        page.navigate(url)
        report = page.evaluate(MEDIA_REPORT_JS)
        page.screenshot(artifacts_dir("gallery-from-bucket.png"))
        errors = page.errors()
    assert errors == []
    _check_media(report, _wav_seconds(index, lambda rel: storage.read_bytes(storage.join(out, rel))))
    for href in report["links"]:
        if "#" not in href:
            with urllib.request.urlopen(href) as answer:
                head = answer.read(4)
            assert head == (b"MThd" if href.endswith(".mid") else b"RIFF"), href


@pytest.fixture
def prefect_server(tmp_path):
    """A real ``prefect server start`` on a free loopback port with its own database; its API URL."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "true"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_prefect_ui_shows_a_picture_embedded_in_a_markdown_artifact(tmp_path, prefect_server):
    from melodyflow.flows.reporting import loss_curve_png, markdown_image

    history = [{"step": s, "split": "train", "loss": 3.0 / s} for s in range(1, 30)]
    markdown = "# Loss\n\n" + markdown_image(loss_curve_png(history, "loss"), "loss curve") + "\n\n`/data/run`"
    assert len(markdown) < 60_000
    request = urllib.request.Request(f"{prefect_server}/artifacts/", method="POST",
                                     data=json.dumps({"key": "loss-curve", "type": "markdown",
                                                      "data": markdown}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        artifact_id = json.load(answer)["id"]
    ui = prefect_server.removesuffix("/api")
    with open_page(CHROMIUM, tmp_path / "profile", width=1400, height=1000) as page:
        page.navigate(f"{ui}/artifacts/artifact/{artifact_id}")
        widths = []
        deadline = time.monotonic() + 45  # the UI fetches the artifact after its own scripts load
        while not widths and time.monotonic() < deadline:
            time.sleep(0.5)
            widths = page.evaluate("[...document.images].filter(i => i.src.startsWith('data:image/png'))"
                                   ".map(i => i.complete ? i.naturalWidth : 0).filter(w => w > 0)")
        page.screenshot(artifacts_dir("prefect-ui-markdown-artifact.png"))
    assert widths and widths[0] > 100
