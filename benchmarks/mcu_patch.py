"""Patch section of ``benchmarks/mcu.py``: ``--patch-inference`` (MCUNetV2's patch-based first
stage, targets/mcu/ops/patch.py) measured against the same build without it.

Each model is lowered twice for one CPU, ``--patch-inference off`` and ``on`` (the corpus
models: ``auto`` under the conformance's 512 KB RAM budget, as conformance builds them;
Conv+Pool fusion is on in both: it never repeats a MAC), and both are run in QEMU on the
same random int8 input.
A row holds the planned arena and the total RAM (arena + static + painted stack) of each,
the stage chosen (ops, bands, its output shape), the recompute overhead (extra MACs, % of
the model's MACs), instructions of each, and exactness: the patched output equals the
unpatched one byte for byte, QEMU equals the host build, and for the MLPerf Tiny .tflite
models the output equals LiteRT BUILTIN_REF. The BlazeFace corpus models (over 512 KB of
RAM unpatched) are lowered from their edgec-quantized Q/DQ ONNX (``mcu_corpus.build_int8``).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = ("blazeface-short", "blazeface-full", "blazeface-full-sparse", "blazeface-back")
RAM_BUDGET = 512 * 1024  # the conformance's mcu RAM: the corpus models are patched as it builds them


def _run(handle, out: Path, cpu: str, opt: str, mode: str, cf, **options) -> tuple[dict, Any, dict]:
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.mcu import toolchain

    res, manifest = cf.build_bundle(handle, out, cpu=cpu, patch_inference=mode, **options)
    runner = MCURunner(out, manifest, device="qemu")
    runner.opt = opt
    runner.load()
    feeds = cf.random_native(runner.native_in, np.random.default_rng(1))
    got = next(iter(runner.run_native(feeds).values()))
    extra = runner.info()["extra"]
    size = toolchain.arm_size(out / "c", cpu, opt=opt)
    rep = res.report
    static = size["bss"] + size["data"] - rep["arena_bytes"]
    return {"arena_bytes": rep["arena_bytes"], "ram_bytes": rep["arena_bytes"] + static + (extra.get("stack_bytes") or 0),
            "instructions": extra["instructions"], "code_bytes": size["text"] + size["data"] - rep["const_bytes"],
            "qemu_matches_host": extra["matches_host"], "macs": rep["macs"], "stage": rep["patch_inference"]["stage"],
            "conv_pool_fused": len(rep["conv_pool_fused"])}, got, feeds


def _row(name: str, handle, cpu: str, opt: str, cf, work: Path, data: bytes | None = None, budget=None) -> dict:
    """One model off and on (``budget``: ``auto`` under that --ram-budget instead of ``on``);
    ``data``: its .tflite, for the LiteRT BUILTIN_REF check."""
    off, y_off, feeds = _run(handle, work / f"{name}-off", cpu, opt, "off", cf)
    on, y_on, _ = _run(handle, work / f"{name}-on", cpu, opt, "auto" if budget else "on", cf,
                       **({"ram_budget": budget} if budget else {}))
    stage = on["stage"]
    extra = stage["extra_macs"] if stage else 0
    row = {"model": name, "cpu": cpu, "opt": opt, "macs": off["macs"], "mode": "auto" if budget else "on",
           "arena_bytes_off": off["arena_bytes"], "arena_bytes_on": on["arena_bytes"],
           "ram_bytes_off": off["ram_bytes"], "ram_bytes_on": on["ram_bytes"],
           "instructions_off": off["instructions"], "instructions_on": on["instructions"],
           "code_bytes_off": off["code_bytes"], "code_bytes_on": on["code_bytes"],
           "extra_macs": extra, "extra_macs_pct": 100.0 * extra / max(off["macs"], 1), "stage": stage,
           "conv_pool_fused": on["conv_pool_fused"],
           "patched_equals_unpatched": bool(np.array_equal(y_off, y_on)),
           "qemu_matches_host": off["qemu_matches_host"] and on["qemu_matches_host"]}
    if data is not None:
        import mcu

        want, _ = mcu.litert_output(data, next(iter(feeds.values())))
        row["bitexact_litert"] = bool(np.array_equal(y_on.reshape(want.shape), want))
    print(f"{name:16} {cpu:11} RAM {row['ram_bytes_off']:7} -> {row['ram_bytes_on']:7} B  extra MACs "
          f"{row['extra_macs_pct']:5.1f} %  instr {off['instructions'] / 1e6:7.2f} -> {on['instructions'] / 1e6:7.2f} M  "
          f"same bytes {row['patched_equals_unpatched']}", flush=True)
    return row


def patch_rows(models: list[str], corpus: list[str], cpu: str, opt: str, cf, bundles: Path | None = None) -> list[dict]:
    """Rows for the MLPerf Tiny ``models`` and the ``corpus`` models; ``bundles``: a folder of
    earlier ``edgec build --target mcu`` outputs (``NAME-bundle``) reused instead of rebuilding."""
    import mcu

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-mcu-patch-") as td:
        work = Path(td)
        for name in models:
            data = mcu.tflite_model(name, cf)
            rows.append(_row(name, cf.tflite_handle(data), cpu, opt, cf, work, data))
        for name in corpus:
            try:
                rows.append(_corpus_row(name, cpu, opt, cf, work, bundles))
            except Exception as exc:  # noqa: BLE001 - a model that does not build is a row with its reason
                rows.append({"model": name, "error": str(exc).strip().splitlines()[0] if str(exc).strip()
                             else type(exc).__name__})
                print(f"{name:16} failed: {rows[-1]['error']}", flush=True)
    return rows


def _corpus_row(name: str, cpu: str, opt: str, cf, work: Path, bundles: Path | None) -> dict:
    import json

    import mcu_corpus
    import onnx

    from edgec.compiler.model import ModelHandle

    bundle = bundles / f"{name}-bundle" if bundles else None
    if bundle is not None and (bundle / "manifest.json").is_file():
        manifest = json.loads((bundle / "manifest.json").read_text())
    else:
        bundle, manifest, _ = mcu_corpus.build_int8(name, work)
    proto = onnx.load(str(bundle / "reference" / "quantized.onnx"))
    h = ModelHandle.from_onnx(proto, "quantized.onnx", "0" * 64)
    layouts = {d["name"]: d.get("layout") for d in manifest["model_inputs"] + manifest["model_outputs"]}
    h.inputs = [replace(s, layout=layouts.get(s.name)) for s in h.inputs]
    h.outputs = [replace(s, layout=layouts.get(s.name)) for s in h.outputs]
    return _row(name, h, cpu, opt, cf, work, budget=RAM_BUDGET)


def print_table(rows: list[dict]) -> None:
    print("\n--patch-inference (MCUNetV2 first stage in bands): off -> on, same CPU and flags\n"
          f"{'model':16}{'cpu':12}{'stage':>14}{'RAM off':>9}{'RAM on':>9}{'x':>6}{'xMACs %':>8}{'instr off':>10}"
          f"{'instr on':>10}{'x':>6}{'code +B':>8}{'same':>5}{'exact':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:16}failed: {r['error']}")
            continue
        s = r["stage"]
        st = f"{s['ops']} ops/{s['bands']} bands" if s else "none"
        exact = {True: "yes", False: "NO", None: "-"}[r.get("bitexact_litert")]
        print(f"{r['model']:16}{r['cpu']:12}{st:>14}{r['ram_bytes_off']:9}{r['ram_bytes_on']:9}"
              f"{r['ram_bytes_on'] / r['ram_bytes_off']:6.2f}{r['extra_macs_pct']:8.1f}"
              f"{r['instructions_off'] / 1e6:10.2f}{r['instructions_on'] / 1e6:10.2f}"
              f"{r['instructions_on'] / r['instructions_off']:6.2f}{r['code_bytes_on'] - r['code_bytes_off']:8}"
              f"{'yes' if r['patched_equals_unpatched'] and r['qemu_matches_host'] else 'NO':>5}{exact:>6}")
