"""benchmarks/quant_corpus.py's scoring: mean and worst-sample cosine, tiny outputs stacked, top-1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_agreement_mean_worst_and_top1():
    from quant_corpus import agreement

    refs = [[np.array([1.0, 0, 0, 0, 0, 0, 0, 0])], [np.array([0, 1.0, 0, 0, 0, 0, 0, 0])]]
    outs = [[np.array([1.0, 0, 0, 0, 0, 0, 0, 0])], [np.array([1.0, 1.0, 0, 0, 0, 0, 0, 0])]]
    row = agreement(outs, refs, classifier=True)
    assert row["cosine_worst"] == pytest.approx(2 ** -0.5)
    assert row["cosine"] == pytest.approx((1 + 2 ** -0.5) / 2)
    assert row["top1_agreement"] == 0.5  # sample 2's argmax moved to class 0


def test_agreement_scores_tiny_outputs_over_all_samples_stacked():
    from quant_corpus import agreement

    # One scalar logit per sample: its own cosine is only its sign, so it is scored stacked.
    refs = [[np.array([2.0])], [np.array([-1.0])]]
    outs = [[np.array([2.0])], [np.array([1.0])]]
    row = agreement(outs, refs, classifier=False)
    assert row["cosine"] == row["cosine_worst"] == pytest.approx(3 / 5)
    assert "top1_agreement" not in row
