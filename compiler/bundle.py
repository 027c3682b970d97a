"""Bundle folders: built in a temporary folder, hashed, and moved into place at the end."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from edgec.compiler.manifest import SCHEMA_VERSION, Manifest  # noqa: F401  (SCHEMA_VERSION: for other bundle writers)
from edgec.compiler.model import sha256_file
from edgec.errors import BundleError

MANIFEST = "manifest.json"
REPORT = "report.json"


def _clean(obj: Any, digits: int = 7) -> Any:
    """JSON-safe copy with floats rounded to ``digits`` significant digits (stable bytes)."""
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item(), digits)
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(_clean(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from its JSON file."""
    return json.loads(dumps(obj))


def write_json(path: Path, obj: Any) -> None:
    path.write_text(dumps(obj), encoding="utf-8")


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The manifest of a bundle folder, checked for a schema this edgec reads."""
    bundle = Path(bundle)
    mpath = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError(f"'{bundle}' is not a bundle folder (it does not exist or is a file)")
    if not mpath.is_file():
        raise BundleError(f"'{bundle}' is not an edgec bundle: it has no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mpath} is corrupt: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath} is corrupt: expected a JSON object")
    Manifest.from_json(manifest, str(mpath))  # schema 1 or 2 with the keys every runner needs
    return manifest


def read_report(bundle: Path) -> dict[str, Any]:
    p = Path(bundle) / REPORT
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def file_entries(root: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> list[dict[str, Any]]:
    """``[{path, sha256, bytes}]`` of every file under ``root``, sorted by path."""
    out = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel in exclude:
            continue
        out.append({"path": rel, "sha256": sha256_file(f), "bytes": f.stat().st_size})
    return out


def verify_files(bundle: Path, manifest: dict[str, Any]) -> list[str]:
    """Paths whose content no longer matches the manifest (missing or changed)."""
    bad = []
    for e in manifest.get("files", []):
        p = Path(bundle) / e["path"]
        if not p.is_file() or sha256_file(p) != e["sha256"]:
            bad.append(e["path"])
    return bad


def open_bundle(bundle: Path, check_files: bool = True) -> dict[str, Any]:
    """The bundle's manifest, after checking (unless ``check_files`` is False) that its files are unchanged.

    Raises:
        BundleError: No readable manifest, or files changed or missing since the build.
    """
    manifest = read_manifest(Path(bundle))
    if check_files:
        bad = verify_files(Path(bundle), manifest)
        if bad:
            raise BundleError(f"bundle files changed or missing since the build: {', '.join(bad[:5])}")
    return manifest


class BundleWriter:
    """Owns the temporary folder a bundle is built in and its atomic move into place.

    Args:
        out: Final bundle folder.
        force: Replace ``out`` if it exists.
    """

    def __init__(self, out: Path, force: bool, reads: Iterable[Path] = ()):
        from edgec.compiler.output_dir import check_output, make_temp_dir

        raw = str(out)
        self.out = Path(out)
        check_output(self.out, raw, force, reads)
        # Same filesystem as the destination, so the final rename is atomic.
        self.tmp, self._lock = make_temp_dir(self.out)

    def commit(self) -> Path:
        """Move the finished bundle into place (replacing an old one)."""
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.edgec-old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._release()
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        from edgec.compiler.output_dir import release

        release(self._lock)
        self._lock = None
