#!/usr/bin/env python3
"""Summarise several `condense bench generate --peers --json` runs: per test and depth, the median
over runs of each backend's tokens/s and the min–max of the same-run ratio Condense / llama.cpp.

usage: summarize_generate.py run1.json run2.json ...
"""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
keys = []
for r in runs[0]:
    k = (r["test"], r["depth"])
    if r["backend"] == "condense" and k not in keys:
        keys.append(k)
print("| test | depth | Condense tok/s | llama.cpp tok/s | Condense / llama.cpp (runs) | Condense GB/s read (weights + KV cache), % of read probe |")
print("|---|---|---|---|---|---|")
for test, depth in keys:
    ours, theirs, ratios, bw = [], [], [], []
    for run in runs:
        o = next((r for r in run if r["backend"] == "condense" and r["test"] == test and r["depth"] == depth), None)
        t = next((r for r in run if r["backend"] == "llama.cpp" and r["test"] == test and r["depth"] == depth), None)
        if o: ours.append(o["tok_s"])
        if t: theirs.append(t["tok_s"])
        if o and t: ratios.append(o["tok_s"] / t["tok_s"])
        if o and "bytes_gbps" in o: bw.append((o["bytes_gbps"], 100 * o["bytes_gbps"] / o["read_gbps"]))
    ratios.sort()
    rtxt = f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f})" if ratios else "–"
    btxt = f"{statistics.median(b[0] for b in bw):.1f}, {statistics.median(b[1] for b in bw):.0f} %" if bw else ""
    print(f"| {test} | {depth} | {statistics.median(ours):.1f} | {statistics.median(theirs):.1f} | {rtxt} | {btxt} |" if theirs
          else f"| {test} | {depth} | {statistics.median(ours):.1f} | – | – | {btxt} |")
