#!/usr/bin/env python3
"""onnxruntime peer for `condense bench quant --peers`: int8 dynamic quantization of Y = X · Wᵀ.

Builds a one-node f32 MatMul model per shape (W as an initializer), quantizes it with
onnxruntime.quantization.quantize_dynamic (per-channel s8 weights, u8 activations quantized per
call: DynamicQuantizeLinear + MatMulInteger, fused by ORT's graph optimizer), and times it with
the same method as Condense: warm-up, samples of >= 20 ms, median. intra_op_num_threads = --threads.
Also, where this onnxruntime has it, the 4-bit MatMulNBits (block --group, accuracy level 4: int8
compute) made by onnxruntime's own MatMulNBitsQuantizer, as the int4 peer (format "int4-gG").
Prints JSON records like `condense bench quant --json`.

usage: quant_onnxruntime.py [--threads T] [--reps R] M,N,K [M,N,K ...]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import sample_times  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--group", type=int, default=32)
ap.add_argument("cases", nargs="+")
args = ap.parse_args()

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
except ImportError as e:
    print(f"note: onnxruntime peer skipped ({e}); pip install onnxruntime onnx onnx_ir", file=sys.stderr)
    print("[]")
    sys.exit(0)


def timeit(fn):
    return sample_times(fn, args.reps)


rng = np.random.default_rng(0)
sessions = {}
records = []
tmp = tempfile.mkdtemp(prefix="condense-ort-")


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def nbits_model(f32_model, path):
    try:
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer as Q
        except ImportError:
            from onnxruntime.quantization.matmul_4bits_quantizer import MatMul4BitsQuantizer as Q
        q = Q(f32_model, block_size=args.group, is_symmetric=True, accuracy_level=4)
        q.process()
        q.model.save_model_to_file(path)
        return True
    except Exception as e:  # an onnxruntime without it: skip the int4 peer
        print(f"note: MatMulNBits peer skipped: {e} (its quantizer needs pip install onnx_ir)", file=sys.stderr)
        return False


for case in args.cases:
    m, n, k = (int(v) for v in case.split(","))
    if (n, k) not in sessions:
        w = rng.uniform(-1, 1, (k, n)).astype(np.float32)  # MatMul takes W transposed: [K, N]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
            [onnx.numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        f32_path = os.path.join(tmp, f"f32_{n}x{k}.onnx")
        q8_path = os.path.join(tmp, f"q8_{n}x{k}.onnx")
        q4_path = os.path.join(tmp, f"q4_{n}x{k}.onnx")
        onnx.save(model, f32_path)
        quantize_dynamic(f32_path, q8_path, weight_type=QuantType.QInt8, per_channel=True)
        s = {"int8": (session(q8_path), f"ort {ort.__version__} dynamic int8 (MatMulInteger)")}
        if nbits_model(onnx.load(f32_path), q4_path):
            s[f"int4-g{args.group}"] = (session(q4_path), f"ort {ort.__version__} MatMulNBits 4-bit, accuracy level 4")
        sessions[(n, k)] = s
    x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    for fmt, (sess, kernel) in sessions[(n, k)].items():
        ts = timeit(lambda: sess.run(None, {"x": x}))
        med = ts[len(ts) // 2]
        records.append({"op": "gemm", "format": fmt, "m": m, "n": n, "k": k, "backend": "onnxruntime",
                        "kernel": kernel, "median_s": med, "min_s": ts[0], "max_s": ts[-1],
                        "gops": 2.0 * m * n * k / med * 1e-9})
json.dump(records, sys.stdout, indent=1)
print()
