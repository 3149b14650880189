"""grw-edge's streaming step vs the official TF MoViNet-Stream under LiteRT, in rounds of
fresh processes interleaved so that load on a shared machine hits every side alike.

    python benchmarks/peer_latency.py --tflite-dir /work/tflite --rounds 5 \\
        --executorch /work/venv-et/bin/python --out benchmarks/peer_latency

``--tflite-dir`` holds movinet_a{0,1,2}_stream.tflite from build_tflite_movinet.py.  Each
round times, for A0S/A1S/A2S at 1 and 2 threads, in a fresh process each: the official
model through LiteRT's signature runner, and grw-edge's device runtime (``session.push``)
on the float32, int8 and fp16 LiteRT artifacts (LiteRT, XNNPACK) and ONNX artifacts
(onnxruntime's CPU provider), random weights, 20 warm-up + ``--repeats`` timed frames,
states carried; with ``--executorch`` also the A0S step under ExecuTorch/XNNPACK
(benchmarks/executorch_step.py).  Reported: the median over rounds of each side's median
(wall clock, CPU time), the median over rounds of the ratio to the official model taken
within each round, the process's peak resident memory and the time from its first import
to the first frame's embeddings.  ``--profile`` adds ONNX Runtime's top operators of each
float32 ONNX step.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from grw_edge._tables import format_table
from grw_edge.benchmarks.bench import worker_command
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_

MODELS = {"movineta0s": "a0", "movineta1s": "a1", "movineta2s": "a2"}
PRECISIONS = ("fp32", "int8", "fp16")
TARGETS = {"litert": "litert", "onnx": "runtime"}  # grw-edge target -> bench backend
OFFICIAL = "official"
HERE = Path(__file__).resolve().parent


def artifacts(work: Path, names: list[str]) -> dict[tuple[str, str, str], Path]:
    """The LiteRT and ONNX artifacts of every model and precision (exported once, reused)."""
    made = {}
    for name in names:
        model = None
        for target in TARGETS:
            for precision in PRECISIONS:
                path = work / f"{name}-{target}-{precision}"
                if not (path / "manifest.json").exists():
                    model = model or randomize_(create_model(name), 0).eval()
                    # random weights, random calibration frames: the int8 bar is for trained
                    # models, so it is recorded, not enforced, here
                    export(model, target, path, precision=precision, parity_frames=4,
                           parity_clips=2, calibration_clips=4, allow_degraded=True,
                           overwrite=True)
                made[name, target, precision] = path
    return made


def worker(command: list[str], threads: int) -> dict[str, float]:
    """Median step milliseconds (wall clock and CPU), peak resident memory and time to the
    first frame's embeddings of one fresh worker process."""
    # the ExecuTorch environment sees this checkout's packages only through PYTHONPATH
    paths = [str(HERE.parent), str(HERE.parent / "runtimes" / "python"),
             *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"{' '.join(command[:4])} failed: {done.stderr.strip()[-500:]}")
    result = json.loads(lines[-1])
    step = result["step"]
    return {"wall": step["median_ms"], "cpu": step["cpu_median_ms"],  # nan: not measured
            "rss": result.get("peak_rss_mb", math.nan),
            "first": result.get("first_frame_s", math.nan)}


def one_round(made: dict, names: list[str], tflite_dir: Path, thread_counts: list[int],
              repeats: int, executorch: str | None, work: Path
              ) -> dict[str, dict[str, float]]:
    """One interleaved round: every side of every model once, each in a fresh process."""
    times = {}
    for name in names:
        for t in thread_counts:
            def command(artifact: Path, backend: str, threads: int = t) -> list[str]:
                return worker_command(artifact, backend, threads=threads, repeats=repeats,
                                      extra=("--warmup", "20", "--step-only"))

            tflite = tflite_dir / f"movinet_{MODELS[name]}_stream.tflite"
            times[f"{name}|{t}|{OFFICIAL}"] = worker(command(tflite, "tflite"), t)
            for target, backend in TARGETS.items():  # the device runtime alone, as in an app
                for precision in PRECISIONS:
                    times[f"{name}|{t}|{target} {precision}"] = worker(
                        command(made[name, target, precision], backend), t)
            # one thread only: on a loaded 2-core machine XNNPACK's spinning pool at 2 threads
            # measured the load, not the model (460 ms per frame)
            if executorch and name == "movineta0s" and t == 1:
                times[f"{name}|{t}|executorch"] = worker(
                    [executorch, str(HERE / "executorch_step.py"), "--threads", str(t),
                     "--repeats", str(repeats), "--pte", str(work / "movineta0s.pte")], t)
    return times


SIDES = [f"{target} {precision}" for target in TARGETS for precision in PRECISIONS]


def summarize(all_rounds: list[dict[str, dict[str, float]]], measure: str,
              unit: str) -> list[dict[str, str]]:
    """One row per model and thread count: medians over rounds of ``measure``, and of the
    ratios to the official model taken within each round."""
    rounds = [{key: value[measure] for key, value in r.items()} for r in all_rounds]
    rows = []
    for key in rounds[0]:
        name, t, side = key.split("|")
        if side != OFFICIAL:
            continue
        row = {"model, threads": f"{name}, {t}",
               f"official {unit}": f"{statistics.median(r[key] for r in rounds):.2f}"}
        for other in [*SIDES, "executorch"]:
            other_key = f"{name}|{t}|{other}"
            if other_key not in rounds[0]:
                continue
            value = statistics.median(r[other_key] for r in rounds)
            ratio = statistics.median(r[other_key] / r[key] for r in rounds)
            row[other] = f"{value:.2f} ({ratio:.2f})"
        for target in TARGETS:
            fp32, int8 = f"{name}|{t}|{target} fp32", f"{name}|{t}|{target} int8"
            row[f"{target} int8/fp32"] = (
                f"{statistics.median(r[int8] / r[fp32] for r in rounds):.2f}")
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [{key: row.get(key, "-") for key in columns} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--backbones", default=",".join(MODELS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/grw-edge-peer"))
    parser.add_argument("--executorch", help="Python of an ExecuTorch environment.")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, help="Write OUT.json and OUT.md.")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    names = args.backbones.split(",")
    made = artifacts(args.work, names)
    thread_counts = [int(t) for t in args.threads.split(",")]
    rounds = []
    for index in range(args.rounds):
        rounds.append(one_round(made, names, args.tflite_dir, thread_counts, args.repeats,
                                args.executorch, args.work))
        print(f"round {index + 1}: " + json.dumps(rounds[-1]), flush=True)
    table = "\n\n".join([
        f"Wall clock, ms per frame (median of {len(rounds)} rounds; in brackets the median "
        f"of the within-round ratios to the official model on LiteRT):",
        format_table(summarize(rounds, "wall", "ms"), markdown=True),
        "CPU time of the process, ms per frame (does not count waiting for a core on a "
        "shared machine; with 2 threads it is the sum over both):",
        format_table(summarize(rounds, "cpu", "ms"), markdown=True),
        "Peak resident memory of the process, MB (libraries, model and states):",
        format_table(summarize(rounds, "rss", "MB"), markdown=True),
        "Time from the first import to the first frame's embeddings, s:",
        format_table(summarize(rounds, "first", "s"), markdown=True)])
    print(table)
    if args.out:  # before profiling, so that a failing profile loses no measurement
        args.out.with_suffix(".json").write_text(json.dumps(
            {"rounds": rounds, "repeats": args.repeats}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table + "\n")
    if args.profile:
        sys.path.insert(0, str(HERE))
        from streaming_latency import profile_by_operator

        import numpy as np

        lines = []
        for name in names:
            step = made[name, "onnx", "fp32"] / "step.onnx"
            manifest = json.loads((made[name, "onnx", "fp32"] / "manifest.json").read_text())
            side = manifest["input"]["shape"][-1]
            frame = np.random.default_rng(0).random((1, 3, 1, side, side), dtype=np.float32)
            ops = profile_by_operator(step, frame, 1)
            total = sum(us for us, _ in ops.values())
            lines.append(f"\n{name} float32 step, 1 thread, by operator ({total / 1e3:.2f} ms of "
                         f"kernels, profiled):")
            for op, (us, count) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:8]:
                lines.append(f"  {op:<18}{us / 1e3:>7.3f} ms {100 * us / total:>5.1f}% "
                             f"{count:>4} nodes")
        profile = "\n".join(lines)
        print(profile)
        if args.out:
            with args.out.with_suffix(".md").open("a") as md:
                md.write(f"\n```\n{profile}\n```\n")


if __name__ == "__main__":
    main()
