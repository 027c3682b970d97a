"""Accuracy metrics, perplexity and per-tensor error statistics shared by the quantization tools.

A *metric* scores model outputs against the float model's outputs (and labels when the
data has them); higher is better, in points. The accuracy gate's *drop* is

    drop = score(reference, reference, labels) - score(artifact, reference, labels)

so ``--max-accuracy-drop 1`` means: at most one point lost.

| metric | score | drop 1 means |
|---|---|---|
| ``top1`` | 100 x top-1 accuracy on the labels (``labels`` key of an ``.npz``); without labels, 100 x top-1 agreement with the float model | one point of accuracy |
| ``cosine`` | 100 x mean cosine similarity to the float model's, of the output where it is lowest (empty outputs scored by their absolute error, `mean_cosine`) | mean cosine >= 0.99 on every output |
| ``mse`` | minus the mean squared error of the first output | MSE <= 1 |
| ``file.py:fn`` | ``fn(outputs, reference_outputs, labels) -> float``, higher is better | your units |

``fn`` receives ``outputs`` and ``reference_outputs`` as ``list[dict[str, np.ndarray]]``
(one dict per sample, keyed by model output name, model convention) and ``labels`` as an
``np.ndarray`` or None. ``auto`` is ``top1`` for classifiers when labels exist or the model is
a classifier, else ``cosine``.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgec.errors import ConfigError
from edgec.runtimes.metrics import cosine_stats, mean_cosine
# Re-exported for the accuracy gate and the quantizer's searches (defined once, in onnx_graph).
from edgec.runtimes.onnx_graph import make_session as ort_session  # noqa: F401
from edgec.runtimes.onnx_graph import run as run_onnx  # noqa: F401


def exact_qdq_session(proto: Any):
    """An onnxruntime session that runs a Q/DQ model as written: QuantizeLinear/DequantizeLinear and float ops,
    no fused int8 kernels.

    A choice measured on it is the same on every CPU. The fused kernels differ by instruction set: on AVX2
    without VNNI their u8 x s8 products sum in saturating int16 pairs (blazeface-back's min/max recipe, worst
    calibration cosine 0.905 as written, mse ranges 0.983 as written and 0.930 fused on an AVX2 EPYC).
    """
    return ort_session(proto, optimize=False)


def run_exact_qdq(proto: Any, samples) -> list[dict[str, np.ndarray]]:
    """`run_onnx` of a Q/DQ model on `exact_qdq_session`: what every internal choice that scores a Q/DQ
    candidate measures (range methods, fallbacks, bias-correction keep checks, the gate's ranking), so that
    a build decides the same on every CPU. The build's reported accuracy still comes from the target's runtime."""
    return run_onnx(proto, samples, session=exact_qdq_session(proto))


BUILTIN_METRICS = ("top1", "cosine", "mse")
METRIC_HELP = ("top1 (accuracy on the .npz 'labels', else agreement with the float model), cosine, mse, "
               "or file.py:fn where fn(outputs: list[dict[str, np.ndarray]], reference_outputs: "
               "list[dict[str, np.ndarray]], labels: np.ndarray | None) -> float, higher is better; "
               "auto: top1 for classifiers, else cosine")


# -- metrics ---------------------------------------------------------------------------
@dataclass
class Metric:
    """A score over a whole evaluation set (higher is better).

    Attributes:
        name: ``top1``, ``cosine``, ``mse`` or the ``file.py:fn`` spec.
        unit: What one point of drop means, for messages.
        fn: ``fn(outputs, reference_outputs, labels) -> float``.
    """

    name: str
    unit: str
    fn: Callable[[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], Any], float]

    def score(self, outputs: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]], labels=None) -> float:
        return float(self.fn(outputs, reference, labels))

    def drop(self, outputs: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]], labels=None) -> float:
        """Score lost by ``outputs`` against the reference's own score."""
        return self.score(reference, reference, labels) - self.score(outputs, reference, labels)


def _first(d: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    name = next(iter(ref))
    return np.asarray(d[name], dtype=np.float64), np.asarray(ref[name], dtype=np.float64)


def _top1(outputs, reference, labels) -> float:
    hits = n = 0
    for i, (o, r) in enumerate(zip(outputs, reference)):
        g, w = _first(o, r)
        gi = g.reshape(-1, g.shape[-1]).argmax(-1)
        if labels is not None:
            hits += int(gi[0] == int(labels[i]))
            n += 1
        else:
            wi = w.reshape(-1, w.shape[-1]).argmax(-1)
            hits += int((gi == wi).sum())
            n += gi.size
    return 100.0 * hits / max(n, 1)


def _cosine(outputs, reference, labels) -> float:
    # The worst output: a detector's small-stride score head can lose what its first output keeps.
    scores = [mean_cosine([cosine_stats(np.asarray(o[k], np.float64), np.asarray(r[k], np.float64))
                           for o, r in zip(outputs, reference)]) or 0.0 for k in (reference[0] if reference else ())]
    return math.nan if any(math.isnan(v) for v in scores) else 100.0 * min(scores, default=0.0)


def _mse(outputs, reference, labels) -> float:
    return -float(np.mean([np.mean((g - w) ** 2) for g, w in (_first(o, r) for o, r in zip(outputs, reference))]))


PERPLEXITY_METRIC = "perplexity"  # the gate metric of generation bundles (edgec.compiler.llm.quantize)


def check_metric_name(spec: str) -> None:
    """`ConfigError` unless ``spec`` is ``auto``, a built-in metric, perplexity or ``file.py:fn``.

    Only the form is checked here; the file is imported when the gate runs.
    """
    if spec in ("auto", *BUILTIN_METRICS, PERPLEXITY_METRIC):
        return
    path, _, fn_name = str(spec).rpartition(":")
    if not path.endswith(".py") or not fn_name:
        raise ConfigError(f"--metric '{spec}': expected auto, {', '.join(BUILTIN_METRICS)}, {PERPLEXITY_METRIC} "
                          "(generation bundles) or file.py:fn")


def load_metric_fn(spec: str) -> Callable:
    """``path/to/file.py:fn`` -> the function."""
    path, _, fn_name = spec.rpartition(":")
    p = Path(path)
    if not path.endswith(".py") or not fn_name:
        raise ConfigError(f"--metric '{spec}': expected top1, cosine, mse, auto or file.py:fn")
    if not p.is_file():
        raise ConfigError(f"--metric '{spec}': {path} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"edgec_metric_{p.stem}", p)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - user code
        raise ConfigError(f"--metric '{spec}': importing {path} failed: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"--metric '{spec}': {path} has no function '{fn_name}'")
    return fn


def resolve_metric(name: str, *, has_labels: bool, classifier: bool) -> Metric:
    """The `Metric` for ``--metric`` (``auto`` picks top1 or cosine)."""
    if name == "auto":
        name = "top1" if (has_labels or classifier) else "cosine"
    if name == "top1":
        unit = "top-1 accuracy points" if has_labels else "top-1 agreement points (no labels)"
        return Metric("top1", unit, _top1)
    if name == "cosine":
        return Metric("cosine", "cosine points (100 x cosine)", _cosine)
    if name == "mse":
        return Metric("mse", "mean squared error", _mse)
    if ":" in name:
        fn = load_metric_fn(name)

        def call(outputs, reference, labels):
            try:
                v = fn(outputs, reference, labels)
            except Exception as exc:  # noqa: BLE001 - user code
                raise ConfigError(f"--metric '{name}' raised {type(exc).__name__}: {exc}") from exc
            try:
                return float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"--metric '{name}' returned {type(v).__name__}, expected a float") from None

        return Metric(name, "metric points", call)
    raise ConfigError(f"unknown --metric '{name}'; expected {METRIC_HELP}")


# -- perplexity -------------------------------------------------------------------------
class Perplexity:
    """Streaming next-token perplexity from ``logits [1, seq, vocab]`` and the sample's ids/mask."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.tokens = 0

    def update(self, logits: np.ndarray, feeds: dict[str, np.ndarray]) -> None:
        ids = feeds.get("input_ids")
        if ids is None or logits.ndim != 3:
            return
        ids = np.asarray(ids).reshape(logits.shape[0], -1)
        mask = np.asarray(feeds.get("attention_mask", np.ones_like(ids))).reshape(ids.shape)
        x = logits[:, :-1].astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
        tgt = ids[:, 1:]
        valid = (mask[:, 1:] > 0) & (mask[:, :-1] > 0)
        picked = np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
        self.nll -= float(picked[valid].sum())
        self.tokens += int(valid.sum())

    @property
    def value(self) -> float | None:
        return math.exp(self.nll / self.tokens) if self.tokens else None


# -- recording runner outputs during verification ----------------------------------------
class _Recording:
    """Duck-typed `Runner` proxy: records outputs of `infer` (what `compare` calls)."""

    def __init__(self, runner, sink: list | None, ppl: Perplexity | None):
        self._runner, self._sink, self._ppl = runner, sink, ppl

    def infer(self, feeds):
        out = self._runner.infer(feeds)
        if self._sink is not None:
            self._sink.append({k: np.asarray(v) for k, v in out.items()})
        if self._ppl is not None:
            first = next(iter(out.values()))
            self._ppl.update(np.asarray(first), feeds)
        return out

    def __getattr__(self, name):
        return getattr(self._runner, name)


class OutputRecorder:
    """Records what the artifact and the reference return while `compare` runs.

    Args:
        store: Keep every output (for metrics over the whole set).
        perplexity: Accumulate next-token perplexity of the first output (causal LMs).
    """

    def __init__(self, *, store: bool = False, perplexity: bool = False):
        self.outputs: dict[str, list[dict[str, np.ndarray]]] = {"artifact": [], "reference": []}
        self.ppl = {"artifact": Perplexity(), "reference": Perplexity()} if perplexity else None
        self.store = store

    def wrap(self, runner, role: str):
        return _Recording(runner, self.outputs[role] if self.store else None,
                          self.ppl[role] if self.ppl is not None else None)

    def summary(self) -> dict[str, Any]:
        """Report entries: ``perplexity {reference, artifact}`` when measured."""
        if self.ppl is None or self.ppl["reference"].value is None:
            return {}
        return {"perplexity": {k: v.value for k, v in self.ppl.items()}}


