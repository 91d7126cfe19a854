#!/usr/bin/env python3
"""Writes an F16 GGUF decoder with a real model's shapes and random weights, for speed tests
where the file's size and layout matter and its answers do not.

  python3 Benchmarks/make_shaped_model.py qwen2.5-0.5b OUT.gguf
  ~/.cache/condense/llama.cpp/bin/llama-quantize OUT.gguf OUT-Q4_K_M.gguf Q4_K_M

qwen2.5-0.5b: Qwen2.5-0.5B's shapes — hidden 896, 24 layers, 14 query and 2 KV heads of 64,
feed-forward 4864, vocabulary 151 936, tied embedding, QKV biases, RoPE base 1e6. The vocabulary
is the 256 GPT-2 byte tokens, "ab" (one merge) and filler tokens: enough for both programs to load
it and for `llama-bench` and `condense bench generate` to time it.
"""
import sys
import numpy as np
import gguf

SHAPES = {"qwen2.5-0.5b": dict(arch="qwen2", hidden=896, layers=24, heads=14, kv_heads=2, ff=4864, vocab=151936, ctx=32768, rope=1e6)}


def main():
    name, out = sys.argv[1], sys.argv[2]
    s = SHAPES[name]
    d, hd = s["hidden"], s["hidden"] // s["heads"]
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(out, s["arch"])
    w.add_name(f"random {name}")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(d)
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(s["rope"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # GPT-2's byte map for the first 256 tokens, then fillers.
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    byte_tokens = [chr(c) for _, c in sorted(zip(bs, cs))]
    tokens = byte_tokens + ["ab"] + [f"<filler{i}>" for i in range(s["vocab"] - 256 - 2)] + ["<|endoftext|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL])
    w.add_token_merges(["a b"])   # one merge: both readers want the key
    w.add_eos_token_id(len(tokens) - 1)
    w.add_bos_token_id(len(tokens) - 1)
    w.add_add_bos_token(False)

    def t(name, shape, scale=0.02):
        w.add_tensor(name, (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float16))

    def ones(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    t("token_embd.weight", (s["vocab"], d))
    ones("output_norm.weight", d)
    for l in range(s["layers"]):
        p = f"blk.{l}."
        ones(p + "attn_norm.weight", d)
        ones(p + "ffn_norm.weight", d)
        t(p + "attn_q.weight", (s["heads"] * hd, d))
        t(p + "attn_k.weight", (s["kv_heads"] * hd, d))
        t(p + "attn_v.weight", (s["kv_heads"] * hd, d))
        w.add_tensor(p + "attn_q.bias", np.zeros(s["heads"] * hd, dtype=np.float32))
        w.add_tensor(p + "attn_k.bias", np.zeros(s["kv_heads"] * hd, dtype=np.float32))
        w.add_tensor(p + "attn_v.bias", np.zeros(s["kv_heads"] * hd, dtype=np.float32))
        t(p + "attn_output.weight", (d, s["heads"] * hd))
        t(p + "ffn_gate.weight", (s["ff"], d))
        t(p + "ffn_up.weight", (s["ff"], d))
        t(p + "ffn_down.weight", (d, s["ff"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
