"""Charts of each feature, judged melodies against the reference, as PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io

import numpy as np

from melodyflow.models.evaluation.features import ALL_FEATURES, NOTE_LENGTH_BINS, Feature
from melodyflow.models.evaluation.set_comparison import Comparison, density_pair, finite

JUDGED_COLOR, REFERENCE_COLOR = "tab:blue", "tab:gray"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, feature: Feature, judged: np.ndarray, reference: np.ndarray, comparison: Comparison | None) -> None:
    j, r = finite(judged), finite(reference)
    if feature.vector:
        x = np.arange(len(NOTE_LENGTH_BINS))
        if len(r):
            ax.bar(x - 0.2, r.mean(axis=0), 0.4, color=REFERENCE_COLOR, label="reference")
        if len(j):
            ax.bar(x + 0.2, j.mean(axis=0), 0.4, color=JUDGED_COLOR, label="judged")
        ax.set_xticks(x, NOTE_LENGTH_BINS)
        ax.set(xlabel="note length (16th steps)", ylabel="mean share of notes")
    elif len(j) and len(r):
        grid, p, q = density_pair(j, r, feature.resolution)
        width = grid[1] - grid[0]
        ax.fill_between(grid, q / width, color=REFERENCE_COLOR, alpha=0.4, label="reference")
        ax.plot(grid, p / width, color=JUDGED_COLOR, label="judged")
        ax.set(xlabel=feature.unit, ylabel="density")
    overlap = f"overlap {comparison.overlap:.2f}" if comparison is not None else ""
    ax.set_title(f"{feature.name}\n{overlap}", fontsize=9)
    ax.legend(fontsize=7)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    _pyplot().close(fig)
    return buf.getvalue()


def feature_chart(feature: Feature, judged: np.ndarray, reference: np.ndarray,
                  comparison: Comparison | None) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    _draw(ax, feature, judged, reference, comparison)
    return _png(fig)


def overview_chart(judged: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                   comparisons: dict[str, Comparison], title: str) -> bytes:
    """Every feature in one grid, for places that show a single picture."""
    features = [f for f in ALL_FEATURES if f.name in judged and f.name in reference]
    cols = 4
    rows = -(-len(features) // cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(4 * cols, 3 * rows))
    for ax, feature in zip(np.ravel(axes), features):
        _draw(ax, feature, judged[feature.name], reference[feature.name], comparisons.get(feature.name))
    for ax in np.ravel(axes)[len(features):]:
        ax.axis("off")
    fig.suptitle(title)
    return _png(fig)
