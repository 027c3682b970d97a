"""JUnit XML and a self-contained HTML report (inline SVG plots, no JavaScript) of a farm run."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET


def write_junit(path: Path, summary: dict[str, Any]) -> Path:
    """One testcase per bundle x device; failed when a run failed or a budget was exceeded."""
    cells = summary["cells"]
    suite = ET.Element("testsuite", name="edgec.farm", tests=str(len(cells)),
                       failures=str(sum(not c["passed"] for c in cells)), errors="0", skipped="0")
    for c in cells:
        t = ET.SubElement(suite, "testcase", classname=f"edgec.farm.{c['kind']}", name=f"{c['bundle']} @ {c['device']}",
                          time=f"{(c['p50_ms'] or 0) / 1e3:.6f}")
        if not c["passed"]:
            msg = "; ".join(c["problems"]) or f"{c['failed']} of {c['runs']} runs failed"
            ET.SubElement(t, "failure", message=msg[:500]).text = msg
        out = ET.SubElement(t, "system-out")
        out.text = (f"runs={c['runs']} failed={c['failed']} p50_ms={c['p50_ms']} p90_ms={c['p90_ms']} "
                    f"peak_rss_mb={c['peak_rss_mb']}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
    return path


def _color(v: float) -> str:
    """0 (fast) -> green, 1 (slow) -> red."""
    v = min(1.0, max(0.0, v))
    return f"rgb({int(60 + 180 * v)},{int(170 - 110 * v)},{int(90 - 40 * v)})"


def _heatmap(summary: dict[str, Any]) -> str:
    bundles = sorted({c["bundle"] for c in summary["cells"]})
    devices = sorted({c["device"] for c in summary["cells"]})
    by = {(c["bundle"], c["device"]): c for c in summary["cells"]}
    vals = [math.log10(c["p50_ms"]) for c in summary["cells"] if c["p50_ms"]]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    kinds = {c["device"]: c["kind"] for c in summary["cells"]}
    cw, ch, left, top = 150, 34, 230, 50
    w, h = left + cw * len(devices) + 10, top + ch * len(bundles) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">']
    for j, d in enumerate(devices):
        x = left + j * cw + cw / 2
        parts.append(f'<text x="{x}" y="{top - 24}" text-anchor="middle">{html.escape(d)}</text>'
                     f'<text x="{x}" y="{top - 8}" text-anchor="middle" fill="#666">{html.escape(kinds[d])}</text>')
    for i, b in enumerate(bundles):
        y = top + i * ch
        parts.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">{html.escape(b)}</text>')
        for j, d in enumerate(devices):
            c = by.get((b, d))
            x = left + j * cw
            if c is None:
                fill, label = "#eee", "n/a"
            elif not c["p50_ms"]:
                fill, label = "#c0392b", "failed"
            else:
                v = (math.log10(c["p50_ms"]) - lo) / (hi - lo) if hi > lo else 0.0
                fill, label = _color(v), f"{c['p50_ms']:.3g} ms" + ("" if c["passed"] else " !")
            parts.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}"/>')
            parts.append(f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" fill="white">'
                         f'{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _distribution(records: list[dict[str, Any]]) -> str:
    """Per device: each ok run's min..max line, p50..p90 box and p50 tick, log-scaled ms."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("latency_ms")]
    rows = sorted({(r["farm"]["planned_device"], r["farm"]["bundle"]) for r in ok})
    if not rows:
        return "<p>No successful runs to plot.</p>"
    lo = min(max(r["latency_ms"]["min"], 1e-4) for r in ok)
    hi = max(r["latency_ms"]["max"] for r in ok)
    lo, hi = math.log10(lo) - 0.05, math.log10(max(hi, lo * 1.01)) + 0.05
    left, width, rh = 330, 560, 22

    def sx(ms: float) -> float:
        return left + (math.log10(max(ms, 1e-4)) - lo) / (hi - lo) * width

    h = 40 + rh * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{h}" '
             'font-family="sans-serif" font-size="11">']
    steps = (1, 2, 5) if hi - lo <= 3 else (1,)  # fewer ticks when the range spans many decades
    for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1):
        for m in steps:
            v = m * 10.0 ** k
            if lo <= math.log10(v) <= hi:
                x = sx(v)
                parts.append(f'<line x1="{x}" y1="20" x2="{x}" y2="{h - 10}" stroke="#ddd"/>'
                             f'<text x="{x}" y="14" text-anchor="middle">{v:g} ms</text>')
    for i, (dev, bundle) in enumerate(rows):
        y = 30 + i * rh
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{html.escape(dev)} · '
                     f'{html.escape(bundle)}</text>')
        for r in ok:
            if (r["farm"]["planned_device"], r["farm"]["bundle"]) != (dev, bundle):
                continue
            lat = r["latency_ms"]
            parts.append(f'<line x1="{sx(lat["min"])}" y1="{y}" x2="{sx(lat["max"])}" y2="{y}" stroke="#888"/>')
            x50, x90 = sx(lat["p50"]), sx(lat["p90"])
            parts.append(f'<rect x="{x50}" y="{y - 5}" width="{max(x90 - x50, 1)}" height="10" '
                         'fill="#5dade2" fill-opacity="0.5" stroke="#2874a6"/>')
            parts.append(f'<line x1="{x50}" y1="{y - 7}" x2="{x50}" y2="{y + 7}" stroke="#1b4f72" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(path: Path, summary: dict[str, Any], records: list[dict[str, Any]], title: str = "edgec farm run") -> Path:
    """A single HTML file: totals, the bundle x device heatmap, latency distributions, the cell table."""
    esc = html.escape
    rows = []
    for c in summary["cells"]:
        status = "pass" if c["passed"] else "FAIL"
        fmt = (lambda v: "–" if v is None else f"{v:.3f}")
        insn = c.get("instructions")
        rows.append(f"<tr class='{status.lower()}'><td>{esc(c['bundle'])}</td><td>{esc(c['device'])}</td>"
                    f"<td>{esc(c['kind'])}</td><td>{c['runs']}</td><td>{c['failed']}</td><td>{fmt(c['p50_ms'])}</td>"
                    f"<td>{fmt(c['p90_ms'])}</td><td>{fmt(c['peak_rss_mb'])}</td>"
                    f"<td>{'–' if insn is None else f'{insn:,}'}</td><td>{status}</td>"
                    f"<td>{esc('; '.join(c['problems']))}</td></tr>")
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
tr.fail td {{ background: #fdecea; }} .totals span {{ margin-right: 24px; font-size: 15px; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="totals"><span>runs: <b>{summary['runs']}</b></span><span>failed runs: <b>{summary['failed_runs']}</b></span>
<span>cells passed: <b>{sum(c['passed'] for c in summary['cells'])} / {len(summary['cells'])}</b></span></p>
<h2>Median p50 latency, bundle × device</h2>
<p>QEMU devices time the emulator (wall clock); compare them by instructions, in the table below.</p>
{_heatmap(summary)}
<h2>Latency distribution per device (each run: min–max line, p50–p90 box, p50 tick; log scale)</h2>
{_distribution(records)}
<h2>Cells</h2>
<table><tr><th>bundle</th><th>device</th><th>kind</th><th>runs</th><th>failed</th><th>p50 ms</th><th>p90 ms</th>
<th>peak RSS MB</th><th>instructions</th><th>verdict</th><th>problems</th></tr>
{''.join(rows)}
</table></body></html>
"""
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path
