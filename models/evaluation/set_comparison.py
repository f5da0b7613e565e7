"""How close one set of melodies is to another, feature by feature (Yang & Lerch 2020).

For each scalar feature, the judged and the reference values each get a Gaussian kernel density
estimate (Scott's bandwidth, floored at the feature's resolution, so constant features work), both on
one grid. Two numbers compare them: the **overlap area** ``OA = ∫ min(p_judged, p_reference)`` — 1 for
identical distributions, 0 for disjoint ones — and the **KL divergence** ``KL(p_reference ‖ p_judged)``
in nats. For a vector feature (the note-length histogram) the densities are Yang & Lerch's relative
measure: Euclidean distances between reference melodies (intra-set) against distances from judged to
reference melodies (inter-set); if the judged set were drawn like the reference, the two distance
distributions would coincide.

Densities are evaluated on a uniform grid by linear binning and a discrete Gaussian convolution (Wand,
1994), which costs the same for 100 or 100,000 values; the grid is fine enough that a bandwidth spans
at least four cells. Probability masses below ``1e-10`` are floored before the logarithm of the KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melodyflow.models.evaluation.features import FEATURES, Feature

MASS_FLOOR = 1e-10


@dataclass(frozen=True)
class ComparisonSettings:
    min_grid: int = 512
    max_grid: int = 16384
    cells_per_bandwidth: int = 4
    tail_bandwidths: float = 4.0
    # Yang & Lerch's distance measure uses this many melodies of each set (drawn with ``seed``).
    distance_sample: int = 400
    seed: int = 0


DEFAULT_SETTINGS = ComparisonSettings()


@dataclass(frozen=True)
class Comparison:
    mean: float | list[float] | None
    reference_mean: float | list[float] | None
    overlap: float
    kl: float | None
    count: int
    reference_count: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def bandwidth(values: np.ndarray, floor: float) -> float:
    """Scott's rule in one dimension (scipy's ``gaussian_kde`` default), never below ``floor``."""
    if values.size < 2:
        return floor
    return max(float(values.std(ddof=1)) * values.size ** -0.2, floor)


def density_on_grid(values: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    """Probability mass per grid cell of a Gaussian KDE of ``values`` (linear binning + convolution)."""
    step = grid[1] - grid[0]
    position = (values - grid[0]) / step
    left = np.clip(np.floor(position).astype(np.int64), 0, grid.size - 2)
    right_weight = np.clip(position - left, 0.0, 1.0)
    counts = np.bincount(left, weights=1.0 - right_weight, minlength=grid.size)
    counts += np.bincount(left + 1, weights=right_weight, minlength=grid.size)
    half = int(np.ceil(4.0 * bw / step))
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bw) ** 2)
    mass = np.convolve(counts, kernel / kernel.sum(), mode="full")[half: half + grid.size]
    return mass / mass.sum()


def _grid(a: np.ndarray, b: np.ndarray, bw: float, settings: ComparisonSettings) -> np.ndarray:
    lo = min(a.min(), b.min()) - settings.tail_bandwidths * bw
    hi = max(a.max(), b.max()) + settings.tail_bandwidths * bw
    cells = int(np.ceil((hi - lo) / (bw / settings.cells_per_bandwidth)))
    return np.linspace(lo, hi, int(np.clip(cells, settings.min_grid, settings.max_grid)))


def density_pair(judged: np.ndarray, reference: np.ndarray, floor: float,
                 settings: ComparisonSettings = DEFAULT_SETTINGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(grid, judged masses, reference masses)``: both kernel densities on one grid."""
    bw_j, bw_r = bandwidth(judged, floor), bandwidth(reference, floor)
    grid = _grid(judged, reference, min(bw_j, bw_r), settings)
    return grid, density_on_grid(judged, grid, bw_j), density_on_grid(reference, grid, bw_r)


def overlap_and_kl(judged: np.ndarray, reference: np.ndarray, floor: float,
                   settings: ComparisonSettings = DEFAULT_SETTINGS) -> tuple[float, float]:
    """``(overlap area, KL(reference ‖ judged) in nats)`` of the two samples' kernel densities."""
    _, p, q = density_pair(judged, reference, floor, settings)
    overlap = float(np.minimum(p, q).sum())
    q_floor, p_floor = np.maximum(q, MASS_FLOOR), np.maximum(p, MASS_FLOOR)
    kl = float((q_floor * np.log(q_floor / p_floor)).sum())
    return min(overlap, 1.0), max(kl, 0.0)


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= n else rows[np.sort(rng.choice(len(rows), n, replace=False))]


def distance_samples(judged: np.ndarray, reference: np.ndarray,
                     settings: ComparisonSettings = DEFAULT_SETTINGS) -> tuple[np.ndarray, np.ndarray]:
    """Yang & Lerch's relative measure: ``(inter-set distances, reference intra-set distances)``."""
    rng = np.random.default_rng(settings.seed)
    j = _sample(judged, settings.distance_sample, rng)
    r = _sample(reference, settings.distance_sample, rng)
    intra = _pairwise_distances(r, r)[np.triu_indices(len(r), k=1)]
    return _pairwise_distances(j, r).ravel(), intra


def finite(values: np.ndarray) -> np.ndarray:
    """The values (rows, for a vector feature) a melody defines: NaNs dropped."""
    if values.ndim == 1:
        return values[np.isfinite(values)]
    return values[np.isfinite(values).all(axis=1)]


def _mean(values: np.ndarray):
    if not len(values):
        return None
    mean = values.mean(axis=0)
    return [round(float(v), 6) for v in mean] if values.ndim > 1 else round(float(mean), 6)


def compare_feature(feature: Feature, judged: np.ndarray, reference: np.ndarray,
                    settings: ComparisonSettings = DEFAULT_SETTINGS) -> Comparison:
    """Compare one feature's values; melodies that do not define it (NaN) are left out of both sets."""
    j, r = finite(np.asarray(judged, float)), finite(np.asarray(reference, float))
    overlap, kl = 0.0, None
    enough = len(j) >= 1 and len(r) >= 1 and (not feature.vector or len(r) >= 2)
    if enough:
        if feature.vector:
            inter, intra = distance_samples(j, r, settings)
            overlap, kl = overlap_and_kl(inter, intra, feature.resolution, settings)
        else:
            overlap, kl = overlap_and_kl(j, r, feature.resolution, settings)
    return Comparison(mean=_mean(j), reference_mean=_mean(r), overlap=round(overlap, 6),
                      kl=None if kl is None else round(kl, 6), count=len(j), reference_count=len(r))


def compare_sets(judged: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                 features: tuple[Feature, ...] = FEATURES,
                 settings: ComparisonSettings = DEFAULT_SETTINGS) -> dict[str, Comparison]:
    """:func:`compare_feature` for every feature present in both tables."""
    return {f.name: compare_feature(f, judged[f.name], reference[f.name], settings)
            for f in features if f.name in judged and f.name in reference}


def similarity(comparisons: dict[str, Comparison]) -> float:
    """The mean overlap area over the compared features: one number in [0, 1]."""
    if not comparisons:
        return 0.0
    return round(float(np.mean([c.overlap for c in comparisons.values()])), 6)
