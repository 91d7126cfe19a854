#!/usr/bin/env python3
"""Summarize `condense demo` runs (report.json of each): per variant, the median and range over
runs of accuracy, ECE, file size and batch-1 / batch-64 latency, with ratios to the teacher of
the same run.   usage: summarize_demo.py run1/report.json run2/report.json ..."""
import json
import statistics
import sys

reports = [json.load(open(p)) for p in sys.argv[1:]]

def p50(e, b):
    return next(l["p50"] for l in e["latency"] if l["batch"] == b)

rows = {}
for rep in reports:
    t = rep["teacher"]
    variants = [("teacher (f32)", t)] + [(p["name"], p["stages"][-1]["evaluation"]) for p in rep["pipelines"]]
    for name, e in variants:
        r = rows.setdefault(name, {"acc": [], "dacc": [], "ece": [], "kb": [], "small": [], "b1": [], "fast": [], "b64": [], "fmt": e["formats"]})
        r["acc"].append(100 * e["accuracy"]); r["dacc"].append(100 * (e["accuracy"] - t["accuracy"]))
        r["ece"].append(100 * e["ece"]); r["kb"].append(e["fileBytes"] / 1024)
        r["small"].append(t["fileBytes"] / e["fileBytes"]); r["b1"].append(p50(e, 1) * 1e6)
        r["fast"].append(p50(t, 1) / p50(e, 1)); r["b64"].append(p50(e, 64) * 1e3)

def m(xs, d=2):
    return f"{statistics.median(xs):.{d}f}" + (f" ({min(xs):.{d}f}–{max(xs):.{d}f})" if max(xs) - min(xs) > 10 ** -d else "")

print(f"{len(reports)} runs; median (range)\n")
print("| variant | accuracy % | Δ pt | ECE % | file KB | × smaller | batch 1 µs | × faster | batch 64 ms | formats |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    print(f"| {name} | {m(r['acc'])} | {m(r['dacc'])} | {m(r['ece'])} | {statistics.median(r['kb']):.0f} | {m(r['small'], 1)} | "
          f"{m(r['b1'], 1)} | {m(r['fast'], 1)} | {m(r['b64'], 3)} | {', '.join(sorted(set(r['fmt'])))} |")
agree = [s["qatExportAgreement"] for rep in reports for p in rep["pipelines"] for s in p["stages"] if s.get("qatExportAgreement") is not None]
if agree:
    print(f"\nQAT/export agreement over {len(agree)} QAT stages: min {100 * min(agree):.2f} %, max {100 * max(agree):.2f} %")
print("seconds per run: " + ", ".join(f"{r['seconds']:.0f}" for r in reports))
