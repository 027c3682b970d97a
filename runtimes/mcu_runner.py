"""Runner for the mcu target's C library: on the host through a gcc-built shared library
(ctypes), or on a Cortex-M board emulated by qemu-system-arm.

The bundle is never written to: compiled objects go to a cache folder keyed by the sha256
of the sources (`edgec.compiler.private_cache`: private, and each file's owner, mode and
sha256 checked before it is loaded). ``device="qemu"`` cross-compiles the library
with the bundle's harness, runs it under ``qemu-system-arm -icount shift=0`` (one
instruction per virtual nanosecond), reads the printed outputs and the SysTick count of
the run (converted to instructions with a calibration loop of known length), and checks
the outputs against the host build; both land in ``info()["extra"]``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edgec.errors import BundleError
from edgec.runtimes.base import Runner
from edgec.targets.mcu import MCUTarget


class MCURunner(Runner):
    name = MCUTarget.runner  # the mcu target names the runner of its bundles
    runtime = "edgec-c"
    devices = ("host", "qemu")
    #: QEMU runs only: per-layer instruction counts (``info()["extra"]["profile"]``) and the
    #: optimization level of the cross build.
    profile = False
    opt = "-O2"

    def _load_impl(self) -> None:
        from edgec.targets.mcu import toolchain

        self._c_dir = self.model_path.parent
        if not (self._c_dir / "edgec_model.h").exists():
            raise BundleError(f"{self._c_dir} lacks edgec_model.h")
        self._cpu = (self.manifest.get("target_info") or {}).get("cpu", "cortex-m4")
        self._lib_path = toolchain.build_host_lib(self._c_dir)
        self._lib = ctypes.CDLL(str(self._lib_path))
        self._fn = self._lib.edgec_model_run
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        self._extra: dict[str, Any] = {"cpu": self._cpu, "host_library": self._lib_path.name}
        if self.device == "qemu":
            toolchain.require_tool("arm-none-eabi-gcc")
            toolchain.require_tool("qemu-system-arm")

    def _host_one(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        outs = [np.zeros([int(d) for d in s.shape], dtype=s.dtype) for s in self.native_out]
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        ops = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        rc = self._fn(ins, ops)
        if rc != 0:
            raise RuntimeError(f"edgec_model_run returned {rc}")
        return outs

    def _split(self, native: dict[str, np.ndarray]) -> tuple[int, list[list[np.ndarray]]]:
        arrays = [np.asarray(native[s.name], dtype=s.dtype) for s in self.native_in]
        batch = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1
        want = int(self.native_in[0].shape[0]) if self.native_in and self.native_in[0].shape else 1
        if batch == want:
            return 1, [[np.ascontiguousarray(a) for a in arrays]]
        return batch, [[np.ascontiguousarray(a[i:i + 1]) for a in arrays] for i in range(batch)]

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, samples = self._split(native)
        results = [self._host_one(s) if self.device == "host" else self._qemu_one(s) for s in samples]
        outs = [np.concatenate([r[j] for r in results], axis=0) if n > 1 else results[0][j]
                for j in range(len(self.native_out))]
        return {s.name: o for s, o in zip(self.native_out, outs)}

    def _qemu_one(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        from edgec.targets.mcu import toolchain

        elf = toolchain.build_qemu_elf(self._c_dir, harness_io_c(arrays, self.native_out), self._cpu,
                                       opt=self.opt, profile=self.profile)
        text = toolchain.run_qemu(elf, self._cpu, timeout=120.0)
        outs, ticks, calib = parse_qemu_output(text, self.native_out)
        host = self._host_one(arrays)
        exact = all(np.array_equal(a, b) for a, b in zip(outs, host))
        insn_per_tick = calib[1] / calib[0] if calib and calib[0] else None
        board = toolchain.BOARDS[self._cpu]
        self._extra.update({
            "qemu_board": board.machine, "qemu_cpu": board.qemu_cpu, "qemu_note": board.note or None,
            "systick_ticks": ticks,
            "instructions": int(round(ticks * insn_per_tick)) if insn_per_tick else None,
            "instructions_method": "qemu -icount shift=0; SysTick ticks of edgec_model_run x instructions per "
                                   "tick from a calibration loop of 400000 instructions",
            "matches_host": exact, "stack_bytes": parse_stack(text),
        })
        if self.profile and insn_per_tick:
            self._extra["profile"] = layer_profile(text, insn_per_tick,
                                                   (self.manifest.get("target_info") or {}).get("layers") or [])
        if not exact:
            raise RuntimeError("QEMU outputs differ from the host build of the same C")
        return outs

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["extra"] = dict(getattr(self, "_extra", {}))
        return d

    def runtime_version(self) -> str | None:
        return str((self.manifest.get("target_info") or {}).get("cpu", ""))


def harness_io_c(arrays: list[np.ndarray], out_specs) -> str:
    lines = ["/* generated by edgec's mcu runner: inputs and output buffers for one run */",
             "#include <stdint.h>", '#include "edgec_model.h"', ""]
    for i, a in enumerate(arrays):
        data = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
        body = ",".join(str(int(v)) for v in data) or "0"
        lines.append(f"static const uint8_t in{i}[{max(1, data.size)}] __attribute__((aligned(8))) = {{{body}}};")
    for i, s in enumerate(out_specs):
        nbytes = int(np.prod([int(d) for d in s.shape])) * np.dtype(s.dtype).itemsize
        lines.append(f"static uint8_t out{i}[{max(1, nbytes)}] __attribute__((aligned(8)));")
    lines.append("const void *const edgec_harness_inputs[EDGEC_NUM_INPUTS] = {"
                 + ", ".join(f"in{i}" for i in range(len(arrays))) + "};")
    lines.append("void *const edgec_harness_outputs[EDGEC_NUM_OUTPUTS] = {"
                 + ", ".join(f"out{i}" for i in range(len(out_specs))) + "};")
    sizes = [int(np.prod([int(d) for d in s.shape])) * np.dtype(s.dtype).itemsize for s in out_specs]
    lines.append("const uint32_t edgec_harness_output_bytes[EDGEC_NUM_OUTPUTS] = {"
                 + ", ".join(map(str, sizes)) + "};")
    return "\n".join(lines) + "\n"


def parse_stack(text: str) -> int | None:
    """Bytes of stack the run used below main's frame (painted stack)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "EDGEC_STACK":
            return int(parts[1])
    return None


def layer_profile(text: str, insn_per_tick: float, layers: list[dict]) -> list[dict[str, Any]]:
    """Rows (name, op, macs, instructions, instr_per_mac) from the EDGEC_PROF lines."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "EDGEC_PROF":
            i, n = int(parts[1]), int(round(int(parts[2]) * insn_per_tick))
            meta = layers[i] if i < len(layers) else {"name": f"layer{i}", "op": "?", "macs": 0}
            rows.append({"name": meta["name"], "op": meta["op"], "macs": meta["macs"], "instructions": n,
                         "instr_per_mac": round(n / meta["macs"], 3) if meta["macs"] else None})
    return rows


def parse_qemu_output(text: str, out_specs) -> tuple[list[np.ndarray], int, tuple[int, int] | None]:
    outs: dict[int, np.ndarray] = {}
    ticks, calib = 0, None
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts:
            continue
        if parts[0] == "EDGEC_OUT" and len(parts) >= 2:
            i = int(parts[1])
            s = out_specs[i]
            raw = bytes.fromhex(parts[2] if len(parts) > 2 else "")
            outs[i] = np.frombuffer(raw, dtype=s.dtype).reshape([int(d) for d in s.shape]).copy()
        elif parts[0] == "EDGEC_TICKS":
            ticks = int(parts[1])
        elif parts[0] == "EDGEC_CALIB":
            calib = (int(parts[1]), int(parts[2]))
    if len(outs) != len(out_specs):
        raise RuntimeError(f"QEMU harness printed {len(outs)} of {len(out_specs)} outputs: {text[-2000:]}")
    return [outs[i] for i in range(len(out_specs))], ticks, calib
