"""Compilers and QEMU for the mcu target: host gcc (shared library for ctypes),
arm-none-eabi-gcc (size report, QEMU harness) and qemu-system-arm boards per CPU."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgec.compiler import private_cache
from edgec.errors import ConfigError, MissingDependencyError

APT = "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
HARNESS_DIR = Path(__file__).parent / "harness"

CPUS = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


@dataclass(frozen=True)
class Board:
    machine: str
    qemu_cpu: str | None  # None: the board has one fixed CPU
    flash: tuple[int, int]
    ram: tuple[int, int]
    note: str = ""


# QEMU 7.2 boards. The BBC micro:bit (nRF51822) is a real Cortex-M0: ARMv6-M, the same ISA
# as the M0+, so M0/M0+ code runs on an M0 (256 KiB flash, 16 KiB RAM).
_MICROBIT = Board("microbit", None, (0x0, 0x40000), (0x20000000, 0x4000),
                  "Cortex-M0 (micro:bit): ARMv6-M, the M0+ instruction set; 16 KiB RAM")
BOARDS: dict[str, Board] = {
    "cortex-m0": _MICROBIT,
    "cortex-m0plus": _MICROBIT,
    "cortex-m3": Board("mps2-an385", "cortex-m3", (0x0, 0x400000), (0x20000000, 0x400000)),
    "cortex-m4": Board("mps2-an386", "cortex-m4", (0x0, 0x400000), (0x20000000, 0x400000)),
    "cortex-m7": Board("mps2-an500", "cortex-m7", (0x0, 0x400000), (0x20000000, 0x400000)),
    "cortex-m33": Board("mps2-an505", "cortex-m33", (0x10000000, 0x400000), (0x38000000, 0x200000)),
    "cortex-m55": Board("mps3-an547", "cortex-m55", (0x0, 0x80000), (0x21000000, 0x100000)),
}


def cache_dir() -> Path:
    """The private, checked cache folder (see `edgec.compiler.private_cache`)."""
    return private_cache.private_dir("mcu")


def which(tool: str) -> str | None:
    return shutil.which(tool)


def require_tool(tool: str) -> str:
    path = which(tool)
    if path is None:
        hint = f"apt-get install -y {'gcc' if tool in ('gcc', 'cc') else ''}" if tool in ("gcc", "cc") else APT
        raise MissingDependencyError(tool, None, hint)
    return path


def host_cc() -> str:
    for cc in (os.environ.get("CC"), "gcc", "cc"):
        if cc and which(cc):
            return cc
    raise MissingDependencyError("a C compiler (gcc)", None, "apt-get install -y gcc")


def sources_digest(files: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:24]


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{r.stderr[-4000:]}")
    return r


def build_host_lib(c_dir: Path, *, sanitize: bool = False, opt: str = "-O2") -> Path:
    """Compile the bundle's C into a shared library in the cache (keyed by source hash)."""
    cc = host_cc()
    srcs = sorted(c_dir.glob("*.c"))
    hdrs = sorted(c_dir.glob("*.h"))
    flags = [*WARN, opt, "-fPIC", "-shared"]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]
    key = sources_digest(srcs + hdrs, " ".join([cc, *flags]))
    # The library is checked (owner, mode, sha256 recorded at build time) before ctypes loads it.
    return private_cache.cached_build(
        "mcu", f"host-{key}.so", key,
        lambda tmp: _run([cc, *flags, "-I", str(c_dir), *map(str, srcs), "-o", str(tmp)], "host C build"))


def arm_flags(cpu: str, opt: str = "-Os", fpu: bool = False) -> list[str]:
    """Compiler flags for ``cpu``; they also pick the kernels' instruction set.

    -mcpu turns on the DSP extension (SMLAD, M4/M7/M33) and Helium (M55), which the
    kernels detect through ACLE's __ARM_FEATURE_DSP / __ARM_FEATURE_MVE. Helium needs the
    hard-float ABI. ``fpu`` (the library has float I/O ops) uses the M4F/M7/M33 FPU with
    the soft-float calling convention, so the library still links with soft-ABI firmware.
    """
    if cpu not in CPUS:
        raise ConfigError(f"unknown --cpu {cpu} (choose from {', '.join(CPUS)})")
    if cpu == "cortex-m55":
        abi = "-mfloat-abi=hard"
    elif fpu and cpu in ("cortex-m4", "cortex-m7", "cortex-m33"):
        abi = "-mfloat-abi=softfp"
    else:
        abi = "-mfloat-abi=soft"
    return [f"-mcpu={cpu}", "-mthumb", abi, opt, "-ffunction-sections", "-fdata-sections"]


def uses_fpu(c_dir: Path) -> bool:
    """The library converts float I/O (the only float code the kernels have)."""
    return (c_dir / "float_io.c").exists()


def arm_size(c_dir: Path, cpu: str, work: Path | None = None, opt: str = "-Os") -> dict[str, int]:
    """text/data/bss of the library linked alone (startup stub + a call, --gc-sections)."""
    gcc = require_tool("arm-none-eabi-gcc")
    size = require_tool("arm-none-eabi-size")
    srcs = sorted(c_dir.glob("*.c"))
    with tempfile.TemporaryDirectory(dir=work) as td:
        td = Path(td)
        stub = td / "stub.c"
        stub.write_text(
            '#include "edgec_model.h"\n'
            "void _start(void);\n"
            "void _start(void) { (void)edgec_model_run((const void *const *)0, (void *const *)0); for (;;) {} }\n")
        elf = td / "lib.elf"
        _run([gcc, *WARN, *arm_flags(cpu, opt, uses_fpu(c_dir)), "-I", str(c_dir), *map(str, srcs), str(stub),
              "-nostdlib",
              "-Wl,--gc-sections", "-Wl,-e,_start", "-o", str(elf), "-lc", "-lgcc"], "arm-none-eabi-gcc build")
        r = _run([size, "-A", str(elf)], "arm-none-eabi-size")
        text = data = bss = 0
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            name, n = parts[0], int(parts[1])
            if name.startswith((".text", ".rodata", ".ARM")):
                text += n
            elif name.startswith(".data"):
                data += n
            elif name.startswith(".bss"):
                bss += n
        return {"text": text, "data": data, "bss": bss}


def build_qemu_elf(c_dir: Path, io_c: str, cpu: str, opt: str = "-O2", profile: bool = False) -> Path:
    """Cross-compile library + harness + inputs into an ELF for the CPU's QEMU board.

    ``profile`` defines EDGEC_PROFILE: the model marks each layer's start and the harness
    prints the SysTick count at every mark."""
    return build_harness_elf(c_dir, io_c, cpu, BOARDS[cpu], mains=("cm_main.c",), specs="rdimon.specs",
                             defines=("-DEDGEC_PROFILE",) if profile else (), opt=opt, prefix="qemu")


def build_harness_elf(c_dir: Path, io_c: str, cpu: str, board: Board, *, mains: tuple[str, ...], specs: str,
                      defines: tuple[str, ...] = (), opt: str = "-O2", prefix: str = "qemu") -> Path:
    """Library + ``cm_startup.c`` + harness ``mains`` (from ``harness/``) + inputs, linked for ``board``.

    Kept in the private cache, keyed by every source, the flags and the inputs: the QEMU
    semihosting harness (``cm_main.c``) and the UART bench firmware (``uart_main.c``) both
    come from here."""
    gcc = require_tool("arm-none-eabi-gcc")
    srcs = sorted(c_dir.glob("*.c"))
    harness = [HARNESS_DIR / "cm_startup.c", *(HARNESS_DIR / m for m in mains)]
    hfiles = harness + [HARNESS_DIR / "cm_timing.h", HARNESS_DIR / "link_mps2.ld"]
    flags = arm_flags(cpu, opt, uses_fpu(c_dir)) + list(defines)
    key = sources_digest(srcs + sorted(c_dir.glob("*.h")) + hfiles,
                         " ".join(flags) + cpu + board.machine + specs + io_c)
    return private_cache.cached_build(
        "mcu", f"{prefix}-{key}.elf", key,
        lambda out: _link_harness_elf(c_dir, io_c, flags, gcc, board, srcs, harness, specs, out))


def _link_harness_elf(c_dir: Path, io_c: str, flags: list[str], gcc: str, board: Board, srcs: list[Path],
                      harness: list[Path], specs: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        ld = (HARNESS_DIR / "link_mps2.ld").read_text()
        for k, v in (("FLASH_ORIGIN", board.flash[0]), ("FLASH_LENGTH", board.flash[1]),
                     ("RAM_ORIGIN", board.ram[0]), ("RAM_LENGTH", board.ram[1])):
            ld = ld.replace(f"@{k}@", hex(v))
        (td / "link.ld").write_text(ld)
        (td / "harness_io.c").write_text(io_c)
        objs = []
        for src in srcs:
            o = td / (src.stem + ".o")
            _run([gcc, *WARN, *flags, "-I", str(c_dir), "-c", str(src), "-o", str(o)], "arm library build")
            objs.append(str(o))
        tmp = td / "a.elf"
        _run([gcc, *flags, "-std=gnu99", "-I", str(c_dir), "-nostartfiles", f"--specs={specs}",
              "-T", str(td / "link.ld"), *map(str, harness), str(td / "harness_io.c"), *objs, "-Wl,--gc-sections",
              "-o", str(tmp)], "arm harness link")
        shutil.copyfile(tmp, out)


def run_qemu(elf: Path, cpu: str, timeout: float = 30.0) -> str:
    qemu = require_tool("qemu-system-arm")
    board = BOARDS[cpu]
    cmd = [qemu, "-M", board.machine, *(["-cpu", board.qemu_cpu] if board.qemu_cpu else []),
           "-nographic", "-monitor", "none",
           "-serial", "none", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", str(elf)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"QEMU ({board.machine}) did not finish within {timeout:.0f} s") from exc
    if r.returncode != 0:
        raise RuntimeError(f"QEMU ({board.machine}) exited with {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return r.stdout
