"""Shared fixtures: tiny models built in code, a fake target, and an in-process CLI runner."""

from __future__ import annotations

import io
import json
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(*args: str) -> CliResult:
    """Run `edgec ARGS` in-process; returns exit code, stdout and stderr."""
    from edgec.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


TINY_CNN_SRC = textwrap.dedent('''
    import torch


    class TinyCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.fc = torch.nn.Linear(16 * 2 * 2, 10)

        def forward(self, image):
            x = torch.max_pool2d(torch.relu(self.conv1(image)), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(x.flatten(1))


    def build():
        torch.manual_seed(0)
        return TinyCNN().eval(), (torch.rand(1, 1, 8, 8),)
''')


@pytest.fixture(scope="session")
def tiny_cnn_factory(tmp_path_factory) -> str:
    """`file.py:build` of an untrained 8x8 CNN (fast to export)."""
    d = tmp_path_factory.mktemp("tiny_cnn")
    (d / "tiny_cnn.py").write_text(TINY_CNN_SRC)
    return f"{d / 'tiny_cnn.py'}:build"


@pytest.fixture(scope="session")
def tiny_cnn_onnx(tmp_path_factory, tiny_cnn_factory) -> Path:
    """The tiny CNN exported to an ONNX file."""
    from edgec.compiler.loaders import load_model

    handle = load_model(tiny_cnn_factory)
    path = tmp_path_factory.mktemp("tiny_cnn_onnx") / "tiny_cnn.onnx"
    path.write_bytes(handle.serialize())
    return path


@pytest.fixture(scope="session")
def tiny_calib(tmp_path_factory) -> Path:
    """Calibration .npz for the tiny CNN: 32 images in [0, 1]."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, image=rng.random((32, 1, 8, 8), dtype=np.float32))
    return path


@pytest.fixture
def fake_target():
    """Registers the SDK-free `fake` target for the test and removes it after."""
    from edgec.targets.registry import TARGETS
    from tests.fake_target import FakeTarget

    TARGETS.register("fake", FakeTarget)
    try:
        yield FakeTarget
    finally:
        TARGETS.unregister("fake")


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    """QEMU runs belong to the slow tier: `pytest -m "not slow"` is the loop run while working."""
    for item in items:
        if item.get_closest_marker("qemu") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
