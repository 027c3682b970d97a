"""Quantization quality benchmark (issue 6): each method's error and size side by side.

Models:
  * digits CNN (examples/digits_cnn, real test accuracy on 397 held-out images), plus the same
    CNN with one outlier channel (conv2's output x400, compensated in conv3: same float function,
    hard to quantize) to exercise the accuracy gate;
  * all-MiniLM-L6-v2 (embedding cosine vs fp32 on held-out sentences);
  * a tiny Llama built from a config (random weights; logit error and perplexity, relative).

Tables: calibration methods (minmax / percentile / entropy / mse / auto) and bias correction on
the CNN; the accuracy-gated build vs a plain INT8 build on every target; SmoothQuant on/off and
INT4 on MiniLM; INT4 RTN / GPTQ / AWQ x sym / asym x group size on the tiny Llama in onnxruntime
and OpenVINO. Not a test: prints tables and writes benchmarks/results/quant_quality.json.

    .venv/bin/python benchmarks/quant_quality.py [--parts digits,gate,minilm,llama,corpus]
    .venv/bin/python benchmarks/quant_quality.py --parts corpus --corpus-models blazeface-short \
        --corpus-methods "edgec default,edgec gated,nncf default,nncf accuracy control,ort quantize_static"
    .venv/bin/python benchmarks/quant_quality.py --parts corpus-table   # print the stored table only

``corpus``: real third-party models against NNCF and onnxruntime (benchmarks/quant_corpus.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, digits_data, load_example, minilm_path, print_table, write_json  # noqa: E402

TARGETS = ("intel-cpu", "onnxruntime", "jetson", "mcu", "arm")


def _build(model: str, out: Path, **kw) -> dict:
    from edgec import api
    from edgec.compiler.config import BuildConfig
    from edgec.errors import EdgecError

    t0 = time.perf_counter()
    try:
        res = api.build(BuildConfig.from_flat(model=model, output=out, force=True, **kw))
    except EdgecError as exc:
        return {"error": str(exc), "seconds": time.perf_counter() - t0}
    return {"manifest": res.manifest, "report": res.report, "seconds": time.perf_counter() - t0}


def _acc_row(name: str, r: dict) -> list:
    if "error" in r:
        return [name, None, None, None, None, r["error"][:80]]
    a = r["report"]["accuracy"]
    la = a.get("label_accuracy") or {}
    drop = 100 * (la["reference"] - la["artifact"]) if la else None
    return [name, la.get("artifact"), drop, a["cosine"], r["report"]["size_bytes"]["artifact"], ""]


def _outlier_cnn(d: Path) -> str:
    """The digits CNN with conv2's output channel 3 scaled x400 (compensated in conv3)."""
    import torch

    net = load_example("digits_cnn").trained_model()
    with torch.no_grad():
        net.conv2.weight[3] *= 400.0
        net.conv2.bias[3] *= 400.0
        net.conv3.weight[:, 3] /= 400.0
    src = d / "outlier_cnn.py"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / "outlier.safetensors"))
    src.write_text(
        "import sys, torch\n"
        f"sys.path.insert(0, {str(ROOT / 'examples' / 'digits_cnn')!r})\n"
        "import model as digits\n"
        "from safetensors.torch import load_file\n"
        "def build():\n"
        "    net = digits.DigitsCNN()\n"
        f"    net.load_state_dict(load_file({str(d / 'outlier.safetensors')!r}))\n"
        "    return net.eval(), (torch.zeros(1, 1, 32, 32),)\n")
    return f"{src}:build"


def digits_part(d: Path, results: dict) -> None:
    calib, evald = digits_data()
    model = str(ROOT / "examples" / "digits_cnn" / "model.py") + ":build"
    outlier = _outlier_cnn(d)
    rows, out = [], {}
    for name, src in (("digits", model), ("digits+outlier", outlier)):
        for method in ("minmax", "percentile", "entropy", "mse", "auto"):
            r = _build(src, d / f"{name}-{method}", target="onnxruntime", precision="int8", calib=str(calib),
                       eval_data=str(evald), calib_method=method)
            rows.append(_acc_row(f"{name} int8 {method}", r))
            out[f"{name}/{method}"] = rows[-1]
        for bc in (False, True):
            r = _build(src, d / f"{name}-bc{bc}", target="onnxruntime", precision="int8", calib=str(calib),
                       eval_data=str(evald), bias_correction=bc)
            rows.append(_acc_row(f"{name} int8 minmax bias-correction={'on' if bc else 'off'}", r))
            out[f"{name}/bias_correction={bc}"] = rows[-1]
    print_table("digits CNN: calibration methods and bias correction (onnxruntime target, 397 test images)",
                ["build", "accuracy", "drop (points)", "logit cosine", "artifact bytes", "note"], rows)
    results["digits"] = out


def gate_part(d: Path, results: dict) -> None:
    calib, evald = digits_data()
    model = str(ROOT / "examples" / "digits_cnn" / "model.py") + ":build"
    outlier = _outlier_cnn(d)
    rows, out = [], {}
    for name, src in (("digits", model), ("digits+outlier", outlier)):
        for target in TARGETS:
            plain = _build(src, d / f"g-{name}-{target}-plain", target=target, precision="int8", calib=str(calib),
                           eval_data=str(evald))
            gated = _build(src, d / f"g-{name}-{target}-gate", target=target, precision="int8", calib=str(calib),
                           eval_data=str(evald), max_accuracy_drop=1.0)
            p, g = _acc_row("", plain), _acc_row("", gated)
            gate = gated.get("report", {}).get("accuracy_gate", {})
            what = (gate.get("kept_float") or []) + [f"{k}->{v}" for k, v in (gate.get("calib_method_overrides") or
                                                                              {}).items()]
            rows.append([name, target, p[2], g[2], ", ".join(what) or "-",
                         f"{gated['seconds']:.1f}", g[5] or ""])
            out[f"{name}/{target}"] = {"plain_drop": p[2], "gated_drop": g[2], "fallbacks": what,
                                       "error": gated.get("error")}
    print_table("accuracy gate (--max-accuracy-drop 1, top-1 on 397 test images) vs plain int8",
                ["model", "target", "plain drop", "gated drop", "fallbacks", "gated build s", "note"], rows)
    results["gate"] = out


def minilm_part(d: Path, results: dict) -> None:
    model = minilm_path()
    calib = str(ROOT / "examples" / "minilm" / "sentences.txt")
    evald = str(ROOT / "examples" / "minilm" / "eval_sentences.txt")
    shape = {"input_ids": _shape((1, 64))}
    runs = [("int8 minmax", dict(target="intel-cpu", precision="int8")),
            ("int8 percentile", dict(target="intel-cpu", precision="int8", calib_method="percentile")),
            ("int8 smoothquant 0.5", dict(target="intel-cpu", precision="int8", smoothquant=0.5)),
            ("int8 smoothquant 0.8", dict(target="intel-cpu", precision="int8", smoothquant=0.8)),
            ("int8 gate 0.5 cosine pt", dict(target="intel-cpu", precision="int8", max_accuracy_drop=0.5,
                                              metric="cosine")),
            ("int4 rtn g128 (ort)", dict(target="onnxruntime", precision="int4")),
            ("int4 gptq g128 (ort)", dict(target="onnxruntime", precision="int4", int4_method="gptq")),
            ("int4 awq g128 (ort)", dict(target="onnxruntime", precision="int4", int4_method="awq")),
            ("fp32 (ort)", dict(target="onnxruntime", precision="fp32"))]
    rows, out = [], {}
    for name, kw in runs:
        r = _build(model, d / f"minilm-{name.replace(' ', '_')}", calib=calib, eval_data=evald, input_shapes=shape,
                   **kw)
        row = _acc_row(name, r)
        gate = r.get("report", {}).get("accuracy_gate")
        if gate:
            row[5] = f"kept float: {', '.join(gate['kept_float']) or '-'}"
        rows.append([row[0], row[3], row[4], f"{r['seconds']:.0f}", row[5]])
        out[name] = {"cosine": row[3], "bytes": row[4], "note": row[5]}
    print_table("all-MiniLM-L6-v2: embedding cosine vs fp32 (32 held-out sentences)",
                ["build", "cosine", "artifact bytes", "build s", "note"], rows)
    results["minilm"] = out


def _shape(t):
    from edgec.compiler.config import InputShape

    return InputShape(t)


def _tiny_llama(d: Path) -> tuple[str, str, str]:
    folder = load_example("tiny_llama").write_tiny_llama(d / "tiny_llama")
    sents = (ROOT / "examples" / "minilm" / "sentences.txt").read_text().splitlines()
    ev = (ROOT / "examples" / "minilm" / "eval_sentences.txt").read_text().splitlines()
    (d / "calib.txt").write_text("\n".join(sents) + "\n")
    (d / "eval.txt").write_text("\n".join(ev) + "\n")
    return str(folder), str(d / "calib.txt"), str(d / "eval.txt")


def llama_part(d: Path, results: dict) -> None:
    model, calib, evald = _tiny_llama(d)
    shape = {"input_ids": _shape((1, 32))}
    rows, out = [], {}
    fp = _build(model, d / "llama-fp32", target="onnxruntime", precision="fp32", calib=calib, eval_data=evald,
                input_shapes=shape)
    combos = [(t, m, mode, g) for t in ("onnxruntime", "intel-cpu") for m in ("rtn", "gptq", "awq")
              for mode in ("sym", "asym") for g in (32, 64)]
    for target, method, mode, group in combos:
        r = _build(model, d / f"llama-{target}-{method}-{mode}-{group}", target=target, precision="int4",
                   int4_method=method, int4_mode=mode, group_size=group, calib=calib, eval_data=evald,
                   input_shapes=shape)
        if "error" in r:
            rows.append([target, method, mode, group, None, None, None, None, r["error"][:60]])
            continue
        a = r["report"]["accuracy"]
        ppl = a.get("perplexity") or {}
        rows.append([target, method, mode, group, a["cosine"], a["mean_abs_err"], a["top1_agreement"],
                     f"{ppl.get('reference', 0):.2f} -> {ppl.get('artifact', 0):.2f}",
                     r["report"]["size_bytes"]["artifact"]])
        out[f"{target}/{method}/{mode}/g{group}"] = {"cosine": a["cosine"], "mean_abs_err": a["mean_abs_err"],
                                                      "top1_agreement": a["top1_agreement"], "perplexity": ppl,
                                                      "bytes": r["report"]["size_bytes"]["artifact"]}
    print_table(f"tiny Llama INT4 (random weights, eval text, seq 32): logits vs fp32 "
                f"(fp32 artifact {fp['report']['size_bytes']['artifact']} bytes)",
                ["target", "method", "mode", "group", "logit cosine", "mean abs err", "top-1 agreement",
                 "perplexity fp32 -> int4", "artifact bytes"], rows)
    results["llama"] = out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="digits,gate,minilm,llama")
    ap.add_argument("--corpus-models", default=None, help="comma-separated corpus names (default: all but heavy)")
    ap.add_argument("--corpus-calib", type=int, default=16, help="calibration samples per corpus model")
    ap.add_argument("--corpus-eval", type=int, default=16, help="evaluation samples per corpus model")
    ap.add_argument("--corpus-methods", default="edgec default,nncf default,ort quantize_static",
                    help="comma-separated: edgec default, edgec gated, nncf default, nncf accuracy control, "
                         "ort quantize_static (methods not run keep their previous rows)")
    ap.add_argument("--corpus-heavy", action="store_true", help="also the models that take minutes per method")
    ap.add_argument("--corpus-resume", action="store_true", help="skip models that already have every method")
    ap.add_argument("--corpus-rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--corpus-iters", type=int, default=10, help="runs per method and round")
    ap.add_argument("--corpus-keep", type=Path, default=None,
                    help="keep each model's artifacts in this folder (time them again: quant_corpus_speed.py)")
    args = ap.parse_args()
    from quant_corpus import corpus_part

    def corpus(d: Path, results: dict) -> None:
        corpus_part(d, results, args.corpus_models.split(",") if args.corpus_models else None, args.corpus_calib,
                    args.corpus_eval, tuple(m.strip() for m in args.corpus_methods.split(",")),
                    heavy=args.corpus_heavy, rounds=args.corpus_rounds, iters=args.corpus_iters,
                    resume=args.corpus_resume, keep=args.corpus_keep is not None)

    from quant_corpus import print_corpus_table

    parts = {"digits": digits_part, "gate": gate_part, "minilm": minilm_part, "llama": llama_part,
             "corpus": corpus, "corpus-table": lambda d, results: print_corpus_table(results)}
    import json

    from _common import RESULTS

    previous = RESULTS / "quant_quality.json"  # running some parts keeps the others' results
    results: dict = json.loads(previous.read_text()) if previous.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.corpus_keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for p in args.parts.split(","):
            parts[p](work, results)
    write_json("quant_quality", results)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
