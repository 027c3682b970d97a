"""Device strings, content-addressed bundles, the results file, summary, JUnit and HTML (no cluster needed)."""

from __future__ import annotations

import json
import os
from xml.etree import ElementTree as ET

import pytest

from edgec.errors import BundleError, ConfigError
from edgec.farm import bundles as fb
from edgec.farm.devices import parse_device
from edgec.farm.report import write_html, write_junit
from edgec.farm.results import ResultsWriter, load_results, run_key, summarize


@pytest.mark.parametrize("spec,kind", [
    ("host", "host"), ("qemu", "qemu:cortex-m4"), ("qemu:cortex-m55", "qemu:cortex-m55"),
    ("qemu:m0plus", "qemu:cortex-m0"), ("ssh://pi@board.local:2200?kind=rpi4", "rpi4"),
    ("ssh://jetson", "ssh"), ("serial:/dev/ttyACM0?baud=921600", "serial"),
])
def test_parse_device(spec, kind):
    d = parse_device(spec)
    assert d.kind == kind
    assert "key=" not in d.label


@pytest.mark.parametrize("spec,word", [
    ("qemu:cortex-a53", "unknown QEMU CPU"), ("ssh://", "no host"), ("ssh://h?python=python3;rm -rf /", "plain command"),
    ("ssh://h?colour=red", "unknown option"), ("serial:", "no port"), ("serial:/dev/x?baud=fast", "baud"),
    ("tcp://x", "unknown device"),
])
def test_bad_device_strings_are_one_clear_error(spec, word):
    with pytest.raises(ConfigError, match=word):
        parse_device(spec)


def test_devices_say_which_bundles_they_cannot_run():
    mcu = {"runner": "mcu", "target": "mcu", "target_info": {"cpu": "cortex-m4"}}
    ov = {"runner": "openvino", "target": "intel-cpu"}
    assert parse_device("qemu:cortex-m4").can_run(mcu) is None
    assert "cortex-m4" in parse_device("qemu:cortex-m55").can_run(mcu)
    assert "mcu bundles only" in parse_device("qemu:cortex-m4").can_run(ov)
    assert parse_device("ssh://h").can_run(ov) is None
    assert "no standalone harness" in parse_device("ssh://h").can_run(mcu)
    assert parse_device("host").can_run(mcu) is None


def test_bundle_archives_are_deterministic_checked_and_cached(ov_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = fb.pack(ov_bundle), fb.pack(ov_bundle)
    assert a == b
    sha = fb.bundle_id(ov_bundle)
    calls = []
    got = fb.materialize(sha, lambda: calls.append(1) or a)
    assert (got / "manifest.json").read_bytes() == (ov_bundle / "manifest.json").read_bytes()
    assert oct(got.parent.stat().st_mode & 0o777) == "0o700"
    fb.materialize(sha, lambda: calls.append(1) or a)
    assert calls == [1]  # the second run reuses the checked copy
    (got / "model.bin").write_bytes(b"tampered")  # a cached copy that no longer matches is replaced
    again = fb.materialize(sha, lambda: calls.append(1) or a)
    assert calls == [1, 1] and (again / "model.bin").read_bytes() == (ov_bundle / "model.bin").read_bytes()
    with pytest.raises(BundleError, match="content hash"):
        fb.materialize("0" * 64, lambda: a)


def _rec(bundle, device, repeat, status="ok", p50=1.0, rss=50 * 2**20):
    return {"schema": "edgec.bench/1", "status": status, "error": None if status == "ok" else "boom",
            "latency_ms": {"p50": p50, "p90": p50 * 1.2, "mean": p50, "min": p50 * 0.9, "max": p50 * 2, "p99": p50 * 1.5}
            if status == "ok" else None, "peak_rss_bytes": rss if status == "ok" else None,
            "farm": {"bundle": bundle, "bundle_sha256": bundle * 8, "planned_device": device, "kind": "host",
                     "repeat": repeat}}


def test_results_survive_a_cut_last_line_and_resume_keys(tmp_path):
    w = ResultsWriter(tmp_path)
    w.append(_rec("a", "w1/0", 0))
    w.append(_rec("a", "w1/0", 1))
    w.close()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"schema": "edgec.bench/1", "farm": {"bund')  # SIGKILL mid-write
    recs = load_results(tmp_path, repair=True)
    assert [run_key(r)[2] for r in recs] == [0, 1]
    assert (tmp_path / "results.jsonl").read_bytes().endswith(b"}\n")


def test_summary_junit_and_html(tmp_path):
    recs = [_rec("a", "w1/0", 0, p50=2.0), _rec("a", "w1/0", 1, p50=4.0), _rec("b", "w1/0", 0, status="failed"),
            _rec("b", "w2/0", 0, p50=30.0)]
    s = summarize(recs, max_p50_ms=10.0)
    cells = {(c["bundle"], c["device"]): c for c in s["cells"]}
    assert cells[("a", "w1/0")]["p50_ms"] == 3.0 and cells[("a", "w1/0")]["passed"]
    assert not cells[("b", "w1/0")]["passed"] and cells[("b", "w1/0")]["failed"] == 1
    assert "exceeds --max-p50-ms" in cells[("b", "w2/0")]["problems"][0]
    assert not s["passed"]
    junit = ET.parse(write_junit(tmp_path / "junit.xml", s)).getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) == 3 and len(junit.findall(".//failure")) == 2
    page = write_html(tmp_path / "report.html", s, recs).read_text()
    assert page.count("<svg") == 2 and "b @" not in page and "w2/0" in page

