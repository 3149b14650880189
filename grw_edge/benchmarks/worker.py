"""Times one backend on one artifact through the toolkit (``grw_edge.runtimes``, torch
imported) in a process of its own, with the runtime's measurement; prints JSON.

    python -c "import time; t0 = time.perf_counter(); from grw_edge.benchmarks.worker import \\
main; main(t0)" ARTIFACT --backend B [--device cuda] [--precision fp16] ...

Backends: ``torch`` (eager steps), ``torch-cudagraphs`` (the session, replaying CUDA graphs:
upload, step, one host wait per frame), ``torch-compiled`` (the same with torch.compile
before capture) and ``torch-replay`` (the captured step alone, no upload or host copy; on
the CPU the same body runs eagerly), or any runtime backend.
"""
from __future__ import annotations

import json
import sys

from grw_edge.runtimes import open as open_session
from grw_edge_runtime import bench


def open_for_bench(artifact: str, backend: str, **options):
    """The session a bench row times: ``torch-cudagraphs`` is the torch backend replaying
    CUDA graphs, ``torch-compiled`` compiles the step before capture (``torch`` on CUDA runs
    its eager steps); TensorRT always runs on the GPU."""
    if backend in ("torch-cudagraphs", "torch-compiled"):
        return open_session(artifact, "torch", cuda_graphs=True,
                            compile=backend == "torch-compiled", **options)
    if backend == "torch":
        options.setdefault("cuda_graphs", False)
    if backend == "tensorrt":
        options.pop("device", None)
    return open_session(artifact, backend, **options)


def measure_replay(artifact: str, *, started: float, threads: int, repeats: int, warmup: int,
                   **options) -> dict:
    """The graph-replay row: the step on the device alone, each replay waited for."""
    session = open_session(artifact, "torch", threads=threads, **options)
    result = bench.opened(session, threads=threads, started=started)
    bench.time_step(session, session.replay_step, result, repeats=repeats, warmup=warmup)
    result["peak_rss_mb"] = bench.peak_rss_mb()
    return result


def main(started: float) -> None:
    args = bench.parse_args(sys.argv[1:])
    if args.backend != "torch-replay":
        bench.main(started, open_for_bench)
        return
    json.dump(measure_replay(args.artifact, started=started, threads=args.threads,
                             repeats=args.repeats, warmup=args.warmup,
                             **bench.session_options(args)), sys.stdout)
