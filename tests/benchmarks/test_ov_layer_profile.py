"""benchmarks/ov_layer_profile.py: both IRs of a kept folder profiled on the right inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

ov = pytest.importorskip("openvino")


def _ir(path: Path, order: tuple[str, str]) -> str:
    """x @ W + ids (ids int64, as a transformer's input_ids), inputs declared in ``order``."""
    import openvino.opset13 as ops

    params = {"x": ops.parameter([1, 8], np.float32, name="x"), "ids": ops.parameter([1, 4], np.int64, name="ids")}
    for name, p in params.items():
        p.output(0).get_tensor().set_names({name})
    w = ops.constant(np.arange(32, dtype=np.float32).reshape(8, 4) / 32)
    out = ops.add(ops.matmul(params["x"], w, False, False), ops.convert(params["ids"], np.float32))
    ov.save_model(ov.Model([out], [params[n] for n in order]), str(path))
    return str(path)


def test_profile_feeds_each_ir_by_input_name(tmp_path):
    from ov_layer_profile import METHODS, _feed, profile

    # The two IRs declare their inputs in opposite orders; the timing input is stored by name.
    arts = {METHODS[0]: _ir(tmp_path / "a.xml", ("x", "ids")), METHODS[1]: _ir(tmp_path / "b.xml", ("ids", "x"))}
    (tmp_path / "artifacts.json").write_text(json.dumps(arts))
    data = {"x": np.ones((1, 8), np.float32), "ids": np.array([[1, 2, 3, 4]], np.int64)}
    np.savez(tmp_path / "timing_input.npz", **data)
    core = ov.Core()
    for path in arts.values():
        compiled = core.compile_model(path, "CPU")
        out = compiled(_feed(compiled, data))[0]
        np.testing.assert_allclose(out, data["x"] @ (np.arange(32).reshape(8, 4) / 32) + data["ids"], rtol=1e-5)
    row = profile(tmp_path, iters=4)
    assert row["perf_counter_speed_edgec_vs_nncf"] > 0 and row["thread_cpu_speed_edgec_vs_nncf"] > 0
    assert row[METHODS[0]]["kernels"] == row[METHODS[1]]["kernels"]


def test_feed_names_a_missing_input(tmp_path):
    from ov_layer_profile import _feed

    compiled = ov.Core().compile_model(_ir(tmp_path / "a.xml", ("x", "ids")), "CPU")
    with pytest.raises(SystemExit, match="no timing input for IR input"):
        _feed(compiled, {"x": np.ones((1, 8), np.float32)})
