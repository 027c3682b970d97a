#!/usr/bin/env python3
"""Time a .tflite on this device with LiteRT; print one JSON object (schema edgec.bench/1).

Needs only numpy and ai-edge-litert (or tflite-runtime); edgec is not required.

    python3 bench_tflite.py model.tflite --iters 100 --threads 2

A manifest.json next to the model (an edgec bundle) fills in target and precision.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

SCHEMA = "edgec.bench/1"


def load_interpreter_module():
    try:
        from ai_edge_litert import interpreter as mod
        import ai_edge_litert

        return mod, "ai-edge-litert", getattr(ai_edge_litert, "__version__", None)
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod
        import tflite_runtime

        return mod, "tflite-runtime", getattr(tflite_runtime, "__version__", None)
    except ImportError:
        sys.exit("error: neither ai-edge-litert nor tflite-runtime is installed: pip install ai-edge-litert")


def peak_rss_bytes():
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r if sys.platform == "darwin" else r * 1024)
    except Exception:
        return None


def latency_summary(times_s):
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "min": float(ms.min()), "max": float(ms.max())}


def synthetic_input(d, rng):
    """Deterministic data for one input: normal floats (quantized for int8/uint8), ones for ids."""
    shape = [int(x) for x in d["shape"]]
    dt = np.dtype(d["dtype"])
    scale, zp = d.get("quantization", (0.0, 0))
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind in "iu" and scale:
        info = np.iinfo(dt)
        q = np.round(rng.standard_normal(shape) / scale) + zp
        return np.clip(q, info.min, info.max).astype(dt)
    if dt == np.bool_:
        return np.ones(shape, dtype=dt)
    return np.ones(shape, dtype=dt)  # token ids / masks: 1 is always valid


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="path to the .tflite file")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="interpreter threads (default: runtime's)")
    ap.add_argument("--no-xnnpack", action="store_true", help="builtin kernels without the XNNPACK delegate")
    ap.add_argument("--reference-kernels", action="store_true", help="TFLite reference kernels (slow, exact)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        sys.exit("error: --iters must be >= 1 and --warmup >= 0")
    if not os.path.isfile(args.model):
        sys.exit(f"error: no such file: {args.model}")

    mod, runtime_name, runtime_version = load_interpreter_module()
    kwargs = {"model_path": args.model, "num_threads": args.threads}
    resolver = "AUTO"
    ort = getattr(mod, "OpResolverType", None)
    if ort is not None and (args.reference_kernels or args.no_xnnpack):
        resolver = "BUILTIN_REF" if args.reference_kernels else "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
        kwargs["experimental_op_resolver_type"] = getattr(ort, resolver)
    interp = mod.Interpreter(**kwargs)
    interp.allocate_tensors()

    rng = np.random.default_rng(args.seed)
    inputs = interp.get_input_details()
    feeds = [(d["index"], synthetic_input(d, rng)) for d in inputs]

    def run():
        for idx, a in feeds:
            interp.set_tensor(idx, a)
        interp.invoke()

    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    lat = latency_summary(times)
    batch = int(inputs[0]["shape"][0]) if inputs and len(inputs[0]["shape"]) else 1

    target = precision = None
    man_path = os.path.join(os.path.dirname(os.path.abspath(args.model)), "manifest.json")
    if os.path.isfile(man_path):
        try:
            with open(man_path) as fh:
                man = json.load(fh)
            target, precision = man.get("target"), man.get("precision")
        except (OSError, ValueError):
            pass

    result = {
        "schema": SCHEMA,
        "runner": "litert",
        "runtime": {"name": runtime_name, "version": runtime_version},
        "target": target,
        "precision": precision,
        "device": "host",
        "threads": args.threads,
        "warmup": args.warmup,
        "iters": args.iters,
        "batch": batch,
        "latency_ms": lat,
        "throughput_per_s": batch * 1e3 / lat["mean"] if lat["mean"] > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(),
        "extra": {"standalone": True, "model": os.path.basename(args.model), "op_resolver": resolver,
                  "xnnpack": resolver == "AUTO", "machine": platform.machine(),
                  "python": platform.python_version(), "numpy": np.__version__},
    }
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
