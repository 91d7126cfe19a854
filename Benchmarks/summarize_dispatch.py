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
print("| N×K | first prepare ms (selection) | cached prepare ms (winner's own prepare) | first minus cached ms | first prepare < 50 ms |")
print("|---|---|---|---|---|")
for (n, k), xs in sorted(select.items()):
    rs = [r for run in runs for r in run if r.get("op") == "dispatch" and (r["n"], r["k"]) == (n, k)]
    cached = [r.get("cached_s", float("nan")) * 1e3 for r in rs]
    extra = [r["select_s"] * 1e3 - r.get("cached_s", float("nan")) * 1e3 for r in rs]
    under = sum(1 for x in xs if x < 50)
    def mmm(v):
        return f"{min(v):.1f} / {statistics.median(v):.1f} / {max(v):.1f}"
    print(f"| {n}×{k} | {mmm(xs)} | {mmm(cached)} | {mmm(extra)} | {under} of {len(xs)} |")
print()
print("min / median / max over formats, M and runs. 4096×4096 by format and M (median over runs):")
print()
print("| format | M | first prepare ms | cached ms | finalists timed whole (median) | dropped on the slice, run 1 |")
print("|---|---:|---:|---:|---:|---|")
for (n, k, f, m), rs in sorted(cases.items()):
    if (n, k) != (4096, 4096):
        continue
    fin = statistics.median(len(r["select_timings"]) for r in rs)
    dropped = ", ".join(t.split(" on ")[0] for t in rs[0].get("triaged", []))
    print(f"| {f} | {m} | {statistics.median(r['select_s'] * 1e3 for r in rs):.1f} | "
          f"{statistics.median(r.get('cached_s', float('nan')) * 1e3 for r in rs):.1f} | {fin:g} | {dropped or '-'} |")
