"""Times a TF Lite streaming model under LiteRT in a process of its own, the way an app runs
it: the signature runner, one frame and the states in, the states carried to the next call;
prints JSON.  The peer row of ``grw-edge bench --compare-tflite``; it lives in the device
runtime so that, like the runtime's own rows, its process holds LiteRT and numpy only.

    python -c "import time; t0 = time.perf_counter(); from grw_edge_runtime.peer import \\
main; main(t0)" MODEL.tflite [--threads 1] [--repeats 100]
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from grw_edge_runtime.bench import parse_args, peak_rss_mb
from grw_edge_runtime.timing import time_calls


def measure_tflite(path: str, *, started: float, threads: int, repeats: int,
                   warmup: int) -> dict:
    """Per-frame latency of a TF Lite streaming model: the input that is not also an output
    is the frame, the others are states fed back at every call."""
    from ai_edge_litert.interpreter import Interpreter

    imported = peak_rss_mb()
    runner = Interpreter(model_path=path, num_threads=threads).get_signature_runner()
    result: dict[str, object] = {"backend": "tflite", "threads": threads,
                                 "import_open_s": time.perf_counter() - started}
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
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

    step()
    result["first_frame_s"] = time.perf_counter() - started
    timing = time_calls(step, repeats=repeats, warmup=warmup)
    peak = peak_rss_mb()
    return {**result, "step": timing.to_dict(), "frames_per_s": 1e3 / timing.median_ms,
            "states": len(states), "state_bytes": sum(s.nbytes for s in states.values()),
            "peak_rss_mb": peak, "session_rss_mb": peak - imported,
            "modules": sorted({"torch", "torchvision", "grw_edge"} & set(sys.modules))}


def main(started: float) -> None:
    args = parse_args(sys.argv[1:])
    json.dump(measure_tflite(args.artifact, started=started, threads=args.threads,
                             repeats=args.repeats, warmup=args.warmup), sys.stdout)
