"""Overlap area and KL divergence of kernel densities, checked on distributions with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from melodyflow.models.evaluation.features import Feature
from melodyflow.models.evaluation.set_comparison import (compare_feature, compare_sets, density_on_grid,
                                                         overlap_and_kl, similarity)

RNG = np.random.default_rng(12345)
N = 20_000


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_identical_distributions_overlap_fully():
    overlap, kl = overlap_and_kl(RNG.normal(0, 1, N), RNG.normal(0, 1, N), 0.01)
    assert overlap > 0.97 and kl < 0.01


def test_shifted_normals_match_the_closed_forms():
    overlap, kl = overlap_and_kl(RNG.normal(2, 1, N), RNG.normal(0, 1, N), 0.01)
    assert overlap == pytest.approx(2 * _phi(-1.0), abs=0.02)  # 0.317
    assert kl == pytest.approx(2.0, rel=0.08)  # (mu1 - mu2)^2 / 2


def test_kl_is_of_the_reference_from_the_judged_density():
    # KL(N(0,1) || N(0,2^2)) = log 2 + 1/8 - 1/2; the other direction would be 0.81.
    _, kl = overlap_and_kl(RNG.normal(0, 2, N), RNG.normal(0, 1, N), 0.01)
    assert kl == pytest.approx(math.log(2) + 1 / 8 - 1 / 2, abs=0.04)


def test_constant_features_use_the_resolution_as_bandwidth():
    overlap, kl = overlap_and_kl(np.full(50, 5.0), np.full(80, 5.0), 0.5)
    assert overlap == pytest.approx(1.0) and kl == pytest.approx(0.0, abs=1e-9)
    overlap, _ = overlap_and_kl(np.full(50, 3.0), np.full(80, 5.0), 0.5)
    assert overlap == pytest.approx(2 * _phi(-2.0), abs=0.005)  # two N(., 0.5^2) two units apart


def test_disjoint_sets_do_not_overlap_and_kl_stays_finite():
    overlap, kl = overlap_and_kl(np.full(10, 0.0), np.full(10, 100.0), 0.5)
    assert overlap < 1e-6 and math.isfinite(kl) and kl > 10


def test_densities_are_probability_masses():
    grid = np.linspace(-10, 10, 2001)
    mass = density_on_grid(RNG.normal(0, 1, 5000), grid, 0.2)
    assert mass.sum() == pytest.approx(1.0)
    assert mass[(grid > -1) & (grid < 1)].sum() == pytest.approx(0.68, abs=0.03)


def test_nan_values_are_left_out_and_counted():
    feature = Feature("x", "unit", 0.1, "test")
    result = compare_feature(feature, np.array([1.0, np.nan, 1.2]), np.array([1.1, 0.9, np.nan, 1.0]))
    assert (result.count, result.reference_count) == (2, 3)
    assert result.mean == pytest.approx(1.1) and result.reference_mean == pytest.approx(1.0)
    nothing = compare_feature(feature, np.array([np.nan]), np.array([1.0, 2.0]))
    assert nothing.overlap == 0.0 and nothing.kl is None and nothing.mean is None


def test_vector_features_compare_distance_distributions():
    feature = Feature("h", "shares", 0.01, "test", vector=True)
    reference = RNG.dirichlet([8, 4, 1], 600)
    alike = compare_feature(feature, RNG.dirichlet([8, 4, 1], 300), reference)
    unlike = compare_feature(feature, RNG.dirichlet([1, 4, 8], 300), reference)
    assert alike.overlap > 0.9 and unlike.overlap < 0.3 and unlike.kl > alike.kl
    assert len(alike.mean) == 3


def test_similarity_is_the_mean_overlap():
    scalar = Feature("a", "u", 0.1, "t")
    other = Feature("b", "u", 0.1, "t")
    data = {"a": RNG.normal(0, 1, 2000), "b": RNG.normal(0, 1, 2000)}
    shifted = {"a": RNG.normal(0, 1, 2000), "b": RNG.normal(3, 1, 2000)}
    comparisons = compare_sets(shifted, data, (scalar, other))
    assert similarity(comparisons) == pytest.approx((comparisons["a"].overlap + comparisons["b"].overlap) / 2, abs=1e-6)
    assert 0.5 < similarity(comparisons) < 0.6  # about (1 + 0.13) / 2
