#!/usr/bin/env python3
"""Summarize `condense bench dispatch --json` runs: does policy fastest pick a candidate within 5 %
of the best one the benchmark measured (same run), and what does the selection cost?

usage: summarize_dispatch.py run1.json [run2.json ...]   (prints a Markdown table)
"""
import json
import statistics
import sys
from collections import defaultdict

runs = [json.load(open(p)) for p in sys.argv[1:]]
cases = defaultdict(list)
for run in runs:
    for r in run:
        if r.get("op") == "dispatch":
            cases[(r["n"], r["k"], r["format"], r["m"])].append(r)

print("| N×K | format | M | best (bench median) | picked by fastest, per run | picked/best, per run | select ms, median |")
print("|---|---|---:|---|---|---|---:|")
within = total = 0
misses = []
select = defaultdict(list)
for (n, k, f, m), rs in sorted(cases.items()):
    ratios = []
    for r in rs:
        if r["picked_over_best"] > 0:
            total += 1
            ratios.append(r["picked_over_best"])
            if r["picked_over_best"] <= 1.05:
                within += 1
            else:
                misses.append((n, k, f, m, r["picked"], r["best"], r["picked_over_best"]))
        select[(n, k)].append(r["select_s"] * 1e3)
    bests = sorted({r["best"] for r in rs})
    picks = ", ".join(r["picked"] for r in rs)
    print(f"| {n}×{k} | {f} | {m} | {' / '.join(bests)} | {picks} | "
          f"{', '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(r['select_s'] * 1e3 for r in rs):.1f} |")
print()
print(f"fastest within 5 % of the best: {within} of {total} (case, run) pairs")
for m in misses:
    print(f"  miss: {m[0]}×{m[1]} {m[2]} M={m[3]}: picked {m[4]}, best {m[5]}, {m[6]:.2f}×")
print()
print("| N×K | selection ms: min / median / max over formats, M and runs |")
print("|---|---|")
for (n, k), xs in sorted(select.items()):
    print(f"| {n}×{k} | {min(xs):.1f} / {statistics.median(xs):.1f} / {max(xs):.1f} |")
