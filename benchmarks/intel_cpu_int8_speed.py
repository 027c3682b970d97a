"""intel-cpu int8 speed on the real-model corpus: edgec's default IR against NNCF's default IR.

For each corpus model (benchmarks/quant_corpus.py: PP-OCRv4 det, PP-LCNet, ddddocr YOLOX,
PicoDet), with the same 16 calibration samples:
  * onnxruntime fp32 on the float ONNX (the anchor),
  * edgec intel-cpu int8 (the default build),
  * edgec "before": the same build without `QuantScheme.int8_input_ops` / `unified_scale_ops`
    (Add/Mul/Concat/Resize/pool inputs left in float, as before issue 13's speed step),
  * NNCF `nncf.quantize` (default, OpenVINO backend).
Latency: batch 1, a fixed number of threads for every runtime (OpenVINO LATENCY hint,
``INFERENCE_NUM_THREADS``; onnxruntime intra-op threads), the runtimes interleaved round by round,
the median of each round's median, as a ratio to onnxruntime fp32 in the same run (x faster).
Also: cosine (and top-1 for the classifier) against float on held-out samples, and from
OpenVINO's runtime model the layers executed in f32 vs int8 and the Reorders. Not a test:
prints a table and writes benchmarks/results/intel_cpu_int8_speed.json.

    .venv/bin/python benchmarks/intel_cpu_int8_speed.py [--models a,b] [--threads 1] [--rounds 7] [--iters 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, time_fn, write_json  # noqa: E402
from quant_corpus import MODELS, _ov_float, _scores, _static_onnx, inputs, model_file  # noqa: E402

# Runtime-model layers that hold or move data rather than compute (not counted as f32/int8 work).
NOT_COMPUTE = {"Const", "Input", "Output", "Parameter", "Result", "Reorder", "Reshape"}


def _edgec_ir(src: Path, calib: Path, evald: Path, out: Path, before: bool) -> Path:
    from edgec.targets.openvino import OpenVINOTarget
    from quant_quality import _build

    scheme = OpenVINOTarget.quant_scheme
    if before:  # the placement before int8 element-wise ops: only Conv/MatMul/Gemm and conv-fed residual Adds
        OpenVINOTarget.quant_scheme = dataclasses.replace(scheme, int8_input_ops=frozenset(),
                                                          unified_scale_ops=frozenset())
    try:
        r = _build(str(src), out, target="intel-cpu", precision="int8", calib=str(calib), eval_data=str(evald),
                   calib_samples=16, accept_low_accuracy=True)
    finally:
        OpenVINOTarget.quant_scheme = scheme
    if "error" in r:
        raise RuntimeError(r["error"])
    return out / "model.xml"


def _nncf_ir(src: Path, cal: dict, inp: str):
    import nncf

    return nncf.quantize(_ov_float(src), nncf.Dataset([{inp: x[None]} for x in cal[inp]]))


def _compile(model, threads: int):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                  "INFERENCE_NUM_THREADS": threads})


def runtime_precisions(compiled) -> dict[str, object]:
    """Compute layers executed in f32 vs int8, and Reorders, from OpenVINO's runtime model."""
    f32, int8, reorders = {}, {}, 0
    constant: set[str] = set()  # layers computed from constants alone run once, at load (weight transposes)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        sources = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
        if kind == "Const" or (sources and all(s in constant for s in sources)):
            constant.add(op.get_friendly_name())
            continue
        if kind == "Reorder":
            reorders += 1
        if kind in NOT_COMPUTE:
            continue
        bucket = int8 if precision in ("u8", "i8") else f32
        bucket[kind] = bucket.get(kind, 0) + 1
    return {"f32_layers": dict(sorted(f32.items())), "int8_layers": dict(sorted(int8.items())),
            "runtime_reorders": reorders}


def _latencies(runs: dict, x, rounds: int, iters: int, cpu: dict | None = None) -> dict[str, float]:
    """Median over rounds of each runtime's median latency (ms); runtimes interleaved per round.

    ``cpu``: filled with the median over rounds of the process CPU time per run (ms), which a loaded
    machine inflates far less than wall time (2 cores at load 20: wall 12 ms, CPU 4 ms for mobilenet_v2).
    """
    import time

    for fn in runs.values():
        for _ in range(3):
            fn(x)
    per: dict[str, list[float]] = {k: [] for k in runs}
    per_cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            c0 = time.process_time()
            per[k].append(time_fn(lambda: fn(x), iters, 0)["p50"])
            per_cpu[k].append((time.process_time() - c0) * 1e3 / iters)
    if cpu is not None:
        cpu.update({k: float(np.median(v)) for k, v in per_cpu.items()})
    return {k: float(np.median(v)) for k, v in per.items()}


def run_model(name: str, tmp: Path, threads: int, rounds: int, iters: int) -> dict:
    import onnxruntime as ort

    _, _, inp, (h, w), _, _, metric = MODELS[name]
    src = _static_onnx(model_file(name), inp, (1, 3, h, w), tmp / f"{name}.onnx")
    cal, ev = inputs(name, "calib", 16), inputs(name, "eval", 32)  # quant_quality.py's corpus protocol
    np.savez(tmp / "calib.npz", **cal)
    np.savez(tmp / "eval.npz", **ev)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    xs = [x[None] for x in ev[inp]]
    refs = [sess.run(None, {inp: x}) for x in xs]
    compiled = {
        "edgec default": _compile(_edgec_ir(src, tmp / "calib.npz", tmp / "eval.npz", tmp / "after", False), threads),
        "edgec before": _compile(_edgec_ir(src, tmp / "calib.npz", tmp / "eval.npz", tmp / "before", True), threads),
        "nncf default": _compile(_nncf_ir(src, cal, inp), threads),
    }
    runs = {"ort fp32": lambda x: sess.run(None, {inp: x})}
    runs.update({k: (lambda c: lambda x: c({0: x}))(c) for k, c in compiled.items()})
    ms = _latencies(runs, xs[0], rounds, iters)
    out = {"ort fp32": {"ms": ms["ort fp32"]}}
    for k, c in compiled.items():
        acc = _scores([list(c({0: x}).values()) for x in xs], refs, metric == "top1")
        out[k] = {"ms": ms[k], "speed_vs_ort_fp32": ms["ort fp32"] / ms[k], **acc, **runtime_precisions(c)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    import os

    from _common import RESULTS

    previous = RESULTS / "intel_cpu_int8_speed.json"  # running some models keeps the others' rows
    import json

    results = json.loads(previous.read_text()) if previous.is_file() else {}
    results.setdefault("models", {})
    results["settings"] = {"threads": args.threads, "rounds": args.rounds, "iters": args.iters, "batch": 1,
                           "cpu": _cpu_name(), "load_average_at_start": os.getloadavg()[0]}
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as d:
            results["models"][name] = run_model(name, Path(d), args.threads, args.rounds, args.iters)
            results["models"][name]["load_average_after"] = os.getloadavg()[0]
        write_json("intel_cpu_int8_speed", results)
    rows = []
    for name, r in results["models"].items():
        for k in ("edgec before", "edgec default", "nncf default"):
            v = r[k]
            rows.append([name, k, f"{v['speed_vs_ort_fp32']:.2f}x", f"{v['ms']:.2f}", f"{v['cosine']:.4f}",
                         v.get("top1_agreement"), sum(v["f32_layers"].values()), sum(v["int8_layers"].values()),
                         v["runtime_reorders"]])
    print_table(f"intel-cpu int8 vs ORT fp32 ({args.threads} thread(s), batch 1, median of {args.rounds} rounds)",
                ["model", "build", "speed vs ORT fp32", "ms", "cosine", "top-1", "f32 layers", "int8 layers",
                 "reorders"], rows)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
