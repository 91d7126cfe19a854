#!/usr/bin/env python3
"""Summarise several `condense bench sparse --peers --json` runs into the Markdown tables of
docs/performance.md: per shape and batch M the median over runs of the speedup over our dense
kernel (2:4 and CSR at each sparsity), the crossover sparsity computed from those medians, and
the CSR time ratios against scipy and MKL (median and min–max of the same-run ratio). A peer's
time is its median less its measured per-call Python binding overhead (`net_median_s`) where the
record has one; scipy.sparse runs on 1 thread (it has none), MKL and Condense on the same count.

usage: summarize_sparse.py run1.json run2.json ...
"""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]


def key(r):
    return (r["n"], r["k"], r["m"], r["format"], round(r.get("sparsity", 0), 2))


ours = [{key(r): r for r in run if r["backend"] == "native"} for run in runs]
shapes = []
for r in runs[0]:
    if r["backend"] == "native" and (r["n"], r["k"]) not in shapes:
        shapes.append((r["n"], r["k"]))
ms = sorted({r["m"] for r in runs[0] if r["backend"] == "native"})
levels = sorted({round(r["sparsity"], 2) for r in runs[0] if r["backend"] == "native" and r["format"] == "csr"})
has24 = any(r["format"] == "2:4" for r in runs[0])


def med(vals):
    return statistics.median(vals) if vals else float("nan")


def crossover(points):
    points = sorted(points)
    losses = [i for i, (_, s) in enumerate(points) if s <= 1]
    if not losses:
        return f"≤ {points[0][0] * 100:.0f} %"
    i = losses[-1]
    if i + 1 >= len(points):
        return f"> {points[-1][0] * 100:.0f} %"
    (a, sa), (b, sb) = points[i], points[i + 1]
    return f"≈ {(a + (1 - sa) / (sb - sa) * (b - a)) * 100:.0f} %"


print("Speedup over Condense's dense f32 GEMM (median over runs; > 1 means sparse is faster):\n")
head = "| N×K | M | dense time |" + (" 2:4 |" if has24 else "") + "".join(f" CSR {s * 100:.0f} % |" for s in levels) + " CSR wins from |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for n, k in shapes:
    for m in ms:
        d = med([o[(n, k, m, "dense", 0.0)]["median_s"] for o in ours])
        line = f"| {n}×{k} | {m} | {d * 1e6:.0f} µs |"
        if has24:
            line += f" {med([o[(n, k, m, '2:4', 0.5)]['speedup_vs_dense'] for o in ours]):.2f}× |"
        pts = []
        for s in levels:
            v = med([o[(n, k, m, "csr", s)]["speedup_vs_dense"] for o in ours])
            pts.append((s, v))
            line += f" {v:.2f}× |"
        print(line + f" {crossover(pts)} |")

peers = sorted({r["backend"] for run in runs for r in run if r["backend"] != "native"})
if peers:
    print("\nCSR time ratio peer / Condense on the same matrices (median, min–max over runs; > 1 means Condense is faster):\n")
    head = "| N×K | sparsity | M |" + "".join(f" {'scipy (1 thread)' if p == 'scipy' else p} |" for p in peers)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    worst = {p: (float("inf"), None) for p in peers}
    for n, k in shapes:
        for s in levels:
            for m in ms:
                line = f"| {n}×{k} | {s * 100:.0f} % | {m} |"
                for p in peers:
                    ratios = []
                    for run, o in zip(runs, ours):
                        pr = next((r for r in run if r["backend"] == p and key(r) == (n, k, m, "csr", s)), None)
                        if pr:
                            ratios.append(pr.get("net_median_s", pr["median_s"]) / o[(n, k, m, "csr", s)]["median_s"])
                    if ratios:
                        ratios.sort()
                        line += f" {med(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) |"
                        if med(ratios) < worst[p][0]:
                            worst[p] = (med(ratios), f"{n}×{k}, {s * 100:.0f} %, M = {m}")
                    else:
                        line += " – |"
                print(line)
    print()
    for p in peers:
        print(f"Lowest median ratio against {p}: {worst[p][0]:.2f}× ({worst[p][1]}).")
for p in peers:
    oh = sorted({round(r.get("overhead_s", 0) * 1e6, 2) for run in runs for r in run if r["backend"] == p})
    print(f"{p}: per-call binding overhead subtracted {', '.join(f'{v} µs' for v in oh)}")
