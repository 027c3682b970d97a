"""The corpus architectures' weights: seeded, briefly fine-tuned on real photo crops, deterministic.

The full nets take minutes to fine-tune on 2 cores, so these tests drive the same helpers
(`architectures._finetune`, `data.labelled_crops`) on a few-layer net of the same blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _tiny_net():
    import torch
    from corpus import architectures as arch
    from torch import nn

    torch.manual_seed(arch.SEED)
    features = nn.Sequential(arch.ConvBN(3, 8, 3, 2), arch.InvertedResidual(8, 8, 3, 1, 16, act=nn.SiLU, se=4))
    return arch.Classifier(features, nn.Linear(8, 1000))


def test_labelled_crops_are_deterministic_photos_with_their_photo_index():
    from corpus import data

    x, y = data.labelled_crops(6, 32, seed=0)
    x2, y2 = data.labelled_crops(6, 32, seed=0)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert 0 <= y.min() and y.max() < len(data.NATURAL)
    assert not np.array_equal(x, data.labelled_crops(6, 32, seed=1)[0])
    assert -3 < x.mean() < 3 and x.std() > 0.2  # ImageNet-normalized photos, not blank


def test_finetune_learns_the_proxy_task_and_is_repeatable():
    import torch
    from corpus import architectures as arch, data

    x, y = (torch.from_numpy(a) for a in data.labelled_crops(12 * 8 // 2, 32, seed=arch.SEED))  # its crops
    loss = lambda net: float(torch.nn.functional.cross_entropy(net.eval()(x), y))  # noqa: E731
    nets = [_tiny_net(), _tiny_net()]
    before = loss(nets[0])
    for net in nets:
        torch.manual_seed(0)
        arch._finetune(net, steps=12, batch=8, size=32, lr=1e-2, weight_decay=1e-4)
    assert loss(nets[0]) < before - 0.2  # it trained on the photos (a bug in labels or the loop would not)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)  # same seed, same weights


def test_finetune_settings_are_recorded_in_the_manifest():
    import corpus
    from corpus import architectures as arch

    note = corpus.manifest()["weights"]["arch"]
    for key, value in arch.FINETUNE.items():
        assert f"{key} {value}" in note
