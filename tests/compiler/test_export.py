"""Model sources: PyTorch factories, .pt2 programs and transformers folders, with export parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgec.compiler.loaders import load_model
from edgec.errors import ExportError, ModelLoadError


def _tiny_bert_folder(root: Path, sentence_transformers: bool = False) -> Path:
    """A 2-layer BERT (random weights) with a WordPiece tokenizer, saved like a hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w in (
        "the a cat dog sat on mat model edge device runs fast slow small big red blue green one two three "
        "edgec puts trained models devices .").split()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    model = BertModel(cfg).eval()
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root, safe_serialization=True)
    fast.save_pretrained(root)
    if sentence_transformers:
        (root / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return root


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return _tiny_bert_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_sbert(tmp_path_factory) -> Path:
    return _tiny_bert_folder(tmp_path_factory.mktemp("hf") / "tiny-sbert", sentence_transformers=True)


def test_torch_factory_export_parity(tiny_cnn_factory):
    h = load_model(tiny_cnn_factory)
    assert h.meta["exporter"] in ("dynamo", "legacy")
    assert h.export_parity_max_abs_err is not None and h.export_parity_max_abs_err < 1e-5
    assert [s.name for s in h.inputs] == ["image"] and h.inputs[0].layout == "NCHW"


def test_parity_above_tolerance_fails_clearly(tiny_cnn_factory):
    from edgec.compiler.config import InputShape  # noqa: F401 - keeps the import path exercised

    h = load_model(tiny_cnn_factory)
    if h.export_parity_max_abs_err == 0.0:
        pytest.skip("export is bit-exact for this model; nothing to exceed")
    with pytest.raises(ExportError, match="differs from PyTorch"):
        load_model(tiny_cnn_factory, parity_tol=h.export_parity_max_abs_err / 10)


def test_factory_errors(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def build():\n    return 42\n")
    with pytest.raises(ModelLoadError, match="must return"):
        load_model(f"{f}:build")
    with pytest.raises(ModelLoadError, match="no function 'nope'"):
        load_model(f"{f}:nope")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(f"{tmp_path / 'missing.py'}:build")


def test_pt2_exported_program(tmp_path):
    import torch

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 3)

        def forward(self, x):
            return torch.tanh(self.lin(x))

    torch.manual_seed(0)
    ep = torch.export.export(M().eval(), (torch.randn(2, 6),))
    p = tmp_path / "m.pt2"
    torch.export.save(ep, str(p))
    h = load_model(str(p))
    assert h.inputs[0].shape == (2, 6) and h.export_parity_max_abs_err < 1e-5


def test_hf_feature_extraction_folder(tiny_bert):
    from edgec.compiler.config import InputShape

    h = load_model(str(tiny_bert), input_shapes={"input_ids": InputShape((1, 16))})
    assert h.task == "feature-extraction"
    assert [s.name for s in h.inputs][:2] == ["input_ids", "attention_mask"]
    assert h.inputs[0].shape == (1, 16) and h.inputs[0].dtype == "int64"
    assert h.outputs[0].name == "last_hidden_state"
    assert h.tokenizer_dir == tiny_bert
    assert h.export_parity_max_abs_err < 1e-4


@pytest.mark.slow  # transformers export of a tiny BERT per test
def test_hf_sentence_transformers_folder_exports_normalized_embeddings(tiny_sbert):
    from edgec.compiler.config import InputShape
    from edgec.runtimes.onnxruntime_runner import make_session

    h = load_model(str(tiny_sbert), input_shapes={"input_ids": InputShape((1, 16))})
    assert h.task == "sentence-embedding" and h.outputs[0].name == "sentence_embedding"
    sess = make_session(h.serialize())
    emb = sess.run(None, h.example_inputs)[0]
    assert emb.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow  # transformers export of a tiny BERT per test
def test_hf_task_override_and_bad_task(tiny_bert):
    from edgec.compiler.config import InputShape
    from edgec.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --task"):
        load_model(str(tiny_bert), task="dance")
    h = load_model(str(tiny_bert), task="fill-mask", input_shapes={"input_ids": InputShape((1, 8))})
    vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"]
    assert h.outputs[0].name == "logits" and h.outputs[0].shape[-1] == vocab


def test_hf_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(tmp_path))


@pytest.mark.slow  # transformers export of a tiny BERT per test
def test_hf_text_calibration_end_to_end(tiny_bert, tmp_path, fake_target):
    from edgec import api
    from edgec.compiler.config import BuildConfig, InputShape

    texts = tmp_path / "t.txt"
    texts.write_text("the cat sat on the mat\nthe model runs fast on the edge device\none two three\n" * 4)
    res = api.build(BuildConfig(model=str(tiny_bert), output=tmp_path / "b", target="fake", calib=str(texts),
                                input_shapes={"input_ids": InputShape((1, 16))}))
    assert res.manifest["tokenizer"] == "tokenizer"
    assert (tmp_path / "b" / "tokenizer" / "tokenizer.json").is_file()
    assert res.report["accuracy"]["cosine"] > 0.9
