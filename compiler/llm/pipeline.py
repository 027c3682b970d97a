"""The build of a generation bundle: causal LM (+ LoRA) -> KV-cache decoder -> int4/int8 -> target.

Taken by `edgec.compiler.pipeline.build` for a ``*ForCausalLM`` HF folder built without
``--input-shape`` (with one, the folder is exported as one stateless graph, as before).
Stages: load (merge the adapter) -> write the decoder ONNX (parity against PyTorch) ->
quantize weights (`Int4Quantizer`: int4 projections, int8 embeddings/LM head; int8 = all
int8) -> accuracy gate on perplexity -> `Target.lower_llm` -> verify (perplexity, greedy
agreement, logit cosine against the float decoder) -> manifest with methods/state/generation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgec import __version__
from edgec.compiler import bundle as bundle_io
from edgec.compiler.llm.graph import build_decoder
from edgec.compiler.llm.source import CausalLM, load_causal_lm
from edgec.compiler.model import ModelHandle, sha256_path
from edgec.errors import ConfigError

PARITY_TOKENS = 48
EVAL_TOKENS = 2048  # held-out tokens for perplexity in the report
AGREE_PROMPTS, AGREE_TOKENS = 4, 32  # greedy agreement in the build report (the benchmark uses 20 x 128)


def build_llm(config, target, precision: str, options: dict[str, Any], tmp: Path, progress) -> tuple[dict, dict]:
    """Write the generation bundle into ``tmp``; returns (manifest, report)."""
    if not hasattr(target, "lower_llm"):
        from edgec.targets.registry import TARGETS

        able = [n for n in TARGETS.names() if hasattr(TARGETS.target_class(n), "lower_llm")]
        raise ConfigError(f"target '{target.name}' does not build generation (KV-cache) bundles; use "
                          f"{' or '.join(able)}, or pass --input-shape to export one stateless graph")
    if config.llm.kv_cache and config.llm.kv_cache not in target.kv_cache_precisions:
        raise ConfigError(f"--kv-cache {config.llm.kv_cache} is not supported by target '{target.name}'")
    if config.keep_float or config.prune or config.int8.smoothquant is not None or config.int8.bias_correction \
            or config.int8.weight_rounding == "gptq":
        raise ConfigError("--keep-float/--prune/--smoothquant/--bias-correction/--weight-rounding gptq do not apply to "
                          "generation bundles")
    progress.message(f"loading {config.model}")
    lm = load_causal_lm(Path(config.model), Path(config.llm.lora) if config.llm.lora else None, progress)
    tok = _tokenizer(lm.folder)
    text = _eval_text(config)
    eval_ids = tok.encode(text).ids[:EVAL_TOKENS] if text else []
    proto = build_decoder(lm.weights, lm.shape, lm.inv_freq, lm.rope_scale)
    handle = ModelHandle.from_onnx(proto, str(config.model), sha256_path(Path(config.model)),
                                   task="text-generation", tokenizer_dir=lm.folder)
    handle.meta["source_kind"] = "hf"
    handle.export_parity_max_abs_err = _parity(lm, handle, eval_ids or list(range(PARITY_TOKENS)))
    if handle.export_parity_max_abs_err > config.parity_tol * 10:
        raise ConfigError(f"the decoder graph differs from PyTorch by {handle.export_parity_max_abs_err:.3g}")
    passes: list[dict[str, Any]] = [{"name": "llm.decoder_graph", "config": {"layers": lm.shape.layers}}]
    if lm.lora:
        passes.insert(0, {"name": "lora.merge", "config": lm.lora})
    from edgec.compiler.llm.quantize import quantize_decoder

    quant, summary, gate = quantize_decoder(config, handle, precision, eval_ids, tok, lm, progress)
    if summary:
        passes.append({"name": "quantize", "config": summary})
    progress.message(f"lowering for {target.name} ({precision}, generation)")
    lowered = target.lower_llm(quant or handle, lm, precision, options, tmp, config.llm.kv_cache)
    passes.extend(lowered.passes)
    for f in lm.files:  # tokenizer, chat template and generation config as the source has them
        shutil.copyfile(f, tmp / f.name)
    (tmp / "reference").mkdir(exist_ok=True)
    (tmp / "reference" / "model.onnx").write_bytes(handle.serialize())
    manifest = _manifest(config, target, precision, options, handle, lm, lowered, passes, tok)
    bundle_io.write_json(tmp / bundle_io.MANIFEST, manifest)
    progress.message("verifying generation against the float decoder")
    from edgec.compiler.llm.accuracy import generation_accuracy

    accuracy = generation_accuracy(tmp, handle, eval_ids, prompts(eval_ids, AGREE_PROMPTS), AGREE_TOKENS)
    report = {"accuracy": accuracy, "export_parity_max_abs_err": handle.export_parity_max_abs_err,
              "size_bytes": {"source": sum(f.stat().st_size for f in Path(config.model).glob("*.safetensors")),
                             "artifact": sum((tmp / a.path).stat().st_size for a in lowered.artifacts
                                             if a.role in ("model", "weights"))},
              "target": lowered.report, "warnings": [] if text else ["no --calib/--eval text: perplexity not measured"]}
    if gate is not None:
        report["accuracy_gate"] = gate
    bundle_io.write_json(tmp / bundle_io.REPORT, report)
    manifest["files"] = bundle_io.file_entries(tmp)
    bundle_io.write_json(tmp / bundle_io.MANIFEST, manifest)
    return bundle_io.canonical(manifest), bundle_io.canonical(report)


def prompts(ids: list[int], count: int, length: int = 16) -> list[list[int]]:
    """``count`` prompts of ``length`` tokens cut evenly from ``ids`` (or counting ids without text)."""
    if len(ids) < length:
        return [[(7 * i + j) % 64 + 1 for j in range(length)] for i in range(count)]
    step = max((len(ids) - length) // count, 1)
    return [ids[i * step:i * step + length] for i in range(count)]


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def _eval_text(config) -> str:
    path = config.eval_data or (config.calib if config.calib and config.calib != "random" else None)
    if path is None:
        return ""
    p = Path(path)
    if not p.is_file() or p.suffix not in (".txt", ".md", ".py", ""):
        raise ConfigError(f"{path}: generation bundles take a text file for --calib/--eval")
    return p.read_text(encoding="utf-8", errors="replace")


def _parity(lm: CausalLM, handle: ModelHandle, ids: list[int]) -> float:
    import torch

    from edgec.compiler.llm.accuracy import FloatDecoder

    ids = list(ids[:PARITY_TOKENS])
    with torch.no_grad():
        ref = lm.torch_model(input_ids=torch.tensor([ids])).logits[0].numpy()
    got = FloatDecoder(handle).prefill(ids)
    return float(np.abs(got - ref).max())


def _generation_section(lm: CausalLM, tok) -> dict[str, Any]:
    gen_path = lm.folder / "generation_config.json"
    gen = json.loads(gen_path.read_text(encoding="utf-8")) if gen_path.is_file() else {}
    tcfg_path = lm.folder / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text(encoding="utf-8")) if tcfg_path.is_file() else {}
    template = tcfg.get("chat_template")
    if template is None and (lm.folder / "chat_template.jinja").is_file():
        template = (lm.folder / "chat_template.jinja").read_text(encoding="utf-8")
    eos = gen.get("eos_token_id", lm.config.get("eos_token_id"))
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    return {"tokenizer": "tokenizer.json", "eos_token_id": eos,
            "bos_token_id": gen.get("bos_token_id", lm.config.get("bos_token_id")),
            "add_bos_token": bool(tcfg.get("add_bos_token", False)), "chat_template": template,
            "context_length": lm.shape.max_positions, "vocab_size": lm.shape.vocab}


def _manifest(config, target, precision, options, handle, lm, lowered, passes, tok) -> dict[str, Any]:
    from edgec.compiler.packaging import dependencies as _dependencies, jsonable_options as _jsonable
    from edgec.runtimes.registry import REFERENCE_RUNNER

    art = lowered.model_artifact
    io = {"inputs": [s.to_json() for s in lowered.inputs], "outputs": [s.to_json() for s in lowered.outputs]}
    methods = {name: {"artifact": art.path, "sequence_length": seq, **io}
               for name, seq in (("prefill", "prompt"), ("decode", 1))}
    return {
        "schema_version": bundle_io.SCHEMA_VERSION, "edgec_version": __version__, "target": target.name,
        "precision": precision, "runner": target.runner, "artifact": {"path": art.path, "kind": art.kind},
        "artifacts": [{"path": a.path, "kind": a.kind, "role": a.role} for a in lowered.artifacts],
        "source": {"path": config.model, "sha256": handle.source_sha256, "kind": "hf-causal-lm"},
        "task": "text-generation", "model_inputs": io["inputs"], "model_outputs": io["outputs"], **io,
        "methods": methods, "state": lowered.state, "generation": _generation_section(lm, tok),
        "architecture": {"model_type": lm.config.get("model_type"), **lm.shape.__dict__},
        "lora": lm.lora, "reference": {"runner": REFERENCE_RUNNER, "path": "reference/model.onnx"},
        "tokenizer": ".", "passes": passes, "calibration": None,
        "config": config.manifest_view() | {"precision": precision, "target_options": _jsonable(options),
                                            "kv_cache": config.llm.kv_cache, "lora": config.llm.lora},
        "target_info": lowered.manifest, "dependencies": _dependencies(handle, target),
    }
