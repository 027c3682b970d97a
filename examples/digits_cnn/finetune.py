"""A short recovery fine-tune for the pruned digits CNN: `--finetune examples/digits_cnn/finetune.py:train_fn`.

Knowledge distillation from the unpruned model (``ctx.teacher``) mixed with the labels, on
the training split, for a few epochs (~5-10 s on 2 cores). edgec calls ``train_fn`` after
pruning and before export.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import SEED, load_digits_split  # noqa: E402

EPOCHS = 3


def train_fn(model: torch.nn.Module, ctx) -> torch.nn.Module:
    """Fine-tune ``model`` in place with distillation from ``ctx.teacher``."""
    torch.manual_seed(SEED)
    xtr, ytr, _, _ = load_digits_split()
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    with torch.no_grad():
        soft = ctx.teacher(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = ctx.distillation_loss(model(x[idx]), soft[idx], y[idx], T=4.0, alpha=0.7)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
