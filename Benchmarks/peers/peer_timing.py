"""The timing method every peer runner shares with Condense's benchmarks: one warm-up call, then
iterations repeated until a sample lasts >= 20 ms, and `reps` samples (sorted; take the median)."""
import time


def sample_times(fn, reps):
    fn()
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        t = time.perf_counter() - t0
        if t >= 0.02 or iters >= 1 << 20:
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
