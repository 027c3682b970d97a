"""Structured pruning of PyTorch and Hugging Face models (`edgec prune`), and the fine-tune hook."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from .conftest import SEQ

pytest.importorskip("torch_pruning")

REPORT_KEYS = {"spec", "method", "applied_to", "finetune", "parameters", "nonzero", "size_bytes", "sparsity",
               "structure", "accuracy_vs_unpruned", "speedup_expected"}


def _weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})


def _cnn_params(c1: int, c2: int) -> int:
    return (c1 * 9 + c1) + (c2 * c1 * 9 + c2) + (10 * c2 * 4 + 10)


@pytest.mark.parametrize("spec, c1, c2", [("channels:0.3", 5, 11),
                                          ("channels:0.3,importance=activation,round=4", 4, 8)])
def test_channels_give_a_smaller_dense_model(cli, tiny_cnn_factory, tiny_calib, tmp_path, spec, c1, c2):
    res = cli("prune", tiny_cnn_factory, "--prune", spec, "--calib", tiny_calib, "-o", tmp_path / "p", "--json")
    assert res.code == 0, res.err
    out = res.json()
    p = out["pruning"]
    assert REPORT_KEYS <= set(p) and p["applied_to"] == "pytorch"
    # keep int((1 - ratio) * C) channels (rounded down to `round`): 8 -> c1, 16 -> c2; fc inputs follow
    shapes = sorted(tuple(w.shape) for w in _weights(tmp_path / "p" / "model.onnx").values() if w.ndim >= 2)
    assert shapes == sorted([(c1, 1, 3, 3), (c2, c1, 3, 3), (10, c2 * 4)])
    assert p["parameters"] == {"before": _cnn_params(8, 16), "after": _cnn_params(c1, c2),
                               "change": pytest.approx(_cnn_params(c1, c2) / _cnn_params(8, 16) - 1, abs=1e-6)}
    assert p["sparsity"]["total"] < 0.05  # dense, just smaller
    assert p["size_bytes"]["weights_after"] < p["size_bytes"]["weights_before"]
    assert [c["layer"] for c in p["structure"]["layers_changed"]] == ["conv1", "conv2", "fc"]
    assert p["structure"]["ignored"] == ["fc"]  # the output layer keeps its 10 classes
    (y,) = _run(tmp_path / "p" / "model.onnx", {"image": np.random.default_rng(0).random((1, 1, 8, 8), np.float32)})
    assert y.shape == (1, 10)
    acc = p["accuracy_vs_unpruned"]
    assert acc["samples"] == 32 and acc["data"] == "calibration" and 0 < acc["cosine"] <= 1.0
    from safetensors.numpy import load_file

    sd = load_file(str(tmp_path / "p" / "model.safetensors"))
    assert sd["conv1.weight"].shape == (c1, 1, 3, 3)


@pytest.mark.slow  # pruning + fine-tuning end to end
def test_heads_and_ffn_neurons_of_a_tiny_bert(cli, tiny_bert_dir, bert_calib, tmp_path):
    shape = ("--input-shape", f"input_ids=1x{SEQ}")
    res = cli("prune", tiny_bert_dir, "--prune", "heads:0.25,importance=activation", "--calib", bert_calib, *shape,
              "-o", tmp_path / "h", "--json")
    assert res.code == 0, res.err
    p = res.json()["pruning"]
    assert [(b["heads_before"], b["heads_after"]) for b in p["structure"]["blocks"]] == [(4, 3), (4, 3)]
    # one head of size 8 per layer: Q, K, V rows (3 x (8 x 32 + 8)) and output-projection columns (32 x 8)
    assert p["parameters"]["before"] - p["parameters"]["after"] == 2 * (3 * (8 * 32 + 8) + 32 * 8)
    feeds = {"input_ids": np.arange(1, SEQ + 1, dtype=np.int64)[None], "attention_mask": np.ones((1, SEQ), np.int64),
             "token_type_ids": np.zeros((1, SEQ), np.int64)}
    (h,) = _run(tmp_path / "h" / "model.onnx", feeds)
    assert h.shape == (1, SEQ, 32)
    assert 0.5 < p["accuracy_vs_unpruned"]["cosine"] < 1.0

    res = cli("prune", tiny_bert_dir, "--prune", "channels:0.25", *shape, "-o", tmp_path / "c", "--json")
    assert res.code == 0, res.err
    p = res.json()["pruning"]
    changed = {c["layer"].split("encoder.")[-1]: c["after"] for c in p["structure"]["layers_changed"]}
    # FFN neurons go (64 -> 48); attention and the hidden size (it reaches the output) stay
    assert changed == {"layer.0.intermediate.dense": [48, 32], "layer.0.output.dense": [32, 48],
                       "layer.1.intermediate.dense": [48, 32], "layer.1.output.dense": [32, 48]}
    (h,) = _run(tmp_path / "c" / "model.onnx", feeds)
    assert h.shape == (1, SEQ, 32)


def test_heads_need_attention_blocks(cli, tiny_cnn_factory, tmp_path):
    res = cli("prune", tiny_cnn_factory, "--prune", "heads:0.5", "-o", tmp_path / "x")
    assert res.code == 1 and res.err.startswith("error: --prune heads needs a BERT-like") and res.err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_finetune_gets_the_pruned_model_and_the_teacher(cli, tiny_cnn_factory, tiny_calib, finetune_file, tmp_path):
    path, log = finetune_file
    res = cli("prune", tiny_cnn_factory, "--prune", "channels:0.5", "--finetune", f"{path}:train_fn", "--calib",
              tiny_calib, "-o", tmp_path / "f", "--json")
    assert res.code == 0, res.err
    seen = json.loads(log.read_text())
    assert seen["student"]["conv1.weight"] == [4, 1, 3, 3] and seen["teacher"]["conv1.weight"] == [8, 1, 3, 3]
    assert seen["spec"] == "channels:0.5" and seen["calib"] == {"image": [32, 1, 8, 8]}
    p = res.json()["pruning"]
    assert p["finetune"] == f"{path}:train_fn"
    assert p["accuracy_vs_unpruned"]["mean_abs_err"] > 0.5  # trained towards teacher + 1 (0.04 without)


@pytest.mark.slow  # pruning + fine-tuning end to end
def test_sparsity_masks_survive_finetuning(cli, tiny_cnn_factory, tiny_calib, finetune_file, tmp_path):
    path, _ = finetune_file
    res = cli("prune", tiny_cnn_factory, "--prune", "2:4", "--finetune", f"{path}:train_fn", "--calib", tiny_calib,
              "-o", tmp_path / "m", "--json")
    assert res.code == 0, res.err
    p = res.json()["pruning"]
    assert p["accuracy_vs_unpruned"]["mean_abs_err"] > 0.3  # the loop did train
    for row in p["sparsity"]["layers"]:
        assert row["groups_2to4_fraction"] == 1.0, row
    assert p["nonzero"]["after"] < p["nonzero"]["before"]


@pytest.mark.parametrize("fn, needle", [("not_a_module", "must return the trained torch.nn.Module"),
                                        ("broken", "failed: RuntimeError: boom"), ("missing", "has no function")])
def test_finetune_errors_are_one_line(cli, tiny_cnn_factory, finetune_file, tmp_path, fn, needle):
    path, _ = finetune_file
    res = cli("prune", tiny_cnn_factory, "--prune", "magnitude:0.5", "--finetune", f"{path}:{fn}", "-o",
              tmp_path / "e")
    assert res.code == 1 and needle in res.err and res.err.count("\n") == 1, res.err
