"""Fixtures for the arm (TFLite) target: tiny models built in code, conversions cached per session."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from edgec._deps import has_module  # noqa: E402
from edgec.calibration.types import CalibrationData  # noqa: E402
from edgec.compiler.model import ModelHandle, sha256_bytes  # noqa: E402
from edgec.targets.base import LowerSpec  # noqa: E402

# Checked without importing: importing TensorFlow here would cost every test run (even
# `pytest -m "not slow"`, which deselects these modules) ~15 s of collection.
if not all(has_module(m) for m in ("onnx2tf", "tensorflow", "ai_edge_litert")):
    collect_ignore_glob = ["test_*.py"]


def handle_from_proto(proto, name: str) -> ModelHandle:
    return ModelHandle.from_onnx(proto, name, sha256_bytes(proto.SerializeToString()))


def model_convention(specs):
    """Manifest entries of the source model's I/O (4-D tensors are NCHW)."""
    out = []
    for s in specs:
        d = s.to_json()
        if len(s.shape) == 4:
            d["layout"] = "NCHW"
        out.append(d)
    return out


def write_manifest(bundle: Path, model: ModelHandle, result, precision: str) -> dict:
    """The manifest subset the runner needs (the pipeline writes the full one)."""
    return {
        "schema_version": 1, "target": "arm", "precision": precision, "runner": "litert",
        "artifact": {"path": result.model_artifact.path, "kind": "tflite"},
        "model_inputs": model_convention(model.inputs), "model_outputs": model_convention(model.outputs),
        "inputs": [s.to_json() for s in result.inputs], "outputs": [s.to_json() for s in result.outputs],
    }


@dataclasses.dataclass
class Built:
    model: ModelHandle
    bundle: Path
    result: object
    manifest: dict
    calib: CalibrationData


def lower(model: ModelHandle, calib: CalibrationData, precision: str, out: Path, **options) -> Built:
    from edgec.targets.tflite import TFLiteTarget

    spec = LowerSpec(precision=precision, float_model=model, calibration=calib, options=options)
    result = TFLiteTarget().lower(model, spec, out)
    manifest = write_manifest(out, model, result, precision)
    return Built(model, out, result, manifest, calib)


# -- tiny CNN (digits-like: 1x12x12 inputs, 10 classes) -----------------------------------
def _make_cnn():
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.fc = torch.nn.Linear(16 * 3 * 3, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.c1(x)))
            x = torch.relu(self.c2(x))
            x = torch.nn.functional.max_pool2d(x, 2)
            return self.fc(x.flatten(1))

    return Net().eval()


def _export(module, args, names_in, names_out, path: Path):
    import torch

    torch.onnx.export(module, args, str(path), input_names=names_in, output_names=names_out,
                      dynamo=False, opset_version=17)
    import onnx

    return onnx.load(str(path))


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="session")
def cnn(tmp_session):
    import torch

    from tests.trained_weights import load_or_train

    # Structured images: a class-dependent blob plus noise; a few training steps make the
    # logits separate, so top-1 agreement means something.
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(96):
        img = rng.normal(0, 0.5, (1, 1, 12, 12)).astype(np.float32)
        r, c = divmod(i % 9, 3)
        img[0, 0, r * 4:r * 4 + 4, c * 4:c * 4 + 4] += 1.0
        xs.append(img)
        ys.append(i % 9)

    def fit(net):
        x_all, y_all = torch.from_numpy(np.concatenate(xs[:64])), torch.tensor(ys[:64])
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        net.train()
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x_all), y_all).backward()
            opt.step()

    net = load_or_train("tflite_blob_cnn", _make_cnn(), fit)
    proto = _export(net, (torch.from_numpy(xs[0]),), ["image"], ["logits"], tmp_session / "cnn.onnx")
    model = handle_from_proto(proto, str(tmp_session / "cnn.onnx"))
    calib = CalibrationData([{"image": x} for x in xs[:32]], source="synthetic", labels=np.array(ys[:32]))
    evals = [{"image": x} for x in xs[64:]]
    return model, calib, evals


@pytest.fixture(scope="session")
def cnn_fp32(cnn, tmp_session):
    model, calib, _ = cnn
    return lower(model, calib, "fp32", tmp_session / "cnn_fp32")


@pytest.fixture(scope="session")
def cnn_int8(cnn, tmp_session):
    model, calib, _ = cnn
    return lower(model, calib, "int8", tmp_session / "cnn_int8")


# -- tiny BERT (2 layers, hidden 32, static [1, 16]) -------------------------------------
SEQ = 16


@pytest.fixture(scope="session")
def bert(tmp_session):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    bert = BertModel(cfg).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    rng = np.random.default_rng(1)
    samples = []
    for i in range(24):
        ids = rng.integers(1, 120, (1, SEQ)).astype(np.int64)
        n = int(rng.integers(6, SEQ + 1))
        mask = np.zeros((1, SEQ), np.int64)
        mask[0, :n] = 1
        ids[0, n:] = 0
        samples.append({"input_ids": ids, "attention_mask": mask})
    ex = tuple(torch.from_numpy(samples[0][k]) for k in ("input_ids", "attention_mask"))
    proto = _export(Wrap(bert).eval(), ex, ["input_ids", "attention_mask"], ["last_hidden_state"],
                    tmp_session / "bert.onnx")
    model = handle_from_proto(proto, str(tmp_session / "bert.onnx"))
    calib = CalibrationData(samples[:16], source="synthetic", kind="text")
    return model, calib, samples[16:]
