#!/usr/bin/env python3
"""numpy/OpenBLAS peer for `condense bench gemm --peers`.

Times Y = X @ W.T (W stored [N, K] like Condense's weights; numpy passes the transpose to sgemm
without copying) with the same method as Condense: warm-up, samples of >= 20 ms, median.
Prints JSON records like `condense bench gemm --json`.

usage: gemm_numpy.py [--threads T] [--reps R] [--min-sample S] [--rotate C] M,N,K [M,N,K ...]
The per-call overhead of numpy's Python call (a 1×1 matmul into a preallocated output) is
measured and reported as overhead_s.
Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before running: they pin OpenBLAS to an older kernel.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import add_arguments, empty_call_overhead, record, rotating, sample_times  # noqa: E402

ap = argparse.ArgumentParser()
add_arguments(ap)
ap.add_argument("cases", nargs="+")
args = ap.parse_args()
if args.threads > 0:  # must precede the numpy import: OpenBLAS reads it once
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import numpy as np  # noqa: E402

cfg = np.show_config(mode="dicts") if "mode" in np.show_config.__code__.co_varnames else {}
blas = cfg.get("Build Dependencies", {}).get("blas", {}) if isinstance(cfg, dict) else {}
kernel = f"{blas.get('name', 'blas')} {blas.get('version', '')}".strip()

rng = np.random.default_rng(0)
records = []
one, one_out = np.ones((1, 1), np.float32), np.empty((1, 1), np.float32)
overhead = empty_call_overhead(lambda: np.matmul(one, one, out=one_out), args.reps, args.min_sample)
for case in args.cases:
    m, n, k = (int(v) for v in case.split(","))
    x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    y = np.empty((m, n), np.float32)
    calls = []
    for _ in range(args.rotate):
        wt = rng.uniform(-1, 1, (n, k)).astype(np.float32).T
        calls.append(lambda wt=wt: np.matmul(x, wt, out=y))
    ts = sample_times(rotating(calls), args.reps, args.min_sample)
    r = record("gemm", "dense", m, n, k, "numpy", kernel, ts, overhead, args.rotate)
    r["gflops"] = 2.0 * m * n * k / r["median_s"] * 1e-9
    records.append(r)
json.dump(records, sys.stdout, indent=1)
print()
