"""Bundles as content-addressed archives for the farm.

A bundle is named by the sha256 of its ``manifest.json``, which lists every file's sha256,
so the name covers the whole content. `pack` makes a deterministic tar of exactly the
manifest's files; `materialize` unpacks it on a device host into a private cache, checks
every file against the manifest before anything runs, and reuses a checked copy next time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from edgec.compiler.bundle import verify_files
from edgec.errors import BundleError


def bundle_id(bundle: Path) -> str:
    """sha256 of the bundle's manifest.json."""
    try:
        return hashlib.sha256((Path(bundle) / "manifest.json").read_bytes()).hexdigest()
    except OSError as exc:
        raise BundleError(f"{bundle} is not an edgec bundle (no readable manifest.json)") from exc


def _files(manifest: dict[str, Any]) -> list[str]:
    names = []
    for e in manifest.get("files", []):
        rel = e.get("path", "")
        parts = Path(rel).parts
        if not rel or Path(rel).is_absolute() or ".." in parts:
            raise BundleError(f"manifest lists a file outside the bundle: {rel!r}")
        names.append(rel)
    return sorted(names)


def pack(bundle: Path) -> bytes:
    """A deterministic tar of manifest.json and the files it lists (fixed owners, times and modes)."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in ["manifest.json", *_files(manifest)]:
            data = (bundle / rel).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cache_root() -> Path:
    """The private (0700, ours alone) cache folder for unpacked bundles on this host."""
    from edgec.compiler.private_cache import private_dir

    return private_dir("farm-bundles")


def materialize(sha: str, fetch) -> Path:
    """The checked bundle folder for ``sha``; ``fetch()`` returns the tar bytes when it is not cached yet."""
    root = cache_root()
    dest = root / sha
    if dest.is_dir():
        try:
            _check(dest, sha)
            return dest
        except BundleError:
            shutil.rmtree(dest, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=root))
    try:
        with tarfile.open(fileobj=io.BytesIO(fetch()), mode="r") as tar:
            for m in tar.getmembers():
                if not m.isfile() or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                    raise BundleError(f"bundle archive holds an unsafe entry {m.name!r}")
            tar.extractall(tmp, filter="data")
        _check(tmp, sha)
        try:
            os.rename(tmp, dest)
        except OSError:  # another run on this host unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
            _check(dest, sha)
        return dest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check(folder: Path, sha: str) -> None:
    raw = (folder / "manifest.json").read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha:
        raise BundleError("bundle manifest does not match its content hash")
    bad = verify_files(folder, json.loads(raw))
    if bad:
        raise BundleError(f"bundle files differ from the manifest's sha256: {', '.join(bad[:5])}")
