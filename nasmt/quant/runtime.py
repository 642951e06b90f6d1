"""ONNX Runtime (CPU): sessions, batched prediction, measured latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

PREDICT_BATCH = 256  # inference batch of ort_predict (results do not depend on it)
WARMUP_RUNS = 10  # runs before timing: allocations, caches
TIMED_RUNS = 50  # timed runs; the median is reported


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(sess, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> dict[str, torch.Tensor]:
    """{output name: outputs} of an ORT session over `x` (input "x")."""
    names = [o.name for o in sess.get_outputs()]
    outs: dict[str, list] = {k: [] for k in names}
    for i in range(0, x.shape[0], batch_size):
        for k, v in zip(names, sess.run(None, {"x": np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})):
            outs[k].append(torch.from_numpy(v))
    return {k: torch.cat(v) for k, v in outs.items()}


def measure_latency(path, input_shape, batch: int = 1, warmup: int = WARMUP_RUNS, reps: int = TIMED_RUNS,
                    threads: int = 1, min_time_s: float = 0.0) -> float:
    """Median wall time (ms) of one ORT run of the artifact at `batch`, after warm-up.
    `path` is an ONNX file or an ORT session."""
    sess = path if not isinstance(path, (str, Path)) else ort_session(Path(path), threads)
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
    feed = {"x": x}
    for _ in range(warmup):
        sess.run(None, feed)
    ts = []
    t_end = time.perf_counter() + min_time_s
    while len(ts) < reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(ts)
