"""Hugging Face transformers folders (config.json + safetensors, offline) -> `ModelHandle`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgec._deps import require
from edgec.compiler.config import InputShape
from edgec.compiler.loaders import DEFAULT_SEQ_LEN, finish_torch
from edgec.compiler.model import ModelHandle, sha256_path
from edgec.compiler.progress import Progress
from edgec.errors import ConfigError, ModelLoadError


_TASK_BY_SUFFIX = [
    ("ForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
    ("ForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
    ("ForCausalLM", "text-generation", "AutoModelForCausalLM"),
    ("ForImageClassification", "image-classification", "AutoModelForImageClassification"),
    ("Model", "feature-extraction", "AutoModel"),
]
_AUTO_BY_TASK = {t: a for _, t, a in _TASK_BY_SUFFIX} | {"sentence-embedding": "AutoModel"}


def hf_task(folder: Path, config: dict[str, Any], task: str | None) -> str:
    """The task from ``--task`` or the config's architecture (sentence-transformers: embeddings)."""
    if task:
        if task not in _AUTO_BY_TASK:
            raise ConfigError(f"unknown --task '{task}' (known: {', '.join(sorted(_AUTO_BY_TASK))})")
        return task
    if (folder / "modules.json").is_file() and (folder / "1_Pooling" / "config.json").is_file():
        return "sentence-embedding"
    for arch in config.get("architectures") or []:
        for suffix, t, _ in _TASK_BY_SUFFIX:
            if arch.endswith(suffix):
                return t
    return "feature-extraction"


def load_hf_folder(folder: Path, *, task: str | None, input_shapes: dict[str, InputShape], parity_tol: float,
                   progress: Progress, prune: Any = None) -> ModelHandle:
    """A transformers checkpoint folder (config.json + safetensors), loaded offline."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"'{folder}' is a folder without config.json: not a Hugging Face model folder")
    if not list(folder.glob("*.safetensors")):
        raise ModelLoadError(
            f"'{folder}' has no .safetensors weights (edgec does not unpickle .bin checkpoints; "
            "convert with save_pretrained(safe_serialization=True))")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"'{cfg_path}' is not valid JSON: {exc}") from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = require("transformers", "export")
    torch = require("torch", "export")
    the_task = hf_task(folder, config, task)
    auto = getattr(transformers, _AUTO_BY_TASK[the_task])
    progress.message(f"loading {folder.name} ({the_task})")
    try:
        net = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"transformers cannot load '{folder}' for task {the_task}: {str(exc).splitlines()[0]}") from exc
    net.eval()
    has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))
    if the_task == "image-classification":
        size = config.get("image_size", 224)
        channels = config.get("num_channels", 3)
        shape = input_shapes.get("pixel_values", InputShape((1, channels, size, size))).opt
        example = {"pixel_values": torch.zeros(shape, dtype=torch.float32)}
        wrapper, out_names = _LogitsOnly(net), ["logits"]
    else:
        seq = input_shapes.get("input_ids", InputShape((1, DEFAULT_SEQ_LEN))).opt
        example = _text_example(folder if has_tokenizer else None, net, seq)
        if the_task == "sentence-embedding":
            wrapper, out_names = _SentenceEmbedding(net, folder), ["sentence_embedding"]
        elif the_task == "feature-extraction":
            wrapper, out_names = _FirstOutput(net, "last_hidden_state"), ["last_hidden_state"]
        else:
            wrapper, out_names = _FirstOutput(net, "logits"), ["logits"]
    digest = sha256_path(folder)
    if prune is not None and has_tokenizer:  # text calibration data for activation importance
        import dataclasses

        prune = dataclasses.replace(prune, tokenizer_dir=folder)
    handle = finish_torch(wrapper, example, str(folder), digest, parity_tol=parity_tol, progress=progress,
                           input_shapes=input_shapes, output_names=out_names, task=the_task, prune=prune)
    handle.tokenizer_dir = folder if has_tokenizer else None
    return handle


def _text_example(tokenizer_dir: Path | None, net: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    import inspect

    torch = require("torch", "export")
    batch, seq = shape
    accepted = set(inspect.signature(net.forward).parameters)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        enc = tok(["edgec puts trained models on edge devices."] * batch, padding="max_length", truncation=True,
                  max_length=seq, return_tensors="pt")
        ex = {k: v.to(torch.int64) for k, v in enc.items() if k in accepted}
    else:
        ids = torch.arange(seq, dtype=torch.int64).remainder(100).add(1).repeat(batch, 1)
        ex = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "token_type_ids" in accepted and getattr(net.config, "type_vocab_size", 0):
            ex["token_type_ids"] = torch.zeros_like(ids)
    order = ["input_ids", "attention_mask", "token_type_ids"]
    return {k: ex[k] for k in order if k in ex}


def _torch_module_base():
    return require("torch", "export").nn.Module



def _FirstOutput(net: Any, key: str):
    class FirstOutput(_torch_module_base()):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            kw = {"attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            out = self.net(input_ids, **kw)
            return out[key] if key in out else out[0]

    return FirstOutput().eval()


def _LogitsOnly(net: Any):
    class LogitsOnly(_torch_module_base()):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            return self.net(pixel_values=pixel_values).logits

    return LogitsOnly().eval()


def _SentenceEmbedding(net: Any, folder: Path):
    """Mean pooling (+ L2 normalize when the sentence-transformers pipeline has it)."""
    torch = require("torch", "export")
    modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens", True):
        raise ModelLoadError(f"'{folder}': only mean pooling is supported for sentence-transformers models")

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            hidden = self.net(input_ids, **kw)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2.0, dim=1)
            return emb

    return SentenceEmbedding().eval()
