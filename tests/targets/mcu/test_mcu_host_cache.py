"""Defect 2: the mcu host library cache is private and checked before ctypes loads anything from it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.cli_subprocess import assert_one_line_error, run_edgec

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (the mcu target's host compiler)")

EVIL_C = r'''
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen("%s", "w");
    if (f) { fputs("pwned", f); fclose(f); }
}
int edgec_model_run(void **in, void **out) { (void)in; (void)out; return 0; }
'''


@pytest.fixture(scope="module")
def mcu_bundle(tmp_path_factory, tiny_cnn_onnx) -> Path:
    out = tmp_path_factory.mktemp("mcu") / "bundle"
    res = run_cli("build", tiny_cnn_onnx, "--target", "mcu", "--calib", "random", "-o", out)
    assert res.code == 0, res.err
    return out


def _evil_library(tmp_path: Path, marker: Path) -> Path:
    src = tmp_path / "evil.c"
    src.write_text(EVIL_C % marker)
    lib = tmp_path / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    return lib


def _env(tmp_path: Path) -> dict:
    # A fresh temp dir and XDG cache per test; EDGEC_CACHE_DIR unset so the defaults are exercised.
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "EDGEC_CACHE_DIR": ""}


def _give_away(path: Path) -> None:
    """Make ``path`` look like another user's: chown to nobody when root, else world-writable."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    os.chmod(path, 0o777)


def test_planted_library_is_refused_not_loaded(tmp_path, mcu_bundle):
    env = _env(tmp_path)
    first = run_edgec("verify", mcu_bundle, "--data", "random", env=env)
    assert first.code == 0, first.err
    cached = [p for p in tmp_path.rglob("host-*.so")]
    assert cached, "verify built no host library"
    marker = tmp_path / "marker.txt"
    evil = _evil_library(tmp_path, marker)
    for lib in cached:  # an attacker replaces the library wherever it is cached
        shutil.copyfile(evil, lib)
    res = run_edgec("verify", mcu_bundle, "--data", "random", env=env)
    assert not marker.exists(), "a planted library's constructor ran"
    assert_one_line_error(res, "refusing", "host-")


def test_cache_folder_owned_or_writable_by_others_is_refused(tmp_path, mcu_bundle):
    env = _env(tmp_path)
    root = tmp_path / "xdg" / "edgec"
    root.mkdir(parents=True)
    _give_away(root)
    res = run_edgec("verify", mcu_bundle, "--data", "random", env=env)
    assert_one_line_error(res, "refusing the cache folder", str(root))


def test_symlinked_cache_folder_is_refused(tmp_path, mcu_bundle):
    env = _env(tmp_path)
    (tmp_path / "xdg").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "xdg" / "edgec").symlink_to(elsewhere)
    res = run_edgec("verify", mcu_bundle, "--data", "random", env=env)
    assert_one_line_error(res, "symbolic link")


def test_shared_temp_folder_is_not_used(tmp_path, mcu_bundle):
    env = _env(tmp_path)
    res = run_edgec("verify", mcu_bundle, "--data", "random", env=env)
    assert res.code == 0, res.err
    assert not list((tmp_path / "tmp").rglob("host-*.so")), "the host library was cached in the shared temp folder"
    libs = list((tmp_path / "xdg" / "edgec").rglob("host-*.so"))
    assert len(libs) == 1
    for p in (tmp_path / "xdg" / "edgec", libs[0].parent):
        assert (p.stat().st_mode & 0o777) == 0o700 and p.stat().st_uid == os.getuid()
