"""edgec's Cortex-M C on the four MLPerf Tiny reference architectures, next to TFLM + CMSIS-NN.

The models are rebuilt from the MLPerf Tiny reference shapes (random weights: instruction
counts depend on shapes only), converted to full-int8 .tflite with the TFLite converter
(cached under ``$XDG_CACHE_HOME/edgec/mcu-bench``), built with the mcu target and run in
qemu-system-arm with ``-icount shift=0`` on M4 (mps2-an386), M33 (mps2-an505) and M55
(mps3-an547) at -O2 and -Os. Per row:
  * instructions of one inference and instructions/MAC; the TFLM + CMSIS-NN counts
    (issue 14, measured on the same boards, depending on the shapes only) as the anchor;
  * flash from arm-none-eabi-size (library + a call, --gc-sections, newlib's memcpy),
    split into weights (constants) and code (the rest);
  * RAM: arena (holding the graph I/O: edgec_model_input/output), other static data
    (im2col scratch), painted stack, caller I/O buffers (0 with the pointer API);
    TFLM's arena from the tflite-micro interpreter (RecordingMicroAllocator) as anchor;
  * bit-exactness: QEMU output == host build == LiteRT BUILTIN_REF.
Patch: ``--patch`` builds each model with and without ``--patch-inference`` (``mcu_patch.py``:
RAM, recompute overhead, instructions, exactness; ``--patch-corpus``: the BlazeFace models).
Coverage: ``--corpus`` runs the real-model corpus's int8 mcu builds through the same
measurements (``mcu_corpus.py``; ``--corpus all``: every corpus model the mcu can hold).

Usage: python benchmarks/mcu.py [--models ic,kws,vww,ad] [--cpus cortex-m4,...] [--opts -O2,-Os]
       [--corpus all|NAME,...] [--corpus-cpus cortex-m4] [--corpus-opts -O2] [--out benchmarks/results/mcu.json]
       [--patch ic,kws,vww,ad] [--patch-corpus blazeface-short,blazeface-full,blazeface-back]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Issue 14: TFLM + CMSIS-NN instructions per inference, M4 (mps2-an386) / M55 (mps3-an547).
CMSIS_NN = {"ic": {"macs": 12.50e6, "cortex-m4": 29.78e6, "cortex-m55": 4.91e6},
            "kws": {"macs": 2.66e6, "cortex-m4": 7.58e6, "cortex-m55": 1.81e6},
            "vww": {"macs": 7.49e6, "cortex-m4": 23.78e6, "cortex-m55": 6.56e6},
            "ad": {"macs": 0.26e6, "cortex-m4": 0.583e6, "cortex-m55": 0.150e6}}
GOAL = {"cortex-m4": 0.8, "cortex-m55": 1.0}
# TFLM + CMSIS-NN runtime code measured in issue 14 (36-89 KB): its smallest figure makes the
# flash comparison a lower bound for TFLM (its flash = code + the .tflite flatbuffer).
TFLM_MIN_CODE = 36 * 1024


def _conftest():
    spec = importlib.util.spec_from_file_location("mcu_models", ROOT / "tests" / "targets" / "mcu" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def architectures() -> dict:
    """MLPerf Tiny v1.0 reference models (keras), by benchmark name."""
    import tensorflow as tf

    L = tf.keras.layers

    def resnet8():
        inp = tf.keras.Input((32, 32, 3), batch_size=1)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
        for filters, stride in ((16, 1), (32, 2), (64, 2)):
            y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
            y = L.Conv2D(filters, 3, padding="same")(y)
            if stride != 1:
                x = L.Conv2D(filters, 1, strides=stride)(x)
            x = L.ReLU()(L.Add()([x, y]))
        x = L.Flatten()(L.AveragePooling2D(8)(x))
        return tf.keras.Model(inp, L.Softmax()(L.Dense(10)(x))), (32, 32, 3)

    def ds_cnn():
        inp = tf.keras.Input((49, 10, 1), batch_size=1)
        x = L.Conv2D(64, (10, 4), strides=2, padding="same", activation="relu")(inp)
        for _ in range(4):
            x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            x = L.Conv2D(64, 1, activation="relu")(x)
        x = L.Flatten()(L.AveragePooling2D((25, 5))(x))
        return tf.keras.Model(inp, L.Softmax()(L.Dense(12)(x))), (49, 10, 1)

    def mobilenet_v1_025():
        inp = tf.keras.Input((96, 96, 3), batch_size=1)
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
        for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1),
                                (128, 1), (128, 1), (128, 1), (256, 2), (256, 1)):
            x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(x)
            x = L.Conv2D(filters, 1, activation="relu")(x)
        x = L.Flatten()(L.AveragePooling2D(3)(x))
        return tf.keras.Model(inp, L.Softmax()(L.Dense(2)(x))), (96, 96, 3)

    def fc_autoencoder():
        inp = tf.keras.Input((640,), batch_size=1)
        x = inp
        for n in (128, 128, 128, 128, 8, 128, 128, 128, 128):
            x = L.Dense(n, activation="relu")(x)
        return tf.keras.Model(inp, L.Dense(640)(x)), (640,)

    return {"ic": resnet8, "kws": ds_cnn, "vww": mobilenet_v1_025, "ad": fc_autoencoder}


def tflite_model(name: str, cf) -> bytes:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgec" / "mcu-bench"
    cache.mkdir(parents=True, exist_ok=True)
    import inspect

    # Keyed by the model definitions (and the converter settings they go through).
    src = hashlib.sha256((inspect.getsource(architectures) + inspect.getsource(cf.to_tflite)).encode()).hexdigest()[:12]
    path = cache / f"{name}-{src}.tflite"
    if not path.exists():
        import tensorflow as tf

        tf.keras.utils.set_random_seed(0)
        model, shape = architectures()[name]()
        path.write_bytes(cf.to_tflite(model, shape, n=16))
    return path.read_bytes()


def tflm_arena(data: bytes) -> int | None:
    """TFLM's arena bytes for the model (tensors + op data + interpreter structs), measured
    in a child process in case the tflite-micro interpreter aborts it.

    TFLM's Softmax prepare aborts (QuantizeMultiplierGreaterThanOne) when its input scale is
    tiny, as in the random-weight VWW MobileNet whose logits are ~0 (scale 7.8e-9). The arena
    depends on tensor shapes and op data sizes, not on scale values, so such scales are raised
    to 1/256 in the copy TFLM measures.
    """
    import subprocess

    data = _raise_tiny_scales(data)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(data)
        f.flush()
        r = subprocess.run([sys.executable, __file__, "--tflm-arena", f.name], capture_output=True, text=True,
                           timeout=600)
    for line in (r.stdout + r.stderr).splitlines():
        if "Arena allocation total" in line:
            return int(line.split("total")[1].split()[0])
    return None


def _raise_tiny_scales(data: bytes) -> bytes:
    import struct

    from ai_edge_litert import interpreter as litert

    for t in litert.Interpreter(model_content=data).get_tensor_details():
        scales = t["quantization_parameters"]["scales"]
        if len(scales) == 1 and 0 < scales[0] < 1e-6:
            data = data.replace(struct.pack("<f", float(np.float32(scales[0]))), struct.pack("<f", 1 / 256))
    return data


def _print_tflm_arena(path: str) -> None:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(Path(path).read_bytes(), arena_size=4 * 1024 * 1024)
    d = it.get_input_details(0)
    it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
    it.invoke()  # allocation is recorded on the first invoke
    it.print_allocations()


def litert_output(data: bytes, x: np.ndarray) -> tuple[np.ndarray, str]:
    """LiteRT's output for ``x``: BUILTIN_REF kernels, in a child process because that
    interpreter aborts the process on some models (seen on the VWW MobileNet, in
    allocate_tensors); then LiteRT's optimized builtin kernels, said so in the row."""
    import subprocess

    with tempfile.TemporaryDirectory() as td:
        model, inp, out = Path(td) / "m.tflite", Path(td) / "x.npy", Path(td) / "y.npy"
        model.write_bytes(data)
        np.save(inp, x)
        for kind in ("BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            r = subprocess.run([sys.executable, __file__, "--litert-ref", str(model), str(inp), str(out), kind],
                               capture_output=True, text=True, timeout=600)
            if r.returncode == 0:
                return np.load(out), kind
    raise RuntimeError("LiteRT could not run the model")


def _litert_child(model: str, inp: str, out: str, kind: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=model, experimental_op_resolver_type=getattr(OpResolverType, kind))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.load(inp))
    it.invoke()
    np.save(out, it.get_tensor(it.get_output_details()[0]["index"]))


_BUILT: dict = {}


def measure(name: str, data: bytes, cpu: str, opt: str, cf, work: Path) -> dict:
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.mcu import toolchain

    out = work / f"{name}-{cpu}"
    if (name, cpu) not in _BUILT:
        res, manifest = cf.build_bundle(cf.tflite_handle(data), out, cpu=cpu)
        _BUILT[(name, cpu)] = (manifest, res.report)
    manifest, report = _BUILT[(name, cpu)]
    runner = MCURunner(out, manifest, device="qemu")
    runner.opt = opt
    runner.load()
    feeds = cf.random_native(runner.native_in, np.random.default_rng(1))
    got = next(iter(runner.run_native(feeds).values()))
    x = next(iter(feeds.values()))
    want, ref_kind = litert_output(data, x)
    extra = runner.info()["extra"]
    size = toolchain.arm_size(out / "c", cpu, opt=opt)
    flash = size["text"] + size["data"]
    weights = report["const_bytes"]
    macs = report["macs"]
    return {"model": name, "cpu": cpu, "opt": opt, "macs": macs, "instructions": extra["instructions"],
            "instr_per_mac": extra["instructions"] / macs, "flash_bytes": flash, "weights_bytes": weights,
            "code_bytes": flash - weights, "arena_bytes": report["arena_bytes"],
            "static_bytes": size["bss"] + size["data"] - report["arena_bytes"],
            "stack_bytes": extra.get("stack_bytes"),
            # Graph I/O lives in the arena (pointer API): no caller buffers to count.
            "io_bytes": 0 if report.get("io_in_arena") else report["io_bytes"],
            "bitexact_litert": bool(np.array_equal(got.reshape(want.shape), want)), "litert_reference": ref_kind,
            "qemu_matches_host": extra["matches_host"], "qemu_board": extra["qemu_board"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="ic,kws,vww,ad")
    ap.add_argument("--cpus", default="cortex-m4,cortex-m33,cortex-m55")
    ap.add_argument("--opts", default="-O2,-Os")
    ap.add_argument("--corpus", default="", help="corpus models for the coverage section ('all': those that fit)")
    ap.add_argument("--corpus-cpus", default="cortex-m4")
    ap.add_argument("--corpus-opts", default="-O2")
    ap.add_argument("--patch", default="", help="models measured with and without --patch-inference (M4 -O2)")
    ap.add_argument("--patch-corpus", default="", help="corpus models for the patch section ('all': BlazeFace)")
    ap.add_argument("--patch-bundles", help="reuse the corpus models' edgec mcu bundles from DIR/NAME-bundle")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mcu.json"))
    ap.add_argument("--tflm-arena", help=argparse.SUPPRESS)
    ap.add_argument("--litert-ref", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.litert_ref:
        _litert_child(*args.litert_ref)
        return 0
    if args.tflm_arena:
        _print_tflm_arena(args.tflm_arena)
        return 0
    cf = _conftest()
    rows, tflm = [], {}
    with tempfile.TemporaryDirectory() as td:
        for name in [m for m in args.models.split(",") if m]:
            data = tflite_model(name, cf)
            tflm[name] = {"arena_bytes": tflm_arena(data), "tflite_bytes": len(data)}
            for cpu in args.cpus.split(","):
                for opt in args.opts.split(","):
                    r = measure(name, data, cpu, opt, cf, Path(td))
                    ref = CMSIS_NN[name].get(cpu)
                    r["cmsis_nn_instructions"] = ref
                    r["ratio_vs_cmsis_nn"] = r["instructions"] / ref if ref else None
                    r["ram_bytes"] = r["arena_bytes"] + r["static_bytes"] + (r["stack_bytes"] or 0) + r["io_bytes"]
                    if tflm[name]["arena_bytes"]:
                        # TFLM's arena holds the I/O tensors; its stack and statics are left out (lower bound).
                        r["ram_ratio_vs_tflm_arena"] = r["ram_bytes"] / tflm[name]["arena_bytes"]
                    r["flash_ratio_vs_tflm_lower_bound"] = r["flash_bytes"] / (TFLM_MIN_CODE + len(data))
                    rows.append(r)
                    print(f"{name:4} {cpu:11} {opt:3} instr {r['instructions'] / 1e6:7.3f} M "
                          f"({r['instr_per_mac']:.2f}/MAC) vs CMSIS-NN {ref / 1e6 if ref else float('nan'):6.2f} M "
                          f"= {r['ratio_vs_cmsis_nn'] or float('nan'):.2f}x  code {r['code_bytes']} B "
                          f"RAM {r['ram_bytes']} B  exact {r['bitexact_litert']}", flush=True)
    if rows:
        print()
        hdr = (f"{'model':5}{'cpu':12}{'opt':4}{'instr M':>9}{'/MAC':>6}{'CMSIS M':>8}{'ratio':>6}{'goal':>6}"
               f"{'code':>7}{'weights':>8}{'arena':>7}{'static':>7}{'stack':>6}{'io':>6}{'RAM':>7}{'TFLM ar':>8}"
               f"{'RAM x':>6}{'exact':>6}")
        print(hdr)
        for r in rows:
            goal = GOAL.get(r["cpu"])
            met = "-" if not goal or r["ratio_vs_cmsis_nn"] is None else ("met" if r["ratio_vs_cmsis_nn"] <= goal else "MISS")
            ta = tflm[r["model"]]["arena_bytes"]
            print(f"{r['model']:5}{r['cpu']:12}{r['opt']:4}{r['instructions'] / 1e6:9.3f}{r['instr_per_mac']:6.2f}"
                  f"{(r['cmsis_nn_instructions'] or 0) / 1e6:8.2f}{r['ratio_vs_cmsis_nn'] or 0:6.2f}{met:>6}"
                  f"{r['code_bytes']:7}{r['weights_bytes']:8}{r['arena_bytes']:7}{r['static_bytes']:7}"
                  f"{r['stack_bytes'] or 0:6}{r['io_bytes']:6}{r['ram_bytes']:7}{ta or 0:8}"
                  f"{r.get('ram_ratio_vs_tflm_arena', 0):6.2f}{'yes' if r['bitexact_litert'] else 'NO':>6}")
    result = {"schema": "edgec.mcu-bench/2", "method": "qemu-system-arm -icount shift=0, SysTick ticks x "
              "instructions/tick calibrated with a loop of known length", "cmsis_nn_reference": CMSIS_NN,
              "goals": {"instructions_vs_cmsis_nn": GOAL, "ram_vs_tflm": 0.5},
              "tflm": tflm, "tflm_min_code_bytes": TFLM_MIN_CODE, "rows": rows}
    before = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if not rows and before:  # coverage or patch only: keep the reference-architecture rows written before
        result = {**before, "corpus": before.get("corpus", []) if not args.corpus else []}
    if args.patch or args.patch_corpus:
        import mcu_patch

        corpus = list(mcu_patch.CORPUS) if args.patch_corpus == "all" else [m for m in args.patch_corpus.split(",") if m]
        result["patch"] = mcu_patch.patch_rows([m for m in args.patch.split(",") if m], corpus, "cortex-m4", "-O2", cf,
                                             Path(args.patch_bundles) if args.patch_bundles else None)
        mcu_patch.print_table(result["patch"])
    elif "patch" in before:  # not rerun: keep the section
        result["patch"] = before["patch"]
    if args.corpus:
        import mcu_corpus

        names = list(mcu_corpus.MODELS) if args.corpus == "all" else args.corpus.split(",")
        new = mcu_corpus.corpus_rows(names, args.corpus_cpus.split(","), args.corpus_opts.split(","), cf)
        # Rows of models not rerun are kept (a model's rows are replaced as a whole).
        result["corpus"] = [r for r in before.get("corpus", []) if r.get("model") not in set(names)] + new
        mcu_corpus.print_table(result["corpus"])
    elif "corpus" in before:  # not rerun: keep the section
        result["corpus"] = before["corpus"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
