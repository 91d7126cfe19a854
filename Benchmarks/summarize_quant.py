#!/usr/bin/env python3
"""Summarise several `condense bench quant --peers --json` runs into the Markdown table of
docs/performance.md: per shape, M and format (int8, int4 on each native path) the median over runs
of Condense's GOPS, its speedup over Condense's f32 kernel, and the same-run time ratio against
each peer of the same format (median, min–max). A peer's time is its median less its measured
per-call Python binding overhead (`net_median_s`, the figure most generous to the peer) where the
record has one; the overheads are listed after the table.

usage: summarize_quant.py run1.json run2.json ...
"""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
key = lambda r: (r["m"], r["n"], r["k"], r["format"], r["kernel"])
pkey = lambda r: (r["m"], r["n"], r["k"], r["format"])
ours = [{key(r): r for r in run if r["backend"] == "native"} for run in runs]
cases = [key(r) for r in runs[0] if r["backend"] == "native"]
peers = sorted({r["backend"] for run in runs for r in run if r["backend"] != "native"})
head = ("| M | N×K | format | kernel | GOPS | × our f32 | weight bytes (× f32) | rel. error vs f32 |"
        + "".join(f" {p} (same format) time / ours |" for p in peers))
print(head)
print("|" + "---|" * (head.count("|") - 1))
for c in cases:
    rs = [o[c] for o in ours if c in o]
    line = (f"| {c[0]} | {c[1]}×{c[2]} | {c[3]} | `{c[4]}` | {statistics.median(r['gops'] for r in rs):.0f} |"
            f" {statistics.median(r['speedup_vs_f32'] for r in rs):.2f}× |"
            f" {rs[0]['weight_bytes']} ({rs[0]['weight_bytes'] / rs[0]['f32_weight_bytes']:.2f}) |"
            f" {statistics.median(r['rel_error'] for r in rs):.1e} |")
    for p in peers:
        ratios = sorted(pr.get("net_median_s", pr["median_s"]) / o[c]["median_s"] for run, o in zip(runs, ours) if c in o
                        for pr in run if pr["backend"] == p and pkey(pr) == c[:4])
        line += f" {statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) |" if ratios else " – |"
    print(line)

for p in peers:
    oh = sorted({round(r.get("overhead_s", 0) * 1e6, 2) for run in runs for r in run if r["backend"] == p})
    rot = sorted({r.get("rotate", 1) for run in runs for r in run if r["backend"] == p})
    print(f"\n{p}: per-call binding overhead subtracted {', '.join(f'{v} µs' for v in oh)}; weight copies cycled {rot}")
