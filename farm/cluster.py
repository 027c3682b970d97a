"""The farm on Ray: device hosts join as Ray nodes and advertise their devices as resources.

Each device is one Ray custom resource of quantity 1 (`device_resource`), so Ray's
scheduler leases it to one run at a time, across every ``farm run`` on the cluster. A
detached registry actor on the head node keeps what resources cannot: each device's spec,
kind, host and last health check. A device is *lost* when its node is no longer alive.
The cluster itself is Ray's: ``ray start --head`` on one machine, ``edgec farm worker`` on
each device host (which runs ``ray start --address ... --block`` with the device resources).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from edgec._deps import require
from edgec.errors import ConfigError, EdgecError
from edgec.farm.devices import Device, parse_device

NAMESPACE = "edgec-farm"
REGISTRY = "edgec-farm-registry"


def device_resource(name: str) -> str:
    """The Ray resource that stands for device ``name`` (quantity 1)."""
    return "edgec_device_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _ray():
    return require("ray", "farm")


def connect(address: str):
    """Join the cluster at ``address`` as a driver (quietly); FarmError if nothing answers."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EdgecError(f"no Ray cluster answers at {address} (start one with `ray start --head`): "
                         f"{' '.join(str(exc).split())[:200]}") from exc
    return ray


class _Registry:
    """Device records by name: spec, kind, host, worker, node id, resource, last health."""

    def __init__(self):
        self.devices: dict[str, dict[str, Any]] = {}

    def register(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.devices[r["name"]] = dict(r)

    def health(self, name: str, ok: bool, detail: str, at: float) -> None:
        if name in self.devices:
            self.devices[name].update(health_ok=ok, health_detail=detail, health_at=at)

    def unregister(self, worker: str) -> None:
        for r in self.devices.values():
            if r["worker"] == worker:
                r["stopped"] = True

    def all(self) -> list[dict[str, Any]]:
        return list(self.devices.values())


def registry(create: bool = False):
    """The registry actor handle (created on the head node when ``create``)."""
    ray = _ray()
    try:
        return ray.get_actor(REGISTRY, namespace=NAMESPACE)
    except ValueError:
        if not create:
            raise EdgecError("no edgec farm worker has joined this cluster yet (run `edgec farm worker`)") from None
    actor = ray.remote(_Registry).options(name=REGISTRY, namespace=NAMESPACE, lifetime="detached",
                                          get_if_exists=True, num_cpus=0,
                                          resources={"node:__internal_head__": 0.001})
    return actor.remote()


def list_devices(address: str) -> list[dict[str, Any]]:
    """Every registered device with its state: idle, busy, lost or stopped."""
    ray = connect(address)
    records = ray.get(registry().all.remote(), timeout=30)
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    try:
        from ray._private.state import available_resources_per_node

        avail = available_resources_per_node()
    except Exception:  # noqa: BLE001 - a private API: without it busy/idle is unknown
        avail = {}
    out = []
    for r in sorted(records, key=lambda r: r["name"]):
        node = nodes.get(r["node_id"], {})
        if r.get("stopped") or not node.get("Alive"):
            state = "stopped" if r.get("stopped") and not node.get("Alive") else "lost"
        elif r["node_id"] in avail:
            state = "busy" if avail[r["node_id"]].get(r["resource"], 1.0) < 1.0 else "idle"
        else:
            state = "idle"
        out.append({"name": r["name"], "kind": r["kind"], "device": r["label"], "host": r["host"],
                    "worker": r["worker"], "state": state, "spec": r["spec"], "resource": r["resource"],
                    "node_id": r["node_id"], "health_ok": r.get("health_ok"),
                    "health_detail": r.get("health_detail"), "health_at": r.get("health_at")})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(address: str, specs: list[str], name: str | None = None, *, health_interval: float = 30.0,
               num_cpus: int = 1, stop: threading.Event | None = None, on_ready=None) -> int:
    """Join the cluster as a node advertising ``specs``; block until stopped (SIGTERM/SIGINT or ``stop``)."""
    require("ray", "farm")
    devices: list[Device] = [parse_device(s) for s in specs]
    if not devices:
        raise ConfigError("give at least one --device")
    name = name or socket.gethostname()
    names = [f"{name}/{i}" for i in range(len(devices))]
    resources = {device_resource(n): 1 for n in names}
    host = address.rsplit(":", 1)[0]
    args = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", f"--address={address}",
            f"--resources={json.dumps(resources)}", f"--num-cpus={num_cpus}", "--block", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}"]
    if host in ("127.0.0.1", "localhost"):
        args.append("--node-ip-address=127.0.0.1")
    node_proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (tests): `stop` ends the worker
            pass
    ray = None
    try:
        ray = connect(address)
        node_id = _wait_for_node(ray, resources, node_proc)
        reg = registry(create=True)
        records = [{"name": n, "spec": d.spec, "label": d.label, "kind": d.kind, "host": socket.gethostname(),
                    "worker": name, "node_id": node_id, "resource": device_resource(n)} for n, d in zip(names, devices)]
        ray.get(reg.register.remote(records), timeout=60)
        if on_ready:
            on_ready(records)
        while not stop.is_set():
            for n, d in zip(names, devices):
                ok, detail = d.health()
                reg.health.remote(n, ok, detail, time.time())
            if node_proc.poll() is not None:
                raise EdgecError(f"the Ray node of worker {name} exited ({node_proc.returncode})")
            stop.wait(health_interval)
        try:
            ray.get(reg.unregister.remote(name), timeout=10)
        except Exception:  # noqa: BLE001 - the head may be gone already
            pass
        return 0
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGTERM)
            try:
                node_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node_proc.pid, signal.SIGKILL)
                node_proc.wait()


def _wait_for_node(ray, resources: dict[str, int], proc: subprocess.Popen, timeout: float = 120.0) -> str:
    key = next(iter(resources))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in ray.nodes():
            if n.get("Alive") and key in n.get("Resources", {}):
                return n["NodeID"]
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise EdgecError(f"`ray start` could not join the cluster: {(err[-1] if err else '')[:300]}")
        time.sleep(0.5)
    raise EdgecError(f"the Ray node did not join within {timeout:g} s")
