#!/usr/bin/env python3
"""Summarize `condense bench embed --peers --json` runs: median latency per (backend, format,
batch) over runs, the ratio to onnxruntime of the same precision in each run, and quality.
usage: summarize_embed.py run1.json [run2.json ...]"""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
rows = {}
quality = {}
ratios = {}
for run in runs:
    ort = {(r["format"], r["batch"]): r["median_s"] for r in run if r["backend"] == "onnxruntime"}
    for r in run:
        key = (r["backend"], r["format"], r["batch"])
        rows.setdefault(key, []).append(r["median_s"])
        if r["backend"] == "condense":
            quality[r["format"]] = (r["mean_cos"], r["min_cos"], r["nn_agreement"], r["projection_bytes"])
            peer = ort.get(("fp32" if r["format"] == "fp32" else "int8-dynamic", r["batch"]))
            if peer:
                ratios.setdefault(key, []).append(peer / r["median_s"])

def ms(xs):
    m = statistics.median(xs) * 1e3
    return f"{m:.2f} ({min(xs) * 1e3:.2f}–{max(xs) * 1e3:.2f})" if len(xs) > 1 else f"{m:.2f}"

print(f"{len(runs)} runs; latency ms median (range); ratio = onnxruntime time / Condense time in the same run (fp32 vs fp32, int8 vs int8 dynamic)\n")
print("| backend | format | batch × 128 tokens | latency ms | × onnxruntime | mean cos | min cos | NN agreement | projection MB |")
print("|---|---|---:|---|---|---|---|---|---|")
for (b, f, n), xs in sorted(rows.items(), key=lambda kv: (kv[0][0] != "onnxruntime", kv[0][1], kv[0][2])):
    q = quality.get(f) if b == "condense" else None
    rs = ratios.get((b, f, n))
    rtxt = f"{statistics.median(rs):.2f} ({min(rs):.2f}–{max(rs):.2f})" if rs else "-"
    qtxt = f"{q[0]:.5f} | {q[1]:.5f} | {q[2] * 100:.0f} % | {q[3] / 2**20:.1f}" if q else "- | - | - | -"
    print(f"| {b} | {f} | {n} | {ms(xs)} | {rtxt} | {qtxt} |")
