"""Times one backend on one artifact in a process of its own, so that its peak resident
memory is its own.  ``python -m grw_edge.benchmarks.worker ARTIFACT BACKEND ...`` prints JSON.

Backend ``litert`` times a TF Lite streaming model (``ARTIFACT`` is the ``.tflite``) with
LiteRT the way an app runs it: its signature runner, the frame and the states in, the
states carried to the next call.
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


def measure(artifact: str, backend: str, *, threads: int, repeats: int, warmup: int,
            step_only: bool = False) -> dict:
    """Step, head and whole-clip latency and peak memory of one backend session."""
    if backend == "litert":
        return measure_tflite(artifact, threads=threads, repeats=repeats, warmup=warmup)
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
    if step_only:
        return result
    clip_repeats = max(3, repeats // 20)
    whole = time_calls(lambda: session.embed_clip(clip), repeats=clip_repeats, warmup=1)
    result["clip"] = whole.to_dict()
    result["clips_per_s"] = 1e3 * manifest.batch / whole.median_ms
    result["head"] = time_calls(session.classify, repeats=repeats, warmup=warmup).to_dict()
    result["peak_rss_mb"] = _peak_rss_mb()
    result["session_rss_mb"] = result["peak_rss_mb"] - imported  # what the session added
    return result


def measure_tflite(path: str, *, threads: int, repeats: int, warmup: int) -> dict:
    """Per-frame latency of a TF Lite streaming model under LiteRT: the inputs that are not
    also outputs are the frame, the others are states fed back at every call."""
    from ai_edge_litert.interpreter import Interpreter

    imported = _peak_rss_mb()
    interpreter = Interpreter(model_path=path, num_threads=threads)
    runner = interpreter.get_signature_runner()
    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    frames = [name for name in inputs if name not in outputs]
    if len(frames) != 1:
        raise SystemExit(f"{path}: expected one frame input besides the states, found "
                         f"{frames or 'none'}")
    rng = np.random.default_rng(0)
    spec = inputs[frames[0]]
    frame = (rng.random(spec["shape"], dtype=np.float32) if spec["dtype"] == np.float32 else
             rng.integers(0, 256, spec["shape"]).astype(spec["dtype"]))
    states = {name: np.zeros(details["shape"], details["dtype"])
              for name, details in inputs.items() if name in outputs}

    def step() -> None:
        results = runner(**{frames[0]: frame}, **states)
        states.update((name, results[name]) for name in states)

    timing = time_calls(step, repeats=repeats, warmup=warmup)
    peak = _peak_rss_mb()
    return {"backend": "litert", "threads": threads, "step": timing.to_dict(),
            "frames_per_s": 1e3 / timing.median_ms, "states": len(states),
            "state_bytes": sum(state.nbytes for state in states.values()),
            "peak_rss_mb": peak, "session_rss_mb": peak - imported}


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Linux's VmHWM belongs to the address space that exec created; ``ru_maxrss`` would still
    hold the peak of the parent that spawned this worker.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("backend")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--step-only", action="store_true",
                        help="Time the streaming step only (no head, no whole clip).")
    args = parser.parse_args()
    json.dump(measure(args.artifact, args.backend, threads=args.threads, repeats=args.repeats,
                      warmup=args.warmup, step_only=args.step_only), sys.stdout)


if __name__ == "__main__":
    main()
