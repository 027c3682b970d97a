"""benchmarks/ov_fq_reference.py: FakeQuantize decomposed into f32 ops computes the op's definition."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

ov = pytest.importorskip("openvino")


def test_fakequantize_in_f32_is_the_ops_definition(tmp_path):
    """x -> FakeQuantize(256 levels over [-1, 0.5]) -> * 2: no FakeQuantize is left, values outside the range
    clamp, values inside land on the 255-step grid (ties to even), as OpenVINO's own FakeQuantize in f32."""
    import openvino.opset13 as ops

    from ov_fq_reference import compiled, fq_in_f32

    x = ops.parameter([1, 7], np.float32, name="x")
    lo, hi = ops.constant(np.float32(-1.0)), ops.constant(np.float32(0.5))
    y = ops.multiply(ops.fake_quantize(x, lo, hi, lo, hi, 256), ops.constant(np.float32(2.0)))
    path = tmp_path / "fq.xml"
    ov.save_model(ov.Model([y], [x]), str(path))
    feed = np.array([[-3.0, -1.0, -0.2, 0.0, 0.1234, 0.5, 4.0]], np.float32)
    step = 1.5 / 255
    want = 2 * (np.round((np.clip(feed, -1.0, 0.5) + 1.0) / step) * step - 1.0)
    decomposed = fq_in_f32(ov.Core().read_model(str(path)))
    assert "FakeQuantize" not in {op.get_type_name() for op in decomposed.get_ordered_ops()}
    sim = compiled(str(path), True)
    got = np.asarray(next(iter(sim([feed]).values())))
    np.testing.assert_allclose(got, want, atol=1e-5)
    native = np.asarray(next(iter(compiled(str(path), False)([feed]).values())))
    np.testing.assert_allclose(got, native, atol=1e-5)
