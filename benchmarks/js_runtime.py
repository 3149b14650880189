"""Per-frame streaming step of A0S at 172 px: grw-edge-runtime (runtimes/js) in headless
Chromium (onnxruntime-web wasm SIMD, 1 and 2 threads) and in Node (onnxruntime-node), beside
the Python onnxruntime session, all through their session APIs (push of a preprocessed frame).

    python benchmarks/js_runtime.py --rounds 5 --frames 100 --out benchmarks/js_runtime

Rounds interleave the Python session and the JS runs, so that load from other processes on
a shared machine hits every side alike; the ratios are per round, then the median.  Needs
`npm ci && npm run build` in runtimes/js and Debian's chromium.  Weights are random (they do
not change the cost).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from grw_edge.benchmarks.timing import time_calls
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_
from grw_edge.runtimes import open as open_session
from grw_edge.serve import JS_ROOT, make_server

SIDES = ("python_onnxruntime_1", "node_1", "chromium_wasm_1", "chromium_wasm_2")


def python_step(artifact: Path, frames: int, warmup: int) -> float:
    """Median ms of the Python onnxruntime session's push() of a preprocessed frame, 1 thread."""
    session = open_session(artifact, backend="onnxruntime", threads=1)
    shape = session.manifest.input["shape"]
    frame = (np.arange(np.prod(shape)) * 2654435761 % 1000 / 999).astype(np.float32)
    frame = frame.reshape(shape)
    return time_calls(lambda: session.push(frame), repeats=frames, warmup=warmup).median_ms


def js_round(artifact: Path, url: str, frames: int, warmup: int) -> dict[str, float]:
    output = subprocess.run(["node", "bench/run.mjs", str(artifact), url, str(frames), str(warmup)],
                            cwd=JS_ROOT, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return {key: value["medianMs"] for key, value in result.items() if isinstance(value, dict)} | {
        "chromium": result["chromium"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=172)
    parser.add_argument("--out", default="benchmarks/js_runtime", help="Writes OUT.json and OUT.md.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        artifact = export(randomize_(create_model("movineta0s"), 0).eval(), "onnx",
                          Path(tmp) / "a0s", resolution=args.resolution, parity_frames=4)
        server = make_server(artifact, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        rounds = []
        for number in range(args.rounds):
            row = {"python_onnxruntime_1": python_step(artifact, args.frames, args.warmup)}
            row |= js_round(artifact, url, args.frames, args.warmup)
            rounds.append(row)
            print(f"round {number + 1}: " + ", ".join(f"{k} {row[k]:.2f} ms" for k in SIDES), flush=True)
        server.shutdown()

    ratios = {side: statistics.median(r[side] / r["python_onnxruntime_1"] for r in rounds)
              for side in SIDES[1:]}
    medians = {side: statistics.median(r[side] for r in rounds) for side in SIDES}
    best = {side: min(r[side] for r in rounds) for side in SIDES}  # the least disturbed round
    report = {"backbone": "movineta0s", "resolution": args.resolution, "frames": args.frames,
              "rounds": rounds, "median_ms": medians, "ratio_to_python_onnxruntime_1": ratios,
              "best_ms": best, "best_ratio": {side: best[side] / best[SIDES[0]] for side in SIDES[1:]},
              "chromium": rounds[0]["chromium"], "cpu": platform.processor() or platform.machine(),
              "note": "shared machine (other jobs running); rounds interleaved"}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# grw-edge-runtime per-frame step, A0S {args.resolution} px, 1 frame per push",
             "", f"`python benchmarks/js_runtime.py --rounds {args.rounds} --frames {args.frames}`; "
             f"{report['chromium']}; {len(rounds)} interleaved rounds on a shared 2-core VM "
             "(other jobs running).", "",
             "| runtime | threads | median ms / frame | x Python ORT (median of rounds) "
             "| best round ms | x Python ORT (best rounds) |",
             "| --- | --- | --- | --- | --- | --- |"]
    names = {"python_onnxruntime_1": ("Python onnxruntime session", 1), "node_1": ("Node, onnxruntime-node", 1),
             "chromium_wasm_1": ("Chromium, onnxruntime-web wasm SIMD", 1),
             "chromium_wasm_2": ("Chromium, onnxruntime-web wasm SIMD", 2)}
    for side in SIDES:
        name, threads = names[side]
        ratio = "1.00" if side == SIDES[0] else f"{ratios[side]:.2f}"
        best_ratio = best[side] / best[SIDES[0]]
        lines.append(f"| {name} | {threads} | {medians[side]:.2f} | {ratio} | {best[side]:.2f} "
                     f"| {best_ratio:.2f} |")
    lines += ["", "Per round (ms): " + "; ".join(
        ", ".join(f"{r[side]:.1f}" for side in SIDES) for r in rounds) + f" ({', '.join(SIDES)})."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
