#!/usr/bin/env python3
"""Quality and speed of compressed variants of a GGUF decoder against the dense model, in one run.

For each variant folder (written by `condense compress --llm … -o DIR`): perplexity on each
held-out text (`condense perplexity --json --top1`, windows of --ctx), its ratio to the dense
model's, the teacher-forced top-1 agreement with the dense model at every scored position, the
weights read per token, and (--speed) `condense bench generate --model DIR --baseline GGUF`:
tg and pp of the variant and of the dense file in the same run, repetitions interleaved.

usage: llm_variants.py --model F.gguf --text a.txt [--text b.txt] [--speed] [--reps 3] NAME=DIR ...
       (condense from .build/release, or --condense PATH)
"""
import argparse
import json
import subprocess
import sys


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", action="append", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--condense", default=".build/release/condense")
    ap.add_argument("variants", nargs="+", help="NAME=DIR")
    a = ap.parse_args()
    variants = [v.split("=", 1) for v in a.variants]

    def ppl(model, text):
        return json.loads(run([a.condense, "perplexity", "--model", model, "--input", text, "--ctx", str(a.ctx), "--json", "--top1"]))

    dense = {t: ppl(a.model, t) for t in a.text}
    head = "| variant | " + " | ".join(f"ppl {t.split('/')[-1]} (× dense)" for t in a.text) + " | top-1 agreement with dense |"
    if a.speed:
        head += " tg128 tok/s (× dense, same run) | pp512 (× dense) | weights read per token |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    row = "| dense (the GGUF file) | " + " | ".join(f"{dense[t]['ppl']:.2f}" for t in a.text) + " | 100 % |"
    print(row + (" | | |" if a.speed else ""), flush=True)
    for name, folder in variants:
        cells, agree, total = [], 0, 0
        for t in a.text:
            r = ppl(folder, t)
            cells.append(f"{r['ppl']:.2f} ({r['ppl'] / dense[t]['ppl']:.2f}×)")
            agree += sum(x == y for x, y in zip(r["top1"], dense[t]["top1"]))
            total += len(r["top1"])
        line = f"| {name} | " + " | ".join(cells) + f" | {100 * agree / total:.1f} % |"
        if a.speed:
            recs = json.loads(run([a.condense, "bench", "generate", "--model", folder, "--baseline", a.model, "--reps", str(a.reps), "--json"]))
            get = lambda backend, test: next(r for r in recs if r["backend"] == backend and r["test"] == test)
            tg, tgb = get("condense", "tg128"), get("baseline", "tg128")
            pp, ppb = get("condense", "pp512"), get("baseline", "pp512")
            line += (f" {tg['tok_s']:.0f} vs {tgb['tok_s']:.0f} ({tg['tok_s'] / tgb['tok_s']:.2f}×) | {pp['tok_s'] / ppb['tok_s']:.2f}× |"
                     f" {tg['weight_gb_per_token'] * 1e3:.0f} MB vs {tgb['weight_gb_per_token'] * 1e3:.0f} MB |")
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
