"""`edgec farm` over a real local Ray cluster: a head and `edgec farm worker` nodes on 127.0.0.1.

Devices: w1 = host + qemu:cortex-m4; w2 = qemu:cortex-m4 + an ssh board (a real sshd) + an ssh
board whose harness hangs. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from itertools import combinations
from xml.etree import ElementTree as ET

import pytest

from ..conftest import run_cli
from .conftest import EDGEC

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


def _devices(cluster, want: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        r = run_cli("farm", "devices", "--address", cluster.address, "--json")
        assert r.code == 0, r.err
        devs = r.json()
        if (len(devs) >= want and all(d["health_ok"] is not None for d in devs)) or time.monotonic() > deadline:
            return devs
        time.sleep(1)


def _lines(path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _farm_run(cluster, out, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*EDGEC, "farm", "run", "--address", cluster.address, "-o", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)


def test_devices_are_listed_with_state_and_health(cluster):
    devs = {d["name"]: d for d in _devices(cluster, 5)}
    assert {"w1/0", "w1/1", "w2/0", "w2/1", "w2/2"} <= set(devs)
    assert devs["w1/0"]["kind"] == "host" and devs["w2/0"]["kind"] == "qemu:cortex-m4"
    assert devs["w2/2"]["kind"] == "ssh-hangs"
    assert all(devs[n]["state"] in ("idle", "busy") and devs[n]["health_ok"] for n in ("w1/0", "w1/1", "w2/0", "w2/1"))


def test_farm_run_of_intel_arm_and_mcu_bundles(cluster, ov_bundle, arm_bundle, mcu_bundle, tmp_path):
    out = tmp_path / "results"
    r = run_cli("farm", "run", ov_bundle, arm_bundle, mcu_bundle, "--address", cluster.address,
                "-o", out, "--kind", "host", "--kind", "qemu:cortex-m4", "--kind", "ssh", "--iters", "3",
                "--warmup", "1", "--repeat", "2", "--junit", out / "junit.xml", "--json")
    assert r.code == 0, r.err + r.out
    summary = r.json()
    # intel-cpu and arm: host + ssh; mcu: host + two QEMU boards -> 7 cells x 2 repeats.
    recs = _lines(out / "results.jsonl")
    assert len(recs) == 14 and all(x["status"] == "ok" and x["schema"] == "edgec.bench/1" for x in recs)
    assert {(x["farm"]["bundle"], x["farm"]["kind"]) for x in recs} == {
        ("ov", "host"), ("ov", "ssh"), ("arm", "host"), ("arm", "ssh"), ("mcu", "host"), ("mcu", "qemu:cortex-m4")}
    assert all(x["extra"]["instructions"] > 0 for x in recs if x["farm"]["kind"] == "qemu:cortex-m4")
    assert summary["passed"] and len(summary["cells"]) == 7
    assert json.loads((out / "summary.json").read_text())["runs"] == 14
    junit = ET.parse(out / "junit.xml").getroot()
    assert len(junit.findall(".//testcase")) == 7 and not junit.findall(".//failure")
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 and "mcu" in page and "w2/0" in page


def test_hung_harness_is_killed_and_recorded(cluster, ov_bundle, tmp_path):
    out = tmp_path / "hang"
    t0 = time.monotonic()
    r = run_cli("farm", "run", ov_bundle, "--address", cluster.address, "-o", out, "--kind", "ssh-hangs",
                "--timeout", "8", "--iters", "2", "--junit", out / "junit.xml")
    assert r.code == 4 and time.monotonic() - t0 < 120
    (rec,) = _lines(out / "results.jsonl")
    assert rec["status"] == "failed" and "--timeout" in rec["error"]
    assert ET.parse(out / "junit.xml").getroot().findall(".//failure")


def test_latency_budget_fails_the_cell(cluster, ov_bundle, tmp_path):
    out = tmp_path / "budget"
    r = run_cli("farm", "run", ov_bundle, "--address", cluster.address, "-o", out, "--kind", "host",
                "--iters", "2", "--max-p50-ms", "0.000001", "--junit", out / "junit.xml", "--json")
    assert r.code == 4 and "exceeds --max-p50-ms" in r.json()["cells"][0]["problems"][0]


def test_two_farm_runs_never_share_a_device(cluster, ov_bundle, tmp_path):
    runs = [_farm_run(cluster, tmp_path / f"r{i}", str(ov_bundle), "--kind", "host", "--repeat", "3",
                      "--iters", "20") for i in range(2)]
    for p in runs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    windows = [rec["farm"]["window"] for i in range(2) for rec in _lines(tmp_path / f"r{i}" / "results.jsonl")]
    assert len(windows) == 6
    for a, b in combinations(windows, 2):
        assert a[1] <= b[0] or b[1] <= a[0], f"two runs overlapped on one device: {a} {b}"


def test_results_survive_sigkill_and_resume_finishes_only_missing_runs(cluster, mcu_bundle, tmp_path):
    out = tmp_path / "killed"
    args = [str(mcu_bundle), "--kind", "host", "--repeat", "8", "--iters", "200"]
    p = _farm_run(cluster, out, *args)
    deadline = time.monotonic() + 240
    while len(_lines(out / "results.jsonl")) < 2 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    first = _lines(out / "results.jsonl")  # every line parses: the file is consistent
    assert 2 <= len(first) < 8
    again = _farm_run(cluster, out, *args)
    again.communicate(timeout=300)
    assert again.returncode != 0  # an existing results file is never mixed into silently
    resumed = _farm_run(cluster, out, *args, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    recs = _lines(out / "results.jsonl")
    assert sorted(r["farm"]["repeat"] for r in recs) == list(range(8))
    assert recs[:len(first)] == first


def test_a_worker_killed_mid_run_moves_its_runs(cluster, mcu_bundle, tmp_path):
    cluster.add_worker("w3", "qemu:cortex-m4")
    _devices(cluster, 6)
    out = tmp_path / "lost"
    p = _farm_run(cluster, out, str(mcu_bundle), "--kind", "qemu:cortex-m4", "--repeat", "3", "--iters", "6",
                  "--json")
    deadline = time.monotonic() + 240
    while not _lines(out / "results.jsonl") and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    cluster.kill_worker("w3")
    stdout, err = p.communicate(timeout=400)
    assert p.returncode == 0, err
    recs = _lines(out / "results.jsonl")
    assert len(recs) == 9 and all(r["status"] == "ok" for r in recs)
    planned_w3 = [r for r in recs if r["farm"]["planned_device"] == "w3/0"]
    moved = [r for r in planned_w3 if r["farm"]["device_name"] != "w3/0"]
    assert moved and all("w3/0" in r["farm"]["lost_devices"][0] for r in moved)
    states = {d["name"]: d["state"] for d in _devices(cluster, 6, timeout=0)}
    assert states["w3/0"] == "lost"
