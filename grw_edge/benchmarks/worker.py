"""Times one backend on one artifact through the toolkit (``grw_edge.runtimes``, torch
imported) in a process of its own, with the runtime's measurement; prints JSON.

    python -c "import time; t0 = time.perf_counter(); from grw_edge.benchmarks.worker import \\
main; main(t0)" ARTIFACT --backend B ...
"""
from __future__ import annotations

from grw_edge.runtimes import open as open_session
from grw_edge_runtime import bench


def main(started: float) -> None:
    bench.main(started, open_session)
