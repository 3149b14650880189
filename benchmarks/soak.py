"""Soak: a long stream through each backend's session: latency, memory, finite states.

    python benchmarks/soak.py --frames 100000 --resolution 32 --out benchmarks/soak.json

Exports a random-weights A0S artifact (every branch live) once, then for each backend
pushes ``--frames`` preprocessed frames (a fixed cycle of random frames) through one
session, classifying every ``--classify-every`` frames, and records: the median per-frame
latency (push + classify share) over the first and the last 1,000 frames, the resident
memory after the first 1,000 frames and at the end, whether every embedding, logit and
state stayed finite, and the counter at the end.  Backends that cannot run here are
listed with the reason.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from grw_edge.errors import GrwEdgeError
from grw_edge.exporters import export
from grw_edge.models import random_model
from grw_edge.runtimes import open as open_session
from grw_edge_runtime.bench import peak_rss_mb as peak_rss_mib
from grw_edge_runtime.bench import proc_status_mib

WINDOW = 1000  # frames per latency / memory sample


def resident_mib() -> float:
    """Current resident set size (Linux /proc), else the peak so far (ru_maxrss)."""
    current = proc_status_mib("VmRSS")
    return current if current is not None else peak_rss_mib()


def soak(artifact: Path, backend: str, frames: int, classify_every: int, threads: int,
         budget_s: float) -> dict:
    session = open_session(artifact, backend, threads=threads)
    side = session.manifest.resolution
    cycle = np.random.default_rng(0).random((64, 3, side, side), np.float32)
    latencies, finite, start = [], True, time.perf_counter()
    rss_start = None
    pushed = 0
    for i in range(frames):
        began = time.perf_counter()
        embeddings = session.push(cycle[i % len(cycle)])
        logits = session.classify() if (i + 1) % classify_every == 0 else None
        latencies.append(time.perf_counter() - began)
        finite &= bool(np.isfinite(embeddings).all()
                       and (logits is None or np.isfinite(logits).all()))
        pushed = i + 1
        if pushed == WINDOW:
            rss_start = resident_mib()
        if time.perf_counter() - start > budget_s:
            break
    states = session.states()
    return {
        "backend": backend, "frames": pushed, "requested_frames": frames,
        "seconds": round(time.perf_counter() - start, 1),
        "ms_per_frame_first_1000": round(1000 * float(np.median(latencies[:WINDOW])), 3),
        "ms_per_frame_last_1000": round(1000 * float(np.median(latencies[-WINDOW:])), 3),
        "rss_mib_after_1000": round(rss_start or resident_mib(), 1),
        "rss_mib_end": round(resident_mib(), 1),
        "outputs_finite": finite,
        "states_finite": all(bool(np.isfinite(v).all()) for v in states.values()),
        "frame_count_digits": states["frame_count"].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--backends", default="onnxruntime,torch,tensorrt,coreml")
    parser.add_argument("--classify-every", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=3600.0,
                        help="stop a backend after this many seconds (recorded)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        artifact = export(random_model("movineta0s", seed=0), "onnx", Path(scratch) / "a0s",
                          resolution=args.resolution, parity_frames=8)
        results = []
        for backend in args.backends.split(","):
            try:
                result = soak(artifact, backend, args.frames, args.classify_every,
                              args.threads, args.budget_s)
            except GrwEdgeError as error:
                result = {"backend": backend, "skipped": str(error)}
            print(json.dumps(result), flush=True)
            results.append(result)
    report = {"results": results, "resolution": args.resolution, "threads": args.threads,
              "classify_every": args.classify_every, "machine": platform.platform(),
              "processor": platform.processor() or platform.machine()}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
