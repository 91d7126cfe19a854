#!/usr/bin/env python3
"""Summarise several `condense bench gemm --peers --json` runs into the Markdown table of
docs/performance.md: per case the median over runs of Condense's and each peer's GFLOPS, and the
min–max over runs of the same-run ratio (ratios only mean something within one run). A Python
peer's GFLOPS are taken at its median less its measured per-call binding overhead
(`net_median_s`), the figure most generous to it.

usage: summarize_gemm.py run1.json run2.json ...
"""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
key = lambda r: (r["m"], r["n"], r["k"])
cases = []
for r in runs[0]:
    if r["backend"] == "native" and key(r) not in cases:
        cases.append(key(r))
peers = sorted({r["backend"] for run in runs for r in run if r["backend"] != "native"})


def g(run, case, backend):
    for r in run:
        if key(r) == case and r["backend"] == backend:
            if backend != "native" and "net_median_s" in r:
                r = dict(r, gflops=2.0 * r["m"] * r["n"] * r["k"] / r["net_median_s"] * 1e-9)
            return r
    return None


head = "| M | N | K | Condense GFLOPS |"
for p in peers:
    head += f" {p} GFLOPS | Condense/{p} (runs) |"
head += " M=1: % of read roofline |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for c in cases:
    ours = [g(run, c, "native") for run in runs]
    line = f"| {c[0]} | {c[1]} | {c[2]} | {statistics.median(o['gflops'] for o in ours):.0f} |"
    for p in peers:
        theirs = [g(run, c, p) for run in runs]
        if any(t is None for t in theirs):
            line += " – | – |"
            continue
        ratios = sorted(o["gflops"] / t["gflops"] for o, t in zip(ours, theirs))
        line += (f" {statistics.median(t['gflops'] for t in theirs):.0f} |"
                 f" {statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) |")
    if c[0] == 1:
        pct = sorted(o["pct_roofline"] for o in ours)
        line += f" {statistics.median(pct):.0f} % ({pct[0]:.0f}–{pct[-1]:.0f}) |"
    else:
        line += " |"
    print(line)
peak = [o["peak_gflops"] for run in runs for o in run if o["backend"] == "native"]
print()
print(f"Measured fp32 FMA peak (probe, 2 threads): {min(peak):.0f}–{max(peak):.0f} GFLOPS across the runs.")
for p in peers:
    oh = sorted({round(r.get("overhead_s", 0) * 1e6, 2) for run in runs for r in run if r["backend"] == p})
    print(f"{p}: per-call binding overhead subtracted {', '.join(f'{v} µs' for v in oh)}")
