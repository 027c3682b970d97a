"""What a build may do to its output folder's surroundings.

* ``--force`` replaces only an edgec bundle: a folder with a valid manifest and no file the
  manifest does not list, and never a folder that holds (or is) a file the build reads.
* Output paths that cannot be written fail with one line naming the path.
* The temporary folder a bundle is built in carries the building process's pid in its name
  and is ``flock``-ed while the build runs; folders left by killed builds (ours, unlocked, pid
  gone) are removed by the next build into the same parent.
* The bundle folder gets the umask's mode (``mkdtemp`` makes it 0700).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable

from edgec.errors import ConfigError

TMP_MARK = ".edgec-"
# A temp folder whose builder cannot be identified (no pid in its name) is stale after this long.
_ANONYMOUS_STALE_S = 3600


def check_output(out: Path, raw: str, force: bool, reads: Iterable[Path]) -> None:
    """Refuse outputs that are empty, the current folder, an input, or not a replaceable bundle."""
    if not raw.strip() or Path(raw) == Path("."):
        raise ConfigError("-o must name the bundle folder to write (got the current folder)")
    resolved = out.resolve()
    for path in reads:
        p = Path(path).resolve()
        if p == resolved or resolved in p.parents:
            raise ConfigError(f"output '{out}' holds '{path}', which this build reads; choose another -o folder")
    if resolved in Path.cwd().resolve().parents or resolved == Path.cwd().resolve():
        raise ConfigError(f"output '{out}' holds the current folder; choose another -o folder")
    if not os.path.lexists(out):
        return
    if not out.is_dir() or out.is_symlink():
        raise ConfigError(f"output '{out}' exists and is not a folder")
    if not force:
        raise ConfigError(f"output '{out}' already exists; pass --force to replace it")
    _check_replaceable_bundle(out)


def _check_replaceable_bundle(out: Path) -> None:
    from edgec.compiler.bundle import MANIFEST, read_manifest
    from edgec.errors import BundleError

    try:
        manifest = read_manifest(out)
    except BundleError as exc:
        raise ConfigError(f"output '{out}' is not an edgec bundle ({exc}); --force replaces only bundles") from exc
    listed = {e["path"] for e in manifest.get("files", [])} | {MANIFEST}
    extra = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if (p.is_file() or p.is_symlink()) and p.relative_to(out).as_posix() not in listed)
    if extra:
        shown = ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else "")
        raise ConfigError(f"output '{out}' holds files that are not part of its bundle ({shown}); "
                          "move them away or choose another -o folder")


def read_paths(config: Any) -> list[Path]:
    """Every existing file or folder named by a config field (the model, data, user code)."""
    out = []
    values = [getattr(config, f.name) for f in fields(config) if f.name != "output"] if is_dataclass(config) else []
    for v in values:
        if is_dataclass(v) and not isinstance(v, type):  # an option group (``BuildConfig.gate`` ...)
            out.extend(read_paths(v))
            continue
        if not isinstance(v, (str, Path)) or not str(v) or str(v) == "random":
            continue
        text = str(v)
        if ":" in text and text.rsplit(":", 1)[0].endswith(".py"):
            text = text.rsplit(":", 1)[0]
        if os.path.exists(text):
            out.append(Path(text))
    return out


def make_temp_dir(out: Path) -> tuple[Path, int]:
    """Create and lock the temporary bundle folder next to ``out``; returns it and the lock's fd."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_dirs(out.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARK}{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        why = exc.strerror or str(exc)
        where = str(exc.filename or "")
        named = f" ('{where}')" if where and where != str(out) and TMP_MARK not in where else ""
        raise ConfigError(f"cannot write the output folder '{out}': {why}{named}") from exc
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp, fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last descriptor drops the flock


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temp_dirs(parent: Path) -> list[Path]:
    """Remove temp bundle folders in ``parent`` whose builds are dead (ours, unlocked, pid gone)."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for d in entries:
        if not (d.name.startswith(".") and TMP_MARK in d.name) or d.is_symlink() or not d.is_dir():
            continue
        if _is_stale(d):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _is_stale(d: Path) -> bool:
    try:
        st = os.lstat(d)
    except OSError:
        return False
    if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
        return False
    pid = _pid_in_name(d.name)
    if pid is not None and _alive(pid):
        return False
    if pid is None and time.time() - st.st_mtime < _ANONYMOUS_STALE_S:
        return False
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live build holds it
    finally:
        os.close(fd)
    return True


def _pid_in_name(name: str) -> int | None:
    tail = name.split(TMP_MARK, 1)[1]
    head = tail.split("-", 1)[0]
    if tail.startswith("old-"):
        head = tail[4:].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
