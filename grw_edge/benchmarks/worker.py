"""Times one backend on one artifact through the toolkit (``grw_edge.runtimes``, torch
imported) in a process of its own, with the runtime's measurement; prints JSON.

    python -c "import time; t0 = time.perf_counter(); from grw_edge.benchmarks.worker import \\
main; main(t0)" ARTIFACT --backend B [--device cuda] ...
"""
from __future__ import annotations

from grw_edge.runtimes import open as open_session
from grw_edge_runtime import bench


def open_for_bench(artifact: str, backend: str, **options):
    """The session a bench row times: ``torch-cudagraphs`` is the torch backend replaying
    CUDA graphs (``torch`` on CUDA runs its eager steps); TensorRT always runs on the GPU."""
    if backend == "torch-cudagraphs":
        return open_session(artifact, "torch", cuda_graphs=True, **options)
    if backend == "torch":
        options.setdefault("cuda_graphs", False)
    if backend == "tensorrt":
        options.pop("device", None)
    return open_session(artifact, backend, **options)


def main(started: float) -> None:
    bench.main(started, open_for_bench)
