"""``ssh://`` devices: copy a bundle with SFTP, check it, run its standalone harness, clean up.

paramiko does the SSH; host keys are checked against ``known_hosts=`` (or the user's
``~/.ssh/known_hosts``) and an unknown host is refused, never added silently. The remote
command line is built from fixed words, the validated ``python=`` path, a folder that
``mktemp -d`` made, and integers: nothing from the bundle reaches a shell.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from edgec._deps import require
from edgec.farm.devices import HARNESS_BY_RUNNER, Device, DeviceError, DeviceTimeout, bench_record

_SAFE_DIR = re.compile(r"/[A-Za-z0-9_./-]+")


def _connect(device: Device, timeout: float):
    paramiko = require("paramiko", "farm")
    o = device.options
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if o.get("known_hosts"):
        client.load_host_keys(str(Path(o["known_hosts"]).expanduser()))
    else:
        client.load_system_host_keys()
    try:
        client.connect(o["host"], port=o["port"], username=o.get("user"),
                       key_filename=str(Path(o["key"]).expanduser()) if o.get("key") else None,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, allow_agent=not o.get("key"),
                       look_for_keys=not o.get("key"))
    except paramiko.SSHException as exc:
        client.close()
        raise DeviceError(f"ssh to {device.label} failed: {exc}") from exc
    except OSError as exc:
        client.close()
        raise DeviceError(f"ssh to {device.label} failed: {exc.strerror or exc}") from exc
    return client


def _exec(client, command: str, timeout: float) -> tuple[int, str, str]:
    """Run ``command`` remotely; close the channel (which ends the remote process group) on timeout."""
    chan = client.get_transport().open_session()
    chan.settimeout(timeout)
    chan.exec_command(command)
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if time.monotonic() > deadline:
            chan.close()
            raise DeviceTimeout(f"the harness ran past --timeout {timeout:g} s and was killed")
        time.sleep(0.02)
    return chan.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")


def bench_over_ssh(device: Device, bundle: Path, manifest: dict[str, Any], *, iters: int, warmup: int,
                   threads: int | None, timeout: float) -> dict[str, Any]:
    """Copy ``bundle`` to a fresh remote folder, run its harness there, return the result."""
    harness = HARNESS_BY_RUNNER[manifest["runner"]]
    files = [e["path"] for e in manifest.get("files", [])] + ["manifest.json"]
    if harness not in files:
        raise DeviceError(f"{bundle} has no {harness}: rebuild it with this edgec to run it on {device.label}")
    o = device.options
    started = time.monotonic()
    client = _connect(device, min(timeout, 30.0))
    remote = None
    try:
        code, out, err = _exec(client, f"mktemp -d {shlex.quote(o['workdir'].rstrip('/') + '/edgec-bundle.XXXXXXXX')}",
                               30.0)
        remote = out.strip()
        if code != 0 or not _SAFE_DIR.fullmatch(remote) or ".." in remote:
            raise DeviceError(f"could not make a folder on {device.label}: {err.strip() or remote!r}")
        try:
            sftp = client.open_sftp()
        except Exception as exc:  # noqa: BLE001 - paramiko raises SSHException or OSError here
            raise DeviceError(f"{device.label} offers no SFTP to copy the bundle: {exc}") from exc
        try:
            made = {remote}
            for rel in sorted(files):
                parts = Path(rel).parts
                if Path(rel).is_absolute() or ".." in parts:
                    raise DeviceError(f"manifest of {bundle} lists a file outside the bundle: {rel!r}")
                d = remote
                for p in parts[:-1]:
                    d = f"{d}/{p}"
                    if d not in made:
                        sftp.mkdir(d)
                        made.add(d)
                sftp.put(str(bundle / rel), f"{remote}/{rel}")
        finally:
            sftp.close()
        left = max(1.0, timeout - (time.monotonic() - started))
        args = [o["python"], f"{remote}/{harness}", "--bundle", remote, "--iters", str(int(iters)),
                "--warmup", str(int(warmup)), "--device-name", "remote"]
        if threads:
            args += ["--threads", str(int(threads))]
        if harness == "bench_tflite.py":  # the tflite harness takes the model path, not --bundle
            args = [o["python"], f"{remote}/{harness}", f"{remote}/{manifest['artifact']['path']}", "--iters",
                    str(int(iters)), "--warmup", str(int(warmup))] + (["--threads", str(int(threads))] if threads else [])
        # The remote `timeout` kills a hung harness even if this side loses the connection.
        args = ["timeout", "-s", "KILL", str(int(left) + 1)] + args
        t_run = time.monotonic()
        code, out, err = _exec(client, "exec " + " ".join(shlex.quote(a) for a in args), left + 5)
        if code != 0 and time.monotonic() - t_run >= left - 0.5:
            raise DeviceTimeout(f"the harness ran past --timeout {timeout:g} s and was killed")
        record = bench_record(subprocess.CompletedProcess(args, code, out, err), device.label)
        record.setdefault("extra", {})["remote"] = {"host": o["host"], "port": o["port"]}
        return record
    finally:
        if remote and _SAFE_DIR.fullmatch(remote) and "/edgec-bundle." in remote:
            try:
                _exec(client, f"rm -rf {shlex.quote(remote)}", 30.0)
            except Exception:  # noqa: BLE001 - cleanup must not hide the run's own result or error
                pass
        client.close()


def ssh_health(device: Device, timeout: float) -> tuple[bool, str]:
    client = _connect(device, timeout)
    try:
        code, out, err = _exec(client, f"{shlex.quote(device.options['python'])} -c 'import sys; print(sys.version.split()[0])'",
                               timeout)
        return (code == 0, f"python {out.strip()}" if code == 0 else (err.strip() or f"exit {code}")[:200])
    finally:
        client.close()
