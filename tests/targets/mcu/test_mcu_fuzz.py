"""Fuzzing the C generator: random small graphs, sanitizers, arena canaries, onnxruntime.

A fixed-seed set runs here; `benchmarks/fuzz_mcu.py` runs thousands.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from .fuzz_graphs import SAN_FLAGS, run_case

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
CI_SEEDS = range(30)
# The first ten run in the fast tier (`-m "not slow"`), all thirty in the full suite.
SEED_PARAMS = [pytest.param(s, marks=[pytest.mark.slow] if s >= 10 else []) for s in CI_SEEDS]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("seed", SEED_PARAMS)
def test_random_graph(work, seed):
    r = run_case(seed, work)
    assert r.outcome == "ok", f"seed {seed} {r.ops}: {r.outcome}: {r.detail}"
    assert r.values > 0


def test_fixed_seeds_cover_every_fuzzed_op():
    from .fuzz_graphs import random_graph

    seen = set()
    for seed in CI_SEEDS:
        seen.update(random_graph(seed)[2])
    assert {"Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Concat", "Pad", "Sigmoid", "Tanh", "Softmax", "PRelu", "HardSwish", "Transpose", "Resize",
            "DepthToSpace"} <= seen


def test_canary_catches_an_overrun_inside_the_arena(tmp_path):
    """An off-by-one in a kernel writes past its tensor but inside the static arena, where
    ASan sees nothing; the canary build names the op."""
    from onnx import TensorProto, helper, numpy_helper

    from edgec.targets.mcu import codegen, planner
    from edgec.targets.mcu.build import write_host_main
    from edgec.targets.mcu.import_onnx import load_onnx

    from .conftest import edgec_qdq

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1]), helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["y"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [numpy_helper.from_array(rng.normal(size=(4, 2, 1, 1)).astype(np.float32), "w1"),
                           numpy_helper.from_array(rng.normal(size=(3, 4, 1, 1)).astype(np.float32), "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _, qh = edgec_qdq(proto, [{"x": rng.uniform(-1, 1, size=(1, 2, 4, 4)).astype(np.float32)} for _ in range(4)])
    qg = load_onnx(qh.proto)
    plan = planner.plan(qg)
    c = tmp_path / "c"
    codegen.generate(qg, plan, c)
    (tmp_path / "h").mkdir()
    write_host_main(tmp_path / "h", qg)
    lut_index = [op.kind for op in plan.order].index("lut")
    src = (c / "elementwise.c").read_text()
    (c / "elementwise.c").write_text(src.replace("for (i = 0; i < size; ++i) out[i]", "for (i = 0; i <= size; ++i) out[i]"))
    (tmp_path / "in.bin").write_bytes(bytes(32))

    def run(defines):
        exe = tmp_path / "run"
        flags = [f for f in SAN_FLAGS if f != "-DEDGEC_ARENA_CANARY"] + defines
        subprocess.run(["gcc", *flags, "-I", str(c), *map(str, sorted(c.glob("*.c"))), str(tmp_path / "h" / "host_main.c"),
                        "-o", str(exe)], check=True)
        return subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True, text=True)

    r = run(["-DEDGEC_ARENA_CANARY"])
    assert r.returncode == (1000 + lut_index) % 256 and "Sanitizer" not in r.stderr
    assert "EDGEC_CANARY_CHECK" in (c / "edgec_model.c").read_text()
