"""The timing method every peer runner shares with Condense's benchmarks, and the arguments they
all take, so peers are timed on equal terms:

  * one warm-up call, then iterations repeated until a sample lasts >= --min-sample seconds, and
    --reps samples (sorted; take the median) — Condense's own method;
  * --rotate C: C copies of the weights used in turn (at M = 1 the weights stream from DRAM, as
    Condense's --rotate does for its own layers);
  * the measured per-call overhead of the Python binding (`empty_call_overhead`): a peer called
    from Python pays interpreter and binding time per call that a C caller would not. Records
    carry it as `overhead_s` next to `median_s`; reports compare against `median_s − overhead_s`
    too, the figure most generous to the peer.
"""
import time


def add_arguments(ap):
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--min-sample", type=float, default=0.02)
    ap.add_argument("--rotate", type=int, default=1)


def sample_times(fn, reps, min_sample=0.02):
    fn()
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        t = time.perf_counter() - t0
        if t >= min_sample or iters >= 1 << 20:
            break
        iters *= 2
    ts = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        ts.append((time.perf_counter() - t0) / iters)
    ts.sort()
    return ts


def rotating(calls):
    """One callable that runs `calls` in turn (one per weight copy)."""
    if len(calls) == 1:
        return calls[0]
    state = [0]

    def call():
        calls[state[0] % len(calls)]()
        state[0] += 1
    return call


def empty_call_overhead(fn, reps, min_sample=0.02):
    """Median seconds per call of `fn`, a call through the same binding that does no work."""
    ts = sample_times(fn, reps, min_sample)
    return ts[len(ts) // 2]


def record(op, fmt, m, n, k, backend, kernel, ts, overhead, rotate, **extra):
    med = ts[len(ts) // 2]
    r = {"op": op, "format": fmt, "m": m, "n": n, "k": k, "backend": backend, "kernel": kernel,
         "median_s": med, "min_s": ts[0], "max_s": ts[-1], "overhead_s": overhead,
         "net_median_s": max(med - overhead, 1e-12), "rotate": rotate}
    r.update(extra)
    return r
