"""Defects 3, 6 (output paths), 10 and 11: what `-o` and `--force` may touch, temp folders, modes."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.cli_subprocess import EDGEC, assert_one_line_error

FAST = ("--target", "onnxruntime", "--precision", "fp32")


def _build(model, out, *extra):
    return run_cli("build", model, *FAST, "--calib", "random", "-o", out, *extra)


@pytest.fixture
def user_folder(tmp_path, tiny_cnn_onnx):
    """A folder holding the user's model, calibration data and notes."""
    d = tmp_path / "work"
    d.mkdir()
    shutil.copy(tiny_cnn_onnx, d / "model.onnx")
    np.savez(d / "calib.npz", image=np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32))
    (d / "notes.txt").write_text("my notes")
    return d


def _contents(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir()}


# -- defect 3: --force never deletes a user's files -------------------------------------------------
def test_force_never_replaces_the_folder_holding_the_inputs(user_folder):
    before = _contents(user_folder)
    res = run_cli("build", user_folder / "model.onnx", *FAST, "--calib", user_folder / "calib.npz",
                  "-o", user_folder, "--force")
    assert_one_line_error(res, str(user_folder))
    assert _contents(user_folder) == before


def test_force_never_replaces_a_folder_that_is_no_bundle(tmp_path, tiny_cnn_onnx):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    res = _build(tiny_cnn_onnx, d, "--force")
    assert_one_line_error(res, "not an edgec bundle")
    assert (d / "holiday.jpg").exists()


def test_force_never_replaces_a_bundle_holding_user_files(tmp_path, tiny_cnn_onnx):
    out = tmp_path / "b"
    assert _build(tiny_cnn_onnx, out).code == 0
    (out / "notes.txt").write_text("mine")
    res = _build(tiny_cnn_onnx, out, "--force")
    assert_one_line_error(res, "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_force_replaces_an_edgec_bundle(tmp_path, tiny_cnn_onnx):
    out = tmp_path / "b"
    assert _build(tiny_cnn_onnx, out).code == 0
    res = _build(tiny_cnn_onnx, out, "--force")
    assert res.code == 0, res.err
    assert (out / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_force_with_the_current_folder_is_refused(tmp_path, tiny_cnn_onnx, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    for out in ("", "."):
        assert_one_line_error(_build(tiny_cnn_onnx, out, "--force"))
    assert (tmp_path / "keep.txt").exists()


# -- defect 6: output paths that cannot be written ----------------------------------------------------
def test_unwritable_outputs_are_one_line_errors(tmp_path, tiny_cnn_onnx):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert_one_line_error(_build(tiny_cnn_onnx, f / "sub"), "a_file")
    assert_one_line_error(_build(tiny_cnn_onnx, "/proc/edgec-out"), "/proc/edgec-out")
    assert f.read_text() == "x"


def test_read_only_parent_is_one_line_error(tmp_path, tiny_cnn_onnx):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        # root ignores folder modes; sysfs refuses new entries to everyone, root included.
        parent = Path("/sys") if os.access(ro, os.W_OK) else ro
        assert_one_line_error(_build(tiny_cnn_onnx, parent / "edgec-out"), str(parent / "edgec-out"))
    finally:
        ro.chmod(0o700)


# -- defect 10: stale temp folders of killed builds are removed -------------------------------------------
def test_stale_temp_folders_of_killed_builds_are_cleaned(tmp_path, tiny_cnn_onnx):
    out = tmp_path / "b"
    code = ("import sys, os, signal, time\n"
            "import edgec.compiler.bundle as b\n"
            "w = b.BundleWriter(sys.argv[1], False)\n"
            "print(w.tmp, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    for _ in range(3):
        subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
        # Each killed build leaves its folder; the next one into the same parent removes it.
        stale = [p for p in tmp_path.iterdir() if p.name.startswith(".b.edgec-")]
        assert len(stale) == 1, stale
    # A live build's folder (a writer still open in another process) must survive.
    live = subprocess.Popen([sys.executable, "-c", "import sys, time\nimport edgec.compiler.bundle as b\n"
                             "w = b.BundleWriter(sys.argv[1], False)\nprint(w.tmp, flush=True)\ntime.sleep(120)\n",
                             str(out)], stdout=subprocess.PIPE, text=True)
    try:
        live_tmp = Path(live.stdout.readline().strip())
        assert live_tmp.is_dir()
        res = _build(tiny_cnn_onnx, out)
        assert res.code == 0, res.err
        assert live_tmp.is_dir(), "a live build's temp folder was removed"
        assert not any(p.exists() for p in stale)
    finally:
        live.kill()
        live.wait()


# -- defect 11: bundles honour the umask -------------------------------------------------------------------
def test_bundle_modes_follow_the_umask(tmp_path, tiny_cnn_onnx):
    old = os.umask(0o022)
    try:
        out = tmp_path / "b"
        assert _build(tiny_cnn_onnx, out).code == 0
    finally:
        os.umask(old)
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        want = 0o755 if p.is_dir() else 0o644
        assert mode & 0o755 == want, (p, oct(mode))
