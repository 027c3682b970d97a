"""Failures are one-line edgec errors, before any file is written."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgec.calibration.types import CalibrationData
from edgec.errors import CalibrationDataError, ConfigError, EdgecError, UnsupportedOpError
from edgec.targets.base import LowerSpec
from edgec.targets.tflite import TFLiteTarget

from .conftest import handle_from_proto

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


def _model(nodes, inp, out, opset=17, extra_opsets=()):
    g = helper.make_graph(nodes, "m", [inp], [out])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], ir_version=10)


def _lower(proto, tmp_path, precision="fp32", calib=None, **options):
    model = handle_from_proto(proto, "m.onnx")
    spec = LowerSpec(precision=precision, float_model=model, calibration=calib, options=options)
    out = tmp_path / "bundle"
    try:
        return TFLiteTarget().lower(model, spec, out)
    finally:
        # Nothing is written when lowering fails.
        pass


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_op_onnx2tf_cannot_map_is_named(tmp_path):
    proto = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("CumProd", ["r", "ax"], ["y"], name="cp")],
                   helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]), opset=21)
    proto.graph.initializer.append(helper.make_tensor("ax", TensorProto.INT64, [], [1]))
    model = handle_from_proto(proto, "m.onnx")
    report = TFLiteTarget().check(model, LowerSpec("fp32", model))
    assert [(n, op) for n, op, _ in report.unsupported] == [("cp", "CumProd")]
    with pytest.raises(UnsupportedOpError) as ei:
        _lower(proto, tmp_path)
    msg = _one_line(ei.value)
    assert "CumProd" in msg and "'cp'" in msg and "'arm'" in msg and "opset" in msg
    assert not (tmp_path / "bundle").exists()


def test_custom_domain_op_is_rejected(tmp_path):
    proto = _model([helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft", name="fg")],
                   helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]),
                   extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(UnsupportedOpError) as ei:
        _lower(proto, tmp_path)
    assert "FastGelu" in _one_line(ei.value) and "com.microsoft" in str(ei.value)


def test_op_without_builtin_kernel_names_the_op(tmp_path):
    """Det maps to tf.linalg.det, which only a Flex (Select TF ops) runtime has."""
    proto = _model([helper.make_node("Det", ["x"], ["y"], name="det")],
                   helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3]),
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    with pytest.raises(EdgecError) as ei:
        _lower(proto, tmp_path)
    msg = _one_line(ei.value)
    assert isinstance(ei.value, UnsupportedOpError), msg
    assert "MatrixDeterminant" in msg and "builtin" in msg
    assert not (tmp_path / "bundle").exists()


def test_option_errors(tmp_path):
    proto = _model([helper.make_node("Relu", ["x"], ["y"])],
                   helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]))
    with pytest.raises(ConfigError, match="--io-dtype int8 needs --precision int8"):
        _lower(proto, tmp_path, "fp32", io_dtype="int8")
    with pytest.raises(CalibrationDataError, match="--calib"):
        _lower(proto, tmp_path, "int8")
    dyn = _model([helper.make_node("Relu", ["x"], ["y"])],
                 helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
                 helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]))
    with pytest.raises(ConfigError, match="static input shapes"):
        _lower(dyn, tmp_path)
    assert not (tmp_path / "bundle").exists()


def test_target_metadata():
    t = TFLiteTarget()
    assert t.name == "arm" and t.aliases == ("tflite", "mobile")
    assert t.runner == "litert" and t.quant_scheme is None and t.default_precision == "int8"
    assert t.availability() is None
    opts = {o.name: o for o in t.options}
    assert set(opts) == {"io_dtype", "activations", "float_nodes", "float_ops", "float_prefix",
                         "ranges"}
    assert opts["ranges"].choices == ("auto", "minmax", "percentile", "mse", "entropy")
    assert opts["io_dtype"].choices == ("int8", "uint8", "float32") and opts["activations"].choices == ("int8", "int16")


def test_keep_float_is_refused_for_full_integer(tmp_path):
    proto = _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                   helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]))
    model = handle_from_proto(proto, "m.onnx")
    calib = CalibrationData([{"x": np.ones((1, 8), np.float32)}], "synthetic")
    spec = LowerSpec("int8", model, calibration=calib, keep_float=("r",))
    with pytest.raises(ConfigError, match="--float-nodes"):
        TFLiteTarget().lower(model, spec, tmp_path / "bundle")
