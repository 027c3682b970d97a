"""The `Runner` interface: load a bundle's artifact and run it.

Conventions every runner follows, so `bench` and `compare` are written once:

* `infer` takes and returns tensors in the *model convention*: the names, layout and
  float dtypes of ``manifest["model_inputs"]`` / ``manifest["model_outputs"]`` (what the
  source model took). The base class converts to and from the artifact's own I/O
  (``manifest["inputs"]``/``["outputs"]``: NHWC layout, int8 with scale/zero point, ...)
  in `prepare` and `finish`, so a runner only implements `_run_impl` on native tensors.
* `bench` times `run_native` only: conversions are not part of the model's latency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgec.errors import BundleError, CalibrationDataError, ConfigError, EdgecError
from edgec.runtimes import io as rio


class Runner(ABC):
    """Runs one model file of a bundle.

    Args:
        bundle_dir: The bundle folder.
        manifest: The bundle's manifest (already parsed).
        model_path: File to load, relative to the bundle (default: the manifest's artifact).
        threads: Intra-op threads; None lets the runtime decide.
        device: Where to run (``host`` unless the runner lists more in ``devices``).
        io: ``artifact`` (default) to use the artifact's I/O specs, ``model`` when the
            file runs in the model convention itself (the float reference ONNX).
    """

    name: ClassVar[str]
    runtime: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("host",)
    # Whether `intermediate_tensors` can read tensors inside the artifact (``debug layers --runtime target``).
    exposes_intermediate_tensors: ClassVar[bool] = False
    # ``module:Class`` of its `edgec.runtimes.generation.DecoderSession`, when it runs generation bundles.
    decoder_session: ClassVar[str | None] = None

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], *, model_path: str | None = None,
                 threads: int | None = None, device: str = "host", io: str = "artifact"):
        if device not in self.devices:
            raise ConfigError(
                f"runner '{self.name}' cannot run on device '{device}' (it runs on: {', '.join(self.devices)})"
            )
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        rel = model_path or manifest["artifact"]["path"]
        self.model_path = self.bundle_dir / rel
        if not self.model_path.exists():
            raise BundleError(f"bundle {self.bundle_dir} lacks {rel}")
        self.threads = threads
        self.device = device
        self.model_specs = [rio.spec(d) for d in manifest["model_inputs"]]
        self.model_out_specs = [rio.spec(d) for d in manifest["model_outputs"]]
        if io == "model":
            self.native_in, self.native_out = self.model_specs, self.model_out_specs
        else:
            self.native_in = [rio.spec(d) for d in manifest["inputs"]]
            self.native_out = [rio.spec(d) for d in manifest["outputs"]]
        self._loaded = False

    # -- lifecycle -----------------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            try:
                self._load_impl()
            except EdgecError:
                raise
            except Exception as exc:  # noqa: BLE001 - runtimes raise anything on a corrupt artifact
                raise BundleError(f"{self.name} cannot load '{self.model_path}': {_reason(exc)} "
                                  "(the artifact is corrupt or was built for another runtime version)") from exc
            self._loaded = True
        return self

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running -------------------------------------------------------------------
    def prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate model-convention feeds and convert them to the artifact's inputs."""
        rio.validate_feeds(feeds, self.model_specs)
        return rio.to_native(feeds, self.model_specs, self.native_in)

    def run_native(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on artifact-convention inputs; return artifact-convention outputs."""
        if not self._loaded:
            self.load()
        return self._run_impl(native)

    def finish(self, native_out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Convert artifact outputs to the model convention (float, source layout)."""
        return rio.from_native(native_out, self.native_out, self.model_out_specs)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one sample (or batch) given in the model convention."""
        try:
            native = self.prepare(feeds)
        except KeyError as exc:
            raise CalibrationDataError(f"input {exc} is missing from the data") from exc
        return self.finish(self.run_native(native))

    def info(self) -> dict[str, Any]:
        """Runtime name/version, device and threads, for bench results."""
        return {"name": self.runtime or self.name, "version": self.runtime_version(),
                "device": self.device, "threads": self.threads}

    def runtime_version(self) -> str | None:
        return None

    def intermediate_tensors(self, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Values of the artifact's tensors ``names`` for one sample given in the model convention.

        Names the runtime cannot read (fused away, or not in the artifact) are left out.
        Runners that set ``exposes_intermediate_tensors`` implement this.
        """
        raise NotImplementedError(f"runner '{self.name}' does not expose intermediate tensors")

    @abstractmethod
    def _load_impl(self) -> None:
        """Load ``self.model_path``."""

    @abstractmethod
    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on native inputs keyed by artifact input name; outputs keyed by artifact output name."""


def _reason(exc: BaseException) -> str:
    """The most telling line of a runtime's error (OpenVINO puts its source location first)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from src/", "Check '")) and not ln.endswith(":")]
    return (useful or lines or [type(exc).__name__])[0][:200]
