#!/usr/bin/env python3
"""Prints the per-type markdown table of docs/performance.md from `condense bench generate
--peers --json` records, one column pair per run directory, so that no figure is typed by hand.

    python3 Benchmarks/gguf_table.py RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds <name>.json files (one per model file, as Benchmarks/results/*-gguf-types/
and *-layer-job/ do). Rows: every name found in the first directory, in the order below, then
any others. Each cell: Condense / llama.cpp tok/s (the llama-bench setting that won: fa 0 or 1)
and the ratio; tg cells add the bytes of weights and KV cache read per second and their share of
the read probe taken after each run, with the probe's range.
"""
import json
import sys
from pathlib import Path

ORDER = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "IQ4_NL", "IQ4_XS",
         "qwen05-Q4_K_M", "Q4_K_M-d4096", "gemma3-270m-Q4_K_M"]


def cases(path):
    """(test, depth) → (ours, peer) records of one file."""
    out = {}
    for r in json.loads(path.read_text()):
        mine = out.setdefault((r["test"], r["depth"]), [None, None])
        mine[0 if r["backend"] == "condense" else 1] = r
    return out


def cell(ours, peer):
    if ours is None or peer is None:
        return "—"
    text = f"{ours['tok_s']:.0f} / {peer['tok_s']:.0f} ({peer.get('flash_attn', '?')}) **{ours['tok_s'] / peer['tok_s']:.2f}×**"
    if ours["test"].startswith("tg"):
        text += (f"; {ours['bytes_gbps']:.1f} GB/s, {ours['pct_read_probe']:.0f} % "
                 f"({ours['read_gbps_min']:.0f}–{ours['read_gbps_max']:.0f})")
    return text


def main():
    runs = [Path(d) for d in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__)
    names = [p.stem for p in sorted(runs[0].glob("*.json"))]
    names = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    tests = []
    for n in names:
        for key in sorted(cases(runs[0] / f"{n}.json"), key=lambda k: (k[1], k[0])):
            tests.append((n, key))
    head = ["file", "test"] + [f"run {i + 1}: Condense / llama.cpp tok/s (fa) ×" for i in range(len(runs))]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n, (test, depth) in tests:
        row = [n, f"{test}" + (f" @ {depth}" if depth else "")]
        for d in runs:
            f = d / f"{n}.json"
            row.append(cell(*cases(f).get((test, depth), (None, None))) if f.exists() else "—")
        print("| " + " | ".join(row) + " |")
    cpus = {json.loads((d / f"{names[0]}.json").read_text())[0]["machine"]["cpu"] for d in runs}
    print(f"\nCPU: {', '.join(sorted(cpus))}")


if __name__ == "__main__":
    main()
