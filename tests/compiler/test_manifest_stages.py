"""The typed manifest (schema 2, schema 1 still read) and the staged pipeline's order."""

from __future__ import annotations

import json

import pytest

from edgec.compiler.manifest import SCHEMA_VERSION, Manifest
from edgec.errors import BundleError

SCHEMA1 = {"schema_version": 1, "target": "intel-cpu", "precision": "int8", "runner": "openvino",
           "artifact": {"path": "model.xml", "kind": "openvino-ir"}, "model_inputs": [], "model_outputs": [],
           "inputs": [], "outputs": [], "reference": {"runner": "onnxruntime", "path": "reference/model.onnx"},
           "files": []}


def test_manifest_reads_schema_1_and_round_trips():
    m = Manifest.from_json(SCHEMA1)
    assert m.schema_version == 1 and m.target == "intel-cpu" and m.reference["path"] == "reference/model.onnx"
    assert m.to_json() == {**Manifest(**{k: v for k, v in SCHEMA1.items()}).to_json()}
    assert SCHEMA_VERSION == 2 and Manifest.from_json({**SCHEMA1, "schema_version": 2}).schema_version == 2


def test_manifest_keeps_unknown_keys_and_rejects_other_schemas():
    m = Manifest.from_json({**SCHEMA1, "schema_version": 2, "methods": ["prefill", "decode"]})
    assert m.extra == {"methods": ["prefill", "decode"]} and m.to_json()["methods"] == ["prefill", "decode"]
    with pytest.raises(BundleError, match="schema_version 3; this edgec reads 1, 2"):
        Manifest.from_json({**SCHEMA1, "schema_version": 3})
    with pytest.raises(BundleError, match="lacks runner"):
        Manifest.from_json({k: v for k, v in SCHEMA1.items() if k != "runner"})


def test_a_bundle_manifest_is_schema_2(cli, tiny_cnn_onnx, tmp_path):
    r = cli("build", tiny_cnn_onnx, "--target", "ort", "--precision", "fp32", "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["schema_version"] == 2 and Manifest.from_json(on_disk).to_json() == on_disk


def test_unsupported_op_fails_before_calibration(cli, tmp_path):
    """The support check runs on the float graph first: the calibration data is never read."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Erf", ["x"], ["y"], name="my_erf")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    bad_calib = tmp_path / "calib.npz"
    bad_calib.write_bytes(b"not an npz")  # reading it would fail with a calibration error
    r = cli("build", path, "--target", "mcu", "--calib", bad_calib, "-o", tmp_path / "b")
    assert r.code != 0 and "op Erf (node 'my_erf') is not supported by target 'mcu'" in r.err, r.err
