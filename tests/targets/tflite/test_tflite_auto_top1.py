"""``--ranges auto``'s top-1 score for classifiers (no conversion: plain arrays)."""

from __future__ import annotations

import numpy as np

from edgec.targets.tflite.ranges import top1_agreement


def test_top1_agreement_counts_samples_whose_arg_max_matches():
    want = [[np.array([[0.1, 0.9, 0.0]])], [np.array([[0.5, 0.4, 0.1]])]]
    same = [[np.array([[0.2, 0.7, 0.1]])], [np.array([[0.6, 0.3, 0.1]])]]
    flipped = [[np.array([[0.2, 0.7, 0.1]])], [np.array([[0.4, 0.5, 0.1]])]]
    assert top1_agreement(same, want) == 1.0
    assert top1_agreement(flipped, want) == 0.5
