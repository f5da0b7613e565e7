"""Presentation for the Prefect UI: browser links for storage URLs and dataset charts."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import cast


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "-".join(parts).replace("_", "-").lower()


def browser_url(url: str) -> str:
    """A link a person can open: console URLs for buckets, ``file://`` for local paths."""
    if url.startswith("gs://"):
        return "https://storage.cloud.google.com/" + url[len("gs://"):]
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://"):].partition("/")
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    if "://" in url:
        return url
    return Path(os.path.abspath(url)).as_uri()


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
    from uuid import UUID

    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = cast(UUID, create_progress_artifact(progress=0.0, key=key, description=what))  # sync: a value

    def report(done: int, total: int) -> None:
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
        logger.info("%s: %d/%d %s", what, done, total, unit)

    return report
