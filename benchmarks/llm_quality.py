"""Accuracy per precision and method on the trained small Llama (examples/py_llama).

Each bundle (onnxruntime target; weights are target-independent) against the float decoder:
held-out perplexity, greedy-token agreement over 128 tokens on 20 prompts (common prefix
fraction and identical sequences) and logit cosine; plus one intel-cpu int4 row (OpenVINO
kernels). Writes ``benchmarks/results/llm_quality.json``.

    python benchmarks/llm_quality.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "py_llama"
CONFIGS = [  # (target, precision, method, mode, group)
    ("onnxruntime", "fp32", None, None, None),
    ("onnxruntime", "int8", None, None, None),
    ("onnxruntime", "int4", "rtn", "asym", 32),
    ("onnxruntime", "int4", "rtn", "sym", 128),
    ("onnxruntime", "int4", "gptq", "sym", 128),
    ("onnxruntime", "int4", "awq", "sym", 128),
    ("onnxruntime", "int4", "rtn", "asym", 128),
    ("intel-cpu", "int4", "rtn", "asym", 32),
]


def main(work: Path = Path("/tmp/edgec-bench-llm-quality")) -> None:
    import onnx

    from edgec.api import build
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.llm.accuracy import FloatDecoder, compare_sessions
    from edgec.compiler.llm.pipeline import prompts
    from edgec.compiler.model import ModelHandle
    from edgec.runtimes.generation import BundleTokenizer, open_session

    rows = []
    for target, precision, method, mode, group in CONFIGS:
        out = work / "-".join(str(x) for x in (target, precision, method, mode, group))
        kw = {"int4_method": method, "int4_mode": mode, "group_size": group} if precision == "int4" else {}
        t = time.perf_counter()
        res = build(BuildConfig.from_flat(model=str(MODEL), output=out, target=target, precision=precision, force=True,
                                          calib=str(MODEL / "calib.txt"), eval_data=str(MODEL / "heldout.txt"),
                                          **kw))
        build_s = time.perf_counter() - t
        tok = BundleTokenizer(out, res.manifest)
        ids = tok.encode((MODEL / "heldout.txt").read_text(), chat=False)
        ref = FloatDecoder(ModelHandle.from_onnx(onnx.load(str(out / "reference/model.onnx")), "", ""))
        acc = compare_sessions(open_session(out), ref, ids[:4096], prompts(ids, 20, 16), 128)
        rows.append({"target": target, "precision": precision, "method": method, "mode": mode, "group": group,
                     "build_s": build_s, "size_bytes": res.report["size_bytes"]["artifact"], **acc})
        r = rows[-1]
        print(f"{target:12s} {precision:5s} {method or '-':5s} {mode or '-':5s} {group or '-':>4} "
              f"ppl {r['reference_perplexity']:.3f} -> {r['perplexity']:.3f}  cos {r['logit_cosine']:.5f}  "
              f"greedy {r['greedy_agreement']:.3f} ({r['greedy_identical']}/20 identical)", flush=True)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "llm_quality.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
