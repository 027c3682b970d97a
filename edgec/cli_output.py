"""How `edgec` commands print their results for people (``--json`` prints the objects instead)."""

from __future__ import annotations

import json
from typing import Any

from edgec.cli_common import console as _console, table as _table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _io_rows(specs: list[dict]) -> list[list[Any]]:
    return [[s["name"], "x".join(map(str, s["shape"])), s["dtype"], _fmt(s.get("scale")), _fmt(s.get("zero_point")),
             s.get("layout") or ""] for s in specs]


def _print_build(s: dict) -> None:
    c = _console()
    m, r = s["manifest"], s["report"]
    acc = r["accuracy"]
    c.print(f"bundle {s['bundle']}  target={m['target']} precision={m['precision']} runner={m['runner']}")
    c.print(_table("artifact I/O", ["name", "shape", "dtype", "scale", "zero_point", "layout"],
                   _io_rows(m["inputs"]) + _io_rows(m["outputs"])))
    rows = ([["reference", acc.get("reference")]] + _generation_rows(acc)) if "greedy_agreement" in acc else [
        ["reference", acc.get("reference")], ["data", f"{acc.get('data')} ({acc.get('samples')} samples)"],
        ["max abs err", _fmt(acc.get("max_abs_err"))], ["mean abs err", _fmt(acc.get("mean_abs_err"))],
        ["cosine", _fmt(acc.get("cosine"))], ["top-1 agreement", _fmt(acc.get("top1_agreement"))]]
    if "label_accuracy" in acc:
        la = acc["label_accuracy"]
        rows.append(["label accuracy (float -> artifact)", f"{la['reference']:.4f} -> {la['artifact']:.4f}"])
    rows += [["size (source -> artifact)", f"{r['size_bytes']['source']:,} -> {r['size_bytes']['artifact']:,} bytes"],
             ["export parity max abs err", _fmt(r.get("export_parity_max_abs_err"))]]
    if m.get("calibration"):
        cal = m["calibration"]
        rows.append(["calibration", f"{cal['method']} on {cal['samples']} samples from {cal['source']}"])
    c.print(_table("report", ["", ""], rows))
    for k, v in sorted((r.get("target") or {}).items()):
        if not isinstance(v, (dict, list)):
            c.print(f"  {k}: {_fmt(v)}")
    if r.get("pruning"):
        _print_pruning(c, r["pruning"])
    for w in r.get("warnings", []):
        c.print(f"warning: {w}")


def _print_pruning(c, p: dict) -> None:
    acc, size = p["accuracy_vs_unpruned"], p["size_bytes"]
    rows = [["spec", f"{p['spec']} (on the {p['applied_to']} model" + (f", fine-tuned by {p['finetune']})"
                                                                       if p.get("finetune") else ")")],
            ["parameters", f"{p['parameters']['before']:,} -> {p['parameters']['after']:,}"],
            ["weight sparsity (Conv/Gemm/MatMul)", _fmt(p["sparsity"]["total"])],
            ["weights compressed (zlib)",
             f"{size['weights_compressed_before']:,} -> {size['weights_compressed_after']:,} bytes"],
            ["artifact (compressed)", f"{size['artifact']:,} ({size['artifact_compressed']:,}) bytes"],
            ["pruned vs unpruned float: cosine", _fmt(acc.get("cosine"))],
            ["pruned vs unpruned float: top-1 agreement", _fmt(acc.get("top1_agreement"))]]
    if "label_accuracy" in acc:
        la = acc["label_accuracy"]
        rows.append(["label accuracy (unpruned -> pruned)", f"{la['unpruned']:.4f} -> {la['pruned']:.4f}"])
    if p.get("speedup_expected_here"):
        rows.append(["speedup expected here", p["speedup_expected_here"]])
    c.print(_table("pruning", ["", ""], rows))


def _print_prune(r: dict) -> None:
    c = _console()
    c.print(f"pruned model {r['output']}/{r['model']} ({', '.join(r['files'])})")
    _print_pruning(c, r["pruning"])
    for w in r.get("warnings", []):
        c.print(f"warning: {w}")


def _print_bench(b: dict) -> None:
    lat = b["latency_ms"]
    rows = [[b["runner"], b["device"], _fmt(b["threads"]), b["iters"], _fmt(lat["mean"]), _fmt(lat["p50"]),
             _fmt(lat["p90"]), _fmt(lat["p99"]), _fmt(b["throughput_per_s"]),
             f"{(b['peak_rss_bytes'] or 0) / 2**20:.1f}"]]
    _console().print(_table(f"bench {b['target']} {b['precision']} ({b['runtime']['name']} {b['runtime']['version']})",
                            ["runner", "device", "threads", "iters", "mean ms", "p50 ms", "p90 ms", "p99 ms",
                             "items/s", "peak RSS MiB"], rows))
    extra = dict(b.get("extra", {}))
    profile = extra.pop("profile", None)
    for k, v in sorted(extra.items()):
        _console().print(f"  {k}: {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}")
    if profile:
        total = sum(r["instructions"] for r in profile) or 1
        rows = [[r["name"][-40:], r["op"], r["macs"], r["instructions"], _fmt(r["instr_per_mac"]),
                 f"{100 * r['instructions'] / total:.1f}"] for r in profile]
        _console().print(_table("instructions per layer (QEMU -icount)",
                                ["layer", "op", "MACs", "instructions", "instr/MAC", "%"], rows))


def _generation_rows(acc: dict) -> list[list]:
    """Report rows of a generation bundle's accuracy (perplexity, greedy agreement, logit cosine)."""
    return [["perplexity (float -> artifact)", f"{_fmt(acc.get('reference_perplexity'))} -> {_fmt(acc.get('perplexity'))}"],
            ["logit cosine", _fmt(acc.get("logit_cosine"))],
            [f"greedy agreement ({acc['prompts']} prompts x {acc['new_tokens']} tokens)", _fmt(acc["greedy_agreement"])]]


def _print_verify(v: dict) -> None:
    if "greedy_agreement" in v:
        _console().print(_table(f"verify {v['target']} {v['precision']} ({v['runner']} vs {v['reference']})",
                                ["", ""], _generation_rows(v)))
        return
    rows = [["samples", v["samples"]], ["max abs err", _fmt(v["max_abs_err"])],
            ["mean abs err", _fmt(v["mean_abs_err"])], ["cosine", _fmt(v["cosine"])],
            ["top-1 agreement", _fmt(v["top1_agreement"])],
            ["min cosine (bound)", _fmt(v["bounds"]["min_cosine"])]]
    if v["bounds"].get("max_accuracy_drop") is not None:
        rows.append(["max accuracy drop (bound)", _fmt(v["bounds"]["max_accuracy_drop"])])
    if "label_accuracy" in v:
        rows.append(["label accuracy float", _fmt(v["label_accuracy"]["reference"])])
        rows.append(["label accuracy artifact", _fmt(v["label_accuracy"]["artifact"])])
    _console().print(_table(f"verify {v['target']} {v['precision']} ({v['runner']} vs {v['reference']})", ["", ""], rows))


def _print_targets(ts: list[dict]) -> None:
    rows = [[t["name"] + (" (default)" if t["default"] else ""), ", ".join(t["aliases"]), ", ".join(t["precisions"]),
             ("yes" + (f" ({t['note']})" if t.get("note") else "")) if t["available"] else f"no: {t['missing']}",
             t["description"]] for t in ts]
    _console().print(_table("targets", ["target", "aliases", "precisions", "usable here", "description"], rows))


def _print_inspect(i: dict) -> None:
    c = _console()
    if i["kind"] == "bundle":
        c.print(f"bundle {i['path']}: target={i['target']} precision={i['precision']} "
                f"runner={i['runner']} size={i['size_bytes']:,} bytes")
        c.print(_table("artifact I/O", ["name", "shape", "dtype", "scale", "zero_point", "layout"],
                       _io_rows(i["inputs"]) + _io_rows(i["outputs"])))
        c.print(_table("files", ["path", "bytes"], [[f["path"], f"{f['bytes']:,}"] for f in i["files"]]))
        return
    c.print(f"{i['format']} model {i['path']}: {i['nodes']} nodes, {i['parameters']:,} parameters, "
            f"{i['size_bytes']:,} bytes" + (f", opset {i['opset']}" if i.get("opset") else ""))
    c.print(_table("inputs / outputs", ["name", "shape", "dtype", "scale", "zero_point", "layout"],
                   _io_rows(i["inputs"]) + _io_rows(i["outputs"])))
    c.print(_table("ops", ["op", "count"], [[k, v] for k, v in sorted(i["op_counts"].items(), key=lambda kv: -kv[1])]))




def _print_layers(r: dict, top: int) -> None:
    c = _console()
    rows = [[x["node"], x["op"], _fmt(x["sqnr_db"]), _fmt(x["cosine"]), _fmt(x["max_abs_err"]),
             _fmt(x["input_sqnr_db"]), _fmt(x["added_db"]), f"{100 * x['added_noise']:.3g}"] for x in r["layers"][:top]]
    c.print(_table(f"layers of {r['bundle']} ({r['target']} {r['precision']}, {r['runtime']}, {r['samples']} samples)"
                   ", worst first", ["node", "op", "SQNR dB", "cosine", "max abs err", "input SQNR dB", "added dB",
                    "added noise %"],
                   rows))
    if "first_above_threshold" in r:
        f = r["first_above_threshold"]
        c.print(f"bisect: first layer below {r['threshold_db']:g} dB: "
                + (f"{f['node']} ({f['op']}, {f['sqnr_db']:.3g} dB)" if f else "none"))


def _print_generation_bench(b: dict) -> None:
    g = b["generation"]
    rows = [[b["runner"], _fmt(b["threads"]), g["prompt_tokens"], g["new_tokens"], _fmt(g["load_s"] * 1e3),
             _fmt(g["ttft_ms"]["p50"]), _fmt(g["tpot_ms"]["p50"]), _fmt(g["tpot_ms"]["p90"]), _fmt(g["tokens_per_s"]),
             f"{(b['peak_rss_bytes'] or 0) / 2**20:.1f}", _fmt(g["kv_cache_bytes"])]]
    _console().print(_table(f"generation bench {b['target']} {b['precision']}",
                            ["runner", "threads", "prompt", "new", "load ms", "TTFT ms", "TPOT p50 ms", "TPOT p90 ms",
                             "tok/s", "peak RSS MiB", "KV bytes"], rows))
