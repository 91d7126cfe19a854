#!/usr/bin/env python3
"""onnxruntime peer for `condense bench quant --peers`: int8 dynamic quantization of Y = X · Wᵀ.

Builds a one-node f32 MatMul model per shape (W as an initializer), quantizes it with
onnxruntime.quantization.quantize_dynamic (per-channel s8 weights, u8 activations quantized per
call: DynamicQuantizeLinear + MatMulInteger, fused by ORT's graph optimizer), and times it with
the same method as Condense: warm-up, samples of >= --min-sample, median, on a global thread
pool of --threads threads. Calls go through IO binding (input and output bound once, as a C caller
would hold them), and the per-call cost of the Python binding plus ORT's run machinery is measured on an
Identity model through the same binding and reported as overhead_s (ratios against
median_s − overhead_s are the ones most generous to onnxruntime). --rotate C cycles through C
sessions holding different weights, so at M = 1 the weights come from DRAM as in Condense's run;
all sessions share onnxruntime's global thread pool of --threads threads (C per-session pools
would put C spinning pools on the same cores; one model with C MatMul nodes would lose the fused
DynamicQuantizeMatMul kernel).
Also, where this onnxruntime has it, the 4-bit MatMulNBits (block --group, accuracy level 4: int8
compute) made by onnxruntime's own MatMulNBitsQuantizer, as the int4 peer (format "int4-gG").
Prints JSON records like `condense bench quant --json`.

usage: quant_onnxruntime.py [--threads T] [--reps R] [--min-sample S] [--rotate C] M,N,K [M,N,K ...]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import add_arguments, empty_call_overhead, record, rotating, sample_times  # noqa: E402

ap = argparse.ArgumentParser()
add_arguments(ap)
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
    return sample_times(fn, args.reps, args.min_sample)


def bound_call(sess, x, n, output=0):
    """sess.run through IO binding: input and one output bound once, as a C caller holds them."""
    b = sess.io_binding()
    b.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x))
    b.bind_ortvalue_output(sess.get_outputs()[output].name, ort.OrtValue.ortvalue_from_numpy(np.empty((x.shape[0], n), np.float32)))
    return lambda: sess.run_with_iobinding(b)


rng = np.random.default_rng(0)
sessions = {}
records = []
tmp = tempfile.mkdtemp(prefix="condense-ort-")


from onnxruntime.capi import _pybind_state as _ort_c  # noqa: E402

# One pool of --threads threads for every session (see --rotate above); set before any session.
_ort_c.set_global_thread_pool_sizes(args.threads, 1)


def session(path):
    opts = ort.SessionOptions()
    opts.use_per_session_threads = False
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


# The empty call: an Identity on one float through the same binding and session options.
ident = os.path.join(tmp, "identity.onnx")
onnx.save(helper.make_model(helper.make_graph(
    [helper.make_node("Identity", ["x"], ["y"])], "empty",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])]), opset_imports=[helper.make_opsetid("", 17)]), ident)
overhead = empty_call_overhead(bound_call(session(ident), np.ones((1, 1), np.float32), 1), args.reps, args.min_sample)

for case in args.cases:
    m, n, k = (int(v) for v in case.split(","))
    if (n, k) not in sessions:
        s = {}
        for c in range(args.rotate):
            w = rng.uniform(-1, 1, (k, n)).astype(np.float32)  # MatMul takes W transposed: [K, N]
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
                [onnx.numpy_helper.from_array(w, "w")])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            f32_path = os.path.join(tmp, f"f32_{n}x{k}_{c}.onnx")
            q8_path = os.path.join(tmp, f"q8_{n}x{k}_{c}.onnx")
            q4_path = os.path.join(tmp, f"q4_{n}x{k}_{c}.onnx")
            onnx.save(model, f32_path)
            quantize_dynamic(f32_path, q8_path, weight_type=QuantType.QInt8, per_channel=True)
            s.setdefault("int8", ([], f"ort {ort.__version__} dynamic int8 (MatMulInteger)"))[0].append(session(q8_path))
            if nbits_model(onnx.load(f32_path), q4_path):
                s.setdefault(f"int4-g{args.group}", ([], f"ort {ort.__version__} MatMulNBits 4-bit, accuracy level 4"))[0].append(session(q4_path))
        sessions[(n, k)] = s
    x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    for fmt, (copies, kernel) in sessions[(n, k)].items():
        ts = timeit(rotating([bound_call(sess, x, n) for sess in copies]))
        r = record("gemm", fmt, m, n, k, "onnxruntime", kernel, ts, overhead, args.rotate)
        r["gops"] = 2.0 * m * n * k / r["median_s"] * 1e-9
        records.append(r)
json.dump(records, sys.stdout, indent=1)
print()
