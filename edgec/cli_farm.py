"""`edgec farm ...`: test farms on a Ray cluster (see `edgec.farm`). Thin: parse, call, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgec.cli_common import console, emit, handle_errors, json_option, table


@click.group()
def farm() -> None:
    """Run bundles on many devices: device hosts join a Ray cluster, `farm run` schedules bundles on them.

    \b
    Start the cluster with Ray itself, then add device hosts and run:
      ray start --head --port 6379                           # on one machine
      edgec farm worker --address HEAD:6379 --device host --device qemu:cortex-m4
      edgec farm devices --address HEAD:6379
      edgec farm run out/a out/b --address HEAD:6379 -o results/ --junit results/junit.xml
    Needs `pip install 'edgec[farm]'` on every host.
    """


@farm.command()
@click.option("--address", required=True, metavar="HOST:PORT", help="The Ray head's address.")
@click.option("--device", "devices", multiple=True, required=True, metavar="DEVICE",
              help="A device this host serves: host, qemu:cortex-m4, ssh://user@board[:port], "
                   "serial:/dev/ttyACM0?baud=115200 (repeatable).")
@click.option("--name", default=None, help="This worker's name (default: the host name); devices are NAME/0, NAME/1, ...")
@click.option("--health-interval", type=float, default=30.0, show_default=True, help="Seconds between health checks.")
@handle_errors
def worker(address: str, devices: tuple[str, ...], name: str | None, health_interval: float) -> None:
    """Join the cluster as a Ray node that advertises DEVICEs; runs until stopped (Ctrl-C / SIGTERM)."""
    from edgec.farm.cluster import run_worker

    def ready(records):
        click.echo(f"[edgec] worker {records[0]['worker']} joined {address} with "
                   + ", ".join(f"{r['name']}={r['label']}" for r in records), err=True)

    sys.exit(run_worker(address, list(devices), name, health_interval=health_interval, on_ready=ready))


@farm.command(name="devices")
@click.option("--address", required=True, metavar="HOST:PORT", help="The Ray head's address.")
@json_option
@handle_errors
def devices_cmd(address: str, as_json: bool) -> None:
    """List the farm's devices: name, kind, host, state (idle/busy/lost) and the last health check."""
    from edgec.farm.cluster import list_devices

    devs = list_devices(address)

    def human(ds):
        import time

        rows = [[d["name"], d["kind"], d["device"], d["host"], d["state"],
                 "" if d["health_ok"] is None else ("ok" if d["health_ok"] else f"FAIL {d['health_detail']}"),
                 "" if not d["health_at"] else f"{time.time() - d['health_at']:.0f} s ago"] for d in ds]
        console().print(table("farm devices", ["name", "kind", "device", "host", "state", "health", "checked"], rows))

    emit(devs, as_json, human)


@farm.command(name="run")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--address", required=True, metavar="HOST:PORT", help="The Ray head's address.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Results folder: results.jsonl, summary.json, report.html.")
@click.option("--kind", "kinds", multiple=True, help="Only devices of this kind (repeatable), e.g. qemu:cortex-m4.")
@click.option("--iters", type=int, default=50, show_default=True, help="Timed iterations per run.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed iterations per run.")
@click.option("--repeat", type=int, default=1, show_default=True, help="Runs per bundle and device.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds before a run's harness is killed.")
@click.option("--threads", type=int, default=None, help="Runtime threads on the device.")
@click.option("--junit", type=click.Path(path_type=Path), default=None, help="Also write a JUnit XML here.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run: only runs missing from results.jsonl.")
@click.option("--max-p50-ms", type=float, default=None, help="Latency budget: a cell over it fails.")
@click.option("--max-rss-mb", type=float, default=None, help="Memory budget: a cell over it fails.")
@json_option
@handle_errors
def run_cmd(bundles, address, out_dir, kinds, iters, warmup, repeat, timeout, threads, junit, resume, max_p50_ms,
            max_rss_mb, as_json) -> None:
    """Run every BUNDLE on every matching device, REPEAT times; exit 4 when a cell fails."""
    from edgec.farm.run import FarmRunConfig, farm_run

    cfg = FarmRunConfig(tuple(bundles), address, out_dir, tuple(kinds), iters, warmup, repeat, timeout, threads,
                        junit, resume, max_p50_ms, max_rss_mb)
    live = sys.stderr.isatty() and not as_json
    if live:
        from rich.live import Live

        with Live(table("farm run", ["kind", "pending", "done", "failed"], []), console=_stderr_console(),
                  refresh_per_second=4, transient=True) as view:
            summary = farm_run(cfg, lambda c: view.update(table(
                "farm run", ["kind", "pending", "done", "failed"],
                [[k, v["pending"], v["done"], v["failed"]] for k, v in sorted(c.items())])))
    else:
        summary = farm_run(cfg)

    def human(s):
        rows = [[c["bundle"], c["device"], c["kind"], c["runs"], c["failed"],
                 "" if c["p50_ms"] is None else f"{c['p50_ms']:.3f}", "pass" if c["passed"] else "FAIL",
                 "; ".join(c["problems"])[:80]] for c in s["cells"]]
        console().print(table(f"farm run: {s['runs']} runs, {s['failed_runs']} failed -> {out_dir}",
                              ["bundle", "device", "kind", "runs", "failed", "p50 ms", "verdict", "problems"], rows))

    emit(summary, as_json, human)
    if not summary["passed"]:
        sys.exit(4)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, markup=False, highlight=False)
