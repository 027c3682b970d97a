"""Where edgec's and NNCF's intel-cpu int8 IRs spend their time: OpenVINO per-layer perf counters, 1 thread.

Latency on a loaded machine is noise; this is the load-independent side of the corpus speed table. For
each model folder kept by ``quant_quality.py --parts corpus --corpus-keep DIR`` (its ``artifacts.json``),
both IRs are compiled in one process with ``INFERENCE_NUM_THREADS=1`` and ``PERF_COUNT``, and run
interleaved (alternating order) on the kept timing input. Per model: the median per-inference sum of
the perf counters and the median thread-CPU time, each as edgec / NNCF speed (> 1: edgec faster), the
time per layer type and kernel (microseconds per inference), the runtime model's kernels by type and
precision, and how many original layers each compute kernel fused (its post-ops), for both. A layer type
whose time differs while the kernel lists match points at placement: more fused layers per kernel are extra
post-ops (a bias the runtime could have dropped, a zero shift); differing kernel lists point at float islands. Writes
benchmarks/results/ov_layer_profile.json (rows merged per model).

    .venv/bin/python benchmarks/ov_layer_profile.py DIR [--models a,b] [--iters 500]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_info, print_table, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ov_layer_profile.json"
METHODS = ("edgec default", "nncf default")
SKIP = {"Const", "Input", "Output"}
FUSING = {"Convolution", "GroupConvolution", "FullyConnected", "Deconvolution"}


def _fusion(compiled) -> dict[str, int]:
    """Compute kernels by type and how many original layers each absorbed (``Convolution:4``: 4 kernels that
    fused 4 layers each, e.g. the conv, its weight scale, bias and output FakeQuantize). Load-independent: two IRs
    with the same kernels but more post-ops per kernel spend more time in them."""
    counts: collections.Counter = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in FUSING:
            counts[f"{kind}:{len(info['originalLayersNames'].astype(str).split(','))}"] += 1
    return dict(sorted(counts.items()))


def _kernels(compiled) -> dict[str, int]:
    counts: collections.Counter = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in SKIP:
            counts[f"{kind}:{info['runtimePrecision'].astype(str)}"] += 1
    return dict(sorted(counts.items()))


def _feed(compiled, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kept timing input by input name, in the IR's element type: two IRs of one model may order
    their inputs differently (input_ids / attention_mask), so position alone would swap them."""
    feed = {}
    for port in compiled.inputs:
        hit = next((n for n in sorted(port.get_names()) if n in data), None)
        if hit is None:
            raise SystemExit(f"error: no timing input for IR input {sorted(port.get_names())} "
                             f"(timing_input.npz has {sorted(data)})")
        feed[port.get_any_name()] = data[hit].astype(port.get_element_type().to_dtype(), copy=False)
    return feed


def profile(folder: Path, iters: int) -> dict:
    """Perf-counter and thread-CPU medians per IR, interleaved, with per-layer-type times and kernel counts."""
    import openvino as ov

    arts = json.loads((folder / "artifacts.json").read_text())
    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True, "NUM_STREAMS": 1}
    compiled = {m: core.compile_model(arts[m], "CPU", cfg) for m in METHODS}
    with np.load(folder / "timing_input.npz") as z:
        data = {k: z[k] for k in z.files}
    feeds = {m: _feed(c, data) for m, c in compiled.items()}
    reqs = {m: c.create_infer_request() for m, c in compiled.items()}
    for m, r in reqs.items():
        for _ in range(10):
            r.infer(feeds[m])
    perf = {m: [] for m in METHODS}
    cpu = {m: [] for m in METHODS}
    by_type = {m: collections.Counter() for m in METHODS}
    for it in range(iters):
        for m in METHODS if it % 2 == 0 else METHODS[::-1]:
            t0 = time.thread_time_ns()
            reqs[m].infer(feeds[m])
            cpu[m].append(time.thread_time_ns() - t0)
            total = 0.0
            for pi in reqs[m].profiling_info:
                us = pi.real_time.total_seconds() * 1e6
                total += us
                by_type[m][f"{pi.node_type}:{pi.exec_type}"] += us / iters
            perf[m].append(total)
    e, n = METHODS
    return {
        "perf_counter_speed_edgec_vs_nncf": round(float(np.median(perf[n]) / np.median(perf[e])), 3),
        "thread_cpu_speed_edgec_vs_nncf": round(float(np.median(cpu[n]) / np.median(cpu[e])), 3),
        **{m: {"perf_counter_us": round(float(np.median(perf[m])), 1),
               "thread_cpu_ms": round(float(np.median(cpu[m])) / 1e6, 4),
               "us_by_layer": {k: round(v, 1) for k, v in by_type[m].most_common() if v >= 0.05},
               "kernels": _kernels(compiled[m]), "fused_layers_per_kernel": _fusion(compiled[m])} for m in METHODS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path, help="folder of quant_quality.py --corpus-keep")
    ap.add_argument("--models", default=None, help="comma-separated (default: every kept model)")
    ap.add_argument("--iters", type=int, default=500, help="inferences per IR, interleaved")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else sorted(p.name for p in args.dir.iterdir()
                                                               if (p / "artifacts.json").exists())
    missing = [m for m in names if not (args.dir / m / "artifacts.json").exists()]
    if missing:
        sys.exit(f"error: no kept artifacts for {missing} in {args.dir} (run quant_quality.py --corpus-keep first)")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent).stdout.strip()
    rows = []
    for name in names:
        row = profile(args.dir / name, args.iters)
        row["run"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "iters": args.iters, "threads": 1,
                      "load_average": round(os.getloadavg()[0], 2), "code": code, "cpu": cpu_info()}
        results[name] = row
        write_json(RESULTS.stem, results)
        e, n = (row[m] for m in METHODS)
        rows.append([name, row["perf_counter_speed_edgec_vs_nncf"], row["thread_cpu_speed_edgec_vs_nncf"],
                     e["kernels"] == n["kernels"], e["fused_layers_per_kernel"] == n["fused_layers_per_kernel"],
                     row["run"]["load_average"]])
    print_table("intel-cpu int8, OpenVINO 1 thread, interleaved: edgec / NNCF speed (> 1: edgec faster)",
                ["model", "perf counters", "thread CPU", "same kernels", "same fusion", "load"], rows)


if __name__ == "__main__":
    main()
