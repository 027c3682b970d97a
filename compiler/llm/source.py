"""Hugging Face causal-LM folders (and PEFT LoRA adapters) as generation sources.

`load_causal_lm` reads a local folder with safetensors weights (never pickle), merges a LoRA
adapter when given (checking the merged model's logits against PEFT's unmerged one), and
returns what the graph writer needs: fp32 weights by HF name, the architecture, the rotary
frequencies, the tokenizer and generation files, and the torch model as the float reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.compiler.llm.graph import DecoderShape
from edgec.errors import ConfigError

# model_type -> whether q/k get their own RMSNorm (Qwen3). All are Llama-shaped decoders.
FAMILIES = {"llama": False, "mistral": False, "qwen2": False, "qwen3": True, "phi3": False}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "config.json")
LORA_TOLERANCE = 1e-3  # max |merged - unmerged| logits, relative to the logits' max magnitude


@dataclass
class CausalLM:
    """A loaded decoder.

    Attributes:
        folder: The HF folder.
        weights: fp32 arrays by HF parameter name (LoRA merged, Phi-3 fused projections split).
        shape: Architecture facts.
        inv_freq: Rotary inverse frequencies ``[head_dim / 2]``; ``rope_scale`` multiplies cos/sin.
        config: ``config.json`` as a dict.
        torch_model: The float (merged) model, the reference for parity and accuracy.
        lora: What was merged (manifest record), or None.
    """

    folder: Path
    weights: dict[str, np.ndarray]
    shape: DecoderShape
    inv_freq: np.ndarray
    rope_scale: float
    config: dict[str, Any]
    torch_model: Any
    lora: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)


def is_causal_lm_folder(path: Path) -> bool:
    """Whether ``path`` is an HF folder whose architecture is ``*ForCausalLM``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForCausalLM") for a in archs)


def load_causal_lm(folder: Path, lora: Path | None = None, progress=None) -> CausalLM:
    """Load ``folder`` (and merge ``lora``) in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    mtype = config.get("model_type")
    if mtype not in FAMILIES:
        raise ConfigError(f"{folder}: model_type '{mtype}' is not a supported decoder family "
                          f"(supported: {', '.join(sorted(FAMILIES))})")
    if not any(folder.glob("*.safetensors")):
        raise ConfigError(f"{folder}: no *.safetensors weights (pickled .bin checkpoints are not loaded)")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True,
                                                 local_files_only=True).eval()
    record = None
    if lora is not None:
        model, record = merge_lora(model, Path(lora), progress)
    weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    if mtype == "phi3":
        _split_phi3(weights, cfg, head_dim)
        if getattr(cfg, "partial_rotary_factor", 1.0) != 1.0:
            raise ConfigError(f"{folder}: partial rotary embeddings are not supported")
    shape = DecoderShape(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, heads=heads,
                         kv_heads=getattr(cfg, "num_key_value_heads", None) or heads, head_dim=head_dim,
                         vocab=cfg.vocab_size, max_positions=cfg.max_position_embeddings,
                         eps=float(cfg.rms_norm_eps), qk_norm=FAMILIES[mtype])
    rotary = model.model.rotary_emb
    inv_freq = rotary.inv_freq.detach().double().numpy()
    scale = float(getattr(rotary, "attention_scaling", 1.0))
    files = [folder / n for n in TOKENIZER_FILES if (folder / n).is_file()]
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"{folder}: no tokenizer.json (a fast tokenizer is needed to generate)")
    return CausalLM(folder, weights, shape, inv_freq, scale, config, model, record, files)


def _split_phi3(weights: dict[str, np.ndarray], cfg, head_dim: int) -> None:
    """Phi-3's fused ``qkv_proj``/``gate_up_proj`` -> the Llama names."""
    q = cfg.num_attention_heads * head_dim
    kv = cfg.num_key_value_heads * head_dim
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        qkv = weights.pop(f"{p}.self_attn.qkv_proj.weight")
        weights[f"{p}.self_attn.q_proj.weight"] = qkv[:q]
        weights[f"{p}.self_attn.k_proj.weight"] = qkv[q:q + kv]
        weights[f"{p}.self_attn.v_proj.weight"] = qkv[q + kv:]
        gu = weights.pop(f"{p}.mlp.gate_up_proj.weight")
        weights[f"{p}.mlp.gate_proj.weight"], weights[f"{p}.mlp.up_proj.weight"] = np.split(gu, 2)


def merge_lora(model, adapter: Path, progress=None):
    """Merge a PEFT LoRA adapter into ``model``; check merged logits equal the unmerged model's."""
    import torch

    from edgec._deps import require

    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"--lora {adapter}: not a PEFT adapter folder (no adapter_config.json)")
    if not (adapter / "adapter_model.safetensors").is_file():
        raise ConfigError(f"--lora {adapter}: no adapter_model.safetensors (pickled adapters are not loaded)")
    acfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if acfg.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"--lora {adapter}: peft_type {acfg.get('peft_type')} is not LoRA")
    peft = require("peft", "llm")
    if progress is not None:
        progress.message(f"merging LoRA adapter {adapter}")
    try:
        wrapped = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=False).eval()
    except Exception as exc:  # noqa: BLE001 - peft raises ValueError/KeyError/RuntimeError for mismatches
        raise ConfigError(f"--lora {adapter}: does not fit the model: {str(exc).splitlines()[0]}") from exc
    ids = torch.arange(min(32, model.config.vocab_size), dtype=torch.long)[None] % model.config.vocab_size
    with torch.no_grad():
        unmerged = wrapped(input_ids=ids).logits
        merged_model = wrapped.merge_and_unload().eval()
        merged = merged_model(input_ids=ids).logits
    err = float((merged - unmerged).abs().max())
    rel = err / max(float(unmerged.abs().max()), 1e-6)
    if rel > LORA_TOLERANCE:
        raise ConfigError(f"--lora {adapter}: merged logits differ from the unmerged model by {err:.3g}")
    from edgec.compiler.model import sha256_path

    record = {"path": str(adapter), "sha256": sha256_path(adapter), "r": acfg.get("r"),
              "lora_alpha": acfg.get("lora_alpha"), "target_modules": sorted(acfg.get("target_modules") or []),
              "merge_max_abs_err": err, "merge_tolerance_rel": LORA_TOLERANCE}
    return merged_model, record
