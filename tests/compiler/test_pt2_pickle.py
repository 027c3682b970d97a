"""Defect 1: a .pt2 archive must never run code from its pickles (build and inspect)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_cli

torch = pytest.importorskip("torch")


class _Payload:
    """Pickles as a call that writes a marker file when unpickled with plain pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _clean_pt2(path: Path) -> Path:
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 3)

        def forward(self, x):
            return torch.relu(self.lin(x))

    torch.manual_seed(0)
    torch.export.save(torch.export.export(M().eval(), (torch.randn(1, 6),)), str(path))
    return path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
    return dst


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _payload_in_sample_inputs(tmp_path: Path, marker: Path) -> Path:
    payload = _pickled(((torch.randn(1, 6), _Payload(marker)), {}))
    return _rewrite(_clean_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2",
                    lambda name, data: payload if "sample_inputs" in name else data)


def _payload_in_weights(tmp_path: Path, marker: Path) -> Path:
    def edit(name, data):
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(data)
            for entry in cfg["config"].values():
                entry["use_pickle"] = True
            return json.dumps(cfg).encode()
        if "/data/weights/weight_" in name:
            return _pickled(_Payload(marker))
        return data

    return _rewrite(_clean_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2", edit)


@pytest.mark.parametrize("where", ["sample_inputs", "weights"])
@pytest.mark.parametrize("command", ["build", "inspect"])
def test_pickle_payload_never_runs(tmp_path, where, command):
    marker = tmp_path / "marker.txt"
    evil = (_payload_in_sample_inputs if where == "sample_inputs" else _payload_in_weights)(tmp_path, marker)
    args = ["build", evil, "--target", "onnxruntime", "--precision", "fp32", "-o", tmp_path / "out"] \
        if command == "build" else ["inspect", evil]
    res = run_cli(*args)
    assert not marker.exists(), "the archive's pickle ran code"
    assert res.code != 0
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pickle" in lines[0], res.err
    assert not (tmp_path / "out").exists()


def test_clean_pt2_still_loads_with_example_inputs(tmp_path):
    res = run_cli("inspect", _clean_pt2(tmp_path / "ok.pt2"), "--json")
    assert res.code == 0, res.err
    assert res.json()["inputs"][0]["shape"] == [1, 6]


def test_pt2_without_sample_inputs_rebuilds_them_from_the_signature(tmp_path):
    stripped = _rewrite(_clean_pt2(tmp_path / "ok.pt2"), tmp_path / "nosample.pt2",
                        lambda name, data: _pickled(((), {})) if "sample_inputs" in name else data)
    res = run_cli("inspect", stripped, "--json")
    assert res.code == 0, res.err
    assert res.json()["inputs"][0]["shape"] == [1, 6]


@pytest.mark.parametrize("kind", ["random-bytes", "broken-zip"])
def test_junk_pt2_is_one_line_without_torch_logging(tmp_path, kind):
    from tests.cli_subprocess import assert_one_line_error, run_edgec

    junk = tmp_path / "junk.pt2"
    if kind == "random-bytes":
        junk.write_bytes(bytes(range(256)) * 8)
    else:
        _rewrite(_clean_pt2(tmp_path / "ok.pt2"), junk,
                 lambda name, data: data[: len(data) // 3] if name.endswith("models/model.json") else data)
    assert_one_line_error(run_edgec("inspect", junk), "junk.pt2")
    assert_one_line_error(run_edgec("build", junk, "-o", tmp_path / "out"), "junk.pt2")
    debug = run_edgec("--debug", "inspect", junk)
    assert "Traceback" in debug.err
