"""What a build writes besides the artifact: the float reference, the tokenizer, and the facts for the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgec._deps import CORE_DISTS, version_of
from edgec.compiler.model import ModelHandle
from edgec.runtimes.registry import REFERENCE_RUNNER

SOURCE_DISTS = {"torch": ("torch",), "pt2": ("torch",), "hf": ("torch", "transformers", "tokenizers")}


def write_reference(handle: ModelHandle, tmp: Path, quant: ModelHandle | None = None) -> dict[str, str]:
    (tmp / "reference").mkdir(exist_ok=True)
    if handle.format == "tflite":
        (tmp / "reference" / "model.tflite").write_bytes(handle.serialize())
        return {"runner": "litert", "path": "reference/model.tflite"}
    (tmp / "reference" / "model.onnx").write_bytes(handle.serialize())
    ref = {"runner": REFERENCE_RUNNER, "path": "reference/model.onnx"}
    if quant is not None:  # what the target lowered, for `edgec debug layers`
        (tmp / "reference" / "quantized.onnx").write_bytes(quant.serialize())
        ref["quantized"] = "reference/quantized.onnx"
    return ref


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                    "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "added_tokens.json")


def copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def source_size(model: str, handle: ModelHandle) -> int:
    p = Path(model.rsplit(":", 1)[0] if handle.meta.get("source_kind") == "torch" else model)
    if handle.meta.get("source_kind") in ("torch", "pt2", "hf"):
        return len(handle.serialize())
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else len(handle.serialize())


def dependencies(handle: ModelHandle, target) -> dict[str, str]:
    dists = [*CORE_DISTS, *SOURCE_DISTS.get(handle.meta.get("source_kind", ""), ()), *target.dependencies]
    return {d: v for d in dists if (v := version_of(d)) is not None}


def jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())}
