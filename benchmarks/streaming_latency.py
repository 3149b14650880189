"""Per-frame streaming latency of a causal backbone: PyTorch eager vs ONNX Runtime.

    python benchmarks/streaming_latency.py --backbone movineta0s --threads 1

Prints, for one thread by default: the median step latency of PyTorch (the unfused
reference and the folded export model) and of ONNX Runtime (the bare graph and the
session API), and the cost of N streamed one-frame steps against one N-frame call, all
measured in one run.  Weights are random (they do not change the cost).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from grw_edge.benchmarks.timing import time_calls
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_
from grw_edge.models.fusion import fold_for_inference
from grw_edge.registry import get_backbone
from grw_edge.runtimes import open as open_session


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def zero_feed(session: ort.InferenceSession, frames: np.ndarray) -> dict[str, np.ndarray]:
    feed = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()}
    feed["frames"] = frames
    return feed


def profile_by_operator(path: Path, frame: np.ndarray, threads: int, runs: int = 50
                        ) -> dict[str, tuple[float, int]]:
    """Mean kernel microseconds per step and node count, by operator type (ORT's profiler)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.parent / "ort_profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = zero_feed(session, frame)
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            entry = totals.setdefault(event["args"]["op_name"], [0.0, 0])
            entry[0] += event["dur"] / runs
            entry[1] += 1 / runs
    return {op: (us, round(count)) for op, (us, count) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clip-repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--profile", action="store_true",
                        help="Also print where ONNX Runtime spends a step, by operator.")
    args = parser.parse_args()

    spec = get_backbone(args.backbone)
    side, n = spec.resolution, spec.frames_per_clip
    torch.set_num_threads(args.threads)
    model = randomize_(create_model(spec.name), 0).eval()
    folded = fold_for_inference(model)
    rng = np.random.default_rng(0)
    frame = rng.random((1, 3, 1, side, side), dtype=np.float32)
    clip = rng.random((1, 3, n, side, side), dtype=np.float32)

    results: dict[str, dict] = {}
    frame_t, clip_t = torch.from_numpy(frame), torch.from_numpy(clip)
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for name, net in (("torch reference (eager)", model), ("torch folded (eager)", folded)):
            backbone = net.video_backbone
            _, states = backbone.step(frame_t)
            step = time_calls(lambda b=backbone, s=states: b.step(frame_t, s),
                              repeats=args.repeats // 4, warmup=args.warmup)
            whole = time_calls(lambda b=backbone: b.step(clip_t), repeats=args.clip_repeats,
                               warmup=1)
            results[name] = {"step": step, "clip": whole}

        one = export(model, "onnx", Path(tmp) / "step1", parity_frames=4)
        chunk = export(model, "onnx", Path(tmp) / "stepN", frames_per_step=n, parity_frames=n)
        step_graph = ort_session(one / "step.onnx", args.threads)
        clip_graph = ort_session(chunk / "step.onnx", args.threads)
        feed, clip_feed = zero_feed(step_graph, frame), zero_feed(clip_graph, clip)
        results["onnxruntime step.onnx"] = {
            "step": time_calls(lambda: step_graph.run(None, feed), repeats=args.repeats,
                               warmup=args.warmup),
            "clip": time_calls(lambda: clip_graph.run(None, clip_feed),
                               repeats=args.clip_repeats, warmup=1)}
        if args.profile:
            profile = profile_by_operator(one / "step.onnx", frame, args.threads)
        session = open_session(one, threads=args.threads)
        results["onnxruntime session.push"] = {
            "step": time_calls(lambda: session.push(frame), repeats=args.repeats,
                               warmup=args.warmup),
            "clip": results["onnxruntime step.onnx"]["clip"]}

    print(f"{spec.name} at {side}x{side}, {args.threads} thread(s), float32, "
          f"{platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, "
          f"torch {torch.__version__}")
    print(f"{'runtime':<28}{'step median':>12}{'step p90':>10}{f'{n}-frame call':>15}"
          f"{f'{n} steps / call':>17}")
    table = {}
    for name, timing in results.items():
        step, whole = timing["step"], timing["clip"]
        ratio = n * step.median_ms / whole.median_ms
        print(f"{name:<28}{step.median_ms:>10.2f}ms{step.p90_ms:>8.2f}ms"
              f"{whole.median_ms:>13.1f}ms{ratio:>16.2f}x")
        table[name] = {"step": step.to_dict(), "clip": whole.to_dict(), "steps_over_clip": ratio}
    if args.profile:
        total = sum(us for us, _ in profile.values())
        print(f"\nonnxruntime step by operator (profiled, so slower than above; "
              f"{total / 1e3:.2f} ms of kernels):")
        for op, (us, count) in sorted(profile.items(), key=lambda kv: -kv[1][0])[:12]:
            print(f"  {op:<22}{us / 1e3:>7.3f} ms {100 * us / total:>5.1f}%  {count:>4} nodes")
    if args.json:
        args.json.write_text(json.dumps({"backbone": spec.name, "resolution": side,
                                         "threads": args.threads, "frames": n,
                                         "results": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
