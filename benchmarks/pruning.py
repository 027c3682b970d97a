"""Pruning benchmark: size, latency per target and accuracy at several ratios (issue 7).

For the scikit-learn digits CNN and all-MiniLM-L6-v2 (sentence embeddings, seq 128), every
variant is built with ``edgec build --prune SPEC --precision int8`` (the unpruned build is
the baseline) and measured:

* parameters, float weight bytes, weight sparsity, the artifact's size and its zlib-6
  ("gzip") compressed size;
* latency of the artifact on each target runnable here, timed with the target's own runner
  (``prepare`` once, then ``run_native``), 1 thread, interleaved rounds (median of the
  per-round medians), so the variants of one target see the same machine load:
  intel-cpu (OpenVINO int8 IR), arm (LiteRT int8 .tflite, XNNPACK), mcu (the generated C
  compiled for this host), jetson (bundle only: TensorRT needs the device; 2:4 weights are
  verified in the bundle instead);
* accuracy: digits test-set top-1 of the pruned float model and of the int8 artifact (397
  held-out images), with and without a 3-epoch distillation fine-tune
  (``examples/digits_cnn/finetune.py``); MiniLM mean cosine of the pruned float and int8
  embeddings to the unpruned float model on the eval sentences.

Not a test. Prints tables and writes ``benchmarks/results/pruning.json``.

    .venv/bin/python benchmarks/pruning.py [--models digits,minilm] [--targets intel-cpu,arm,mcu,jetson]
                                           [--iters 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, digits_data, minilm_path, print_table, time_fn, write_json  # noqa: E402
from edgec.runtimes.metrics import cosine  # noqa: E402

DIGITS = str(ROOT / "examples/digits_cnn/model.py") + ":build"
FINETUNE = str(ROOT / "examples/digits_cnn/finetune.py") + ":train_fn"
# (label, --prune, --finetune, targets it is built for: None = all requested)
DIGITS_VARIANTS = [
    ("unpruned", None, None, None),
    ("channels:0.3", "channels:0.3", None, None),
    ("channels:0.5", "channels:0.5", None, None),
    ("channels:0.7", "channels:0.7", None, None),
    ("channels:0.3,round=8", "channels:0.3,round=8", None, ("intel-cpu",)),
    ("channels:0.5 + fine-tune", "channels:0.5", FINETUNE, ("intel-cpu",)),
    ("channels:0.7 + fine-tune", "channels:0.7", FINETUNE, ("intel-cpu",)),
    ("magnitude:0.5", "magnitude:0.5", None, None),
    ("magnitude:0.8 + fine-tune", "magnitude:0.8", FINETUNE, ("intel-cpu",)),
    ("2:4", "2:4", None, None),
    # batch 16: compute-bound, where removed channels show fully (speedup vs "unpruned @b16")
    ("unpruned @b16", None, None, ("intel-cpu",)),
    ("channels:0.3 @b16", "channels:0.3", None, ("intel-cpu",)),
    ("channels:0.5 @b16", "channels:0.5", None, ("intel-cpu",)),
]
MINILM_VARIANTS = [
    ("unpruned", None, None, None),
    ("heads:0.25", "heads:0.25,importance=activation", None, None),
    ("heads:0.5", "heads:0.5,importance=activation", None, None),
    ("channels:0.3 (FFN)", "channels:0.3,importance=activation", None, None),
    ("channels:0.5 (FFN)", "channels:0.5,importance=activation", None, None),
    ("magnitude:0.5", "magnitude:0.5", None, None),
    ("2:4", "2:4", None, None),
]


def _build(model: str, out: Path, target: str, spec: str | None, finetune: str | None, calib: str, eval_data: str,
           shapes: dict) -> dict[str, Any]:
    from edgec import api
    from edgec.compiler.config import BuildConfig, PruneOptions

    opts = {"sparsity": True} if target == "jetson" and spec == "2:4" else {}
    t0 = time.perf_counter()
    res = api.build(BuildConfig(model=model, output=out, target=target, precision="int8", calib=calib,
                                eval_data=eval_data, input_shapes=shapes, prune=PruneOptions(spec, finetune), force=True,
                                target_options=opts))
    return {"bundle": out, "manifest": res.manifest, "report": res.report, "build_s": time.perf_counter() - t0}


def _time_interleaved(runners: dict[str, tuple[Any, dict]], iters: int, rounds: int) -> dict[str, float]:
    """Median over rounds of each runner's median latency (ms); variants alternate every round."""
    per: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for key, (runner, native) in runners.items():
            per[key].append(time_fn(lambda: runner.run_native(native), iters, max(10, iters // 10))["p50"])
    return {k: float(np.median(v)) for k, v in per.items()}


def _outputs(runner: Any, samples: list[dict], name: str) -> list[np.ndarray]:
    return [np.asarray(runner.infer(s)[name]) for s in samples]


def run_model(name: str, model: str, variants: list, targets: list[str], calib: str, eval_data: str, shapes: dict,
              iters: int, rounds: int, work: Path) -> list[dict[str, Any]]:
    from edgec.calibration import load_calibration_data
    from edgec.runtimes import io as rio
    from edgec.runtimes.registry import create_runner, reference_runner
    from edgec.targets.registry import get_target

    rows: list[dict[str, Any]] = []
    built: dict[tuple[str, str], dict] = {}
    for label, spec, ft, only in variants:
        for target in targets:
            if only is not None and target not in only:
                continue
            if target == "jetson" and spec != "2:4":
                continue  # no TensorRT here: the jetson column checks the 2:4 bundle only
            if get_target(target).availability() is not None:
                continue
            print(f"[{name}] building {label} for {target}", file=sys.stderr, flush=True)
            out = work / f"{name}-{len(built)}"
            vshapes = shapes
            if label.endswith("@b16"):
                from edgec.compiler.config import InputShape

                vshapes = {"image": InputShape((16, 1, 32, 32))}
            try:
                built[(label, target)] = _build(model, out, target, spec, ft, calib, eval_data, vshapes)
            except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
                print(f"  failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    base = next(b for (lab, _t), b in built.items() if lab == "unpruned")
    m0 = base["manifest"]
    specs = [rio.spec(s) for s in m0["model_inputs"]]
    tok = base["bundle"] / "tokenizer" if m0.get("tokenizer") else None
    ev = load_calibration_data(eval_data, specs, max_samples=1000, tokenizer_dir=tok)
    out_name = m0["model_outputs"][0]["name"]
    with reference_runner(base["bundle"], m0) as ref:  # the unpruned float model
        unpruned = _outputs(ref, ev.samples, out_name)

    latency: dict[tuple[str, str], float] = {}
    for target in targets:
        keys = [k for k in built if k[1] == target and target != "jetson"]
        if not keys:
            continue
        runners = {}
        for k in keys:
            b = built[k]
            r = create_runner(b["manifest"]["runner"], b["bundle"], b["manifest"], threads=1).load()
            batch = int(b["manifest"]["model_inputs"][0]["shape"][0])
            runners[k[0]] = (r, r.prepare({n: np.repeat(v, batch, 0) for n, v in ev.samples[0].items()}))
        print(f"[{name}] timing {len(runners)} variants on {target}", file=sys.stderr, flush=True)
        n_iter = iters if target != "mcu" else max(50, iters // 5)
        for lab, ms in _time_interleaved(runners, n_iter, rounds if target != "mcu" else 2 * rounds).items():
            latency[(lab, target)] = ms
        for r, _ in runners.values():
            r.close()

    for (label, target), b in built.items():
        rep, man = b["report"], b["manifest"]
        p = rep.get("pruning") or {}
        row: dict[str, Any] = {"model": name, "variant": label, "target": target,
                               "latency_ms_p50": latency.get((label, target)),
                               "artifact_bytes": rep["size_bytes"]["artifact"], "build_s": round(b["build_s"], 1)}
        if p:
            row.update(parameters=p["parameters"]["after"], sparsity=p["sparsity"]["total"],
                       artifact_compressed_bytes=p["size_bytes"]["artifact_compressed"],
                       weights_compressed_bytes=p["size_bytes"]["weights_compressed_after"],
                       float_vs_unpruned_cosine=p["accuracy_vs_unpruned"]["cosine"])
            la = p["accuracy_vs_unpruned"].get("label_accuracy")
            if la:
                row.update(float_accuracy=la["pruned"])
        else:
            from edgec.compiler.prune.report import _compressed_size

            paths = [b["bundle"] / f["path"] for f in man["artifacts"] if f["role"] in ("model", "weights")]
            row.update(parameters=None, sparsity=0.0, artifact_compressed_bytes=_compressed_size(paths),
                       float_vs_unpruned_cosine=1.0)
            la = rep["accuracy"].get("label_accuracy")
            if la:
                row.update(float_accuracy=la["reference"])
        acc = rep["accuracy"]
        if acc.get("label_accuracy"):
            row["int8_accuracy"] = acc["label_accuracy"]["artifact"]
        if target == "jetson":
            sp = man["target_info"]["sparsity"]
            row["jetson_2to4_weights"] = f"{len(sp['weights_2to4'])}/{sp['weighted_layers']}"
        elif ev.labels is None:  # embeddings: the int8 artifact against the unpruned float model
            with get_target(target).verify_runner(b["bundle"], man) as r:
                got = _outputs(r, ev.samples, out_name)
            row["int8_vs_unpruned_cosine"] = float(np.mean([cosine(g, u) for g, u in zip(got, unpruned)]))
        rows.append(row)
    n0 = next((b["report"]["pruning"]["parameters"]["before"] for b in built.values() if b["report"].get("pruning")),
              None)
    for row in rows:
        if row["variant"].startswith("unpruned"):
            row["parameters"] = n0
    return rows


def _fmt_kb(n: Any) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def report(rows: list[dict], targets: list[str]) -> None:
    for model in dict.fromkeys(r["model"] for r in rows):
        mrows = [r for r in rows if r["model"] == model]
        labels = list(dict.fromkeys(r["variant"] for r in mrows))
        lat_targets = [t for t in targets if any(r["target"] == t and r["latency_ms_p50"] for r in mrows)]
        def base_lat(t: str, label: str):
            want = "unpruned @b16" if label.endswith("@b16") else "unpruned"
            return next((r["latency_ms_p50"] for r in mrows if r["variant"] == want and r["target"] == t), None)

        classify = any("int8_accuracy" in r for r in mrows)
        table = []
        for lab in labels:
            vr = {r["target"]: r for r in mrows if r["variant"] == lab}
            first = vr.get("intel-cpu") or next(iter(vr.values()))
            cells = [lab, first.get("parameters") or "-", first.get("sparsity"),
                     _fmt_kb(first["artifact_bytes"]), _fmt_kb(first["artifact_compressed_bytes"])]
            for t in lat_targets:
                ms = vr.get(t, {}).get("latency_ms_p50")
                b0 = base_lat(t, lab)
                cells.append("-" if ms is None or not b0 else f"{ms:.4g} ({b0 / ms:.2f}x)")
            if classify and lab.endswith("@b16"):
                cells += ["-", "-"]  # labels are scored per batch-1 sample: see the batch-1 rows
            elif classify:
                cells += [first.get("float_accuracy"), first.get("int8_accuracy")]
            else:
                cells += [first.get("float_vs_unpruned_cosine"), first.get("int8_vs_unpruned_cosine")]
            if "jetson" in targets:
                cells.append(vr.get("jetson", {}).get("jetson_2to4_weights", "-"))
            table.append(cells)
        cols = ["variant", "params", "sparsity", "intel-cpu int8 KiB", "gzip KiB"]
        cols += [f"{t} ms (speedup)" for t in lat_targets]
        cols += ["float top-1", "int8 top-1"] if classify else ["float cos vs unpruned", "int8 cos vs unpruned"]
        if "jetson" in targets:
            cols.append("jetson 2:4 weights")
        print_table(f"{model} (int8 builds; latency p50, 1 thread)", cols, table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--targets", default="intel-cpu,arm,mcu,jetson")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--report-only", action="store_true", help="print the tables of the last results JSON")
    args = ap.parse_args()
    targets = args.targets.split(",")
    if args.report_only:
        from _common import RESULTS

        report(json.loads((RESULTS / "pruning.json").read_text())["rows"], targets)
        return
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        if "digits" in args.models:
            calib, ev = digits_data()
            rows += run_model("digits CNN", DIGITS, DIGITS_VARIANTS, targets, str(calib), str(ev), {}, args.iters,
                              args.rounds, work)
        if "minilm" in args.models:
            from edgec.compiler.config import InputShape

            # A 6-layer BERT is no MCU model; its onnx2tf conversion takes minutes per variant (see tflite.py).
            mt = [t for t in targets if t in ("intel-cpu", "jetson")]
            rows += run_model("all-MiniLM-L6-v2", minilm_path(), MINILM_VARIANTS, mt,
                              str(ROOT / "examples/minilm/sentences.txt"),
                              str(ROOT / "examples/minilm/eval_sentences.txt"),
                              {"input_ids": InputShape((1, 128))}, max(30, args.iters // 5), args.rounds, work)
    report(rows, targets)
    write_json("pruning", {"iters": args.iters, "rounds": args.rounds, "threads": 1, "rows": rows})
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
