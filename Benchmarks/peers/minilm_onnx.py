#!/usr/bin/env python3
"""onnxruntime reference and peer for the BERT sentence encoder (all-MiniLM-L6-v2).

The ONNX graph is built here from the model's safetensors with standard operators (Gather,
MatMul, Softmax, Erf, LayerNormalization), so onnxruntime — an engine independent of Condense —
computes the embeddings; tokenization is Hugging Face's `tokenizers` (Rust) from tokenizer.json
with its 128-token padding/truncation replaced by sentence-transformers' 256-token truncation.

  minilm_onnx.py embed  --model DIR --input sentences.txt --output ref.npy [--int8]
  minilm_onnx.py bench  --model DIR [--threads 2] [--reps 7]   → JSON records (fp32 and int8 dynamic,
                                                                 batch 1×128 and 32×128 tokens)
The benchmark runs the graph onnxruntime's transformer optimizer produces (fused attention,
skip-LayerNorm, bias-GELU; --unfused for the plain one) and int8 as dynamic quantization with
per-channel weights: the strongest configuration a user would deploy.
Needs: pip install onnx onnxruntime tokenizers numpy
"""
import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(t["shape"])
    return out


def build_onnx(model_dir, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    H, heads, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    d, eps = H // heads, cfg["layer_norm_eps"]
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, ins, outs=None, **kw):
        outs = outs or [f"{op}_{len(nodes)}"]
        nodes.append(helper.make_node(op, ins, outs, **kw))
        return outs[0]

    def linear(x, prefix):
        y = node("MatMul", [x, init(prefix + ".wt", w[prefix + ".weight"].T)])
        return node("Add", [y, init(prefix + ".b", w[prefix + ".bias"])])

    def layernorm(x, prefix):
        return node("LayerNormalization", [x, init(prefix + ".g", w[prefix + ".weight"]), init(prefix + ".bb", w[prefix + ".bias"])],
                    axis=-1, epsilon=eps)

    emb = node("Add", [node("Gather", [init("we", w["embeddings.word_embeddings.weight"]), "input_ids"]),
                       node("Gather", [init("pe", w["embeddings.position_embeddings.weight"]), "position_ids"])])
    emb = node("Add", [emb, node("Gather", [init("te", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"])])
    x = layernorm(emb, "embeddings.LayerNorm")
    # additive mask [B,1,1,T]: 0 for tokens, -1e4 for padding
    m = node("Unsqueeze", ["attention_mask", init("axes12", np.array([1, 2], dtype=np.int64))])
    m = node("Cast", [m], to=TensorProto.FLOAT)
    m = node("Mul", [node("Sub", [init("one", np.array(1, dtype=np.float32)), m]), init("neg", np.array(-1e4, dtype=np.float32))])
    split = init("split_shape", np.array([0, 0, heads, d], dtype=np.int64))
    merge = init("merge_shape", np.array([0, 0, H], dtype=np.int64))
    scale = init("scale", np.array(1 / np.sqrt(d), dtype=np.float32))
    for l in range(L):
        p = f"encoder.layer.{l}."
        q = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), split])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split])], perm=[0, 2, 1, 3])
        s = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), m])
        ctx = node("MatMul", [node("Softmax", [s], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])
        x = layernorm(node("Add", [x, linear(ctx, p + "attention.output.dense")]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        g = node("Mul", [node("Mul", [h, init(f"half{l}", np.array(0.5, dtype=np.float32))]),
                         node("Add", [node("Erf", [node("Mul", [h, init(f"rs2{l}", np.array(1 / np.sqrt(2), dtype=np.float32))])]),
                                      init(f"one{l}", np.array(1, dtype=np.float32))])])
        x = layernorm(node("Add", [x, linear(g, p + "output.dense")]), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["B", "T"]) for n in ("input_ids", "position_ids", "token_type_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "bert", ints, [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["B", "T", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return cfg


def build_fused_onnx(model_dir, path):
    """The graph onnxruntime's transformer optimizer makes of a BERT (what a user would deploy),
    written directly with its fused contrib operators: EmbedLayerNormalization, Attention (one
    fused QKV projection, softmax and context per layer), SkipLayerNormalization with the
    projection bias folded in, BiasGelu. Inputs are the same as build_onnx's graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    H, heads, L, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, ins, outs=None, domain="", **kw):
        outs = outs or [f"{op}_{len(nodes)}"]
        nodes.append(helper.make_node(op, ins, outs, domain=domain, **kw))
        return outs

    ids32 = node("Cast", ["input_ids"], to=TensorProto.INT32)[0]
    seg32 = node("Cast", ["token_type_ids"], to=TensorProto.INT32)[0]
    mask32 = node("Cast", ["attention_mask"], to=TensorProto.INT32)[0]
    x, mask_index = node("EmbedLayerNormalization",
                         [ids32, seg32, init("we", w["embeddings.word_embeddings.weight"]),
                          init("pe", w["embeddings.position_embeddings.weight"]), init("te", w["embeddings.token_type_embeddings.weight"]),
                          init("eg", w["embeddings.LayerNorm.weight"]), init("eb", w["embeddings.LayerNorm.bias"]), mask32],
                         outs=["emb", "mask_index"], domain="com.microsoft", epsilon=eps)
    for l in range(L):
        p = f"encoder.layer.{l}."
        qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        ctx = node("Attention", [x, init(p + "qkv.w", qkv_w), init(p + "qkv.b", qkv_b), mask_index],
                   domain="com.microsoft", num_heads=heads)[0]
        ao = node("MatMul", [ctx, init(p + "ao.w", w[p + "attention.output.dense.weight"].T)])[0]
        x = node("SkipLayerNormalization", [ao, x, init(p + "ln1.g", w[p + "attention.output.LayerNorm.weight"]),
                                            init(p + "ln1.b", w[p + "attention.output.LayerNorm.bias"]),
                                            init(p + "ao.b", w[p + "attention.output.dense.bias"])],
                 domain="com.microsoft", epsilon=eps)[0]
        h = node("MatMul", [x, init(p + "i.w", w[p + "intermediate.dense.weight"].T)])[0]
        g = node("BiasGelu", [h, init(p + "i.b", w[p + "intermediate.dense.bias"])], domain="com.microsoft")[0]
        o = node("MatMul", [g, init(p + "o.w", w[p + "output.dense.weight"].T)])[0]
        x = node("SkipLayerNormalization", [o, x, init(p + "ln2.g", w[p + "output.LayerNorm.weight"]),
                                           init(p + "ln2.b", w[p + "output.LayerNorm.bias"]), init(p + "o.b", w[p + "output.dense.bias"])],
                 domain="com.microsoft", epsilon=eps)[0]
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["B", "T"]) for n in ("input_ids", "token_type_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "bert-fused", ints, [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["B", "T", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)
    return cfg


def tokenizer(model_dir, max_len=256):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


_pool = []


def session(path, threads):
    """Sessions share one global pool of `threads` threads: a session left over from an earlier
    configuration must not keep its own pool spinning on the same cores."""
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state as C
    if not _pool:
        C.set_global_thread_pool_sizes(threads, 1)
        _pool.append(threads)
    so = ort.SessionOptions()
    so.use_per_session_threads = False
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(sess, ids_list):
    T = max(len(i) for i in ids_list)
    B = len(ids_list)
    ids = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    for b, i in enumerate(ids_list):
        ids[b, : len(i)] = i
        mask[b, : len(i)] = 1
    pos = np.tile(np.arange(T, dtype=np.int64), (B, 1))
    feeds = {"input_ids": ids, "position_ids": pos, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}
    names = {i.name for i in sess.get_inputs()}
    out = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    emb = (out * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def models(model_dir, tmp, int8, fused=True):
    """fused: the transformer-optimized graph (the strongest configuration a user deploys);
    int8: onnxruntime's dynamic quantization with per-channel weights (QAttention and
    MatMulInteger on the fused graph)."""
    fp32 = os.path.join(tmp, "minilm-fused.onnx" if fused else "minilm.onnx")
    (build_fused_onnx if fused else build_onnx)(model_dir, fp32)
    if not int8:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic
    q = os.path.join(tmp, "minilm-fused-int8.onnx" if fused else "minilm-int8.onnx")
    import onnx
    # Contrib ops defeat ONNX shape inference; their outputs are f32.
    quantize_dynamic(fp32, q, weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["embed", "bench"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--unfused", action="store_true", help="the plain-operator graph instead of the fused one")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_timing import add_arguments
    add_arguments(ap)
    a = ap.parse_args()
    tok = tokenizer(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        if a.mode == "embed":
            lines = open(a.input, encoding="utf-8").read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            sess = session(models(a.model, tmp, a.int8, fused=not a.unfused), a.threads)
            embs = np.concatenate([run(sess, [tok.encode(s).ids]) for s in lines]).astype(np.float32)
            np.save(a.output, embs)
            print(json.dumps({"sentences": len(lines), "tokens": [len(tok.encode(s).ids) for s in lines]}))
            return
        records = []
        text = ("Condense runs compressed neural networks fast on CPUs, and this sentence is long enough "
                "to be cut at exactly one hundred and twenty-eight tokens for the benchmark. ") * 8
        ids = tok.encode(text).ids[:127] + [tok.token_to_id("[SEP]")]
        assert len(ids) == 128
        for int8 in (False, True):
            sess = session(models(a.model, tmp, int8, fused=not a.unfused), a.threads)
            for batch in (1, 32):
                seqs = [ids] * batch
                run(sess, seqs)
                iters = 1
                while True:
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        run(sess, seqs)
                    if time.perf_counter() - t0 >= max(0.2, a.min_sample) or iters >= 1000:
                        break
                    iters *= 2
                ts = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        run(sess, seqs)
                    ts.append((time.perf_counter() - t0) / iters)
                graph = "plain operators" if a.unfused else "fused (EmbedLayerNorm, Attention, SkipLayerNorm, BiasGelu)"
                records.append({"op": "embed", "backend": "onnxruntime", "format": "int8-dynamic" if int8 else "fp32",
                                "batch": batch, "tokens": 128, "threads": a.threads, "median_s": statistics.median(ts),
                                "min_s": min(ts), "max_s": max(ts),
                                "kernel": graph + (", dynamic int8 per-channel (QAttention, MatMulInteger)" if int8 else "")})
        print(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
