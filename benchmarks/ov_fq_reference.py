"""Accuracy of kept intel-cpu int8 IRs with their FakeQuantize nodes run in f32: the same on every CPU.

OpenVINO's CPU plugin runs a FakeQuantize IR with int8 kernels that depend on the instruction set: on an AVX2
CPU without VNNI (AMD EPYC, 2026-12-03) edgec's blazeface-back bundle scored an eval cosine of 0.9275 mean /
0.42 worst and NNCF's 0.984 / 0.912, where the same IRs with every FakeQuantize decomposed into f32 ops (clamp,
round half to even, rescale: the op's definition) score 0.9973 / 0.979 and 0.988 / 0.953. Rows of
``quant_quality.py`` from such a machine do not compare with rows from a VNNI one; these do. For each model
folder kept by ``quant_quality.py --parts corpus --corpus-keep DIR`` (``artifacts.json``, ``eval.npz``,
``calib.npz``): every OpenVINO IR's mean and worst cosine against onnxruntime fp32 on the float ONNX
(`quant_corpus.agreement`), with FakeQuantize in f32 (``fq_f32``) and as the CPU runs it (``native``), on the
calibration and the evaluation samples. Prints a table; ``--json PATH`` writes the rows.

    .venv/bin/python benchmarks/ov_fq_reference.py DIR [--models a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402


def fq_in_f32(model):
    """``model`` (an ``openvino.Model``) with every FakeQuantize replaced by its definition in f32 ops."""
    import openvino.opset13 as ops

    for node in list(model.get_ordered_ops()):
        if node.get_type_name() != "FakeQuantize":
            continue
        x, in_lo, in_hi, out_lo, out_hi = (node.input(i).get_source_output() for i in range(5))
        steps = ops.constant(np.float32(node.get_levels() - 1))
        clipped = ops.minimum(ops.maximum(x, in_lo), in_hi)
        level = ops.round(ops.multiply(ops.divide(ops.subtract(clipped, in_lo), ops.subtract(in_hi, in_lo)), steps),
                          "half_to_even")
        y = ops.add(ops.multiply(ops.divide(level, steps), ops.subtract(out_hi, out_lo)), out_lo)
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(y.output(0))
    model.validate_nodes_and_infer_types()
    return model


def compiled(path: str, f32: bool):
    """The IR at ``path`` compiled for 1 thread, f32 inference precision; FakeQuantize in f32 when ``f32``."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    return core.compile_model(fq_in_f32(model) if f32 else model, "CPU",
                              {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})


def _feeds(npz: Path) -> list[dict[str, np.ndarray]]:
    data = np.load(npz)
    n = len(data[data.files[0]])
    return [{k: data[k][i:i + 1] for k in data.files} for i in range(n)]


def model_rows(folder: Path) -> list[list]:
    """One row per OpenVINO IR of a kept model folder and mode (fq_f32, native)."""
    import onnxruntime as ort
    from quant_corpus import agreement

    arts = json.loads((folder / "artifacts.json").read_text())
    ref = ort.InferenceSession(arts["ort fp32"], providers=["CPUExecutionProvider"])
    splits = {s: _feeds(folder / f"{s}.npz") for s in ("calib", "eval")}
    refs = {s: [ref.run(None, {i.name: f[i.name] for i in ref.get_inputs()}) for f in feeds]
            for s, feeds in splits.items()}
    rows = []
    for label, path in arts.items():
        if not str(path).endswith(".xml"):
            continue
        for mode in ("fq_f32", "native"):
            c = compiled(str(path), mode == "fq_f32")
            names = [i.any_name for i in c.inputs]
            scores = {}
            for s, feeds in splits.items():
                outs = [[np.asarray(v) for v in c([f[n] for n in names]).values()] for f in feeds]
                scores[s] = agreement(outs, refs[s], False)
            rows.append([folder.name, label, mode, scores["calib"]["cosine"], scores["calib"]["cosine_worst"],
                         scores["eval"]["cosine"], scores["eval"]["cosine_worst"]])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path, help="a --corpus-keep folder of quant_quality.py")
    ap.add_argument("--models", default=None, help="comma-separated model folders (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else sorted(p.name for p in args.dir.iterdir()
                                                             if (p / "artifacts.json").is_file())
    rows = [r for name in names for r in model_rows(args.dir / name)]
    head = ["model", "method", "FakeQuantize", "calib mean", "calib worst", "eval mean", "eval worst"]
    print_table("cosine vs float, FakeQuantize in f32 and native", head,
                [[*r[:3], *(round(v, 5) for v in r[3:])] for r in rows])
    if args.json:
        args.json.write_text(json.dumps([dict(zip(head, r)) for r in rows], indent=1))


if __name__ == "__main__":
    main()
