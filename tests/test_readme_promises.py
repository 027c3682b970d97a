"""The README's promises table names real tests: each ``tests/...py::name`` exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_promise_names_existing_tests():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### What edgec promises", 1)[1].split("\n### ", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| promise")]
    assert len(rows) >= 8
    for row in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert refs, f"promise without a test: {row[:80]}"
        for file, name in refs:
            text = (ROOT / file).read_text()
            assert re.search(rf"^def {name}\(", text, re.M), f"{file}::{name} does not exist"
