#!/usr/bin/env python3
"""onnxruntime reference and peer for the BERT sentence encoder (all-MiniLM-L6-v2).

The ONNX graph is built here from the model's safetensors with standard operators (Gather,
MatMul, Softmax, Erf, LayerNormalization), so onnxruntime — an engine independent of Condense —
computes the embeddings; tokenization is Hugging Face's `tokenizers` (Rust) from tokenizer.json
with its 128-token padding/truncation replaced by sentence-transformers' 256-token truncation.

  minilm_onnx.py embed  --model DIR --input sentences.txt --output ref.npy [--int8]
  minilm_onnx.py bench  --model DIR [--threads 2] [--reps 7]   → JSON records (fp32 and int8 dynamic,
                                                                 batch 1×128 and 32×128 tokens)
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


def tokenizer(model_dir, max_len=256):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
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
    out = sess.run(None, {"input_ids": ids, "position_ids": pos, "token_type_ids": np.zeros_like(ids), "attention_mask": mask})[0]
    emb = (out * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def models(model_dir, tmp, int8):
    fp32 = os.path.join(tmp, "minilm.onnx")
    build_onnx(model_dir, fp32)
    if not int8:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic
    q = os.path.join(tmp, "minilm-int8.onnx")
    quantize_dynamic(fp32, q, weight_type=QuantType.QInt8)
    return q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["embed", "bench"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    tok = tokenizer(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        if a.mode == "embed":
            lines = open(a.input, encoding="utf-8").read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            sess = session(models(a.model, tmp, a.int8), a.threads)
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
            sess = session(models(a.model, tmp, int8), a.threads)
            for batch in (1, 32):
                seqs = [ids] * batch
                run(sess, seqs)
                iters = 1
                while True:
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        run(sess, seqs)
                    if time.perf_counter() - t0 >= 0.2 or iters >= 1000:
                        break
                    iters *= 2
                ts = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        run(sess, seqs)
                    ts.append((time.perf_counter() - t0) / iters)
                records.append({"op": "embed", "backend": "onnxruntime", "format": "int8-dynamic" if int8 else "fp32",
                                "batch": batch, "tokens": 128, "threads": a.threads, "median_s": statistics.median(ts),
                                "min_s": min(ts), "max_s": max(ts)})
        print(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
