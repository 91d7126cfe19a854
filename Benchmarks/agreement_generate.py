#!/usr/bin/env python3
"""Agreement of `condense` with llama.cpp on one GGUF model (issue 13's correctness goals).

  python3 Benchmarks/agreement_generate.py --model M.gguf [--text docs/compression.md] [--ctx 512]

* Teacher-forced top-1: at every position llama-perplexity scores (windows of --ctx tokens, the
  second half of each), the most likely next token of each implementation; the share that agree.
* Greedy: 16 tokens after each of a dozen varied prompts; how many continuations are identical,
  and where the others part.

llama.cpp's side is Benchmarks/peers/llama_agreement.c, compiled here against the libllama that
Benchmarks/peers/build_llama_cpp.sh built (its cache: CONDENSE_LLAMA_CPP_DIR or
~/.cache/condense/llama.cpp). Prints a JSON record; --condense names the binary.
"""
import argparse, json, os, subprocess, sys

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    "La tour Eiffel se trouve à",
    "1, 2, 3, 5, 8, 13,",
    "The three primary colors are",
    "import numpy as np\n\nx = np.",
    "Photosynthesis is the process by which",
    "Q: What is the boiling point of water?\nA:",
    "My favourite emoji is 🎉 because",
    "    for (int i = 0; i < n; i++) {",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", default="docs/compression.md")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--condense", default=".build/release/condense")
    a = ap.parse_args()
    root = os.environ.get("CONDENSE_LLAMA_CPP_DIR", os.path.expanduser("~/.cache/condense/llama.cpp"))
    lib, src = os.path.join(root, "bin"), os.path.join(root, "src", "vendor-src")
    tool = os.path.join(root, "llama_agreement")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "llama_agreement.c")
    if not os.path.exists(tool) or os.path.getmtime(tool) < os.path.getmtime(here):
        subprocess.run(["cc", "-O2", "-I" + os.path.join(src, "include"), "-I" + os.path.join(src, "ggml", "include"), here,
                        "-L" + lib, "-lllama", "-Wl,-rpath," + lib, "-o", tool], check=True)

    def peer(*args):
        out = subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout
        return [int(v) for v in out.split()]

    def condense(*args):
        return json.loads(subprocess.run([a.condense, *args], check=True, capture_output=True, text=True).stdout)

    ours = condense("perplexity", "--model", a.model, "--input", a.text, "--ctx", str(a.ctx), "--json", "--top1")["top1"]
    theirs = peer("top1", a.model, a.text, str(a.ctx))
    if len(ours) != len(theirs):
        sys.exit(f"scored positions differ: condense {len(ours)}, llama.cpp {len(theirs)}")
    same = sum(x == y for x, y in zip(ours, theirs))
    greedy = []
    for p in PROMPTS:
        mine = condense("generate", "--model", a.model, "--prompt", p, "--max-tokens", str(a.tokens), "--temperature", "0", "--json")["tokens"]
        ref = peer("greedy", a.model, p, str(a.tokens))[:len(mine)]
        first = next((i for i, (x, y) in enumerate(zip(mine, ref)) if x != y), min(len(mine), len(ref)))
        greedy.append({"prompt": p, "identical": mine == ref, "agree_for": first})
    print(json.dumps({"teacher_forced_top1": same / len(ours), "positions": len(ours),
                      "greedy_identical": sum(g["identical"] for g in greedy), "prompts": len(greedy), "greedy": greedy}, indent=1))


if __name__ == "__main__":
    main()
