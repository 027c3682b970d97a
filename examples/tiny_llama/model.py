"""A tiny random-weight Llama with a character tokenizer, saved like a hub checkpoint.

Nothing can be downloaded here, so INT4 examples, tests and benchmarks build this model
from a config: `write_tiny_llama(folder)` writes config.json + safetensors + tokenizer, a
folder `edgec build` reads like any transformers checkpoint:

    python examples/tiny_llama/model.py out/tiny_llama
    edgec build out/tiny_llama --target onnxruntime --precision int4 --calib examples/minilm/sentences.txt \\
        --input-shape input_ids=1x32 -o out/llama-int4
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_tiny_llama(folder: Path, *, vocab_size: int = 256, max_positions: int = 128, seed: int = 0) -> Path:
    """Write a 2-layer Llama (hidden 64, GQA 4/2 heads) and a printable-ASCII tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=max_positions,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).eval().save_pretrained(str(folder), safe_serialization=True)
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for c in (chr(i) for i in range(32, 127)):
        vocab[c] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(folder))
    return folder


if __name__ == "__main__":
    print(write_tiny_llama(Path(sys.argv[1] if len(sys.argv) > 1 else "out/tiny_llama")))
