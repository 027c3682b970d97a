"""A small CNN trained on scikit-learn's digits (real images), as an edgec model factory.

`edgec build examples/digits_cnn/model.py:build ...` calls `build()`, which returns the
trained module and example inputs. The trained weights ship next to this file
(`digits_cnn.safetensors`, never pickled): training results depend on the CPU's float
kernels, so every machine loads the same weights instead of training its own.
`python model.py --retrain` trains again (~20-40 s on 2 cores) and rewrites that file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
CACHE = HERE / "_cache"
WEIGHTS = HERE / "digits_cnn.safetensors"
SIZE = 32  # digits are 8x8; upsampled so the convolutions do enough work to time
SEED = 0


class DigitsCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = torch.nn.Conv2d(64, 64, 3, padding=1)
        self.fc = torch.nn.Linear(64 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(image))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        return self.fc(x.flatten(1))


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 [N, 1, 32, 32] in [0, 1], split 1400 train / 397 test (fixed)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).numpy()
    y = d.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    tr, te = order[:1400], order[1400:]
    return x[tr], y[tr], x[te], y[te]


def train(epochs: int = 8) -> DigitsCNN:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    xtr, ytr, _, _ = load_digits_split()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def trained_model() -> DigitsCNN:
    """The trained CNN with the shipped weights (trained now and saved there if the file is missing)."""
    from safetensors.torch import load_file

    model = DigitsCNN()
    if WEIGHTS.is_file():
        model.load_state_dict(load_file(str(WEIGHTS)))
        return model.eval()
    return save_weights(train())


def save_weights(model: DigitsCNN) -> DigitsCNN:
    """Write ``model``'s weights to the shipped safetensors file (atomically)."""
    from safetensors.torch import save_file

    tmp = WEIGHTS.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, WEIGHTS)
    return model


def build():
    """edgec model factory: (module, example inputs)."""
    _, _, xte, _ = load_digits_split()
    return trained_model(), (torch.from_numpy(xte[:1]),)


def write_data(calib_samples: int = 128) -> tuple[Path, Path]:
    """Write `_cache/calib.npz` (training images) and `_cache/eval.npz` (test images + labels)."""
    xtr, _, xte, yte = load_digits_split()
    CACHE.mkdir(exist_ok=True)
    calib, evald = CACHE / "calib.npz", CACHE / "eval.npz"
    np.savez(calib, image=xtr[:calib_samples])
    np.savez(evald, image=xte, labels=yte)
    return calib, evald


def accuracy(model: torch.nn.Module) -> float:
    _, _, xte, yte = load_digits_split()
    with torch.no_grad():
        pred = model(torch.from_numpy(xte)).argmax(1).numpy()
    return float((pred == yte).mean())


if __name__ == "__main__":
    c, e = write_data()
    m = save_weights(train()) if "--retrain" in sys.argv[1:] else trained_model()
    print(f"float test accuracy: {accuracy(m):.4f}; wrote {c} and {e}")
