"""Corpus models built in code, exported to ONNX once into the cache.

``arch:NAME``: a published CNN (`architectures`); ``hf:NAME``: a transformers
architecture from its published configuration with seeded weights; ``example:NAME``: an
example of this repository. The cached file is keyed by the hash of the code that made
it, so editing a builder re-exports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from . import cache_dir, data

HERE = Path(__file__).resolve().parent


def _hf_module(name: str):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if name == "deit_tiny":
        cfg = tf.ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                           image_size=224, patch_size=16, num_labels=1000)
        net, key = tf.ViTForImageClassification(cfg), "logits"
        example = {"pixel_values": torch.from_numpy(data.imagenet_batch(1))}
    elif name == "distilbert":
        net, key = tf.DistilBertModel(tf.DistilBertConfig()), "last_hidden_state"
        example = _text_example(["input_ids", "attention_mask"])
    elif name == "mobilebert":
        net, key = tf.MobileBertModel(tf.MobileBertConfig(), add_pooling_layer=False), "last_hidden_state"
        example = _text_example(["input_ids", "attention_mask", "token_type_ids"])
    elif name == "whisper_tiny_encoder":
        cfg = tf.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                               num_mel_bins=80, max_source_positions=1500)
        net, key = tf.models.whisper.modeling_whisper.WhisperEncoder(cfg), "last_hidden_state"
        example = {"input_features": torch.zeros(1, 80, 3000)}
    else:
        raise KeyError(name)

    class Output(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net.eval()

        def forward(self, *args):
            return getattr(self.net(*args, return_dict=True), key)

    return Output(), example, [key]


def _text_example(names: list[str]) -> dict[str, Any]:
    import torch

    from . import samples

    feed = samples("minilm", 1)[0]
    return {n: torch.from_numpy(feed[n]) for n in names}


def _example_module(name: str):
    path = HERE.parents[1] / "examples" / name / "model.py"
    spec = importlib.util.spec_from_file_location(f"edgec_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module, example = mod.build()
    return module, {"image": example[0]}, ["logits"]


def _module(builder: str):
    kind, name = builder.split(":", 1)
    if kind == "arch":
        import torch

        from .architectures import IMAGE, make

        return make(name), {"image": torch.zeros(1, 3, IMAGE, IMAGE)}, ["logits"]
    if kind == "hf":
        return _hf_module(name)
    if kind == "example":
        return _example_module(name)
    raise KeyError(builder)


def _code_key(builder: str) -> str:
    h = hashlib.sha256(builder.encode())
    # An architecture's weights also depend on the photos it is fine-tuned and calibrated on.
    for f in ("builders.py", *(("architectures.py", "data.py") if builder.startswith("arch:") else ())):
        h.update((HERE / f).read_bytes())
    return h.hexdigest()[:16]


def built_onnx(m: dict[str, Any]) -> Path:
    """``CACHE/built/NAME-KEY.onnx`` for a code-built model, exported with edgec's exporter if missing."""
    out = cache_dir() / "built" / f"{m['name']}-{_code_key(m['builder'])}.onnx"
    if out.is_file():
        return out
    from edgec.compiler.export import export_module

    module, example, out_names = _module(m["builder"])
    proto, _ = export_module(module, example, output_names=out_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(out)
    return out
