"""Fixtures for the quantization-quality tests: a small CNN trained on scikit-learn's 8x8 digits
(real accuracy), the same CNN with one layer made hard to quantize, and a tiny Llama."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]

# Output channel of conv2 that carries a planted outlier, compensated in conv3's weights: the
# float function is unchanged, but conv3's input then has one channel so much larger than the
# others that its per-tensor int8 step is as large as every other channel's whole calibration
# range, so those channels keep at most one level. The scale is derived from the calibration
# data (see `_outlier_scale`), so the property holds for any weights, on any CPU.
OUTLIER_CHANNEL = 3


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def _net():
    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
            self.conv3 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.fc = torch.nn.Linear(32 * 2 * 2, 10)

        def forward(self, image):
            x = F.relu(self.conv1(image))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = F.max_pool2d(F.relu(self.conv3(x)), 2)
            return self.fc(x.flatten(1))

        def conv3_input(self, image):
            return F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(image)))), 2)

    torch.manual_seed(0)
    return Net()


def _fit(net) -> None:
    """8 epochs of Adam on 1400 training digits (only when the shipped weights are missing)."""
    import torch
    import torch.nn.functional as F

    xtr, ytr, _, _ = _digits()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(8):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _train():
    from tests.trained_weights import load_or_train

    return load_or_train("quant_digits_cnn", _net(), _fit)


def _outlier_scale(net, calib: np.ndarray) -> float:
    """Factor for OUTLIER_CHANNEL that makes conv3's uint8 input step (max / 255) equal the largest
    calibration maximum of any other channel."""
    import torch

    with torch.no_grad():
        peak = net.conv3_input(torch.from_numpy(calib)).amax(dim=(0, 2, 3)).numpy().astype(np.float64)
    others = np.delete(peak, OUTLIER_CHANNEL).max()
    return float(np.ceil(255.0 * others / peak[OUTLIER_CHANNEL]))


def _export(net, path: Path) -> Path:
    from edgec.compiler.loaders import finish_torch
    from edgec.compiler.progress import SILENT

    import torch

    h = finish_torch(net, (torch.zeros(1, 1, 8, 8),), "digits", "0" * 64, parity_tol=1e-3, progress=SILENT,
                      input_shapes={})
    path.write_bytes(h.serialize())
    return path


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory) -> dict[str, Path]:
    """``plain`` and ``outlier`` ONNX CNNs, ``calib`` (128 train images) and ``eval`` (397 test images + labels)."""
    import torch

    d = tmp_path_factory.mktemp("digits")
    net = _train()
    out = {"plain": _export(net, d / "plain.onnx")}
    xtr, _, xte, yte = _digits()
    scale = _outlier_scale(net, xtr[:128])
    with torch.no_grad():
        net.conv2.weight[OUTLIER_CHANNEL] *= scale
        net.conv2.bias[OUTLIER_CHANNEL] *= scale
        net.conv3.weight[:, OUTLIER_CHANNEL] /= scale
    out["outlier"] = _export(net, d / "outlier.onnx")
    np.savez(d / "calib.npz", image=xtr[:128])
    np.savez(d / "eval.npz", image=xte, labels=yte)
    out["calib"], out["eval"] = d / "calib.npz", d / "eval.npz"
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> dict[str, Path]:
    """A random-weight 2-layer Llama (hidden 64, vocab 128) with a character tokenizer, and text."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_llama_example", ROOT / "examples/tiny_llama/model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    d = tmp_path_factory.mktemp("tiny_llama")
    folder = example.write_tiny_llama(d / "llama", vocab_size=128, max_positions=64)
    lines = [f"the quick brown fox {i} jumps over the lazy dog and runs home" for i in range(24)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    return {"model": folder, "text": d / "text.txt"}
