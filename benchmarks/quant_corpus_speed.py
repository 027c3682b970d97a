"""Time the corpus table's artifacts again, without rebuilding them (intel-cpu int8 speed vs NNCF).

``quant_quality.py --parts corpus --corpus-keep DIR`` builds every method and keeps its artifact
(``DIR/<model>/artifacts.json``). Builds tolerate a loaded machine; latency does not. This script
times those artifacts later, when the machine is quiet: every method and the onnxruntime fp32
anchor interleaved round by round in one process (batch 1, 1 thread, as the table's own run),
and rewrites only the speed column of quant_quality.json (``speed_vs_ort_fp32``), recording the
load average and time of this timing run in the row's ``run.speed``.

Usage: ``python benchmarks/quant_corpus_speed.py DIR [--models a,b] [--rounds 5] [--iters 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def time_model(folder: Path, rounds: int, iters: int) -> tuple[dict[str, float], dict[str, float], dict[str, dict]]:
    """Wall and process-CPU milliseconds per method (median over rounds of the per-round median), the
    anchor included, and each OpenVINO artifact's compute kernels by runtime precision (the
    load-independent evidence)."""
    from intel_cpu_int8_speed import _compile, _latencies, runtime_precisions
    from quant_corpus import _ort_feed_runner, _ov_feed_runner

    arts = json.loads((folder / "artifacts.json").read_text())
    with np.load(folder / "timing_input.npz") as z:
        feed = {k: z[k] for k in z.files}
    runs, kernels = {}, {}
    for label, path in arts.items():
        if path.endswith(".onnx"):
            runs[label] = _ort_feed_runner(Path(path), 1)
            continue
        compiled = _compile(path, 1)
        runs[label] = _ov_feed_runner(compiled)
        rp = runtime_precisions(compiled)
        kernels[label] = {"f32": sum(rp["f32_layers"].values()), "int8": sum(rp["int8_layers"].values()),
                          "f32_by_type": rp["f32_layers"]}
    cpu: dict[str, float] = {}
    return _latencies(runs, feed, rounds, iters, cpu), cpu, kernels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keep_dir", type=Path, help="the --corpus-keep folder of a quant_quality.py corpus run")
    ap.add_argument("--models", default=None, help="comma-separated (default: every model in the folder)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    from _common import print_table
    from quant_corpus import CPU_SPEED_KEY, SPEED_KEY, _save_row

    names = args.models.split(",") if args.models else sorted(
        p.parent.name for p in args.keep_dir.glob("*/artifacts.json"))
    results: dict = {}
    rows = []
    for name in names:
        ms, cpu, kernels = time_model(args.keep_dir / name, args.rounds, args.iters)
        from _common import RESULTS

        old = json.loads((RESULTS / "quant_quality.json").read_text()).get("corpus", {}).get(name, {})
        res = {label: dict(old.get(label, {})) | {SPEED_KEY: ms["ort fp32"] / v,
                                                  CPU_SPEED_KEY: cpu["ort fp32"] / cpu[label]}
               | ({"runtime_kernels": kernels[label]} if label in kernels else {})
               for label, v in ms.items() if label != "ort fp32"}
        res["ort fp32"] = {"ms": ms["ort fp32"], "cpu_ms": cpu["ort fp32"]}
        res["run"] = dict(old.get("run", {})) | {"speed": {
            "load_average": round(os.getloadavg()[0], 2), "rounds": args.rounds, "iters": args.iters,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "source": "quant_corpus_speed.py"}}
        _save_row(results, name, res)
        e, n = res.get("edgec default", {}).get(SPEED_KEY), res.get("nncf default", {}).get(SPEED_KEY)
        ce, cn = res.get("edgec default", {}).get(CPU_SPEED_KEY), res.get("nncf default", {}).get(CPU_SPEED_KEY)
        f32 = [kernels.get(k, {}).get("f32") for k in ("edgec default", "nncf default")]
        rows.append([name, ms["ort fp32"], e, n, None if not (e and n) else e / n,
                     None if not (ce and cn) else ce / cn, *f32,
                     res["run"]["speed"]["load_average"]])
    print_table("intel-cpu int8 speed, timed again from kept artifacts (x faster than ORT fp32, 1 thread)",
                ["model", "ORT fp32 ms", "edgec default", "nncf default", "edgec / NNCF", "CPU-time edgec / NNCF",
                 "edgec f32 kernels",
                 "nncf f32 kernels", "load"], rows)


if __name__ == "__main__":
    main()
