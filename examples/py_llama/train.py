"""Train the small Llama shipped in this folder on Python standard-library source.

The weights (``model.safetensors``), config and byte-level BPE tokenizer next to this file
were written by this script; tests and benchmarks use them as a real (trained) language
model whose perplexity means something, without training again:

    python examples/py_llama/train.py examples/py_llama   # ~3 min on one core

The corpus is the top-level ``*.py`` modules of the running Python's standard library,
sorted by name; every 10th file is held out (``heldout.txt`` keeps 24 KB of them for
perplexity, ``calib.txt`` 40 lines of training text for calibration).
"""

from __future__ import annotations

import json
import math
import sys
import sysconfig
import time
from pathlib import Path

VOCAB = 512
SEQ = 128
CONFIG = {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 4, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": 512,
          "tie_word_embeddings": False, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}


def corpus() -> tuple[list[str], list[str]]:
    """(train, held-out) file texts from the standard library."""
    files = sorted(p for p in Path(sysconfig.get_paths()["stdlib"]).glob("*.py") if p.stat().st_size < 120_000)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    return [t for i, t in enumerate(texts) if i % 10], [t for i, t in enumerate(texts) if i % 10 == 0]


def train_tokenizer(texts: list[str], folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.save_pretrained(str(folder))
    return fast


def main(folder: Path, steps: int = 700, batch: int = 16) -> None:
    import numpy as np
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    train, held = corpus()
    tok = train_tokenizer(train, folder)
    eos = tok.eos_token_id
    ids = np.concatenate([np.array(tok(t)["input_ids"] + [eos], np.int64) for t in train])
    held_text = "\n".join(held)[:24_000]
    (folder / "heldout.txt").write_text(held_text, encoding="utf-8")
    lines = [ln for ln in "\n".join(train).splitlines() if len(ln.strip()) > 40][::97][:40]
    (folder / "calib.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    held_ids = torch.tensor(tok(held_text)["input_ids"], dtype=torch.long)
    print(f"train tokens {len(ids)}, held-out tokens {len(held_ids)}", flush=True)

    cfg = LlamaConfig(**CONFIG, bos_token_id=eos, eos_token_id=eos)
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    t0 = time.time()
    for step in range(steps):
        lr = 3e-3 * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(ids) - SEQ - 1, batch)
        x = torch.from_numpy(np.stack([ids[s:s + SEQ] for s in starts]))
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    with torch.no_grad():
        n = (len(held_ids) - 1) // SEQ * SEQ
        chunks = held_ids[:n + 1]
        nll = [model(input_ids=chunks[i:i + SEQ][None], labels=chunks[i:i + SEQ][None]).loss.item()
               for i in range(0, n - SEQ, SEQ)]
    ppl = math.exp(sum(nll) / len(nll))
    print(f"held-out perplexity {ppl:.2f} (vocab {VOCAB})", flush=True)
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, do_sample=False)
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "training.json").write_text(json.dumps(
        {"steps": steps, "batch": batch, "seq": SEQ, "train_tokens": int(len(ids)), "heldout_perplexity": round(ppl, 3),
         "seconds": round(time.time() - t0, 1), "corpus": "python stdlib *.py (every 10th file held out)"},
        indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/py_llama"), *(int(a) for a in sys.argv[2:3]))
