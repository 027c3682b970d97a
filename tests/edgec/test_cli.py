"""The CLI contract: JSON purity, exit codes and one-line errors for every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import run_cli


def _assert_one_line_error(res, *needles: str) -> str:
    assert res.code != 0, res
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _dynamic_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_help_and_version():
    res = run_cli("--help")
    assert res.code == 0 and "build" in res.out and "bench" in res.out and "verify" in res.out
    res = run_cli("build", "--help")
    assert res.code == 0 and "--calib-method" in res.out and "--input-shape" in res.out
    assert run_cli("--version").code == 0


def test_targets_json_is_one_object():
    res = run_cli("targets", "--json")
    assert res.code == 0
    data = json.loads(res.out)
    names = {t["name"] for t in data}
    assert {"intel-cpu", "arm", "mcu", "jetson"} <= names
    ov = next(t for t in data if t["name"] == "intel-cpu")
    assert "openvino" in ov["aliases"] and ov["precisions"] == ["fp32", "fp16", "int8", "int4"] and ov["default"]


def test_import_edgec_and_help_import_no_heavy_packages():
    code = ("import sys, edgec, edgec.cli\n"
            "from edgec.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['targets', '--json'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'openvino', 'tensorrt', 'onnxruntime', 'transformers') "
            "if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_build_json_stdout_is_only_json(tiny_cnn_onnx, tiny_calib, tmp_path):
    res = run_cli("build", tiny_cnn_onnx, "--calib", tiny_calib, "-o", tmp_path / "b", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["manifest"]["target"] == "intel-cpu" and data["report"]["accuracy"]["cosine"] > 0.99
    res = run_cli("bench", tmp_path / "b", "--iters", "3", "--warmup", "1", "--json")
    assert res.code == 0 and json.loads(res.out)["schema"] == "edgec.bench/1"
    res = run_cli("inspect", tmp_path / "b", "--json")
    assert res.code == 0 and json.loads(res.out)["kind"] == "bundle"
    res = run_cli("inspect", tiny_cnn_onnx, "--json")
    info = json.loads(res.out)
    assert info["op_counts"]["Conv"] == 2 and info["parameters"] > 0


def test_corrupt_and_truncated_onnx(tiny_cnn_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-protobuf\xff\xff\xff")
    _assert_one_line_error(run_cli("build", bad, "-o", tmp_path / "o", "--precision", "fp32"), "bad.onnx", "ONNX")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(tiny_cnn_onnx.read_bytes()[:300])
    _assert_one_line_error(run_cli("build", trunc, "-o", tmp_path / "o", "--precision", "fp32"), "trunc.onnx")
    assert not (tmp_path / "o").exists()


def test_file_that_is_no_model(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    _assert_one_line_error(run_cli("build", f, "-o", tmp_path / "o"), "not a model")
    _assert_one_line_error(run_cli("build", tmp_path / "missing.onnx", "-o", tmp_path / "o"), "does not exist")
    d = tmp_path / "folder"
    d.mkdir()
    _assert_one_line_error(run_cli("build", d, "-o", tmp_path / "o"), "config.json")


def test_dynamic_dimension_without_input_shape(tmp_path):
    p = tmp_path / "dyn.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), p)
    line = _assert_one_line_error(run_cli("build", p, "-o", tmp_path / "o", "--precision", "fp32"),
                                  "'x'", "dynamic", "--input-shape x=")
    assert "batch" in line and "axis 0, 1" in line
    res = run_cli("build", p, "-o", tmp_path / "o", "--precision", "fp32", "--input-shape", "x=2x4", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["manifest"]["inputs"][0]["shape"] == [2, 4]


def test_bad_input_shape_syntax(tmp_path):
    p = tmp_path / "dyn.onnx"
    _dynamic_model(p)
    _assert_one_line_error(run_cli("build", p, "-o", tmp_path / "o", "--input-shape", "x=2xA"), "--input-shape")
    _assert_one_line_error(run_cli("build", p, "-o", tmp_path / "o", "--input-shape", "y=2x4"), "unknown input")


@pytest.mark.parametrize("case", ["name", "shape", "dtype"])
def test_calibration_data_mismatch(tiny_cnn_onnx, tmp_path, case):
    data = tmp_path / "c.npz"
    if case == "name":
        np.savez(data, pixels=np.zeros((4, 1, 8, 8), np.float32))
        needle = "image"
    elif case == "shape":
        np.savez(data, image=np.zeros((4, 3, 16, 16), np.float32))
        needle = "shape"
    else:
        np.savez(data, image=np.zeros((4, 1, 8, 8), np.int32))
        needle = "dtype"
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "--calib", data, "-o", tmp_path / "o"), needle)
    assert not (tmp_path / "o").exists()


def test_missing_extra_names_the_pip_command(tiny_cnn_onnx, tmp_path, monkeypatch):
    import edgec.targets.base as base

    real = base.has_module
    monkeypatch.setattr(base, "has_module", lambda m: False if m == "openvino" else real(m))
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "-o", tmp_path / "o", "--precision", "fp32"),
                           "intel-cpu", "pip install 'edgec[openvino]'")


def test_unsupported_op_names_op_node_and_target(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("FancyOp", ["r"], ["y"], name="my_fancy_node", domain="com.example")]
    g = helper.make_graph(nodes, "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
                          ir_version=8)
    p = tmp_path / "custom.onnx"
    onnx.save(m, p)
    _assert_one_line_error(run_cli("build", p, "-o", tmp_path / "o", "--precision", "fp32"),
                           "FancyOp", "my_fancy_node", "intel-cpu")


def test_unknown_target_precision_and_option(tiny_cnn_onnx, tmp_path):
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "-o", tmp_path / "o", "--target", "gpu9000"),
                           "unknown target 'gpu9000'")
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "-o", tmp_path / "o", "--precision", "int3"),
                           "precision 'int3'")
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "-o", tmp_path / "o", "--no-such-flag"),
                           "no-such-flag")


def test_output_exists_needs_force(tiny_cnn_onnx, tmp_path):
    (tmp_path / "o").mkdir()
    _assert_one_line_error(run_cli("build", tiny_cnn_onnx, "-o", tmp_path / "o", "--precision", "fp32"), "--force")


def test_bench_and_verify_on_a_non_bundle(tmp_path):
    _assert_one_line_error(run_cli("bench", tmp_path), "not an edgec bundle")
    _assert_one_line_error(run_cli("verify", tmp_path / "nope", "--data", "x.npz"), "not a bundle")


def test_debug_shows_traceback(tmp_path):
    res = run_cli("--debug", "build", tmp_path / "missing.onnx", "-o", tmp_path / "o")
    assert res.code != 0 and "Traceback" in res.err
