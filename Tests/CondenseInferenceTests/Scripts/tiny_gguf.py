#!/usr/bin/env python3
"""Writes tiny random GGUF decoders, one per architecture, with the `gguf` package (llama.cpp's
own writer), so the Swift tests run every architecture against llama.cpp's recorded answers.

    python3 tiny_gguf.py OUT_DIR        # writes OUT_DIR/<arch>.gguf

The weights come from numpy's PCG64 with fixed seeds: the same files on every machine, which is
what lets Fixtures/tiny-architectures.json hold llama-server's greedy tokens for them.
Every tensor is F32, so the comparison tests the architecture, not a quantization.
"""
import sys
from pathlib import Path

import numpy as np
import gguf

VOCAB = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + \
        ["\u2581the", "\u2581a", "\u2581cat", "\u2581dog", "\u2581sat", "\u2581on", "\u2581mat", "\u2581is", "th", "he", "at", "\u2581"] + \
        ["<|endoftext|>", "<|end|>", "<|user|>"]
TYPES = [2, 3, 3] + [6] * 256 + [1] * 12 + [3, 3, 3]


# With --blocks, each block's projections are stored in ggml blocks instead (V and down in other
# types than the rest, as Q4_K_M files mix them): what the decoder's layer job runs.
BLOCK_TYPES = {"attn_v": gguf.GGMLQuantizationType.Q8_0, "ffn_down": gguf.GGMLQuantizationType.Q5_0}


def write(path, arch, blocks, seed, hidden=64, heads=4, kv_heads=2, head_dim=16, ff=96, layers=3, extra=None, embd_scale=0.5,
          quantize=False):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    if head_dim * heads != hidden:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    for k, v in (extra or {}).items():
        if isinstance(v, float):
            w.add_float32(f"{arch}.{k}", v)
        else:
            w.add_uint32(f"{arch}.{k}", v)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(VOCAB)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(12)] + [0.0] * 3)
    w.add_token_types(TYPES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    vocab = len(VOCAB)

    def t(name, *shape, scale=None, around=None):
        # numpy shape is (rows, cols) = ggml [cols, rows].
        a = rng.standard_normal(shape).astype(np.float32)
        a *= scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        if around is not None:
            a = (around + 0.1 * a).astype(np.float32)
        if quantize and name.startswith("blk.") and len(shape) == 2:
            kind = BLOCK_TYPES.get(name.split(".")[2], gguf.GGMLQuantizationType.Q4_0)
            w.add_tensor(name, gguf.quants.quantize(a, kind), raw_dtype=kind)
        else:
            w.add_tensor(name, a)

    t("token_embd.weight", vocab, hidden, scale=embd_scale)
    t("output_norm.weight", hidden, around=1.0)
    qd, kvd = heads * head_dim, kv_heads * head_dim
    for l in range(layers):
        p = f"blk.{l}."
        t(p + "attn_norm.weight", hidden, around=1.0)
        t(p + "ffn_norm.weight", hidden, around=1.0)
        if "qkv" in blocks:
            t(p + "attn_qkv.weight", qd + 2 * kvd, hidden)
        else:
            t(p + "attn_q.weight", qd, hidden)
            t(p + "attn_k.weight", kvd, hidden)
            t(p + "attn_v.weight", kvd, hidden)
        if "bias" in blocks:
            t(p + "attn_q.bias", qd, scale=0.1)
            t(p + "attn_k.bias", kvd, scale=0.1)
            t(p + "attn_v.bias", kvd, scale=0.1)
        if "qknorm" in blocks:
            t(p + "attn_q_norm.weight", head_dim, around=1.0)
            t(p + "attn_k_norm.weight", head_dim, around=1.0)
        t(p + "attn_output.weight", hidden, qd)
        if "postnorm" in blocks:
            t(p + "post_attention_norm.weight", hidden, around=1.0)
            t(p + "post_ffw_norm.weight", hidden, around=1.0)
        if "fusedup" in blocks:
            t(p + "ffn_up.weight", 2 * ff, hidden)
        else:
            t(p + "ffn_gate.weight", ff, hidden)
            t(p + "ffn_up.weight", ff, hidden)
        t(p + "ffn_down.weight", hidden, ff)
    if "ropefreqs" in blocks:
        w.add_tensor("rope_freqs.weight", (1.0 + np.arange(head_dim // 2) / 4.0).astype(np.float32))
    if "output" in blocks:
        t("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_level_vocab():
    """GPT-2's printable stand-ins for the 256 bytes, as byte-level BPE vocabularies hold them."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def write_bpe(path, pre, seed):
    """A tiny llama with a byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`) and the
    pre-tokenizer `pre`: some merges, a few whole words that only `ignore_merges` finds, and
    control and user-defined tokens."""
    rng = np.random.default_rng(seed)
    base = byte_level_vocab()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "Ġa n", "Ġan d", "1 2", "12 3", "e r", "o n"]
    words = ["Ġt", "he", "Ġthe", "in", "Ġa", "Ġan", "Ġand", "12", "123", "er", "on", "Ġhello", "world"]
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "</s>"]
    tokens = base + words + specials
    types = [1] * (len(base) + len(words)) + [3, 3, 3, 4]
    hidden, vocab = 32, len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-bpe")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(base) + len(words))
    w.add_eos_token_id(len(base) + len(words) + 1)
    w.add_add_bos_token(False)
    def t(name, *shape):
        w.add_tensor(name, (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))
    t("token_embd.weight", vocab, hidden)
    w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, dtype=np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    for n, r, c in [("attn_q", hidden, hidden), ("attn_k", hidden, hidden), ("attn_v", hidden, hidden), ("attn_output", hidden, hidden),
                    ("ffn_gate", 64, hidden), ("ffn_up", 64, hidden), ("ffn_down", hidden, 64)]:
        t(f"blk.0.{n}.weight", r, c)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if "--blocks" in sys.argv[2:]:
        # Every architecture's layer shapes in whole blocks of 32, heads of 32 (quantized caches).
        q = dict(quantize=True, hidden=64, head_dim=32, ff=96)
        write(out / "llama-blocks.gguf", "llama", {"output", "ropefreqs"}, seed=1, **q)
        write(out / "qwen2-blocks.gguf", "qwen2", {"bias"}, seed=2, **q)
        write(out / "qwen3-blocks.gguf", "qwen3", {"qknorm", "output"}, seed=3, **q)
        write(out / "phi3-blocks.gguf", "phi3", {"qkv", "fusedup", "output"}, seed=4, **q)
        write(out / "gemma3-blocks.gguf", "gemma3", {"qknorm", "postnorm", "output"}, seed=5, layers=4,
              extra={"attention.sliding_window": 8, "attention.sliding_window_pattern": 2, "rope.freq_base_swa": 100.0}, **q)
        write(out / "gemma2-blocks.gguf", "gemma2", {"postnorm"}, seed=10, layers=4, embd_scale=0.05,
              extra={"attention.sliding_window": 6, "attn_logit_softcapping": 2.0, "final_logit_softcapping": 10.0}, **q)
        return
    write(out / "llama.gguf", "llama", {"output", "ropefreqs"}, seed=1)
    write(out / "qwen2.gguf", "qwen2", {"bias"}, seed=2)
    write(out / "qwen3.gguf", "qwen3", {"qknorm", "output"}, seed=3, hidden=48, head_dim=16)
    write(out / "phi3.gguf", "phi3", {"qkv", "fusedup", "output"}, seed=4)
    # Gemma 3: a window of 8 tokens, every 2nd layer global, so short prompts cross the window.
    write(out / "gemma3.gguf", "gemma3", {"qknorm", "postnorm", "output"}, seed=5, hidden=48, head_dim=16, layers=4,
          extra={"attention.sliding_window": 8, "attention.sliding_window_pattern": 2, "rope.freq_base_swa": 100.0})
    # Gemma 2: every other layer slides through a window of 6; scores capped at 2 (llama.cpp's
    # default 50 would hardly bite on a tiny model), logits at 10.
    # Its head is always the embedding (llama.cpp reads no output.weight for gemma2): a small one,
    # so that the blocks, not the echo of the last token, decide the next.
    write(out / "gemma2.gguf", "gemma2", {"postnorm"}, seed=10, hidden=48, head_dim=16, layers=4, embd_scale=0.05,
          extra={"attention.sliding_window": 6, "attn_logit_softcapping": 2.0, "final_logit_softcapping": 10.0})
    write_bpe(out / "bpe-default.gguf", "default", seed=6)
    write_bpe(out / "bpe-llama3.gguf", "llama-bpe", seed=7)


if __name__ == "__main__":
    main()
