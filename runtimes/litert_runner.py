"""LiteRT (TensorFlow Lite) runner for ``.tflite`` artifacts.

Uses ``ai_edge_litert``'s Interpreter, or ``tflite_runtime``'s where that is what is
installed. The default op resolver applies the XNNPACK delegate; ``reference_kernels=True``
selects TFLite's builtin reference kernels (``OpResolverType.BUILTIN_REF``), the ones the
MCU code generator is checked against bit for bit.

Tensors are addressed by the artifact's I/O names: the keys of the model's signature
(edgec bundles use ``serving_default`` keyed by the ONNX names), else the tensor names,
else their position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import BundleError, MissingDependencyError
from edgec.runtimes.base import Runner


def _interpreter_module():
    """(module, distribution name) of the first LiteRT Python runtime found."""
    try:
        from ai_edge_litert import interpreter as mod

        return mod, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore[no-redef]

        return mod, "tflite-runtime"
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "tflite") from None


class LiteRTRunner(Runner):
    """Runs a ``.tflite`` of the bundle on LiteRT (XNNPACK by default).

    Args:
        reference_kernels: Use TFLite's builtin reference kernels instead of the optimized
            ones and XNNPACK (slow; for bit-exact comparisons).
        xnnpack: False to run the optimized builtin kernels without the XNNPACK delegate.
        Other arguments as in `Runner`.
    """

    name = "litert"
    runtime = "litert"

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], *, reference_kernels: bool = False,
                 xnnpack: bool = True, **kw: Any):
        super().__init__(bundle_dir, manifest, **kw)
        self.reference_kernels = reference_kernels
        self.xnnpack = xnnpack and not reference_kernels
        self._dist: str | None = None

    def _resolver_name(self) -> str:
        if self.reference_kernels:
            return "BUILTIN_REF"
        return "AUTO" if self.xnnpack else "BUILTIN_WITHOUT_DEFAULT_DELEGATES"

    def _load_impl(self) -> None:
        mod, self._dist = _interpreter_module()
        kw: dict[str, Any] = {"model_path": str(self.model_path), "num_threads": self.threads}
        ort = getattr(mod, "OpResolverType", None)
        if ort is not None and self._resolver_name() != "AUTO":
            kw["experimental_op_resolver_type"] = getattr(ort, self._resolver_name())
        elif ort is None and self._resolver_name() != "AUTO":
            raise MissingDependencyError("a LiteRT Python runtime with OpResolverType (ai-edge-litert)", "tflite")
        try:
            interp = mod.Interpreter(**kw)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"LiteRT cannot load {self.model_path.name}: {first}") from exc
        self._interp = interp
        self._in = self._bind(interp, "inputs", self.native_in)
        self._out = self._bind(interp, "outputs", self.native_out)

    @staticmethod
    def _bind(interp, which: str, specs) -> list[tuple[str, dict]]:
        """Pair each expected I/O name with the interpreter's tensor details."""
        details = interp.get_input_details() if which == "inputs" else interp.get_output_details()
        by_key: dict[str, dict] = {}
        try:
            sigs = interp.get_signature_list()
        except Exception:
            sigs = {}
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            runner = interp.get_signature_runner(key)
            got = runner.get_input_details() if which == "inputs" else runner.get_output_details()
            by_index = {d["index"]: d for d in details}
            by_key = {k: by_index.get(v["index"], v) for k, v in got.items()}
            del runner  # holds tensor references that would make invoke() refuse to run
        by_name = {d["name"]: d for d in details}
        bound = []
        for pos, s in enumerate(specs):
            d = by_key.get(s.name) or by_name.get(s.name)
            if d is None and len(specs) == len(details):
                d = details[pos]
            if d is None:
                raise BundleError(f"the .tflite has no {which[:-1]} named '{s.name}' "
                                  f"(it has {sorted(by_key) or sorted(by_name)})")
            bound.append((s.name, d))
        return bound

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        interp = self._interp
        for (name, d), spec in zip(self._in, self.native_in):
            a = np.asarray(native[name])
            want = np.dtype(d["dtype"])
            scale, zp = d["quantization"]
            if a.dtype != want:
                if want.kind in "iu" and a.dtype.kind == "f" and scale:
                    info = np.iinfo(want)
                    a = np.clip(np.round(a / np.float32(scale)) + zp, info.min, info.max)
                a = a.astype(want)
            if tuple(a.shape) != tuple(d["shape"]):
                if a.size == int(np.prod(d["shape"])):
                    a = a.reshape(d["shape"])
                else:
                    interp.resize_tensor_input(d["index"], list(a.shape))
                    interp.allocate_tensors()
            interp.set_tensor(d["index"], np.array(a, order="C"))  # ascontiguousarray would make rank 0 rank 1
        interp.invoke()
        out = {}
        for (name, d), spec in zip(self._out, self.native_out):
            o = interp.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if np.dtype(spec.dtype).kind == "f" and o.dtype.kind in "iu" and scale:
                o = (o.astype(np.float32) - zp) * np.float32(scale)  # io="model" on an int8 file
            out[name] = o
        return out

    def close(self) -> None:
        self._interp = None
        super().close()

    def runtime_version(self) -> str | None:
        from edgec._deps import version_of

        if self._dist is None:
            try:
                _, self._dist = _interpreter_module()
            except MissingDependencyError:
                return None
        return version_of(self._dist)

    def info(self) -> dict[str, Any]:
        d = super().info()
        if self._dist:
            d["name"] = self._dist
        d["extra"] = {"op_resolver": self._resolver_name(), "xnnpack": self.xnnpack,
                      "reference_kernels": self.reference_kernels}
        return d
