"""Real farm parts on 127.0.0.1: an sshd with throwaway keys, a Ray head and `edgec farm worker`s, small bundles."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import run_cli

EDGEC = [sys.executable, "-m", "edgec"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (a worker and its Ray node)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = root.children(recursive=True) + [root]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class Sshd:
    """An OpenSSH server for this test session only, with its own host and client keys."""

    def __init__(self, root: Path):
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            pytest.fail("sshd is missing: scripts/setup.sh --toolchains installs openssh-server")
        self.root, self.port = root, free_port()
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        shutil.copyfile(root / "client.pub", root / "authorized_keys")
        os.chmod(root / "authorized_keys", 0o600)
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} "
                                          + " ".join((root / "host.pub").read_text().split()[:2]) + "\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {root / 'sshd.pid'}\n"
            "Subsystem sftp internal-sftp\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation folder sshd insists on
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
        self.user = os.environ.get("USER") or "root"

    def device(self, python: str = sys.executable, **extra: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"key": self.root / "client", "known_hosts": self.root / "known_hosts",
                                                "python": python, **extra}.items())
        import getpass

        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}?{q}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    s = Sshd(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def hang_python(tmp_path_factory) -> str:
    """A 'python' that never finishes: a hung harness on the device."""
    p = tmp_path_factory.mktemp("hang") / "python-hangs"
    p.write_text("#!/bin/sh\nexec sleep 600\n")
    p.chmod(0o755)
    return str(p)


class RayCluster:
    """`ray start --head --block` on 127.0.0.1 plus `edgec farm worker` processes (each a Ray node)."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, RAY_DEDUP_LOGS="0", RAY_health_check_period_ms="1000",
                        RAY_health_check_failure_threshold="3", RAY_USAGE_STATS_ENABLED="0")
        self.workers: dict[str, subprocess.Popen] = {}
        self.head = subprocess.Popen(
            [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head",
             f"--port={self.port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false",
             "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}", "--block",
             f"--temp-dir={root / 'ray'}"],
            stdout=subprocess.DEVNULL, stderr=open(root / "head.log", "wb"), env=self.env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.head.poll() is not None:
                break
            time.sleep(0.5)
        pytest.fail(f"the Ray head did not start: {(root / 'head.log').read_text()[-800:]}")

    def add_worker(self, name: str, *devices: str) -> subprocess.Popen:
        args = [*EDGEC, "farm", "worker", "--address", self.address, "--name", name, "--health-interval", "2"]
        for d in devices:
            args += ["--device", d]
        log = self.root / f"{name}.log"
        for _attempt in range(2):  # a loaded 2-core machine sometimes times a new raylet out: try once more
            p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=self.env)
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and p.poll() is None:
                if "joined" in log.read_text():
                    self.workers[name] = p
                    return p
                time.sleep(0.5)
            kill_tree(p.pid)
        pytest.fail(f"worker {name} did not join: {log.read_text()[-800:]}")

    def kill_worker(self, name: str) -> None:
        kill_tree(self.workers.pop(name).pid)

    def stop(self) -> None:
        import ray

        # A driver that outlives its cluster's GCS is ended by Ray's core worker (exit 1):
        # disconnect this test process first.
        if ray.is_initialized():
            ray.shutdown()
        for p in self.workers.values():
            p.send_signal(signal.SIGTERM)
        for name, p in list(self.workers.items()):
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                kill_tree(p.pid)
        kill_tree(self.head.pid)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sshd, hang_python):
    """Head + w1 (host, qemu:cortex-m4) + w2 (qemu:cortex-m4, ssh, and an ssh device whose harness hangs)."""
    c = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        c.add_worker("w1", "host", "qemu:cortex-m4")
        c.add_worker("w2", "qemu:cortex-m4", sshd.device(), sshd.device(python=hang_python, kind="ssh-hangs"))
        yield c
    finally:
        c.stop()


def _build(tmp: Path, factory: str, calib: Path, *args: str) -> Path:
    out = tmp / tmp.name.rstrip("0123456789")  # ov, mcu, arm: the farm names bundles by folder
    r = run_cli("build", factory, "--calib", calib, "-o", out, *args)
    assert r.code == 0, r.err
    return out


@pytest.fixture(scope="session")
def ov_bundle(tmp_path_factory, tiny_cnn_factory, tiny_calib) -> Path:
    return _build(tmp_path_factory.mktemp("ov"), tiny_cnn_factory, tiny_calib, "--target", "intel-cpu",
                  "--precision", "fp32")


@pytest.fixture(scope="session")
def mcu_bundle(tmp_path_factory, tiny_cnn_factory, tiny_calib) -> Path:
    return _build(tmp_path_factory.mktemp("mcu"), tiny_cnn_factory, tiny_calib, "--target", "mcu")


@pytest.fixture(scope="session")
def arm_bundle(tmp_path_factory, tiny_cnn_factory, tiny_calib) -> Path:
    return _build(tmp_path_factory.mktemp("arm"), tiny_cnn_factory, tiny_calib, "--target", "arm",
                  "--precision", "fp32")
