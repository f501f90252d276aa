"""Spread over seeds and the difference of seed means, on hand-made scores."""

from __future__ import annotations

import pytest

from segcore.metrics.seeds import seed_difference, seed_spread


def test_the_spread_of_a_variant_over_its_seeds():
    spread = seed_spread([0.40, 0.42, 0.44])
    assert spread["mean"] == pytest.approx(0.42) and spread["std"] == pytest.approx(0.02)
    assert (spread["min"], spread["max"], spread["n"]) == (0.40, 0.44, 3)
    assert seed_spread([0.5])["std"] is None and seed_spread([])["n"] == 0


def test_the_difference_of_seed_means_with_welch_s_interval():
    a, b = [0.40, 0.42, 0.44], [0.50, 0.52, 0.54]
    result = seed_difference(a, b)
    assert result["difference"] == pytest.approx(0.10)
    # Welch with equal spreads and sizes: 0.10 ± t(0.975, 4) · sqrt(2 · 0.02² / 3)
    half = 2.7764451051977987 * (2 * 0.02 ** 2 / 3) ** 0.5
    assert result["low"] == pytest.approx(0.10 - half) and result["high"] == pytest.approx(0.10 + half)
    assert result["low"] > 0  # clearly better
    overlapping = seed_difference([0.40, 0.45, 0.50], [0.42, 0.47, 0.52])
    assert overlapping["low"] < 0 < overlapping["high"]


def test_one_seed_gives_no_interval_and_identical_seeds_a_point():
    assert seed_difference([0.4], [0.5, 0.6])["low"] is None
    same = seed_difference([0.4, 0.4], [0.5, 0.5])
    assert same["low"] == same["high"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        seed_difference([], [0.5])
