"""Defects 6, 8, 9, 12 and 13: user mistakes are one `error:` line naming the cause, never exit 70."""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.cli_subprocess import assert_one_line_error, conv_onnx

FAST = ("--target", "onnxruntime", "--precision", "fp32")

FACTORY = textwrap.dedent('''
    import sys
    import torch

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.lin(x)

    def wrong_shape():
        return M().eval(), (torch.randn(1, 5),)

    def exits():
        sys.exit(3)
''')


@pytest.fixture
def factory(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "f.py").write_text(FACTORY)
    return tmp_path / "f.py"


def test_factory_with_wrong_example_shape(factory, tmp_path):
    assert_one_line_error(run_cli("build", f"{factory}:wrong_shape", "-o", tmp_path / "o"),
                          "fails on its own example inputs", "x=[1, 5]")


def test_factory_calling_sys_exit_is_reported(factory, tmp_path):
    res = run_cli("build", f"{factory}:exits", "-o", tmp_path / "o")
    assert res.code not in (0, 3)
    assert_one_line_error(res, "sys.exit(3)")


def test_huge_input_shape_is_refused_before_allocating(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx", dyn_hw=True)
    res = run_cli("build", model, "--input-shape", "x=1x3x100000x100000", "--calib", "random", "-o", tmp_path / "o")
    assert_one_line_error(res, "GiB", "--input-shape")


def test_random_calibration_is_drawn_in_the_model_dtype():
    from edgec.calibration.synthetic import random_samples
    from edgec.compiler.model import TensorSpec

    s = random_samples([TensorSpec("x", (1, 3, 4, 4), "float32")], 2)
    assert s[0]["x"].dtype == np.float32 and np.isfinite(s[0]["x"]).all()


def test_zero_size_dim_is_not_called_dynamic(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx", shape=(1, 3, 0, 8))
    err = assert_one_line_error(run_cli("build", model, "--calib", "random", "-o", tmp_path / "o"), "zero-size")
    assert "dynamic" not in err


def test_bad_eval_data_is_named_eval_not_calibration(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 3, 4, 8), np.float32))
    err = assert_one_line_error(run_cli("build", model, *FAST, "--calib", tmp_path / "c.npz", "--eval",
                                        tmp_path / "e.npz", "-o", tmp_path / "o"), "--eval")
    assert "calibration" not in err


def test_string_dtype_npz_is_a_dtype_error(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx")
    np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]))
    err = assert_one_line_error(run_cli("build", model, "--calib", tmp_path / "s.npz", "-o", tmp_path / "o"), "dtype")
    assert "shape" not in err


@pytest.mark.parametrize("flag", ["--flash-budget", "--ram-budget"])
def test_zero_budgets_are_rejected(tmp_path, flag):
    model = conv_onnx(tmp_path / "m.onnx")
    assert_one_line_error(run_cli("build", model, "--target", "mcu", "--calib", "random", flag, "0",
                                  "-o", tmp_path / "o"), flag)


def test_bench_of_a_bundle_with_garbage_weights(tmp_path):
    pytest.importorskip("openvino")
    import hashlib

    model = conv_onnx(tmp_path / "m.onnx")
    out = tmp_path / "b"
    assert run_cli("build", model, "--target", "intel-cpu", "--precision", "fp32", "-o", out).code == 0
    blob = out / "model.bin"
    blob.write_bytes(np.random.default_rng(0).bytes(blob.stat().st_size))
    manifest = json.loads((out / "manifest.json").read_text())
    for e in manifest["files"]:  # a consistent manifest: only the content is wrong
        data = (out / e["path"]).read_bytes()
        e["sha256"], e["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli("bench", out, "--iters", "2"), "model.xml", "corrupt")


def test_external_data_hash_covers_only_referenced_files(tmp_path):
    import onnx

    src = tmp_path / "src"
    src.mkdir()
    proto = onnx.load(conv_onnx(tmp_path / "plain.onnx"))
    onnx.save(proto, src / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.weights", size_threshold=0)

    def build(name):
        out = tmp_path / name
        res = run_cli("build", src / "m.onnx", *FAST, "-o", out)
        assert res.code == 0, res.err
        return json.loads((out / "manifest.json").read_text())["source"]["sha256"]

    first = build("a")
    (src / "notes.txt").write_text("unrelated")
    assert build("b") == first
    blob = bytearray((src / "m.weights").read_bytes())
    blob[0] ^= 1
    (src / "m.weights").write_bytes(bytes(blob))
    assert build("c") != first
