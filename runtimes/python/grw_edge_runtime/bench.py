"""Time a session and its memory in a process of its own; prints JSON.

    python -c "import time; t0 = time.perf_counter(); from grw_edge_runtime.bench import \\
main; main(t0)" ARTIFACT [--backend B] [--threads 1] [--repeats 100]

``t0`` is taken before anything is imported, so ``import_open_s`` is what an app waits for
between starting its imports and holding an open session.  The toolkit's ``grw-edge
bench`` runs this for the runtime alone and, through its own worker, for the toolkit path.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from grw_edge_runtime.preprocess import preprocess
from grw_edge_runtime.session import StreamingSession
from grw_edge_runtime.timing import time_calls

CAMERA_FRAME = (240, 320, 3)  # the raw frame pushed to time preprocessing + step


def measure(open_session: Callable[..., StreamingSession], artifact: str, backend: str | None,
            *, started: float, threads: int, repeats: int, warmup: int,
            step_only: bool = False, **options) -> dict:
    """Import + open time, time to the first frame's embeddings, per-frame latency
    (preprocessed and raw uint8 frames), head and whole-clip latency, and peak memory of one
    session (``step_only``: the step and the peak memory alone)."""
    imported = peak_rss_mb()  # the libraries alone, before the session
    session = open_session(artifact, backend, threads=threads, **options)
    result = opened(session, threads=threads, started=started)
    manifest = session.manifest
    rng = np.random.default_rng(0)
    side, frames = manifest.resolution, manifest.frames_per_clip
    step_frames = manifest.frames_per_step if session.streaming else 1
    frame = rng.random((manifest.batch, 3, step_frames, side, side), dtype=np.float32)
    raw = rng.integers(0, 256, (manifest.batch, step_frames, *CAMERA_FRAME), dtype=np.uint8)
    if session.streaming:
        session.push(frame)
        result["first_frame_s"] = time.perf_counter() - started
        time_step(session, lambda: session.push(frame), result, repeats=repeats,
                  warmup=warmup)
        if step_only:
            result["peak_rss_mb"] = peak_rss_mb()
            return result
        result["raw_step"] = time_calls(lambda: session.push(raw), repeats=repeats,
                                        warmup=warmup).to_dict()
    preprocessing = manifest.input["preprocess"]
    result["preprocess"] = time_calls(
        lambda: preprocess(raw, resize=int(preprocessing["resize"][0]),
                           crop=int(preprocessing["center_crop"][0])),
        repeats=repeats, warmup=warmup).to_dict()
    # what a streaming app holds at most: before the whole-clip test allocates a clip
    result["stream_peak_rss_mb"] = peak_rss_mb()
    clip = rng.random((manifest.batch, 3, frames, side, side), dtype=np.float32)
    clip_repeats = max(3, repeats // 20)
    whole = time_calls(lambda: session.embed_clip(clip), repeats=clip_repeats, warmup=1)
    result["clip"] = whole.to_dict()
    result["clips_per_s"] = 1e3 * manifest.batch / whole.median_ms
    result["head"] = time_calls(session.classify, repeats=repeats, warmup=warmup).to_dict()
    result["peak_rss_mb"] = peak_rss_mb()
    result["session_rss_mb"] = result["peak_rss_mb"] - imported  # what the session added
    result["modules"] = sorted({"torch", "torchvision", "grw_edge"} & set(sys.modules))
    return result


def opened(session: StreamingSession, *, threads: int, started: float) -> dict[str, object]:
    """A result's first fields: the backend, its threads, the import + open time."""
    return {"backend": session.backend, "threads": threads,
            "import_open_s": time.perf_counter() - started}


def time_step(session: StreamingSession, run: Callable[[], object], result: dict, *,
              repeats: int, warmup: int) -> None:
    """``run`` (one streaming step) timed into ``result``, with the frames a second it gives."""
    step = time_calls(run, repeats=repeats, warmup=warmup)
    manifest = session.manifest
    result["step"] = step.to_dict()
    result["frames_per_s"] = 1e3 * manifest.batch * manifest.frames_per_step / step.median_ms


def proc_status_mib(field: str) -> float | None:
    """A memory field of Linux's /proc/self/status (VmRSS, VmHWM, ...) in MiB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Linux's VmHWM belongs to the address space that exec created; ``ru_maxrss`` would still
    hold the peak of the parent that spawned this process.
    """
    peak = proc_status_mib("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--ort-memory", choices=("default", "lean"), default=None,
                        help="onnxruntime allocator settings (see OnnxRuntimeSession)")
    parser.add_argument("--device", default=None, help="the session's device [its default]")
    parser.add_argument("--precision", default=None,
                        help="the session's precision, for sessions that take one (torch)")
    parser.add_argument("--step-only", action="store_true",
                        help="time the streaming step only (no head, no whole clip)")
    return parser.parse_args(argv)


def main(started: float, open_session: Callable[..., StreamingSession] | None = None) -> None:
    """Measure the session ``open_session`` (default: the runtime's) opens; print JSON."""
    if open_session is None:
        import grw_edge_runtime

        open_session = grw_edge_runtime.open
    args = parse_args(sys.argv[1:])
    json.dump(measure(open_session, args.artifact, args.backend, started=started,
                      threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                      step_only=args.step_only, **session_options(args)), sys.stdout)


def session_options(args: argparse.Namespace) -> dict[str, str]:
    """The session options the command line gave (memory mode, device, precision)."""
    given = {"memory": args.ort_memory, "device": args.device, "precision": args.precision}
    return {name: value for name, value in given.items() if value}
