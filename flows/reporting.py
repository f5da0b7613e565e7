"""Presentation for the Prefect UI: links a browser can open, pictures embedded in markdown, charts.

The UI cannot show ``file://`` URLs (browsers refuse them on an http page), and images of a private bucket need
credentials the UI does not have. So pictures go into markdown artifacts as small ``data:`` URIs, object-storage
outputs are linked by their HTTP URLs, and local paths are printed as text.
"""

from __future__ import annotations

import base64
import io
import os
from typing import cast
from uuid import UUID

# Markdown artifacts live in Prefect's database: pictures are downscaled and palettized to a few tens of KB.
MAX_IMAGE_WIDTH = 640
IMAGE_COLORS = 64


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "-".join(parts).replace("_", "-").lower()


def http_url(url: str) -> str | None:
    """An HTTP(S) URL a browser can open for a storage URL; ``None`` for local paths.

    ``gs://`` goes to Google's authenticated-download host (works for private buckets when signed in), or to
    ``STORAGE_EMULATOR_HOST`` when one is set; ``s3://`` to the bucket's virtual-hosted endpoint.
    """
    if url.startswith(("http://", "https://")):
        return url
    if url.startswith(("gs://", "gcs://")):
        path = url.split("://", 1)[1]
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            base = emulator if emulator.startswith("http") else "http://" + emulator
            return f"{base.rstrip('/')}/{path}"
        return "https://storage.cloud.google.com/" + path
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://"):].partition("/")
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    return None


def link(url: str, label: str | None = None) -> str:
    """A markdown link to ``url`` when a browser can open it, else the location as code text."""
    target = http_url(url)
    if target is None:
        return f"`{url if '://' in url else os.path.abspath(url)}`"
    return f"[{label or url}]({target})"


def png_data_uri(png: bytes, max_width: int = MAX_IMAGE_WIDTH) -> str:
    """``png`` downscaled to ``max_width`` and reduced to a small palette, as a ``data:image/png`` URI."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.quantize(colors=IMAGE_COLORS).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def markdown_image(png: bytes, alt: str, max_width: int = MAX_IMAGE_WIDTH) -> str:
    """A markdown image the Prefect UI shows wherever the data lives."""
    return f"![{alt.replace('[', '(').replace(']', ')')}]({png_data_uri(png, max_width)})"


def _figure(figsize: tuple[float, float]):
    """A figure drawn by the Agg canvas directly: pyplot (and its backend machinery) is never imported."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def dataset_charts_png(stats: dict, title: str) -> bytes:
    """Melody-length histogram (Magenta's buckets) and pitch distribution, per split, as one PNG."""
    fig = _figure(figsize=(12, 4.2))
    left, right = fig.subplots(1, 2)
    for split, color in (("train", "tab:blue"), ("eval", "tab:orange")):
        lengths = stats["melody_lengths_in_bars"].get(split, {})
        if lengths:
            left.bar([f"{k}" for k in lengths], list(lengths.values()), alpha=0.7, label=split, color=color)
        pitches = stats["pitch_counts"].get(split, {})
        if pitches:
            right.bar([int(p) for p in pitches], list(pitches.values()), alpha=0.7, label=split, color=color)
    left.set(title="Melody lengths (bars)", xlabel="bucket", ylabel="melodies")
    left.tick_params(axis="x", rotation=45)
    right.set(title="Note-on pitches in encoded melodies", xlabel="MIDI pitch", ylabel="notes")
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:  # an empty dataset has nothing to label
            ax.legend()
    fig.suptitle(title)
    return _png(fig)


def loss_curve_png(history: list[dict], title: str) -> bytes:
    """Train and eval loss against step."""
    fig = _figure(figsize=(7, 4))
    ax = fig.subplots()
    for split, style in (("train", "-"), ("eval", "o-")):
        points = [(h["step"], h["loss"]) for h in history if h["split"] == split]
        if points:
            ax.plot(*zip(*points), style, label=split)
    ax.set(title=title, xlabel="step", ylabel="loss (mean cross-entropy per step)")
    ax.legend()
    return _png(fig)


def progress_reporter(logger, key: str, what: str, unit: str):
    """A job's progress callback: a Prefect progress artifact plus a log line per change."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = cast(UUID, create_progress_artifact(progress=0.0, key=key, description=what))  # sync call

    def report(done: int, total: int) -> None:
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
        logger.info("%s: %d/%d %s", what, done, total, unit)

    return report
