"""The mcu op records are the one place per op: every derived table agrees with them."""

from __future__ import annotations

import pytest

from .conftest import onnx_handle


def test_derived_tables_follow_the_records():
    from edgec.targets.mcu import MCUTarget, ops, planner
    from edgec.targets.mcu.codegen import KERNEL_DIR
    from edgec.targets.mcu.import_tflite import SUPPORTED

    kinds = {k for r in ops.RECORDS for k in r.kinds}
    assert set(ops.EMITTERS) == kinds == set(ops.KERNEL_FILES)
    for r in ops.RECORDS:
        for f in (*r.kernels, *r.headers):
            assert (KERNEL_DIR / f).is_file(), f"{r.name}: kernel file {f} missing"
        for op_type, impls in r.onnx.items():
            assert impls and all(callable(fn) for fn in impls.values()), op_type
    assert planner.INPLACE_KINDS == {k for r in ops.RECORDS if r.inplace for k in r.kinds}
    assert set(SUPPORTED) == {t for r in ops.RECORDS for t in r.tflite}
    scheme = MCUTarget.quant_scheme
    # The quantizer's integer ops are exactly the importable ones (no drift: no ConvTranspose,
    # which the ONNX importer cannot read; Transpose since it has an ONNX importer).
    assert scheme.integer_ops == {op for r in ops.RECORDS if r.integer for op in r.onnx}
    assert scheme.integer_ops <= ops.ONNX_OPS
    assert "ConvTranspose" not in scheme.integer_ops and "Transpose" in scheme.integer_ops
    assert ops.ANY_LAYOUT_ONNX_OPS == {op for r in ops.RECORDS if r.any_layout for op in r.onnx} >= {"Transpose", "Reshape"}
    assert "AveragePool" in scheme.scale_preserving_ops


def test_opset_dispatch_picks_the_newest_importer_not_above_the_model():
    from edgec.targets.mcu.ops import BY_ONNX

    rec = BY_ONNX["ReduceMean"]
    v1, v18 = rec.onnx["ReduceMean"][1], rec.onnx["ReduceMean"][18]
    assert rec.onnx_importer("ReduceMean", 13) is v1
    assert rec.onnx_importer("ReduceMean", 18) is v18 and rec.onnx_importer("ReduceMean", 21) is v18
    assert BY_ONNX["Pad"].onnx_importer("Pad", 1) is None


def _float_model(node, x_shape, y_shape, inits=(), opset=17):
    from onnx import TensorProto, helper

    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], list(inits))
    return onnx_handle(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))


@pytest.mark.parametrize("case,reason", [
    ("pad_reflect", "only constant padding"),
    ("conv3d", "only 2-D convolutions"),
    ("softmax_axis0", "softmax over the last axis of a 2-D tensor"),
    ("gemm_alpha", "alpha/beta != 1 or transA"),
])
def test_constraints_reject_with_a_reason_before_calibration(case, reason):
    import numpy as np
    from onnx import helper, numpy_helper

    from edgec.errors import UnsupportedOpError
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    if case == "pad_reflect":
        pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
        h = _float_model(helper.make_node("Pad", ["x", "pads"], ["y"], name="n", mode="reflect"),
                         [1, 2, 4, 4], [1, 2, 6, 6], [pads])
    elif case == "conv3d":
        w = numpy_helper.from_array(np.ones((2, 2, 1, 1, 1), np.float32), "w")
        h = _float_model(helper.make_node("Conv", ["x", "w"], ["y"], name="n"), [1, 2, 3, 3, 3], [1, 2, 3, 3, 3], [w])
    elif case == "softmax_axis0":
        h = _float_model(helper.make_node("Softmax", ["x"], ["y"], name="n", axis=0), [2, 5], [2, 5])
    else:
        w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
        h = _float_model(helper.make_node("Gemm", ["x", "w"], ["y"], name="n", alpha=2.0), [1, 4], [1, 3], [w])
    report = MCUTarget().check(h, LowerSpec("int8", h))
    assert [(n, op) for n, op, _ in report.unsupported] == [("n", h.proto.graph.node[0].op_type)]
    with pytest.raises(UnsupportedOpError, match=reason):
        report.raise_if_unsupported()
