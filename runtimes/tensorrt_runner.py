"""TensorRT runner: runs a jetson bundle's ``model.engine`` on this machine's GPU.

When the engine is absent it is built from the bundle's ``model.onnx`` and
``engine_config.json`` with the same code as the bundle's ``build_engine.py``
(`edgec.targets.tensorrt.trt_engine`). Needs the ``tensorrt`` module and a CUDA GPU; without
them `load` raises a `MissingDependencyError` saying so (the bundle then runs on the
device with ``bench_trt.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import BundleError, EdgecError, MissingDependencyError
from edgec.runtimes.base import Runner


class NoGPUError(MissingDependencyError):
    """TensorRT is importable but there is no CUDA GPU to build or run engines on."""

    def __init__(self, hint: str = "run the bundle's build_engine.py and bench_trt.py on the Jetson"):
        self.what, self.extra = "a CUDA GPU", None
        EdgecError.__init__(self, f"no CUDA GPU here: TensorRT engines need an NVIDIA GPU; {hint}")


def require_tensorrt_and_gpu():
    """Import tensorrt or raise one clear line (install, or no GPU)."""
    from edgec.targets.tensorrt import trt_engine as te

    try:
        trt = te.import_tensorrt()
    except te.TensorRTMissing:
        raise MissingDependencyError(
            "tensorrt", "tensorrt",
            "on a Jetson it comes with JetPack; engines also need a CUDA GPU") from None
    if not te.gpu_available():
        raise NoGPUError()
    return trt


class TensorRTRunner(Runner):
    """Runs (building it first when missing) the bundle's TensorRT engine."""

    name = "tensorrt"
    runtime = "tensorrt"

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], **kw: Any):
        super().__init__(bundle_dir, manifest, **kw)
        info = manifest.get("target_info", {})
        self.config_path = self.bundle_dir / info.get("engine_config", "engine_config.json")
        if self.model_path.suffix == ".engine":
            self.engine_path = self.model_path
        else:
            self.engine_path = self.bundle_dir / (info.get("engine") or "model.engine")
        self._session = None
        self._trt = None

    def _load_impl(self) -> None:
        from edgec.targets.tensorrt import trt_engine as te

        self._trt = require_tensorrt_and_gpu()
        try:
            if not self.engine_path.exists():
                if not self.config_path.exists():
                    raise BundleError(f"bundle {self.bundle_dir} has neither {self.engine_path.name} nor "
                                      f"{self.config_path.name}")
                cfg = te.load_config(self.config_path)
                plan = te.build_plan(cfg, self.bundle_dir, engine=str(self.engine_path))
                te.build_engine(plan, trt=self._trt)
            self._session = te.EngineSession(self.engine_path, trt=self._trt)
        except te.EngineError as exc:
            raise BundleError(str(exc)) from None

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edgec.targets.tensorrt import trt_engine as te

        try:
            return self._session.run(native)
        except te.EngineError as exc:
            raise BundleError(str(exc)) from None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        super().close()

    def runtime_version(self) -> str | None:
        return str(self._trt.__version__) if self._trt is not None else None

    def info(self) -> dict[str, Any]:
        out = super().info()
        if self._session is not None:
            out["extra"] = {"engine": self.engine_path.name, "gpu": self._session.cuda.device_name(),
                            "cuda_binding": self._session.cuda.kind}
        return out
