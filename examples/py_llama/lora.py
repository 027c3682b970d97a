"""Fine-tune the shipped small Llama with a LoRA adapter (PEFT) on the stdlib's ``email`` package.

The base model (``train.py``) saw only top-level stdlib modules; this adapter (rank 8 on the
attention and MLP projections) adapts it to ``email/*.py`` and is saved in PEFT's format
(``adapter_config.json`` + ``adapter_model.safetensors``), the folder ``edgec build --lora`` takes:

    python examples/py_llama/lora.py examples/py_llama examples/py_llama/lora_email   # ~1 min
"""

from __future__ import annotations

import json
import math
import sys
import sysconfig
from pathlib import Path

SEQ, STEPS, BATCH = 128, 150, 8


def main(base: Path, out: Path) -> None:
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base))
    files = sorted((Path(sysconfig.get_paths()["stdlib"]) / "email").glob("*.py"))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    ids = np.array([t for x in texts[1:] for t in tok(x)["input_ids"] + [tok.eos_token_id]], np.int64)
    held = torch.tensor(tok(texts[0][:12000])["input_ids"])
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)

    def ppl(m) -> float:
        m.eval()
        with torch.no_grad():
            n = [m(input_ids=held[i:i + SEQ][None], labels=held[i:i + SEQ][None]).loss.item()
                 for i in range(0, len(held) - SEQ, SEQ)]
        return math.exp(sum(n) / len(n))

    before = ppl(model)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    rng = np.random.default_rng(0)
    model.train()
    for step in range(STEPS):
        starts = rng.integers(0, len(ids) - SEQ - 1, BATCH)
        x = torch.from_numpy(np.stack([ids[s:s + SEQ] for s in starts]))
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    after = ppl(model)
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "training.json").write_text(json.dumps(
        {"steps": STEPS, "corpus": "python stdlib email/*.py", "heldout": "email/" + files[0].name,
         "perplexity_base": round(before, 3), "perplexity_lora": round(after, 3)}, indent=2, sort_keys=True) + "\n")
    print(f"held-out email perplexity: base {before:.2f} -> LoRA {after:.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
