#!/usr/bin/env python3
"""Calibration sentences written by a language model: `condense generate` on varied prompts and
seeds, the continuations split into sentences of 5–40 words, one per line, deduplicated. Used to
give the MiniLM recovery more text than the 40 bundled sentences (docs/compression.md).

usage: generate_sentences.py --model F.gguf --count 2000 > sentences.txt
"""
import argparse
import json
import re
import subprocess
import sys

PROMPTS = [
    "The history of the Roman Empire", "Photosynthesis is the process by which", "The stock market fell sharply today as",
    "Once upon a time in a small village", "The recipe calls for two cups of flour", "Climate change affects agriculture because",
    "In 1969, the Apollo 11 mission", "The committee met on Tuesday to discuss", "How to change a flat tyre: first,",
    "The mitochondria is known as", "Machine learning models are trained by", "The train departs from platform 4 at",
    "Our quarterly revenue increased by", "The patient presented with a fever and", "The French Revolution began in",
    "My favourite book is", "The museum opened a new exhibition about", "Scientists discovered a new species of",
    "The city council approved a plan to", "Learning a second language helps", "The football match ended in",
    "The new smartphone features", "Volcanoes form when", "The best way to save money is",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--condense", default=".build/release/condense")
    a = ap.parse_args()
    seen, out, seed = set(), [], 1
    while len(out) < a.count and seed < 100000:
        for p in PROMPTS:
            r = subprocess.run([a.condense, "generate", "--model", a.model, "--prompt", p, "--max-tokens", "96",
                                "--temperature", "0.8", "--seed", str(seed), "--json"], capture_output=True, text=True, check=True)
            text = p + json.loads(r.stdout)["text"]
            for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")):
                s = s.strip()
                if 5 <= len(s.split()) <= 40 and s[-1] in ".!?" and s not in seen:
                    seen.add(s)
                    out.append(s)
            seed += 1
            if len(out) >= a.count:
                break
    sys.stdout.write("\n".join(out[: a.count]) + "\n")


if __name__ == "__main__":
    main()
