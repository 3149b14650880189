"""Times one backend on one artifact in a process of its own, so that its peak resident
memory is its own.  ``python -m grw_edge.benchmarks.worker ARTIFACT BACKEND ...`` prints JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import numpy as np

from grw_edge.benchmarks.timing import time_calls
from grw_edge.runtimes import open as open_session


def measure(artifact: str, backend: str, *, threads: int, repeats: int, warmup: int) -> dict:
    """Step, head and whole-clip latency and peak memory of one backend session."""
    imported = _peak_rss_mb()  # the libraries alone
    session = open_session(artifact, backend, threads=threads)
    manifest = session.manifest
    rng = np.random.default_rng(0)
    side, frames = manifest.resolution, manifest.frames_per_clip
    step_frames = manifest.frames_per_step if session.streaming else 1
    frame = rng.random((manifest.batch, 3, step_frames, side, side), dtype=np.float32)
    clip = rng.random((manifest.batch, 3, frames, side, side), dtype=np.float32)
    result: dict[str, object] = {"backend": backend, "threads": threads}
    if session.streaming:
        step = time_calls(lambda: session.push(frame), repeats=repeats, warmup=warmup)
        result["step"] = step.to_dict()
        result["frames_per_s"] = 1e3 * manifest.batch * step_frames / step.median_ms
    clip_repeats = max(3, repeats // 20)
    whole = time_calls(lambda: session.embed_clip(clip), repeats=clip_repeats, warmup=1)
    result["clip"] = whole.to_dict()
    result["clips_per_s"] = 1e3 * manifest.batch / whole.median_ms
    result["head"] = time_calls(session.classify, repeats=repeats, warmup=warmup).to_dict()
    result["peak_rss_mb"] = _peak_rss_mb()
    result["session_rss_mb"] = result["peak_rss_mb"] - imported  # what the session added
    return result


def proc_status_mib(field: str) -> float | None:
    """A memory field of Linux's /proc/self/status (VmRSS, VmHWM, ...) in MiB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Linux's VmHWM belongs to the address space that exec created; ``ru_maxrss`` would still
    hold the peak of the parent that spawned this worker.
    """
    peak_hwm = proc_status_mib("VmHWM")
    if peak_hwm is not None:
        return peak_hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("backend")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    json.dump(measure(args.artifact, args.backend, threads=args.threads, repeats=args.repeats,
                      warmup=args.warmup), sys.stdout)


if __name__ == "__main__":
    main()
