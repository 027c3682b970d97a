"""Devices that run a bundle and return one ``edgec.bench/1`` record.

A device string names where a bundle runs, with or without a farm:

* ``host``: this machine, through edgec's own runner for the bundle;
* ``qemu:cortex-m0|m3|m4|m7|m33|m55``: an mcu bundle in qemu-system-arm (instructions counted);
* ``ssh://user@host[:port][?key=PATH&known_hosts=PATH&python=python3&kind=jetson]``: a Linux
  board; the bundle is copied over SFTP, checked against its manifest there, timed with the
  bundle's standalone harness, and removed again;
* ``serial:/dev/ttyX[?baud=N]`` (or ``serial:socket://HOST:PORT``): an MCU board running the
  bundle's UART firmware (see `edgec.farm.serial_device`).

Every run happens in a child process or on the remote side with a timeout, so a hung
harness is killed instead of hanging the caller. No shell string is ever built from bundle
contents: remote commands are fixed words plus validated numbers and paths.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edgec.errors import ConfigError, EdgecError

QEMU_CPUS = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
# The standalone harness each runner's bundle ships, for devices without edgec.
HARNESS_BY_RUNNER = {"openvino": "bench_openvino.py", "onnxruntime": "bench_ort.py", "litert": "bench_tflite.py",
                     "tensorrt": "bench_trt.py"}


class DeviceError(EdgecError):
    """A device could not run the bundle (unreachable, harness failed, timed out)."""


class DeviceTimeout(DeviceError):
    """The harness ran past its time limit and was killed."""


@dataclass(frozen=True)
class Device:
    """A parsed device string.

    Attributes:
        spec: The string as the user wrote it.
        scheme: ``host``, ``qemu``, ``ssh`` or ``serial``.
        kind: What ``--kind`` matches: ``host``, ``qemu:cortex-m4``, ``ssh`` (or its ``kind=``), ``serial``.
        options: Scheme-specific settings (cpu, user, host, port, key, path, baud, ...).
    """

    spec: str
    scheme: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """A short name without credentials or query options."""
        o = self.options
        if self.scheme == "ssh":
            return f"ssh://{o['user'] + '@' if o.get('user') else ''}{o['host']}:{o['port']}"
        if self.scheme == "serial":
            return f"serial:{o['path']}"
        return self.spec.split("?")[0]

    def can_run(self, manifest: dict[str, Any]) -> str | None:
        """None when this device can run the bundle, else the reason it cannot."""
        runner = manifest.get("runner")
        if self.scheme == "host":
            return None
        if self.scheme in ("qemu", "serial"):
            if runner != "mcu":
                return f"{self.kind} runs mcu bundles only (this one is for {manifest.get('target')})"
            if self.scheme == "qemu":
                cpu = _norm_cpu((manifest.get("target_info") or {}).get("cpu", "cortex-m4"))
                if cpu != _norm_cpu(self.options["cpu"]):
                    return f"the bundle is built for {cpu}, the device is a {self.options['cpu']}"
            return None
        if runner not in HARNESS_BY_RUNNER:
            return f"{runner} bundles have no standalone harness for ssh devices"
        return None

    def bench(self, bundle: Path, *, iters: int = 100, warmup: int = 10, threads: int | None = None,
              timeout: float = 600.0) -> dict[str, Any]:
        """Run the bundle here and return its ``edgec.bench/1`` record (``device`` set to this device's label)."""
        bundle = Path(bundle)
        from edgec.compiler.bundle import read_manifest

        manifest = read_manifest(bundle)
        why = self.can_run(manifest)
        if why:
            raise DeviceError(f"device {self.label} cannot run {bundle}: {why}")
        if self.scheme in ("host", "qemu"):
            args = [sys.executable, "-m", "edgec", "bench", str(bundle), "--json", "--iters", str(iters),
                    "--warmup", str(warmup), "--device", "host" if self.scheme == "host" else "qemu"]
            if threads:
                args += ["--threads", str(threads)]
            record = bench_record(run_bounded(args, timeout), self.label)
        elif self.scheme == "ssh":
            from edgec.farm.ssh_device import bench_over_ssh

            record = bench_over_ssh(self, bundle, manifest, iters=iters, warmup=warmup, threads=threads,
                                    timeout=timeout)
        else:
            from edgec.farm.serial_device import bench_over_serial

            record = bench_over_serial(self, bundle, manifest, iters=iters, warmup=warmup, timeout=timeout)
        record["device"] = self.label
        return record

    def health(self, timeout: float = 20.0) -> tuple[bool, str]:
        """A quick check that the device answers: (ok, detail)."""
        import shutil

        try:
            if self.scheme == "host":
                return True, "ok"
            if self.scheme == "qemu":
                missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if not shutil.which(t)]
                return (not missing, "ok" if not missing else f"missing {', '.join(missing)}")
            if self.scheme == "ssh":
                from edgec.farm.ssh_device import ssh_health

                return ssh_health(self, timeout)
            from edgec.farm.serial_device import serial_health

            return serial_health(self)
        except Exception as exc:  # noqa: BLE001 - a health check reports, it never raises
            return False, " ".join(str(exc).split())[:200] or type(exc).__name__


def _norm_cpu(cpu: str) -> str:
    cpu = cpu.lower()
    return "cortex-m0" if cpu in ("cortex-m0plus", "cortex-m0+") else cpu


def parse_device(spec: str) -> Device:
    """Parse a device string (see the module docstring); ConfigError names what is wrong."""
    s = (spec or "").strip()
    if s == "host":
        return Device(s, "host", "host")
    if s == "qemu":
        s = "qemu:cortex-m4"
    if s.startswith("qemu:"):
        cpu = s.split(":", 1)[1].lower()
        if not cpu.startswith("cortex-"):
            cpu = "cortex-" + cpu
        if cpu not in QEMU_CPUS:
            raise ConfigError(f"unknown QEMU CPU in device '{spec}' (choose from {', '.join(QEMU_CPUS)})")
        return Device(s, "qemu", f"qemu:{_norm_cpu(cpu)}", {"cpu": cpu})
    if s.startswith("ssh://"):
        u = urlsplit(s)
        if not u.hostname:
            raise ConfigError(f"device '{spec}' has no host (expected ssh://user@host[:port])")
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        unknown = set(q) - {"key", "known_hosts", "python", "kind", "workdir"}
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))} in device '{spec}'")
        try:
            port = u.port or 22
        except ValueError as exc:
            raise ConfigError(f"bad port in device '{spec}'") from exc
        python = q.get("python", "python3")
        if not re.fullmatch(r"[A-Za-z0-9_./+-]+", python):
            raise ConfigError(f"python={python!r} in device '{spec}' is not a plain command path")
        opts = {"user": unquote(u.username) if u.username else None, "host": u.hostname, "port": port,
                "key": q.get("key"), "known_hosts": q.get("known_hosts"), "python": python,
                "workdir": q.get("workdir", "/tmp")}
        return Device(s, "ssh", q.get("kind", "ssh"), opts)
    if s.startswith("serial:"):
        rest = s[len("serial:"):]
        path, _, query = rest.partition("?")
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        if not path:
            raise ConfigError(f"device '{spec}' has no port (expected serial:/dev/ttyX[?baud=N])")
        try:
            baud = int(q.get("baud", 115200))
        except ValueError as exc:
            raise ConfigError(f"baud in device '{spec}' is not a number") from exc
        return Device(s, "serial", q.get("kind", "serial"), {"path": path, "baud": baud,
                                                             "flash": q.get("flash")})
    raise ConfigError(f"unknown device '{spec}': use host, qemu:cortex-mN, ssh://user@host[:port] or "
                      "serial:/dev/ttyX[?baud=N]")


def run_bounded(args: list[str], timeout: float, *, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` in its own process group; kill the whole group after ``timeout`` seconds."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise DeviceTimeout(f"the harness ran past --timeout {timeout:g} s and was killed") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def bench_record(done: subprocess.CompletedProcess, label: str) -> dict[str, Any]:
    """The ``edgec.bench/1`` record a harness printed, or DeviceError with its error line."""
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
        err = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "")
        raise DeviceError(f"the harness on {label} failed (exit {done.returncode}): {err[:300]}")
    try:
        record = json.loads(done.stdout)
    except ValueError as exc:
        raise DeviceError(f"the harness on {label} printed no JSON result") from exc
    if not isinstance(record, dict) or record.get("schema") != "edgec.bench/1":
        raise DeviceError(f"the harness on {label} printed a result that is not edgec.bench/1")
    return record
