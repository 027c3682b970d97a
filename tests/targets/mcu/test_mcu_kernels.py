"""Per-kernel C tests (TFLM ``kernels/<op>_test.cc`` style): ``kernels/<name>_test.c`` calls
the kernels of ``targets/mcu/kernels/<name>.c`` on hand-written int8 tensors and compares
with golden outputs. Built with the sanitizers and -Werror; no TensorFlow involved."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = sorted((Path(__file__).parent / "kernels").glob("*_test.c"))
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
@pytest.mark.parametrize("test_c", TESTS, ids=[t.stem for t in TESTS])
def test_kernel(tmp_path, test_c):
    from edgec.targets.mcu.codegen import KERNEL_DIR

    kernel = KERNEL_DIR / (test_c.stem.removesuffix("_test") + ".c")
    assert kernel.is_file(), f"{test_c.name} tests {kernel.name}, which does not exist"
    exe = tmp_path / "t"
    subprocess.run(["gcc", *FLAGS, "-I", str(KERNEL_DIR), "-I", str(test_c.parent), str(kernel), str(test_c), "-o", str(exe)],
                   check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_kernel_file_has_a_test():
    from edgec.targets.mcu.ops import RECORDS

    kernels = {k for r in RECORDS for k in r.kernels}
    tested = {t.stem.removesuffix("_test") + ".c" for t in TESTS}
    assert kernels <= tested, f"kernels without a tests/targets/mcu/kernels/<name>_test.c: {sorted(kernels - tested)}"
