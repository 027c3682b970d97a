#!/usr/bin/env python3
"""Time an edgec intel-cpu bundle (OpenVINO IR) on this device; print one edgec.bench/1 JSON object.

Needs numpy and openvino; edgec is not required. Run from anywhere:

    python3 bench_openvino.py --iters 100 --threads 2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgec_benchlib as lib  # noqa: E402 - the sibling file copied into the bundle


def load(bundle, manifest, threads):
    try:
        import openvino as ov
    except ImportError:
        raise lib.HarnessError("openvino is not installed: pip install openvino")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": (manifest.get("target_info") or {}).get("inference_precision_hint", "f32")}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    model = core.read_model(os.path.join(bundle, manifest["artifact"]["path"]))
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def call(feeds):
        request.infer(feeds)

    return call, "openvino", ov.get_version(), {"device": "CPU", "config": config}


if __name__ == "__main__":
    sys.exit(lib.main(__doc__.splitlines()[0], "openvino", load))
