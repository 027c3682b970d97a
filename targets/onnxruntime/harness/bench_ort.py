#!/usr/bin/env python3
"""Time an edgec onnxruntime or jetson bundle (ONNX) with onnxruntime; print one edgec.bench/1 JSON object.

Needs numpy and onnxruntime (or onnxruntime-gpu); edgec is not required:

    python3 bench_ort.py --iters 100 --threads 2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgec_benchlib as lib  # noqa: E402 - the sibling file copied into the bundle


def load(bundle, manifest, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        raise lib.HarnessError("onnxruntime is not installed: pip install onnxruntime")
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    sess = ort.InferenceSession(os.path.join(bundle, manifest["artifact"]["path"]), so,
                                providers=["CPUExecutionProvider"])

    def call(feeds):
        sess.run(None, feeds)

    return call, "onnxruntime", ort.__version__, {"providers": sess.get_providers()}


if __name__ == "__main__":
    sys.exit(lib.main(__doc__.splitlines()[0], "onnxruntime", load))
