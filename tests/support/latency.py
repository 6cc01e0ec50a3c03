"""Warm single-photo latency through the `Predictor`, as the app calls it, for the benches that time serving."""

import statistics
import time

import numpy as np


def warm_latency_ms(predictor, photo: bytes, calls: int, warmup: int = 10) -> dict:
    """`predictor.predict([photo])` timed over `calls` calls after `warmup` untimed ones (graphs built, caches
    filled): p50, p95 and mean in milliseconds."""
    for _ in range(warmup):
        predictor.predict([photo])
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predictor.predict([photo])
        times.append((time.perf_counter() - start) * 1000)
    return {
        "calls": calls,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
        "mean_ms": round(statistics.fmean(times), 2),
    }
