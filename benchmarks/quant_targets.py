"""jetson and arm int8 on real models (issue 13 items 3, 4): before/after, default and gated.

Sibling of benchmarks/quant_quality.py (whose corpus part covers intel-cpu). For each model and
target, the same calibration (16 crops) and evaluation data (32 disjoint crops):

* jetson: ``before`` = symmetric min/max ranges (the old default), ``default`` = the target's
  default (TensorRT-style symmetric scale search per tensor: entropy, percentile 99.99 / 99.999,
  MSE, chosen by measured output error), ``gated`` = ``--max-accuracy-drop`` (1 cosine point on
  detectors, 2 top-1 points on classifiers). The bundle's model.onnx is run in onnxruntime (CPU),
  as the target verifies it when no GPU is present.
* arm: ``minmax`` full-integer int8 with the TFLite converter's own min/max ranges (the old default),
  ``default`` full-integer int8 (percentile ranges, `edgec.targets.tflite.ranges`), ``16x8`` (int16 activations, int8
  weights), ``gated`` (``--max-accuracy-drop``: int16 activations, then the debugger's
  deny-list). The bundle's model.tflite is run in LiteRT.

Rows: cosine (mean per sample) and top-1 agreement against float, the fallbacks used, build
seconds. Not a test: prints tables and writes benchmarks/results/quant_targets.json.

    nice .venv/bin/python benchmarks/quant_targets.py --targets jetson --models pp-lcnet-orientation
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

JETSON_MODELS = ("pp-lcnet-orientation", "ppocr-v4-det", "ddddocr-yolox-det", "mobilenet_v2", "resnet18")
ARM_MODELS = ("pp-lcnet-orientation", "ppocr-v4-det", "minilm")
# The transformer body: the sentence-embedding head's L2 normalisation (ReduceL2) has no onnx2tf
# conversion today (a converter gap, not a quantization one), so arm builds take last_hidden_state.
TASKS = {"minilm": "feature-extraction"}
CLASSIFIER_BUDGET, DETECTOR_BUDGET = 2.0, 1.0  # points: top-1 >= 0.98, cosine >= 0.99


def model_data(name: str, calib_n: int, eval_n: int, tmp: Path) -> tuple[Path, Path, Path, bool, list, dict]:
    """``(model, calib.npz, eval.npz, classifier, eval feeds, input shapes)`` for a corpus model."""
    from edgec.compiler.config import InputShape

    shapes: dict = {}
    import quant_corpus as qc

    if name in qc.MODELS:
        _, _, inp, (h, w), _, _, metric = qc.MODELS[name]
        src = qc._static_onnx(qc.model_file(name), inp, (1, 3, h, w), tmp / f"{name}.onnx")
        cal, ev = qc.inputs(name, "calib", calib_n), qc.inputs(name, "eval", eval_n)
        feeds = [{inp: x[None]} for x in ev[inp]]
        classifier = metric == "top1"
    else:
        import corpus

        src = corpus.model_path(name)
        feeds_c, feeds = corpus.samples(name, calib_n), corpus.samples(name, eval_n, offset=calib_n)
        cal = {k: np.concatenate([f[k] for f in feeds_c]) for k in feeds_c[0]}
        ev = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
        classifier = bool(corpus.entry(name).get("classifier"))
        shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in corpus.entry(name).get("dynamic", {}).items()}
    np.savez(tmp / f"{name}_calib.npz", **cal)
    np.savez(tmp / f"{name}_eval.npz", **ev)
    return src, tmp / f"{name}_calib.npz", tmp / f"{name}_eval.npz", classifier, feeds, shapes


def _scores(outs: list, refs: list, classifier: bool) -> dict:
    """quant_corpus's scores, on the first output only (what these runners return)."""
    import quant_corpus as qc

    return qc._scores([[np.asarray(o)] for o in outs], [[np.asarray(r)] for r in refs], classifier)


def _float_refs(src: Path, feeds: list) -> list:
    from edgec.compiler.quality import ort_session

    if src.is_dir():  # an HF folder: the float bundle's reference is what edgec verifies against
        return []
    s = ort_session(Path(src).read_bytes())
    return [s.run(None, f)[0] for f in feeds]


def _bundle_outputs(out: Path, feeds: list) -> list:
    """First output of the bundle on each feed, through the runner edgec verifies with here."""
    from edgec.compiler.bundle import read_manifest
    from edgec.targets.registry import get_target

    manifest = read_manifest(out)
    runner = get_target(manifest["target"]).verify_runner(out, manifest)
    first = manifest["model_outputs"][0]["name"]
    return [np.asarray(runner.infer(f)[first]) for f in feeds]


def _bundle_agreement(out: Path, feeds: list, classifier: bool) -> dict:
    """Every output of the bundle against the bundle's float reference model, per sample: ``cosine`` (mean over
    samples of the worst output), ``worst_cosine`` (worst sample), ``top1_agreement`` on the first output, and
    ``edgec_cosine``: the worst output's mean cosine as edgec's gate and ``edgec verify`` score it
    (`edgec.runtimes.metrics.mean_cosine`: a sample whose reference is nearly empty, such as a text
    detector's probability map of a blank crop, scores its absolute error, since its cosine is noise)."""
    from edgec.compiler.bundle import read_manifest
    from edgec.runtimes.metrics import cosine, cosine_stats, mean_cosine
    from edgec.runtimes.registry import reference_runner
    from edgec.targets.registry import get_target

    manifest = read_manifest(out)
    names = {d["name"] for d in manifest["model_inputs"]}
    per_sample, hits, stats = [], [], {}
    with get_target(manifest["target"]).verify_runner(out, manifest) as runner, \
            reference_runner(out, manifest) as ref:
        for feed in feeds:
            feed = {k: v for k, v in feed.items() if k in names}
            got, want = runner.infer(feed), ref.infer(feed)
            per_sample.append(min(cosine(np.asarray(got[k], np.float64).ravel(), np.asarray(w, np.float64).ravel())
                                  for k, w in want.items()))
            for k, w in want.items():
                stats.setdefault(k, []).append(cosine_stats(got[k], w))
            first = next(iter(want))
            hits.append(np.asarray(got[first]).reshape(-1).argmax() == np.asarray(want[first]).reshape(-1).argmax())
    row = {"cosine": float(np.mean(per_sample)), "worst_cosine": float(np.min(per_sample)),
           "samples": len(per_sample), "edgec_cosine": min(mean_cosine(v) for v in stats.values())}
    if classifier:
        row["top1_agreement"] = float(np.mean(hits))
    return row


def _fallbacks(report: dict, manifest: dict) -> str:
    gate = report.get("accuracy_gate") or {}
    parts = []
    for p in manifest.get("passes", []):
        if p.get("name") == "calibrate-auto":
            used = {k: v for k, v in p["config"]["methods"].items() if v}
            parts.append("ranges " + ",".join(f"{k}:{v}" for k, v in used.items()))
        if p.get("name") == "float-fallback" and p["config"].get("kept_float"):
            parts.append(f"{len(p['config']['kept_float'])} fp16 {'/'.join(p['config']['ops'])} (default)")
    q = (manifest.get("target_info") or {}).get("quantization") or {}
    if q.get("activations", "").startswith("int16"):
        parts.append("16x8")
    if q.get("float_nodes"):
        parts.append(f"{len(q['float_nodes'])} float op(s)")
    if gate.get("kept_float"):
        parts.append(f"{len(gate['kept_float'])} fp16 layer(s)")
    if gate.get("calib_method_overrides"):
        parts.append(f"{len(gate['calib_method_overrides'])} range override(s)")
    return "; ".join(parts) or "none"


def run_variant(src: Path, out: Path, refs: list, feeds: list, classifier: bool, all_outputs: bool = False,
                **kw) -> dict:
    from edgec import api
    from edgec.compiler.bundle import read_manifest
    from edgec.compiler.config import BuildConfig
    from edgec.errors import EdgecError

    t0 = time.perf_counter()
    try:
        res = api.build(BuildConfig.from_flat(model=str(src), output=out, force=True, accept_low_accuracy=True, **kw))
    except EdgecError as exc:
        row = {"error": str(exc)[:2000], "seconds": time.perf_counter() - t0}
        m = re.search(r"cosine ([0-9.]+)", str(exc))  # jetson's own int8 check refused it: keep its measurement
        if m and "TensorRT's symmetric activations" in str(exc):
            row["refused_cosine"] = float(m.group(1))
        return row
    row: dict = {"seconds": time.perf_counter() - t0}
    if all_outputs:  # every output, against the bundle's own float reference (.tflite sources included)
        row |= _bundle_agreement(out, feeds, classifier)
    elif refs:
        row |= _scores(_bundle_outputs(out, feeds), refs, classifier)
    else:  # edgec's own verification against the float model (HF text models)
        row["cosine"] = res.report["accuracy"]["cosine"]
    row["fallbacks"] = _fallbacks(res.report, read_manifest(out))
    return row


def target_part(target: str, names: tuple[str, ...], variants: dict[str, dict], tmp: Path, results: dict,
                calib_n: int = 16, eval_n: int = 32, save=lambda: None, all_outputs: bool = False) -> None:
    rows, out = [], results.setdefault(target, {})
    for name in names:
        src, cal, ev, classifier, feeds, shapes = model_data(name, calib_n, eval_n, tmp)
        refs = [] if all_outputs else _float_refs(src, feeds)
        res = out.setdefault(name, {})
        for label, kw in variants.items():
            kw = dict(kw)
            if kw.pop("gated", False):
                kw |= {"max_accuracy_drop": CLASSIFIER_BUDGET if classifier else DETECTOR_BUDGET,
                       "metric": "top1" if classifier else "cosine"}
            extra = ({"input_shapes": shapes} if shapes else {}) | ({"task": TASKS[name]} if name in TASKS else {})
            r = run_variant(src, tmp / f"{target}-{name}-{label}", refs, feeds, classifier, all_outputs,
                            target=target, precision="int8", calib=str(cal), eval_data=str(ev), calib_samples=calib_n,
                            **extra, **kw)
            res[label] = r
            save()
            goal = r.get("top1_agreement") if classifier else r.get("edgec_cosine", r.get("cosine"))
            met = None if goal is None else goal >= (0.98 if classifier else 0.99)
            rows.append([name, label, r.get("cosine"), r.get("edgec_cosine"), r.get("worst_cosine"),
                         r.get("top1_agreement"), r.get("fallbacks") or "", r.get("seconds"),
                         {True: "met", False: "missed", None: (r.get("error") or "")[:60]}[met]])
            print_table(f"{target} int8 vs float (partial)", ["model", "variant", "cosine", "edgec cos.", "worst",
                        "top-1 agr.", "fallbacks used", "build s", "goal"], rows[-1:])
    print_table(f"{target} int8 vs float (16 calib / 32 eval samples; goal: detectors cosine >= 0.99, classifiers "
                "top-1 >= 0.98)", ["model", "variant", "cosine", "edgec cos.", "worst", "top-1 agr.", "fallbacks used",
                                   "build s", "goal"], rows)


JETSON_VARIANTS = {"before": {"calib_method": "minmax"}, "default": {}, "gated": {"gated": True}}
ARM_VARIANTS = {"minmax": {"target_options": {"ranges": "minmax"}}, "default": {},
                "16x8": {"target_options": {"activations": "int16"}}, "gated": {"gated": True}}


def _rows(results: dict) -> dict[str, list]:
    tables: dict[str, list] = {}
    for target, models in results.items():
        for name, variants in models.items():
            for label, r in variants.items():
                classifier = "top1_agreement" in r or name in ("pp-lcnet-orientation", "mobilenet_v2", "resnet18")
                # Detectors: edgec's cosine (blank crops score their absolute error) where measured.
                goal = r.get("top1_agreement") if classifier else r.get("edgec_cosine", r.get("cosine"))
                met = None if goal is None else goal >= (0.98 if classifier else 0.99)
                note = {True: "met", False: "missed"}.get(met) if met is not None else (
                    f"refused (cosine {r['refused_cosine']})" if "refused_cosine" in r else (r.get("error") or "")[:70])
                tables.setdefault(target, []).append([name, label, r.get("cosine"), r.get("edgec_cosine"),
                                                      r.get("worst_cosine"),
                                                      r.get("top1_agreement"), r.get("fallbacks") or "",
                                                      r.get("seconds"), note])
    return tables


def merge_order(name: str) -> list:
    """Sort key for the ``--tag`` files: numbers compare as numbers, so session 12's ``s12-*`` rows land after
    session 8's ``s8-*`` ones (a plain string sort put them before, and the older rows won)."""
    # re.split with a group alternates text and digits, so every position holds one type across names.
    return [int(c) if k % 2 else c for k, c in enumerate(re.split(r"(\d+)", name))]


def merge() -> None:
    """Merge the per-run files (``--tag``) into quant_targets.json, later files' rows over earlier ones, and print
    the tables."""
    results: dict = {}
    files = (Path(__file__).parent / "results").glob("quant_targets_*.json")
    for f in sorted(files, key=lambda f: merge_order(f.name)):
        for target, models in json.loads(f.read_text()).items():
            for name, variants in models.items():
                results.setdefault(target, {}).setdefault(name, {}).update(variants)
    for target, rows in _rows(results).items():
        print_table(f"{target} int8 vs float (16 calib / 32 eval samples; goal: detectors cosine >= 0.99, "
                    "classifiers top-1 >= 0.98)", ["model", "variant", "cosine", "edgec cos.", "worst", "top-1 agr.",
                                                   "fallbacks used", "build s", "goal"], rows)
    write_json("quant_targets", results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="jetson,arm")
    ap.add_argument("--models", default="")
    ap.add_argument("--variants", default="")
    ap.add_argument("--tag", default="", help="results file suffix (runs in parallel write separate files)")
    ap.add_argument("--merge", action="store_true", help="only merge the --tag result files and print the tables")
    ap.add_argument("--all-outputs", action="store_true",
                    help="score every output against the bundle's float reference, with the worst sample's cosine")
    args = ap.parse_args()
    if args.merge:
        return merge()
    results: dict = {}
    name = "quant_targets" + (f"_{args.tag}" if args.tag else "")
    with tempfile.TemporaryDirectory() as d:
        for target in args.targets.split(","):
            names = tuple(args.models.split(",")) if args.models else (JETSON_MODELS if target == "jetson"
                                                                        else ARM_MODELS)
            variants = JETSON_VARIANTS if target == "jetson" else ARM_VARIANTS
            if args.variants:
                variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
            target_part(target, names, variants, Path(d), results, save=lambda: write_json(name, results),
                        all_outputs=args.all_outputs)
    write_json(name, results)


if __name__ == "__main__":
    main()
