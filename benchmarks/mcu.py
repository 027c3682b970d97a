"""edgec's mcu C vs TensorFlow Lite Micro on the same int8 .tflite models (not a test).

For each model (digits CNN, DS-CNN keyword spotting, MobileNet-style stack, dense
autoencoder; built with Keras + the TFLite converter as in tests/targets/mcu):
  * RAM: edgec's EDGEC_ARENA_BYTES vs TFLM's arena ("Arena allocation total" from the
    tflite-micro Python interpreter's RecordingMicroAllocator, which holds tensors, op data
    and interpreter structs);
  * flash: edgec's text+data from arm-none-eabi-size (cortex-m4, -Os, --gc-sections) vs the
    .tflite flatbuffer TFLM reads. TFLM's own library cannot be built for Cortex-M4 here
    (no TFLM sources offline; the PyPI wheel ships an x86 library only), so the TFLM figure
    is a LOWER bound: model bytes only, library excluded;
  * host latency: edgec's C (gcc -O2, one ctypes call, buffers prepared once) vs TFLM's Python interpreter
    ``invoke()`` (its reference kernels, x86), median of N runs on the same input;
  * agreement: fraction of output elements equal between edgec and TFLM.

Usage: python benchmarks/mcu.py [--iters 200] [--out mcu_bench.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_fn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load_test_models():
    spec = importlib.util.spec_from_file_location("mcu_models", ROOT / "tests" / "mcu" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tflm_arena(data: bytes) -> tuple[int, object]:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data, arena_size=4 * 1024 * 1024)
    d = it.get_input_details(0)
    it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
    it.invoke()  # allocation is recorded on the first invoke
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for f in saved:
                os.close(f)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    for line in text.splitlines():
        if "Arena allocation total" in line:
            return int(line.split("total")[1].split()[0]), it
    raise RuntimeError("tflite-micro printed no arena total:\n" + text[-1000:])


def median_ms(fn, iters: int) -> float:
    return time_fn(fn, iters, max(3, iters // 10))["p50"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", default="mcu_bench.json")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tflite_micro  # noqa: F401
        have_tflm = True
    except ImportError:
        have_tflm = False
        print("tflite-micro is not installed (pip install tflite-micro): TFLM columns left empty")
    m = _load_test_models()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    from edgec.runtimes.mcu_runner import MCURunner

    rows = []
    for name, (model, shape) in m._whole_models().items():
        data = m.to_tflite(model, shape)
        with tempfile.TemporaryDirectory() as td:
            res, manifest = m.build_bundle(m.tflite_handle(data), Path(td) / "b", cpu="cortex-m4")
            runner = MCURunner(Path(td) / "b", manifest).load()
            feeds = m.random_native(runner.native_in, np.random.default_rng(0))
            ours_out = runner.run_native(feeds)
            # Time the C call alone (pointers prepared once), as TFLM's invoke() is timed alone.
            import ctypes

            arrays = [np.ascontiguousarray(feeds[s.name]) for s in runner.native_in]
            outs = [np.zeros([int(d) for d in s.shape], s.dtype) for s in runner.native_out]
            c_in = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            c_out = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
            ours_ms = median_ms(lambda: runner._fn(c_in, c_out), args.iters)
            size = res.report["arm_size"]
            row = {"model": name, "tflite_bytes": len(data),
                   "edgec_arena_bytes": res.report["arena_bytes"],
                   "edgec_flash_bytes": size["text"] + size["data"] if isinstance(size, dict) else None,
                   "edgec_const_bytes": res.report["const_bytes"], "edgec_host_ms": ours_ms}
        if have_tflm:
            arena, it = tflm_arena(data)
            x = feeds[runner.native_in[0].name]
            it.set_input(x, 0)
            it.invoke()
            tflm_out = it.get_output(0)
            ours = next(iter(ours_out.values())).reshape(tflm_out.shape)
            row.update({"tflm_arena_bytes": arena, "tflm_flash_bytes_lower_bound": len(data),
                        "tflm_host_ms": median_ms(it.invoke, args.iters),
                        "equal_outputs_vs_tflm": float((ours == tflm_out).mean())})
            row["ram_ratio"] = row["edgec_arena_bytes"] / arena
            if row["edgec_flash_bytes"]:
                row["flash_ratio_vs_lower_bound"] = row["edgec_flash_bytes"] / len(data)
            row["speedup_host"] = row["tflm_host_ms"] / ours_ms
        rows.append(row)

    hdr = f"{'model':<18}{'arena':>8}{'TFLM':>8}{'ratio':>7}{'flash':>9}{'TFLM>=':>9}{'ratio':>7}{'host ms':>9}{'TFLM ms':>9}{'speedup':>8}{'eq':>6}"
    print(hdr)
    for r in rows:
        print(f"{r['model']:<18}{r['edgec_arena_bytes']:>8}{r.get('tflm_arena_bytes', '-'):>8}"
              f"{r.get('ram_ratio', float('nan')):>7.2f}{r['edgec_flash_bytes'] or '-':>9}"
              f"{r.get('tflm_flash_bytes_lower_bound', '-'):>9}{r.get('flash_ratio_vs_lower_bound', float('nan')):>7.2f}"
              f"{r['edgec_host_ms']:>9.4f}{r.get('tflm_host_ms', float('nan')):>9.4f}"
              f"{r.get('speedup_host', float('nan')):>8.1f}{r.get('equal_outputs_vs_tflm', float('nan')):>6.2f}")
    result = {"schema": "edgec.mcu-bench/1", "cpu": "cortex-m4", "flags": "-Os -mthumb -ffunction-sections "
              "-fdata-sections, --gc-sections", "tflm_flash_note": "TFLM library not built for M4 offline: "
              "model flatbuffer bytes only (lower bound)", "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
