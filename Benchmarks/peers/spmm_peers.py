#!/usr/bin/env python3
"""scipy.sparse and Intel MKL sparse peers for `condense bench sparse --peers`.

Reads the manifest Condense writes (raw CSR arrays of the exact matrices it timed) and times
Y = X · Wᵀ for each batch size with the same method: warm-up, samples of >= 20 ms, median.
  * scipy: csr_matrix @ X.T, single-threaded (scipy.sparse has no threads).
  * MKL (PyPI `mkl`, libmkl_rt through ctypes): inspector-executor mkl_sparse_s_mm after
    mkl_sparse_set_mm_hint + mkl_sparse_optimize, MKL_Set_Num_Threads(--threads).
    Yᵀ = W · Xᵀ with B and C column-major, which is exactly row-major X and Y.
Prints JSON records like `condense bench sparse --json`. A peer that cannot load is skipped
with a note on stderr.

usage: spmm_peers.py --manifest FILE [--threads T] [--reps R]
"""
import argparse
import ctypes
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import add_arguments, empty_call_overhead, sample_times  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--manifest", required=True)
add_arguments(ap)  # --rotate is accepted for a uniform interface; bench sparse times one copy
args = ap.parse_args()
manifest = json.load(open(args.manifest))


def timeit(fn):
    return sample_times(fn, args.reps, args.min_sample)


def find_mkl():
    roots = {sys.prefix, os.path.dirname(os.path.dirname(np.__file__))}
    for root in roots:
        for path in glob.glob(os.path.join(root, "**", "libmkl_rt.so*"), recursive=True):
            return path
    return None


class MKL:
    NON_TRANSPOSE, GENERAL, COLUMN_MAJOR = 10, 20, 102

    class Descr(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("mode", ctypes.c_int), ("diag", ctypes.c_int)]

    def __init__(self, path, threads):
        self.lib = ctypes.CDLL(path)
        self.lib.MKL_Set_Num_Threads(ctypes.c_int(threads))
        self.descr = MKL.Descr(MKL.GENERAL, 0, 0)
        self.lib.mkl_sparse_s_mm.argtypes = [
            ctypes.c_int, ctypes.c_float, ctypes.c_void_p, MKL.Descr, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]

    def prepare(self, ptr, idx, val, n, k, m):
        self.keep = (np.ascontiguousarray(ptr[:-1], np.int32), np.ascontiguousarray(ptr[1:], np.int32),
                     np.ascontiguousarray(idx, np.int32), np.ascontiguousarray(val, np.float32))
        a = ctypes.c_void_p()
        st = self.lib.mkl_sparse_s_create_csr(
            ctypes.byref(a), 0, ctypes.c_int(n), ctypes.c_int(k),
            *[arr.ctypes.data_as(ctypes.c_void_p) for arr in self.keep])
        if st != 0:
            raise RuntimeError(f"mkl_sparse_s_create_csr status {st}")
        self.lib.mkl_sparse_set_mm_hint(a, MKL.NON_TRANSPOSE, self.descr, MKL.COLUMN_MAJOR,
                                        ctypes.c_int(m), ctypes.c_int(1000))
        self.lib.mkl_sparse_optimize(a)
        return a

    def mm(self, a, x, y, n, k, m):
        st = self.lib.mkl_sparse_s_mm(MKL.NON_TRANSPOSE, 1.0, a, self.descr, MKL.COLUMN_MAJOR,
                                      x.ctypes.data, m, k, 0.0, y.ctypes.data, n)
        if st != 0:
            raise RuntimeError(f"mkl_sparse_s_mm status {st}")

    def destroy(self, a):
        self.lib.mkl_sparse_destroy(a)


try:
    import scipy.sparse as sp
except ImportError:
    sp = None
    print("note: scipy not installed, skipping the scipy peer", file=sys.stderr)
mkl = None
path = find_mkl()
if path:
    try:
        mkl = MKL(path, args.threads)
    except OSError as e:
        print(f"note: MKL at {path} did not load: {e}", file=sys.stderr)
else:
    print("note: libmkl_rt not found (pip install mkl), skipping the MKL peer", file=sys.stderr)

rng = np.random.default_rng(0)
records = []
# Per-call cost of each Python binding, on a 1×1 product through the same call.
overhead = {}
if sp is not None:
    one, onex = sp.csr_matrix(np.ones((1, 1), np.float32)), np.ones((1, 1), np.float32)
    overhead["scipy"] = empty_call_overhead(lambda: one @ onex, args.reps, args.min_sample)
if mkl is not None:
    # The ctypes transition alone (a C call of no work with pointer arguments): a 1×1 product
    # would also take MKL's own fixed cost per call, which is MKL's, not the binding's.
    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(8)
    overhead["mkl"] = empty_call_overhead(lambda: libc.memset(buf, 0, 0), args.reps, args.min_sample)
for mat in manifest["matrices"]:
    n, k = mat["n"], mat["k"]
    ptr = np.fromfile(mat["row_ptr"], np.uint32).astype(np.int64)
    idx = np.fromfile(mat["indices"], np.uint32)
    val = np.fromfile(mat["values"], np.float32)
    w = sp.csr_matrix((val, idx, ptr), shape=(n, k)) if sp else None
    for m in manifest["m"]:
        x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        base = {"op": "spmm", "format": "csr", "sparsity": mat["sparsity"], "m": m, "n": n, "k": k}
        results = []
        if w is not None:
            xt = np.ascontiguousarray(x.T)
            results.append(("scipy", "csr_matmat (1 thread)", timeit(lambda: w @ xt)))
        if mkl is not None:
            y = np.empty((m, n), np.float32)
            a = mkl.prepare(ptr, idx, val, n, k, m)
            results.append(("mkl", "mkl_sparse_s_mm", timeit(lambda: mkl.mm(a, x, y, n, k, m))))
            mkl.destroy(a)
        for name, kernel, ts in results:
            med = ts[len(ts) // 2]
            oh = overhead.get(name, 0.0)
            records.append(dict(base, backend=name, kernel=kernel, median_s=med, min_s=ts[0], max_s=ts[-1],
                                overhead_s=oh, net_median_s=max(med - oh, 1e-12), threads=1 if name == "scipy" else args.threads,
                                gflops=2.0 * m * n * k / med * 1e-9))
json.dump(records, sys.stdout, indent=1)
print()
