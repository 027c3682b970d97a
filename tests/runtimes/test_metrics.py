"""The shared metrics: exact values on hand-made arrays, and NaN never reads as a small error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgec.runtimes.metrics import (ErrorStats, check_cosine, cosine, nrmse, relative_output_error, spread_error, sqnr_db,
                                    top1_agreement, worst_cosine)


def test_metrics_on_known_arrays():
    ref = np.array([3.0, 4.0])
    assert cosine(ref, ref) == pytest.approx(1.0) and cosine(ref, -ref) == pytest.approx(-1.0)
    assert cosine(np.zeros(2), np.zeros(2)) == 1.0 and cosine(np.zeros(2), ref) == 0.0
    noisy = ref + np.array([0.3, -0.4])  # noise power 0.25 against signal 25: 20 dB
    assert sqnr_db(ref, noisy) == pytest.approx(20.0)
    assert sqnr_db(ref, ref) == math.inf
    assert nrmse(ref, noisy) == pytest.approx(math.sqrt(0.125) / math.sqrt(12.5))
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_agreement(logits, logits[[0, 1, 1]]) == pytest.approx(2 / 3)


def test_nan_and_inf_never_read_as_small_errors():
    ref = np.array([1.0, 2.0, 3.0])
    for bad in (np.array([1.0, np.nan, 3.0]), np.array([1.0, np.inf, 3.0])):
        assert math.isnan(cosine(ref, bad)) and not cosine(ref, bad) > 0.99
        assert math.isnan(sqnr_db(ref, bad)) and not sqnr_db(ref, bad) > 10
        assert nrmse(ref, bad) == math.inf
        assert top1_agreement(ref[None], bad[None]) == 0.0
        stats = ErrorStats().add(ref, ref).add(ref, bad)
        assert math.isnan(stats.sqnr_db) and math.isnan(stats.cosine) and stats.max_abs_err == math.inf


def test_worst_case_check_scores():
    """`check_cosine`: an empty output against rounding noise agrees; a non-finite one scores 0, so
    ``min`` cannot pass over it (as it passes over NaN); `worst_cosine` is the lowest over samples and outputs."""
    ref = np.array([3.0, 4.0])
    assert check_cosine(ref, -ref) == pytest.approx(-1.0) and check_cosine(ref.astype(np.float32), ref) == 1.0
    assert check_cosine(np.zeros(2), np.array([1e-9, 0.0])) == 1.0 and check_cosine(np.zeros(2), ref) == 0.0
    assert check_cosine(ref, np.array([np.nan, 1.0])) == 0.0 and check_cosine(np.array([np.inf, 1.0]), ref) == 0.0
    got = [[ref, ref], [ref, np.array([4.0, 3.0])], [np.array([np.nan, 1.0]), ref]]
    want = [[ref, ref]] * 3
    assert worst_cosine(got[:1], want) == 1.0 and worst_cosine(got[:2], want) == pytest.approx(24 / 25)
    assert worst_cosine(got, want) == 0.0


def test_spread_error_is_relative_to_variation_between_samples():
    """A large constant offset in the reference does not hide an error (per-element spread from 4 samples on),
    fewer samples use the overall mean, and every output counts alike in `relative_output_error`."""
    base = np.arange(4.0)[:, None] * np.array([1.0, -1.0])  # 4 samples x 2 elements, spread 5 per element
    ref = [r + 1000.0 for r in base]
    got = [r + 0.5 for r in ref]
    err, spread = spread_error(ref, got)
    assert err == pytest.approx(4 * 2 * 0.25) and spread == pytest.approx(2 * 5.0)
    assert spread_error(ref[:2], got[:2])[1] == pytest.approx(2.0)  # around the overall mean 1000: 0, 0, 1, -1
    assert spread_error([np.zeros(2)] * 4, [np.ones(2)] * 4) == (8.0, 0.0)
    refs = [{"box": r * 100.0, "score": r} for r in ref]
    outs = [{"box": r * 100.0, "score": g} for r, g in zip(ref, got)]
    assert relative_output_error(outs, refs) == pytest.approx(0.2 / 2)
    assert relative_output_error([], []) == 0.0
