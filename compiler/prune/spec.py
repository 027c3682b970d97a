"""``--prune`` specs: parsing, validation and the request the loader and pipeline act on.

Grammar (one spec; options after commas)::

    magnitude:0.5[,scope=global|layer]        unstructured, smallest |w| of Conv/Linear weights
    2:4   (any N:M with N < M)                N:M sparsity along each weight's input-channel axis
    channels:0.3[,importance=magnitude|activation][,round=8][,ratios=sensitivity|uniform]
                                              remove conv output channels / linear neurons
    heads:0.25[,importance=magnitude|activation]
                                              remove attention heads (BERT-like transformers)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgec.errors import ConfigError

METHODS = ("magnitude", "nm", "channels", "heads")
STRUCTURED = ("channels", "heads")
IMPORTANCES = ("magnitude", "activation")
SCOPES = ("global", "layer")
ALLOCATIONS = ("sensitivity", "uniform")
_NM = re.compile(r"^(\d+):(\d+)$")
_EXAMPLES = "magnitude:0.5, magnitude:0.5,scope=layer, 2:4, channels:0.3, heads:0.25,importance=activation"


@dataclass(frozen=True)
class PruneSpec:
    """One parsed ``--prune`` value.

    Attributes:
        method: ``magnitude`` (unstructured), ``nm`` (N:M semi-structured), ``channels`` or
            ``heads`` (structured: the model gets smaller).
        ratio: Fraction of weights (magnitude), channels or heads removed; for ``nm`` it is
            ``1 - n/m``.
        n: Non-zeros kept per group (``nm``).
        m: Group size (``nm``).
        scope: ``global`` ranks all weights together, ``layer`` prunes each layer to the ratio
            (magnitude only; channels rank per layer).
        importance: How channels/heads are ranked: ``magnitude`` (weight norms) or
            ``activation`` (mean |activation| on the calibration data).
        round_to: Keep channel counts a multiple of this (channels only; None = exact ratio).
        allocation: ``sensitivity`` (ONNX sources with calibration data: per-group ratios
            chosen by measured output error, as many weights removed as the uniform ratio
            removes) or ``uniform`` (every group cut by ``ratio``).
        text: The spec as the user wrote it (normalized).
    """

    method: str
    ratio: float
    n: int = 0
    m: int = 0
    scope: str = "global"
    importance: str = "magnitude"
    round_to: int | None = None
    allocation: str = "sensitivity"
    text: str = ""

    @property
    def structured(self) -> bool:
        """Whether the pruned model is smaller (channels, heads) rather than sparse."""
        return self.method in STRUCTURED

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the manifest's ``passes`` entry."""
        d: dict[str, Any] = {"spec": self.text, "method": self.method, "ratio": round(self.ratio, 6)}
        if self.method == "nm":
            d.update(n=self.n, m=self.m)
        if self.method == "magnitude":
            d["scope"] = self.scope
        if self.structured:
            d["importance"] = self.importance
        if self.method == "channels":
            d["round_to"] = self.round_to
            d["ratios"] = self.allocation
        return d


def _ratio(text: str, head: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise ConfigError(f"--prune {head}:{text}: the ratio must be a number in (0, 1), e.g. {head}:0.3") from None
    if not 0.0 < r < 1.0:
        raise ConfigError(f"--prune {head}:{text}: the ratio must be in (0, 1) (the fraction removed)")
    return r


def parse_prune_spec(text: str) -> PruneSpec:
    """Parse a ``--prune`` value (see the module docstring); `ConfigError` names the problem."""
    if not text or not text.strip():
        raise ConfigError(f"--prune needs a spec ({_EXAMPLES})")
    parts = [p.strip() for p in text.strip().split(",")]
    head, opts = parts[0], parts[1:]
    kv: dict[str, str] = {}
    for o in opts:
        k, eq, v = o.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise ConfigError(f"--prune '{text}': option '{o}' must look like key=value")
        kv[k.strip().lower()] = v.strip().lower()
    nm = _NM.match(head)
    if nm:
        n, m = int(nm.group(1)), int(nm.group(2))
        if not (0 < n < m) or m > 64:
            raise ConfigError(f"--prune {head}: N:M needs 0 < N < M <= 64 (TensorRT's sparse kernels take 2:4)")
        spec = PruneSpec("nm", 1.0 - n / m, n=n, m=m)
        allowed: tuple[str, ...] = ()
    else:
        method, colon, value = head.partition(":")
        method = method.strip().lower()
        if method not in ("magnitude", "channels", "heads") or not colon:
            raise ConfigError(f"--prune '{text}' is not a pruning spec; use one of: {_EXAMPLES}")
        spec = PruneSpec(method, _ratio(value.strip(), method))
        allowed = {"magnitude": ("scope",), "channels": ("importance", "round", "ratios"), "heads": ("importance",)}[method]
    unknown = sorted(set(kv) - set(allowed))
    if unknown:
        ok = ", ".join(allowed) or "none"
        raise ConfigError(f"--prune '{text}': unknown option(s) {', '.join(unknown)} for {spec.method} (allowed: {ok})")
    if "scope" in kv:
        if kv["scope"] not in SCOPES:
            raise ConfigError(f"--prune '{text}': scope must be global or layer")
        spec = replace(spec, scope=kv["scope"])
    if "importance" in kv:
        if kv["importance"] not in IMPORTANCES:
            raise ConfigError(f"--prune '{text}': importance must be magnitude or activation")
        spec = replace(spec, importance=kv["importance"])
    if "ratios" in kv:
        if kv["ratios"] not in ALLOCATIONS:
            raise ConfigError(f"--prune '{text}': ratios must be sensitivity or uniform")
        spec = replace(spec, allocation=kv["ratios"])
    if "round" in kv:
        if not kv["round"].isdigit() or int(kv["round"]) < 1:
            raise ConfigError(f"--prune '{text}': round must be a positive integer (e.g. round=8)")
        spec = replace(spec, round_to=int(kv["round"]) if int(kv["round"]) > 1 else None)
    return replace(spec, text=",".join([head.lower()] + [f"{k}={v}" for k, v in sorted(kv.items())]))


@dataclass(frozen=True)
class PruneRequest:
    """What the loader needs to prune (and fine-tune) a PyTorch model before export.

    Attributes:
        spec: The parsed ``--prune`` spec (None: fine-tune only is rejected earlier).
        finetune: ``file.py:train_fn`` called on the pruned module, or None.
        calib: Calibration data path for activation importance and the fine-tune context.
        calib_samples: Maximum calibration samples to load.
        preprocess: Image preprocessing for image-folder data.
        seed: Seed for ``--calib random``.
        tokenizer_dir: Tokenizer folder (HF models) for text calibration data.
    """

    spec: PruneSpec
    finetune: str | None = None
    calib: str | None = None
    calib_samples: int = 128
    preprocess: Any = None
    seed: int = 0
    tokenizer_dir: Path | None = None


def request_from_config(config: Any) -> PruneRequest | None:
    """The `PruneRequest` for a `BuildConfig` (None without ``--prune``); checks the source kind.

    Raises:
        ConfigError: ``--finetune`` without ``--prune``, or a spec the model source cannot take
            (structured pruning and fine-tuning need a PyTorch or Hugging Face model).
    """
    prune, finetune = config.prune.spec, config.prune.finetune
    if not prune:
        if finetune:
            raise ConfigError("--finetune needs --prune: it recovers accuracy after pruning")
        return None
    spec = prune if isinstance(prune, PruneSpec) else parse_prune_spec(str(prune))
    check_source(spec, finetune, config.model)
    if finetune:
        check_finetune_ref(finetune)
    return PruneRequest(spec=spec, finetune=finetune, calib=config.calib, calib_samples=config.calib_samples,
                        preprocess=config.preprocess, seed=config.seed)


def check_source(spec: PruneSpec, finetune: str | None, model: str) -> str:
    """The model's source kind, after checking it can take ``spec`` (and ``--finetune``)."""
    from edgec.compiler.loaders import source_kind

    kind = source_kind(model)
    if kind == "tflite":
        raise ConfigError("--prune needs a float model (ONNX, PyTorch or Hugging Face); a .tflite is already "
                          "quantized")
    if kind in ("onnx", "keras", "savedmodel") and spec.method == "heads":
        raise ConfigError(f"--prune heads needs a PyTorch (file.py:factory) or Hugging Face model: it rewrites the "
                          "attention modules before export; ONNX sources take channels:R, magnitude:R or 2:4")
    if kind == "pt2" and spec.structured:
        raise ConfigError(f"--prune {spec.method} needs the PyTorch module with its Conv/Linear layers "
                          "(file.py:factory) or a Hugging Face folder; a .pt2 ExportedProgram is a flat graph")
    if kind in ("onnx", "pt2", "keras", "savedmodel") and finetune:
        raise ConfigError(f"--finetune needs a PyTorch module (file.py:factory) or a Hugging Face model, not {kind}")
    return kind


def check_finetune_ref(ref: str) -> None:
    """``file.py:fn`` with an existing file, or `ConfigError`."""
    file, colon, fn = ref.rpartition(":")
    if not colon or not file.endswith(".py") or not fn.isidentifier():
        raise ConfigError(f"--finetune '{ref}' must look like file.py:train_fn")
    if not Path(file).is_file():
        raise ConfigError(f"--finetune: file '{file}' does not exist")
