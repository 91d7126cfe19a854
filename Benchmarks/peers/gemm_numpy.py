#!/usr/bin/env python3
"""numpy/OpenBLAS peer for `condense bench gemm --peers`.

Times Y = X @ W.T (W stored [N, K] like Condense's weights; numpy passes the transpose to sgemm
without copying) with the same method as Condense: warm-up, samples of >= 20 ms, median.
Prints JSON records like `condense bench gemm --json`.

usage: gemm_numpy.py [--threads T] [--reps R] M,N,K [M,N,K ...]
Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before running: they pin OpenBLAS to an older kernel.
"""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("cases", nargs="+")
args = ap.parse_args()
if args.threads > 0:  # must precede the numpy import: OpenBLAS reads it once
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import sample_times  # noqa: E402

cfg = np.show_config(mode="dicts") if "mode" in np.show_config.__code__.co_varnames else {}
blas = cfg.get("Build Dependencies", {}).get("blas", {}) if isinstance(cfg, dict) else {}
kernel = f"{blas.get('name', 'blas')} {blas.get('version', '')}".strip()

rng = np.random.default_rng(0)
records = []
for case in args.cases:
    m, n, k = (int(v) for v in case.split(","))
    x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    w = rng.uniform(-1, 1, (n, k)).astype(np.float32)
    y = np.empty((m, n), np.float32)
    wt = w.T
    ts = sample_times(lambda: np.matmul(x, wt, out=y), args.reps)
    med = ts[len(ts) // 2]
    records.append({"op": "gemm", "format": "dense", "m": m, "n": n, "k": k, "backend": "numpy",
                    "kernel": kernel, "median_s": med, "min_s": ts[0], "max_s": ts[-1],
                    "gflops": 2.0 * m * n * k / med * 1e-9})
json.dump(records, sys.stdout, indent=1)
print()
