"""``serial:`` devices: an MCU board running the bundle's UART bench firmware.

The firmware (``targets/mcu/harness/uart_main.c`` + a UART port) is built from the bundle's C
library with arm-none-eabi-gcc, flashed with ``--flash pyocd:TARGET``, ``openocd:CFG`` or
``cmd:"... {elf} ..."``, and then spoken to over the serial line (pyserial; ``socket://HOST:PORT``
URLs reach QEMU's UART): ``HELLO`` -> ``EDGEC READY``, ``BENCH iters warmup`` -> one
``EDGEC RESULT`` line whose CRC-32 is checked. The outputs' CRC is compared with the host
build of the same C on the same inputs.

Device options: ``baud`` (115200), ``board`` (a QEMU/MPS machine name; default from the
bundle's CPU), ``clock`` (core clock in Hz for milliseconds; default the board's), ``flash``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgec._deps import require
from edgec.farm.devices import Device, DeviceError, DeviceTimeout, run_bounded

# CMSDK UART0 per board (the secure alias where QEMU boots the core in secure state), and the
# SysTick clock that QEMU's -icount shift=0 virtual time gives these boards.
UART_BASE = {"mps2-an385": 0x40004000, "mps2-an386": 0x40004000, "mps2-an500": 0x40004000,
             "mps2-an505": 0x50200000, "mps3-an547": 0x59303000}
DEFAULT_CLOCK_HZ = {"mps2-an385": 25_000_000, "mps2-an386": 25_000_000, "mps2-an500": 25_000_000,
                    "mps2-an505": 20_000_000, "mps3-an547": 32_000_000}
_RESULT = re.compile(r"^(EDGEC [A-Z]+.*) \*([0-9a-f]{8})$")


def build_firmware(c_dir: Path, io_c: str, cpu: str, board: str, baud: int, clock_hz: int) -> Path:
    """Cross-compile the bundle's library with the UART bench main into an ELF (in the private cache)."""
    from edgec.targets.mcu import toolchain as tc

    if board not in UART_BASE:
        raise DeviceError(f"no UART port for board {board} (ports: {', '.join(UART_BASE)}); give ?board=")
    b = next((v for v in tc.BOARDS.values() if v.machine == board), None)
    if b is None:
        raise DeviceError(f"unknown board {board}")
    defines = (f"-DEDGEC_UART_BASE={UART_BASE[board]:#x}u", f"-DEDGEC_UART_BAUDDIV={max(16, clock_hz // baud)}u")
    try:
        return tc.build_harness_elf(Path(c_dir), io_c, cpu, b, mains=("uart_main.c", "uart_cmsdk.c"),
                                    specs="nosys.specs", defines=defines, prefix="uart")
    except RuntimeError as exc:  # the toolchain's own failure text: keep its first line
        raise DeviceError(f"building the UART firmware failed: {str(exc).splitlines()[0]}") from exc


def flash(method: str | None, elf: Path, timeout: float) -> None:
    """Program the board: ``pyocd:TARGET``, ``openocd:CFG``, ``cmd:COMMAND`` ({elf} is replaced), or nothing."""
    if not method:
        return
    kind, _, arg = method.partition(":")
    if kind == "pyocd":
        args = ["pyocd", "flash", "-t", arg, str(elf)]
    elif kind == "openocd":
        args = ["openocd", "-f", arg, "-c", f"program {elf} verify reset exit"]
    elif kind == "cmd":
        args = [a.replace("{elf}", str(elf)) for a in shlex.split(arg)]
    else:
        raise DeviceError(f"unknown --flash method {kind!r} (pyocd:TARGET, openocd:CFG or cmd:\"...\")")
    if not args or not shutil.which(args[0]):
        raise DeviceError(f"flash tool {args[0] if args else '?'} is not installed")
    done = run_bounded(args, timeout)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise DeviceError(f"flashing with {kind} failed (exit {done.returncode}): {tail}")


def _open(device: Device, timeout: float):
    serial = require("serial", "farm", "pyserial")
    try:
        return serial.serial_for_url(device.options["path"], baudrate=device.options["baud"], timeout=0.2)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DeviceError(f"cannot open {device.label}: {exc}") from exc


def _read_line(port, deadline: float) -> str | None:
    buf = bytearray()
    while time.monotonic() < deadline:
        c = port.read(1)
        if not c:
            if not buf:
                return None
            continue
        if c == b"\n":
            return buf.decode(errors="replace").strip()
        buf += c
    return None


def _checked(line: str) -> str | None:
    m = _RESULT.match(line)
    if not m or f"{zlib.crc32(m.group(1).encode()):08x}" != m.group(2):
        return None
    return m.group(1)


def _handshake(port, deadline: float) -> None:
    while time.monotonic() < deadline:
        port.write(b"HELLO\n")
        end = min(deadline, time.monotonic() + 1.0)
        while time.monotonic() < end:
            line = _read_line(port, end)
            if line and _checked(line) == "EDGEC READY 1":
                return
    raise DeviceTimeout("the board did not answer HELLO (is the firmware flashed and the port right?)")


def bench_over_serial(device: Device, bundle: Path, manifest: dict[str, Any], *, iters: int, warmup: int,
                      timeout: float) -> dict[str, Any]:
    """Build, flash and time the bundle's firmware; returns an edgec.bench/1 record."""
    from edgec.runtimes import io as rio
    from edgec.runtimes.mcu_runner import MCURunner, harness_io_c
    from edgec.targets.mcu import toolchain as tc

    started = time.monotonic()
    cpu = (manifest.get("target_info") or {}).get("cpu", "cortex-m4")
    board = device.options.get("board") or tc.BOARDS[cpu].machine
    clock = int(device.options.get("clock") or DEFAULT_CLOCK_HZ.get(board, 25_000_000))
    runner = MCURunner(bundle, manifest)
    runner.load()
    arrays = [np.ascontiguousarray(a) for a in
              runner.prepare(rio.synthetic_feeds(runner.model_specs)).values()]
    host = runner._host_one(arrays)
    host_crc = 0
    for o in host:
        host_crc = zlib.crc32(np.ascontiguousarray(o).tobytes(), host_crc)
    elf = build_firmware(bundle / manifest["artifact"]["path"].rsplit("/", 1)[0], harness_io_c(arrays, runner.native_out),
                         cpu, board, device.options["baud"], clock)
    flash(device.options.get("flash"), elf, timeout)
    port = _open(device, timeout)
    try:
        deadline = started + timeout
        _handshake(port, deadline)
        port.write(f"BENCH {int(iters)} {int(warmup)}\n".encode())
        while True:
            line = _read_line(port, deadline)
            if line is None:
                raise DeviceTimeout(f"no result from {device.label} within --timeout {timeout:g} s")
            text = _checked(line)
            if text and text.startswith("EDGEC RESULT"):
                break
    finally:
        port.close()
    f = dict(kv.split("=", 1) for kv in text.split()[2:])
    if int(f["rc"]) != 0:
        raise DeviceError(f"edgec_model_run returned {f['rc']} on {device.label}")
    if f["out_crc"] != f"{host_crc:08x}":
        raise DeviceError(f"outputs on {device.label} differ from the host build of the same C (CRC "
                          f"{f['out_crc']} vs {host_crc:08x})")
    ms = {k: int(f[k]) * 1e3 / clock for k in ("min", "p50", "p90", "p99", "max")}
    n = int(f["iters"])
    ms["mean"] = ((int(f["sum_hi"]) << 32) + int(f["sum_lo"])) * 1e3 / clock / max(n, 1)
    calib = int(f["calib"])
    return {
        "schema": "edgec.bench/1", "runner": "mcu", "runtime": {"name": "edgec-c", "version": cpu},
        "target": manifest.get("target"), "precision": manifest.get("precision"), "device": device.label,
        "threads": None, "warmup": int(warmup), "iters": n, "batch": 1,
        "latency_ms": {k: ms[k] for k in ("mean", "p50", "p90", "p99", "min", "max")},
        "throughput_per_s": 1e3 / ms["mean"] if ms["mean"] > 0 else float("inf"), "peak_rss_bytes": None,
        "extra": {"board": board, "clock_hz": clock, "ticks_p50": int(f["p50"]),
                  "instructions_p50": int(round(int(f["p50"]) * 400000 / calib)) if calib else None,
                  "matches_host": True, "firmware": elf.name,
                  "protocol": "edgec-uart/1"},
    }


def serial_health(device: Device) -> tuple[bool, str]:
    """The port opens (the firmware is flashed per run, so it need not answer yet)."""
    _open(device, 5.0).close()
    return True, "port opens"
