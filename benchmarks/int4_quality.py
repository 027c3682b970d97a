"""INT4 weight compression on the corpus transformers: edgec against NNCF `compress_weights`, same data.

For each model (default: minilm and deit_tiny; ``--models`` adds distilbert, mobilebert,
whisper_tiny_encoder), the float ONNX graph the build quantizes is compressed by:

- edgec ``rtn`` group 128: the old default, equal to NNCF's data-free default;
- edgec ``auto``: the calibrated default (GPTQ with act-order on error-aware block scales, the
  most sensitive layers int8);
- NNCF ``compress_weights`` data-free (INT4_ASYM, group 128) and data-aware on the same
  calibration samples (AWQ + scale estimation, and GPTQ + scale estimation; ratio 0.8 with the
  Hessian-input-activation sensitivity, NNCF's own data-aware mixed-precision choice).

Everything runs in OpenVINO's CPU plugin (f32 inference), as the intel-cpu target does, and is
compared with the float model in onnxruntime on the conformance script's evaluation samples
(corpus samples 1000-1007; calibration: samples 0-15). ``cosine`` is the worst sample's
cosine over every output, conformance's rule; bits/weight counts the stored bits (values,
scales, zero points) of every MatMul/Gemm weight over its element count.

    python benchmarks/int4_quality.py                 # minilm, deit_tiny
    python benchmarks/int4_quality.py --models distilbert,mobilebert --skip-nncf-gptq
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
from _common import print_table, write_json  # noqa: E402

from edgec.runtimes.metrics import worst_cosine  # noqa: E402

CALIB_N, EVAL_N, EVAL_OFFSET = 16, 8, 1000  # as benchmarks/conformance.py


def float_graph(name: str):
    """The float handle as a build of ``name`` quantizes it (loaded, shapes fixed, optimized)."""
    from edgec.compiler.config import InputShape
    from edgec.compiler.frontends.quantized_onnx import prepare
    from edgec.compiler.loaders import fix_input_shapes, load_model
    from edgec.compiler.optimize import optimize

    m = corpus.entry(name)
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in m.get("dynamic", {}).items()}
    h = load_model(str(corpus.model_path(name)), task=None if m.get("format") == "hf" else m.get("task"),
                   input_shapes=shapes)
    h, _ = prepare(h, False)
    h = fix_input_shapes(h, shapes)
    return optimize(h)[0]


def ov_outputs(model, feeds: list[dict]) -> list[list[np.ndarray]]:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {p.get_any_name() for p in compiled.inputs}
    return [list(compiled({k: v for k, v in f.items() if k in names}).values()) for f in feeds]


def ov_weight_bits(model) -> tuple[int, int]:
    """(stored bits, elements) of the compressed MatMul weights of an OpenVINO model: each low-bit
    constant (values and zero points) and the scale multiplied in after it (embedding tables, which
    NNCF also compresses, are left out, as edgec's figure leaves them out)."""
    bits = elements = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Multiply" or not _feeds_matmul(op):
            continue
        srcs = [op.input_value(i).get_node() for i in range(2)]
        const = next((s for s in srcs if s.get_type_name() == "Constant"), None)
        data = next((s for s in srcs if s is not const), None)
        if const is None or data is None:
            continue
        lows = _low_bit_constants(data)
        if not lows:
            continue
        weight = max(lows, key=lambda c: int(np.prod(c.get_output_shape(0))))
        elements += int(np.prod(weight.get_output_shape(0)))
        bits += sum(int(np.prod(c.get_output_shape(0))) * c.get_output_element_type(0).bitwidth for c in lows)
        bits += int(np.prod(const.get_output_shape(0))) * const.get_output_element_type(0).bitwidth
    return bits, elements


def _feeds_matmul(node) -> bool:
    for target in node.output(0).get_target_inputs():
        user = target.get_node()
        if user.get_type_name() == "MatMul" or (user.get_type_name() in ("Reshape", "Convert") and _feeds_matmul(user)):
            return True
    return False


def _low_bit_constants(node) -> list:
    """Integer constants reached through Convert/Subtract from ``node`` (a decompression chain)."""
    if node.get_type_name() == "Constant":
        return [node] if node.get_output_element_type(0).bitwidth <= 8 else []
    if node.get_type_name() not in ("Convert", "Subtract", "Reshape"):
        return []
    out = []
    for i in range(node.get_input_size()):
        out += _low_bit_constants(node.input_value(i).get_node())
    return out


def edgec_row(handle, calibration, method: str, group: int, feeds, ref) -> dict:
    import openvino as ov

    from edgec.compiler.int4 import Int4Quantizer

    t0 = time.perf_counter()
    q = Int4Quantizer(handle, calibration, group, "asym", method)
    quant, summary = q.quantize()
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "int4.onnx"
        path.write_bytes(quant.serialize())
        got = ov_outputs(ov.convert_model(str(path)), feeds)
    return {"tool": "edgec", "method": method, "group": group, "bits_per_weight": summary["bits_per_weight"],
            "int8_share": summary.get("int8_share"), "cosine": worst_cosine(got, ref), "seconds": seconds}


def nncf_row(float_path: Path, calib_feeds, label: str, group: int, feeds, ref, **kw) -> dict:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    model = ov.convert_model(str(float_path))
    # a weight whose input size the group does not divide takes a smaller group, as edgec does
    kw["advanced_parameters"] = AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)
    names = {p.get_any_name() for p in model.inputs}
    t0 = time.perf_counter()
    data = nncf.Dataset([{k: v for k, v in f.items() if k in names} for f in calib_feeds]) if calib_feeds else None
    comp = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=group, dataset=data,
                                 **kw)
    seconds = time.perf_counter() - t0
    bits, elements = ov_weight_bits(comp)
    return {"tool": "nncf", "method": label, "group": group, "bits_per_weight": bits / max(elements, 1),
            "cosine": worst_cosine(ov_outputs(comp, feeds), ref), "seconds": seconds}


def run_model(name: str, groups: tuple[int, ...], nncf_gptq: bool) -> list[dict]:
    import nncf

    from edgec.calibration import load_calibration_data
    from edgec.runtimes.onnx_graph import make_session

    handle = float_graph(name)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        npz = corpus.write_npz(name, Path(d) / "calib.npz", CALIB_N, offset=0, with_labels=False)
        calibration = load_calibration_data(str(npz), handle.inputs, max_samples=CALIB_N,
                                            tokenizer_dir=handle.tokenizer_dir, preprocess=None, seed=0)
        inputs = {s.name for s in handle.inputs}
        feeds = [{k: v for k, v in f.items() if k in inputs} for f in corpus.samples(name, EVAL_N, EVAL_OFFSET)]
        sess = make_session(handle.proto, optimize=False)
        ref = [sess.run(None, f) for f in feeds]
        float_path = Path(d) / "float.onnx"
        float_path.write_bytes(handle.serialize())
        rows.append(edgec_row(handle, None, "rtn", 128, feeds, ref))
        for g in groups:
            rows.append(edgec_row(handle, calibration, "auto", g, feeds, ref))
        rows.append(nncf_row(float_path, None, "data-free", 128, feeds, ref))
        sens = nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION
        for g in groups:
            rows.append(nncf_row(float_path, calibration.samples, "awq+se r0.8", g, feeds, ref, ratio=0.8,
                                 sensitivity_metric=sens, awq=True, scale_estimation=True))
            if nncf_gptq:
                rows.append(nncf_row(float_path, calibration.samples, "gptq+se r0.8", g, feeds, ref, ratio=0.8,
                                     sensitivity_metric=sens, gptq=True, scale_estimation=True))
    for r in rows:
        r["model"] = name
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,deit_tiny")
    ap.add_argument("--groups", default="128,64", help="group sizes of the data-aware rows")
    ap.add_argument("--skip-nncf-gptq", action="store_true", help="NNCF's GPTQ rows are the slowest")
    ap.add_argument("--out", default="int4_quality", help="benchmarks/results/<name>.json")
    args = ap.parse_args(argv)
    groups = tuple(int(g) for g in args.groups.split(","))
    rows = []
    for name in args.models.split(","):
        rows += run_model(name, groups, not args.skip_nncf_gptq)
    print_table("INT4 weights, intel-cpu (OpenVINO CPU f32): worst-sample cosine vs float, same calibration data",
                ["model", "tool", "method", "group", "bits/weight", "int8 share", "cosine", "seconds"],
                [[r["model"], r["tool"], r["method"], r["group"], r["bits_per_weight"], r.get("int8_share"),
                  r["cosine"], r["seconds"]] for r in rows])
    write_json(args.out, {"calib_samples": CALIB_N, "eval_samples": EVAL_N, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
