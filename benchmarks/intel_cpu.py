"""intel-cpu benchmark: edgec's INT8 OpenVINO IR against onnxruntime fp32, OpenVINO fp32 and NNCF.

For the digits CNN (real test accuracy) and all-MiniLM-L6-v2 (embedding cosine vs fp32):
latency (p50/mean, ms) and accuracy of
  * onnxruntime fp32 on the float ONNX,
  * OpenVINO fp32 (the edgec fp32 bundle),
  * OpenVINO after NNCF's default `nncf.quantize` on the same calibration samples,
  * edgec's INT8 bundle.
Goal (issue 2): INT8 >= 3x faster than onnxruntime fp32 on the CNN, no slower than NNCF,
accuracy drop <= 1 point. Not a test: prints a table and writes benchmarks/results/intel_cpu.json.

    .venv/bin/python benchmarks/intel_cpu.py [--iters 200] [--threads 2] [--models digits,minilm]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, digits_data, minilm_path, print_table, time_fn, write_json  # noqa: E402
from edgec.runtimes.metrics import cosine  # noqa: E402


def _bundle(model: str, out: Path, precision: str, calib: str, extra: dict) -> dict:
    from edgec import api
    from edgec.compiler.config import BuildConfig

    res = api.build(BuildConfig.from_flat(model=model, output=out, target="intel-cpu", precision=precision,
                                          calib=calib, force=True, **extra))
    return {"manifest": res.manifest, "report": res.report}


def _ov_compile(xml_or_model, threads: int):
    import openvino as ov

    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    return core.compile_model(xml_or_model, "CPU", cfg)


def run_model(name: str, model: str, calib: str, eval_data: str, extra: dict, iters: int, threads: int,
              batch: int = 1) -> list[dict]:
    import nncf
    import onnxruntime as ort
    import openvino as ov

    from edgec.calibration import load_calibration_data
    from edgec.runtimes import io as rio
    from edgec.runtimes.openvino_runner import OpenVINORunner

    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        fp32 = _bundle(model, d / "fp32", "fp32", None, extra)
        int8 = _bundle(model, d / "int8", "int8", calib, extra)
        specs = [rio.spec(s) for s in fp32["manifest"]["model_inputs"]]
        tok = d / "fp32" / "tokenizer" if fp32["manifest"].get("tokenizer") else None
        cal = load_calibration_data(calib, specs, max_samples=128, tokenizer_dir=tok)
        ev = load_calibration_data(eval_data, specs, max_samples=1000, tokenizer_dir=tok)
        onnx_path = d / "fp32" / "reference" / "model.onnx"

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        ref_out = [sess.run(None, s)[0] for s in ev.samples]

        def score(outs: list[np.ndarray]) -> dict:
            if batch > 1:
                return {}  # accuracy is the batch-1 rows'; batched rows measure throughput
            if ev.labels is not None:
                acc = float(np.mean([o.argmax() == y for o, y in zip(outs, ev.labels)]))
                return {"accuracy": acc}
            return {"cosine_vs_fp32": float(np.mean([cosine(o, r) for o, r in zip(outs, ref_out)]))}

        sample = ev.samples[0]
        rows.append({"model": name, "batch": batch, "variant": "onnxruntime fp32", **score(ref_out),
                     "latency_ms": time_fn(lambda: sess.run(None, sample), iters, 10),
                     "size_bytes": onnx_path.stat().st_size})

        for label, b, path in (("openvino fp32", fp32, d / "fp32"), ("edgec int8 (openvino)", int8, d / "int8")):
            runner = OpenVINORunner(path, b["manifest"], threads=threads).load()
            outs = [runner.infer(s)[b["manifest"]["model_outputs"][0]["name"]] for s in ev.samples]
            native = runner.prepare(sample)
            size = sum(f["bytes"] for f in b["manifest"]["files"] if f["path"] in ("model.xml", "model.bin"))
            rows.append({"model": name, "batch": batch, "variant": label, **score(outs),
                         "latency_ms": time_fn(lambda: runner.run_native(native), iters, 10), "size_bytes": size})

        ov_model = ov.Core().read_model(str(onnx_path))
        calib_ds = nncf.Dataset(cal.samples)
        q_model = nncf.quantize(ov_model, calib_ds, subset_size=len(cal.samples),
                                model_type=nncf.ModelType.TRANSFORMER if ev.labels is None else None)
        compiled = _ov_compile(q_model, threads)
        req = compiled.create_infer_request()
        outs = [np.array(req.infer(s)[compiled.outputs[0]]) for s in ev.samples]
        ov.save_model(q_model, str(d / "nncf.xml"))
        size = (d / "nncf.xml").stat().st_size + (d / "nncf.bin").stat().st_size
        rows.append({"model": name, "batch": batch, "variant": "nncf.quantize (openvino)", **score(outs),
                     "latency_ms": time_fn(lambda: req.infer(sample), iters, 10), "size_bytes": size})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--cnn-batches", default="1,16", help="batch sizes for the CNN (latency per batch)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows: list[dict] = []
    if "digits" in args.models:
        from edgec.compiler.config import InputShape

        calib, ev = digits_data()
        for batch in (int(b) for b in args.cnn_batches.split(",")):
            extra = {"input_shapes": {"image": InputShape((batch, 1, 32, 32))}} if batch > 1 else {}
            rows += run_model("digits CNN", str(ROOT / "examples/digits_cnn/model.py") + ":build", str(calib),
                              str(ev), extra, args.iters, args.threads, batch)
    if "minilm" in args.models:
        from edgec.compiler.config import InputShape

        rows += run_model("all-MiniLM-L6-v2", minilm_path(), str(ROOT / "examples/minilm/sentences.txt"),
                          str(ROOT / "examples/minilm/eval_sentences.txt"),
                          {"input_shapes": {"input_ids": InputShape((1, 64))}}, max(20, args.iters // 4), args.threads)
    for model, batch in dict.fromkeys((r["model"], r["batch"]) for r in rows):
        mrows = [r for r in rows if r["model"] == model and r["batch"] == batch]
        base = next(r for r in mrows if r["variant"] == "onnxruntime fp32")
        table = []
        for r in mrows:
            metric = r.get("accuracy", r.get("cosine_vs_fp32"))
            per_item = r["latency_ms"]["mean"] / batch
            table.append([r["variant"], metric, r["latency_ms"]["p50"], r["latency_ms"]["mean"], per_item,
                          base["latency_ms"]["mean"] / r["latency_ms"]["mean"], r["size_bytes"]])
        metric_name = "cosine vs fp32" if "cosine_vs_fp32" in base else "test accuracy"
        print_table(f"{model}, batch {batch} ({args.threads} threads)", ["variant", metric_name, "p50 ms", "mean ms",
                                                           "mean ms/item", "speedup vs ORT fp32", "size bytes"], table)
    write_json("intel_cpu", {"threads": args.threads, "iters": args.iters, "rows": rows})


if __name__ == "__main__":
    main()
