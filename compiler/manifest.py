"""The bundle manifest (``manifest.json``) as a typed record, with its schema version.

Schema 2 has the same fields as schema 1; it is the first one written from this record.
`Manifest.from_json` reads both, so bundles built before stay readable. Keys this edgec
does not know (added by a newer edgec) are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from edgec.errors import BundleError

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)


@dataclass
class Manifest:
    """What a bundle holds and how it was built.

    Attributes:
        target, precision, runner: The build's target, precision and the runner of its artifact.
        artifact: ``{path, kind}`` of the file the runner loads.
        artifacts: ``[{path, kind, role}]`` of every file the target wrote.
        source: ``{path, sha256, kind}`` of the model built.
        task: The model's task, or None.
        model_inputs, model_outputs: I/O specs in the model's own convention.
        inputs, outputs: I/O specs of the artifact (dtype, layout, scale/zero point).
        io_names: ``{"inputs": {artifact name: model name}, "outputs": {...}}`` (arm renames
            names TFLite cannot carry; the others keep them).
        reference: ``{runner, path[, quantized]}`` of the float reference (and the Q/DQ ONNX).
        tokenizer: Folder of the copied tokenizer, or None.
        passes: ``[{name, config}]`` in the order they ran.
        calibration: ``{method, samples, source, random}``, or None.
        config: The build config as given (`BuildConfig.manifest_view`).
        target_info: The target's own section.
        dependencies: ``{distribution: version}``.
        files: ``[{path, sha256, bytes}]`` of every other file of the bundle.
        edgec_version: The edgec that built it.
        schema_version: The manifest schema.
        extra: Keys of a newer schema, kept as read.
    """

    target: str
    precision: str
    runner: str
    artifact: dict[str, Any]
    model_inputs: list[dict[str, Any]]
    model_outputs: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    io_names: dict[str, dict[str, str]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    edgec_version: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    task: str | None = None
    tokenizer: str | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    target_info: dict[str, Any] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)
    files: list[dict[str, Any]] | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json`` (``files`` only once known)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if out["files"] is None:
            del out["files"]
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "manifest.json") -> "Manifest":
        """Read a schema 1 or 2 manifest.

        Raises:
            BundleError: Another schema version, or a required key missing.
        """
        version = obj.get("schema_version")
        if version not in READABLE_SCHEMAS:
            raise BundleError(f"{where} has schema_version {version}; this edgec reads "
                              f"{', '.join(str(v) for v in READABLE_SCHEMAS)}")
        known = {f.name for f in fields(cls)} - {"extra"}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in obj]
        if missing:
            raise BundleError(f"{where} lacks {', '.join(missing)}; it is not a complete edgec manifest")
        return cls(**{k: v for k, v in obj.items() if k in known},
                   extra={k: v for k, v in obj.items() if k not in known})
