"""Helpers for the security and bad-input tests: the real `edgec` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CliResult

EDGEC = [sys.executable, "-m", "edgec"]


def run_edgec(*args, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run ``edgec ARGS`` as a separate process (third-party logging goes to the real stderr)."""
    proc = subprocess.run([*EDGEC, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(res: CliResult, *needles: str) -> str:
    """The CLI contract: non-zero exit, exactly one ``error:`` line on stderr, no traceback."""
    assert res.code != 0, res
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: "), res.err
    assert "internal error" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def conv_onnx(path: Path, *, weight_fill: float | None = None, shape=(1, 3, 8, 8), dyn: bool = False,
              dyn_hw: bool = False) -> Path:
    """A Conv-Relu-GAP-Flatten ONNX model on input ``x``; one weight may be set to NaN/Inf, dims made dynamic."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, shape[1], 3, 3)).astype(np.float32)
    if weight_fill is not None:
        w[0, 0, 0, 0] = weight_fill
    b = np.zeros(4, np.float32)
    in_shape = ["N", *shape[1:]] if dyn else list(shape)
    if dyn_hw:
        in_shape = [1, shape[1], "H", "W"]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [in_shape[0], 4])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path
