"""Symmetric depthwise outputs on intel-cpu (`QuantScheme.symmetric_depthwise_outputs`) and the build's measured
choice between them and shifted ones (`edgec.compiler.depthwise_output_grid`). Real onnxruntime runs of a
BlazeFace-style stream: depthwise 3x3 -> pointwise 1x1, no activation between."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ._blaze_blocks import blaze_stream_model


def _zero_points(proto) -> dict[str, int]:
    """The zero point of every activation QuantizeLinear, by the tensor it quantizes."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {n.input[0]: int(inits[n.input[2]].ravel()[0]) for n in proto.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[2] in inits}


def _quantizer(scheme=None):
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.openvino import OpenVINOTarget

    model = ModelHandle.from_onnx(blaze_stream_model(3), "blocks.onnx", "0" * 64)
    rng = np.random.default_rng(1)
    calib = [{"x": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)} for _ in range(8)]
    cfg = BuildConfig(model="blocks.onnx", output="out", target="intel-cpu", precision="int8")
    scheme = scheme or OpenVINOTarget.quant_scheme
    return Int8Quantizer._create(cfg, model, CalibrationData(samples=calib, source="test"),
                                 collect_ranges(model.proto, calib, "mse"), scheme, SILENT), SILENT


def test_balanced_depthwise_outputs_read_by_a_conv_are_candidates():
    from edgec.compiler.quantize import symmetric_depthwise_outputs as candidates

    q, _ = _quantizer()
    found = candidates(q.model.proto, q.ranges, 0.5)
    assert found == ["dw1", "dw2", "dw3"], {t: q.ranges[t] for t in ("dw1", "dw2", "dw3")}
    assert candidates(q.model.proto, q.ranges, 1.01) == []  # no range is more than balanced
    # The pointwise outputs are read by an Add, not a weighted op: never candidates.
    assert not {"pw1", "pw2", "pw3"} & set(candidates(q.model.proto, q.ranges, 0.0))


def test_symmetric_depthwise_outputs_get_no_zero_point_and_only_them():
    from edgec.targets.openvino import OpenVINOTarget

    base = OpenVINOTarget.quant_scheme
    assert base.symmetric_depthwise_outputs is not None  # the target's rule
    on, _ = _quantizer()
    off, _ = _quantizer(dataclasses.replace(base, symmetric_depthwise_outputs=None))
    zp_on, zp_off = _zero_points(on.quantize()[0].proto), _zero_points(off.quantize()[0].proto)
    assert all(zp_on[f"dw{i}"] == 0 for i in (1, 2, 3)), zp_on
    assert any(zp_off[f"dw{i}"] != 0 for i in (1, 2, 3)), zp_off  # calibrated ranges are not exactly centred
    assert {t: z for t, z in zp_on.items() if not t.startswith("dw")} == {
        t: z for t, z in zp_off.items() if not t.startswith("dw")}


@pytest.mark.parametrize("growth, noise, kept", [(1e9, 0.0, True), (0.0, 1.0, True), (0.0, -1.0, False)])
def test_the_measured_choice_keeps_the_grid_whose_error_is_in_bounds(monkeypatch, growth, noise, kept):
    """A bound nothing exceeds (error growth or cosine loss) keeps the symmetric grids; bounds no error meets take
    the shifted quantizer. Both cosines are recorded."""
    from edgec.compiler import depthwise_output_grid as grid

    q, progress = _quantizer()
    monkeypatch.setattr(grid, "ERROR_GROWTH", growth)
    monkeypatch.setattr(grid, "NOISE", noise)
    chosen = grid.choose(q, progress)
    (rec,) = [p["config"] for p in chosen.passes if p["name"] == "symmetric-depthwise-outputs"]
    assert rec["kept"] is kept and rec["tensors"] == 3, rec
    assert 0.9 < rec["worst_cosine_symmetric"] <= 1.0 and 0.9 < rec["worst_cosine_shifted"] <= 1.0
    assert (chosen is q) is kept
    assert (chosen.scheme.symmetric_depthwise_outputs is None) is not kept
    zps = _zero_points(chosen.quantize()[0].proto)
    assert all(zps[f"dw{i}"] == 0 for i in (1, 2, 3)) is kept
    assert not [p for p in q.passes if p["name"] == "symmetric-depthwise-outputs"] or kept  # q itself untouched


def test_no_candidates_means_no_measurement():
    from edgec.compiler import depthwise_output_grid as grid
    from edgec.targets.openvino import OpenVINOTarget

    q, progress = _quantizer(dataclasses.replace(OpenVINOTarget.quant_scheme, symmetric_depthwise_outputs=None))
    assert grid.choose(q, progress) is q
    assert not [p for p in q.passes if p["name"] == "symmetric-depthwise-outputs"]
