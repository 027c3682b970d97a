"""int8 weight rounding on the corpus: round to nearest against GPTQ (``--weight-rounding gptq``), same grid.

Two measurements per model, on the corpus samples quant_quality.py uses (16 calibration, 16 evaluation),
against onnxruntime fp32 on the same float ONNX (`quant_corpus.agreement`: mean cosine over outputs and
samples, worst output of the worst sample, top-1 agreement on classifiers):

  * ``weights`` (ONNX sources): the error of the int8 weights alone: every Conv/Gemm/MatMul weight replaced by its
    dequantized int8 value (per-channel symmetric, the scales every target uses), activations float,
    run by onnxruntime; nearest against GPTQ (Hessians from the float model, `compiler.weight_rounding`).
  * ``build``: the intel-cpu int8 default build (OpenVINO), with ``--weight-rounding nearest`` and
    ``gptq``; seconds to build (noisy under load: the machine is shared).

Rows merge per model into benchmarks/results/weight_rounding.json.

    nice .venv/bin/python benchmarks/weight_rounding.py --models ppocr-v4-det,ddddocr-det [--parts weights,build]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))
from _common import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "weight_rounding.json"


def _float_proto(name: str, work: Path):
    """The float ONNX every method starts from, with Constant weights as initializers (as edgec's optimizer does)."""
    import onnx

    import quant_corpus as qc

    model, _, _, classifier = qc._source(name, work)
    proto = onnx.load(str(qc._float_onnx(name, model, None, work) if name not in qc.MODELS else model))
    keep = []
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            proto.graph.initializer.append(t)
        else:
            keep.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return proto, classifier


def _onnx_source(name: str) -> bool:
    """Whether the model's source is an ONNX file (the weights part reads its float ONNX directly)."""
    import corpus
    import quant_corpus as qc

    return name in qc.MODELS or corpus.entry(name)["format"] == "onnx"


def weights_part(name: str, work: Path) -> dict:
    """Cosine of the float model with int8 weights (nearest, GPTQ) and float activations."""
    import onnx
    from onnx import numpy_helper

    import quant_corpus as qc
    from edgec.compiler import weight_rounding as wr
    from edgec.compiler.quantize import quantize_weight
    from edgec.compiler.weight_axis import weight_axis
    from edgec.runtimes.onnx_graph import make_session

    proto, classifier = _float_proto(name, work)
    cal, ev = qc._feeds(name, "calib", 16), qc._feeds(name, "eval", 16)

    def run(p, feeds):
        s = make_session(p, optimize=False)
        names = [i.name for i in s.get_inputs()]
        return [s.run(None, {k: f[k] for k in names}) for f in feeds]

    inits = {t.name: t for t in proto.graph.initializer}
    layers = {}
    for n in proto.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits and n.name:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            if wr.eligible(n, w):
                layers[n.name] = (n, w)

    def with_weights(values):
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        by_name = {t.name: t for t in p.graph.initializer}
        for k, (n, _) in layers.items():
            by_name[n.input[1]].CopyFrom(numpy_helper.from_array(values[k], n.input[1]))
        return p

    refs = run(proto, ev)
    near, gptq, grid = {}, {}, {}
    for k, (n, w) in layers.items():
        axis = weight_axis(n, 1, w.ndim)
        q, s = quantize_weight(w, axis)
        shape = [1] * w.ndim
        shape[axis] = -1
        grid[k] = (s, shape)
        near[k] = (q.astype(np.float32) * s.reshape(shape)).astype(np.float32)
    t0 = time.process_time()
    hs = wr.layer_hessians(proto, {k: (n, w.shape) for k, (n, w) in layers.items()}, cal)
    for k, (n, w) in layers.items():
        s, shape = grid[k]
        gptq[k] = (wr.round_weight(n, w, s, hs[k]).astype(np.float32) * s.reshape(shape)).astype(np.float32)
    cpu = time.process_time() - t0
    return {"layers": len(layers), "nearest": qc.agreement(run(with_weights(near), ev), refs, classifier),
            "gptq": qc.agreement(run(with_weights(gptq), ev), refs, classifier), "gptq_cpu_seconds": round(cpu, 1)}


def build_part(name: str, work: Path, rounding: str) -> dict:
    """The intel-cpu int8 default build with ``--weight-rounding rounding``, scored in OpenVINO."""
    import openvino as ov

    import quant_corpus as qc
    from intel_cpu_int8_speed import _compile
    from quant_quality import _build

    model, shapes, task, classifier = qc._source(name, work)
    cal, ev = qc._feeds(name, "calib", 16), qc._feeds(name, "eval", 16)
    calib, evald = qc._write_npz(cal, work / "calib.npz"), qc._write_npz(ev, work / "eval.npz")
    folder = work / f"intel-cpu-{rounding}"
    r = _build(model, folder, target="intel-cpu", precision="int8", calib=str(calib), eval_data=str(evald),
               task=task, calib_samples=16, input_shapes=shapes, accept_low_accuracy=True, weight_rounding=rounding)
    if "error" in r:
        return {"error": r["error"][:300], "seconds": round(r["seconds"], 1)}
    float_path = qc._float_onnx(name, model, folder, work)
    refs = [qc._ort_feed_runner(float_path, 1)(f) for f in ev]
    names = [i.any_name for i in ov.Core().read_model(str(float_path)).inputs]
    run = qc._ov_feed_runner(_compile(str(folder / "model.xml"), 1))
    return {**qc.agreement([run({k: f[k] for k in names}) for f in ev], refs, classifier),
            "seconds": round(r["seconds"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ppocr-v4-det", help="comma-separated corpus models (ONNX sources)")
    ap.add_argument("--parts", default="weights,build", help="weights, build or both")
    args = ap.parse_args()
    import json

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            work = Path(d) / name
            work.mkdir(parents=True, exist_ok=True)
            row = results.setdefault(name, {})
            if "weights" in parts and _onnx_source(name):
                row["weights_only"] = weights_part(name, work)
            if "build" in parts:
                row["intel-cpu default"] = {r: build_part(name, work, r) for r in ("nearest", "gptq")}
            row["run"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "calib_samples": 16,
                          "eval_samples": 16}
            write_json("weight_rounding", results)
            print(name, json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
