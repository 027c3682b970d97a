"""Accuracy of a generation bundle against the float decoder: perplexity, greedy agreement, logit cosine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgec.runtimes.decoder_onnxruntime import OrtDecoderSession
from edgec.runtimes.generation import DecoderSession, generate, open_session, perplexity
from edgec.runtimes.metrics import cosine

PPL_WINDOW = 128


class FloatDecoder(OrtDecoderSession):
    """An in-memory decoder ONNX (the float reference, or a quantized candidate) on onnxruntime."""

    def __init__(self, handle, threads: int | None = None):
        self._bytes = handle.serialize()
        state = [{"name": s.name, "output": s.name.replace("past_key_values", "present"), "shape": list(s.shape),
                  "dtype": s.dtype} for s in handle.inputs if s.name.startswith("past_key_values")]
        super().__init__(Path("."), {"state": state}, threads)

    def _model_source(self) -> bytes:
        return self._bytes


def greedy_agreement(a: list[int], b: list[int]) -> float:
    """Fraction of tokens generated identically before the first difference."""
    n = min(len(a), len(b))
    same = next((i for i in range(n) if a[i] != b[i]), n)
    return same / max(len(a), len(b), 1)


def logit_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over positions of the cosine between two logit rows (last axis)."""
    rows = zip(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
    return float(np.mean([cosine(x, y) for x, y in rows]))


def compare_sessions(got: DecoderSession, want: DecoderSession, eval_ids: list[int], prompts: list[list[int]],
                     new_tokens: int) -> dict[str, Any]:
    """Perplexity of both, greedy agreement over ``prompts``, logit cosine on the first window."""
    out: dict[str, Any] = {"prompts": len(prompts), "new_tokens": new_tokens}
    if len(eval_ids) > 1:
        out["perplexity"] = perplexity(got, eval_ids, PPL_WINDOW)
        out["reference_perplexity"] = perplexity(want, eval_ids, PPL_WINDOW)
        window = eval_ids[:PPL_WINDOW]
        got.reset(), want.reset()
        out["logit_cosine"] = logit_cosine(got.prefill(window), want.prefill(window))
    agree, exact = [], 0
    for p in prompts:
        a = generate(got, p, new_tokens).tokens
        b = generate(want, p, new_tokens).tokens
        agree.append(greedy_agreement(a, b))
        exact += a == b
    out["greedy_agreement"] = float(np.mean(agree)) if agree else None
    out["greedy_identical"] = exact
    return out


def generation_accuracy(bundle: Path, reference, eval_ids: list[int], prompts: list[list[int]],
                        new_tokens: int) -> dict[str, Any]:
    """`compare_sessions` of the bundle's own runner against the float decoder ``reference`` (a handle)."""
    got = open_session(bundle)
    out = compare_sessions(got, FloatDecoder(reference), eval_ids, prompts, new_tokens)
    out["runner"] = got.manifest["runner"]
    out["reference"] = "float decoder (onnxruntime)"
    return out


def verify_text(bundle: Path, manifest: dict[str, Any], text_path: str, threads: int | None = None,
                report: dict[str, Any] | None = None, min_cosine: float | None = None,
                max_drop_percent: float | None = None, prompts: int = 4, new_tokens: int = 32) -> dict[str, Any]:
    """`edgec verify` of a generation bundle: its runner against ``reference/model.onnx`` on a text file.

    Passes when the logit cosine is at least ``min_cosine`` (default: the build's minus 0.02) and
    the perplexity rises at most ``max_drop_percent`` percent (default: the build's rise plus 1).
    """
    import onnx

    from edgec.compiler.model import ModelHandle
    from edgec.compiler.llm.pipeline import prompts as cut_prompts
    from edgec.errors import ConfigError
    from edgec.runtimes.generation import BundleTokenizer

    p = Path(text_path)
    if not p.is_file():
        raise ConfigError(f"{text_path}: generation bundles are verified on a text file")
    ids = BundleTokenizer(bundle, manifest).encode(p.read_text(encoding="utf-8", errors="replace"), chat=False)
    ref = ModelHandle.from_onnx(onnx.load(str(bundle / manifest["reference"]["path"])), "", "")
    got = open_session(bundle, threads)
    out = compare_sessions(got, FloatDecoder(ref, threads), ids[:4096], cut_prompts(ids, prompts), new_tokens)
    built = (report or {}).get("accuracy", {})
    if min_cosine is None and built.get("logit_cosine") is not None:
        min_cosine = built["logit_cosine"] - 0.02
    if max_drop_percent is None and built.get("perplexity") is not None:
        max_drop_percent = _rise(built) + 1.0
    failures = []
    if min_cosine is not None and out.get("logit_cosine") is not None and out["logit_cosine"] < min_cosine:
        failures.append(f"logit cosine {out['logit_cosine']:.4f} < {min_cosine:.4f}")
    if max_drop_percent is not None and out.get("perplexity") is not None and _rise(out) > max_drop_percent:
        failures.append(f"perplexity rises {_rise(out):.2f} % > {max_drop_percent:.2f} %")
    out.update(bounds={"min_cosine": min_cosine, "max_perplexity_rise_percent": max_drop_percent},
               failures=failures, passed=not failures)
    return out | {"bundle": str(bundle), "target": manifest["target"], "precision": manifest["precision"],
                  "runner": manifest["runner"], "reference": "float decoder (onnxruntime)"}


def _rise(acc: dict[str, Any]) -> float:
    """Perplexity rise of the bundle over the float decoder, in percent."""
    return (acc["perplexity"] - acc["reference_perplexity"]) / acc["reference_perplexity"] * 100.0
