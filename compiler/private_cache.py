"""A per-user cache for compiled artifacts that edgec later loads or runs (shared libraries, ELFs).

A cached shared library is code that ``ctypes`` runs on ``dlopen``, so the cache is trusted
only when nobody else can write to it: it lives under ``$EDGEC_CACHE_DIR`` or
``${XDG_CACHE_HOME:-~/.cache}/edgec`` (never a shared temp folder), every folder edgec uses
is created 0700 and checked to be a real folder owned by this user and writable by nobody
else, and every cached file carries a sidecar with the sha256 of its content and the digest
of the sources it was built from. A file that fails any check is refused, naming it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from edgec.compiler.model import sha256_file
from edgec.errors import EdgecError


class UnsafeCacheError(EdgecError):
    """A cache folder or file that another user could have written, or that does not match its sources."""


def cache_root() -> Path:
    """``$EDGEC_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/edgec``."""
    if os.environ.get("EDGEC_CACHE_DIR"):
        return Path(os.environ["EDGEC_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edgec"


def private_dir(*parts: str) -> Path:
    """``cache_root()/parts``: created 0700 where missing, each level checked to be ours alone."""
    root = cache_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    d = root
    for part in ("", *parts):
        d = d / part if part else d
        try:
            d.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise UnsafeCacheError(f"cannot create the cache folder '{d}': {exc.strerror}; "
                                   "set EDGEC_CACHE_DIR to a private folder") from exc
        _check_ours(d, want_dir=True)
    return d


def _check_ours(path: Path, *, want_dir: bool) -> None:
    st = os.lstat(path)
    kind = "folder" if want_dir else "file"
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif want_dir and not stat.S_ISDIR(st.st_mode) or not want_dir and not stat.S_ISREG(st.st_mode):
        problem = f"is not a regular {kind}"
    elif st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    elif st.st_mode & 0o022:
        problem = f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return
    raise UnsafeCacheError(f"refusing the cache {kind} '{path}': it {problem}; edgec loads compiled code from its "
                           "cache only when no other user can write to it (remove it, or set EDGEC_CACHE_DIR to a "
                           "private folder)")


def cached_build(folder: str, name: str, sources_digest: str, build: Callable[[Path], None]) -> Path:
    """The cached file ``name`` built from sources with ``sources_digest``, built now if absent.

    Args:
        folder: The cache subfolder (one per target, e.g. ``mcu``).
        name: The file name (already keyed by the sources' digest).
        sources_digest: The digest of everything the file is built from; recorded and checked.
        build: Writes the artifact to the path it is given.

    Raises:
        UnsafeCacheError: the cached file or its folder could have been planted or changed.
    """
    d = private_dir(folder)
    out, sidecar = d / name, d / f"{name}.sha256.json"
    if os.path.lexists(out) and os.path.lexists(sidecar):
        verify_cached(out, sidecar, sources_digest)
        return out
    fd, tmp_name = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        os.chmod(tmp, 0o700)  # whatever the umask or the tool: ours alone
        record = json.dumps({"sources": sources_digest, "sha256": sha256_file(tmp)})
        side_tmp = tmp.with_suffix(".json.tmp")
        side_tmp.write_text(record)
        os.chmod(side_tmp, 0o600)
        os.replace(tmp, out)
        os.replace(side_tmp, sidecar)
    finally:
        for leftover in (tmp, tmp.with_suffix(".json.tmp")):
            if leftover.exists():
                leftover.unlink()
    return out


def verify_cached(out: Path, sidecar: Path, sources_digest: str) -> None:
    """Check owner, mode and content hash of a cached file against its sidecar and sources."""
    _check_ours(out, want_dir=False)
    _check_ours(sidecar, want_dir=False)
    try:
        record = json.loads(sidecar.read_text())
    except ValueError as exc:
        raise UnsafeCacheError(f"refusing the cached file '{out}': its record '{sidecar}' is corrupt; "
                               "delete both to rebuild") from exc
    if record.get("sources") != sources_digest or record.get("sha256") != sha256_file(out):
        raise UnsafeCacheError(f"refusing the cached file '{out}': its sha256 does not match the one recorded when it "
                               "was built from these sources; delete it to rebuild")
