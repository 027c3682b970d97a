"""Fixtures for the pruning tests: a tiny BERT folder (no hub), its calibration data, a fine-tune file."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

SEQ = 16


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT (hidden 32, 4 heads, head size 8) saved as safetensors in a folder."""
    pytest.importorskip("transformers")
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=64)
    d = tmp_path_factory.mktemp("tiny_bert")
    BertModel(cfg).eval().save_pretrained(str(d), safe_serialization=True)
    return d


@pytest.fixture(scope="session")
def bert_calib(tmp_path_factory):
    """Token ids in the tiny BERT's vocabulary, with masks, as an .npz."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, size=(8, SEQ)).astype(np.int64)
    path = tmp_path_factory.mktemp("bert_calib") / "calib.npz"
    np.savez(path, input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids))
    return path


FINETUNE_SRC = textwrap.dedent('''
    import json
    import os

    import torch


    def train_fn(model, ctx):
        """Records what it was given, then trains a few steps with distillation."""
        shapes = {n: list(p.shape) for n, p in model.named_parameters()}
        teacher = {n: list(p.shape) for n, p in ctx.teacher.named_parameters()}
        with open(os.environ["EDGEC_TEST_FINETUNE_LOG"], "w") as f:
            json.dump({"student": shapes, "teacher": teacher, "spec": ctx.spec.text,
                       "calib": None if ctx.calibration is None else {k: list(v.shape) for k, v in
                                                                      ctx.calibration.items()}}, f)
        x = next(iter(ctx.calibration.values())) if ctx.calibration is not None else None
        x = x if x is not None else next(iter(ctx.example_inputs.values()))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        model.train()
        for _ in range(30):
            with torch.no_grad():
                t = ctx.teacher(x)
            loss = ctx.distillation_loss(model(x), t + 1.0, kind="mse")
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model


    def not_a_module(model, ctx):
        return 42


    def broken(model):
        raise RuntimeError("boom")
''')


@pytest.fixture
def finetune_file(tmp_path, monkeypatch):
    """`finetune.py` with `train_fn` (logs its arguments to the returned log path), `not_a_module`, `broken`."""
    path = tmp_path / "finetune.py"
    path.write_text(FINETUNE_SRC)
    log = tmp_path / "finetune_log.json"
    monkeypatch.setenv("EDGEC_TEST_FINETUNE_LOG", str(log))
    return path, log
