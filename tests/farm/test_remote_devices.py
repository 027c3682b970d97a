"""`edgec bench --device` on a real sshd (127.0.0.1) and on QEMU's UART as a serial board."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import run_cli
from .conftest import free_port

pytestmark = pytest.mark.slow


def test_ssh_device_runs_the_standalone_harness_and_cleans_up(sshd, ov_bundle):
    before = set(Path("/tmp").glob("edgec-bundle.*"))
    r = run_cli("bench", ov_bundle, "--device", sshd.device(), "--iters", "5", "--json")
    assert r.code == 0, r.err
    rec = r.json()
    assert rec["schema"] == "edgec.bench/1" and rec["runner"] == "openvino" and rec["extra"]["standalone"]
    assert rec["device"] == f"ssh://{sshd.device().split('//')[1].split('@')[0]}@127.0.0.1:{sshd.port}"
    assert rec["latency_ms"]["p50"] > 0
    assert set(Path("/tmp").glob("edgec-bundle.*")) == before  # the remote copy is removed


def test_ssh_device_checks_the_bundle_on_the_device(sshd, ov_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ov_bundle, bad)
    (bad / "model.bin").write_bytes(b"\0" * 16)
    r = run_cli("bench", bad, "--device", sshd.device(), "--iters", "2")
    assert r.code != 0
    assert r.err.startswith("error:") and "sha256" in r.err and "model.bin" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_no_shell_string_is_built_from_bundle_contents(sshd, ov_bundle, tmp_path):
    markers = [Path.home() / "edgec-pwned", Path.home() / "edgec-pwned2", Path.home() / "edgec-pwned3"]
    evil = tmp_path / "evil"
    shutil.copytree(ov_bundle, evil)
    name = "x;touch edgec-pwned;y$(touch edgec-pwned2)`touch edgec-pwned3`"
    (evil / name).write_text("data")
    man = json.loads((evil / "manifest.json").read_text())
    man["files"].append({"path": name, "bytes": 4, "sha256": hashlib.sha256(b"data").hexdigest()})
    (evil / "manifest.json").write_text(json.dumps(man))
    r = run_cli("bench", evil, "--device", sshd.device(), "--iters", "2", "--json")
    assert r.code == 0, r.err
    assert not any(m.exists() for m in markers)


def test_hung_harness_is_killed_after_timeout(sshd, ov_bundle, hang_python):
    t0 = time.monotonic()
    r = run_cli("bench", ov_bundle, "--device", sshd.device(python=hang_python), "--timeout", "8", "--iters", "2")
    assert r.code != 0 and "--timeout" in r.err
    assert time.monotonic() - t0 < 60
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", hang_python], capture_output=True, text=True).stdout.split()
    assert not left, "the remote harness was left running"


def test_unreachable_ssh_device_is_one_line(tmp_path, ov_bundle):
    r = run_cli("bench", ov_bundle, "--device", f"ssh://nobody@127.0.0.1:{free_port()}", "--timeout", "5")
    assert r.code != 0 and r.err.startswith("error: ssh to") and len(r.err.strip().splitlines()) == 1


@pytest.mark.qemu
def test_serial_device_on_qemu_uart_matches_the_host_build(mcu_bundle, tmp_path):
    port, pidfile = free_port(), tmp_path / "qemu.pid"
    launcher = tmp_path / "flash-qemu.sh"
    # The "flash" step of a QEMU board: boot the firmware with UART0 on a TCP socket, detached.
    launcher.write_text(
        "#!/bin/sh\n"
        f"setsid qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -monitor none -icount shift=0 "
        f"-serial tcp:127.0.0.1:{port},server=on,wait=off -kernel \"$1\" </dev/null >/dev/null 2>&1 &\n"
        f"echo $! > {pidfile}\nsleep 0.5\n")
    launcher.chmod(0o755)
    try:
        r = run_cli("bench", mcu_bundle, "--device", f"serial:socket://127.0.0.1:{port}",
                    "--flash", f"cmd:{launcher} {{elf}}", "--iters", "20", "--warmup", "2", "--json", "--timeout", "60")
        assert r.code == 0, r.err
        rec = r.json()
        assert rec["extra"]["matches_host"] and rec["extra"]["protocol"] == "edgec-uart/1"
        assert rec["iters"] == 20 and rec["latency_ms"]["p50"] > 0
        # Instructions agree with the semihosting QEMU harness's count of the same model.
        q = run_cli("bench", mcu_bundle, "--device", "qemu", "--iters", "1", "--warmup", "0", "--json")
        assert q.code == 0, q.err
        want = q.json()["extra"]["instructions"]
        assert abs(rec["extra"]["instructions_p50"] - want) / want < 0.05
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except ProcessLookupError:
                pass
