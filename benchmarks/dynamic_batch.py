"""Multi-stream ticks on a fixed-batch ONNX artifact against the same model exported with
--dynamic-batch, side by side in one run: with L of S slots live, the fixed artifact runs all S
rows every tick, the dynamic one only the first L (the slots in use).

    python benchmarks/dynamic_batch.py [--backbone movineta0s] [--slots 8] [--live 1,2,4,8]
        [--threads 2] [--rounds 3] [--repeats 30] [--out benchmarks/dynamic_batch]

onnxruntime CPU provider; medians over ``repeats`` ticks after warm-up, per round; rounds
alternate which artifact goes first; the table gives the median over rounds and the median
of the per-round ratios.  Weights are random (cost does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import onnxruntime

from grw_edge import runtimes
from grw_edge._tables import format_table
from grw_edge.benchmarks.streams import measure
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_
from grw_edge.registry import get_backbone

KINDS = ("fixed", "dynamic")


def cpu_model() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--live", default="1,2,4,8")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/dynamic_batch")
    args = parser.parse_args()
    spec = get_backbone(args.backbone)
    side = args.resolution or spec.resolution
    live = [int(n) for n in args.live.split(",")]
    model = randomize_(create_model(spec.name), 0).eval()
    with tempfile.TemporaryDirectory() as work:
        sessions = {kind: runtimes.open(
            export(model, "onnx", Path(work) / kind, batch=args.slots, resolution=side,
                   dynamic_batch=kind == "dynamic", parity_frames=2, include_reference=False),
            "onnxruntime", threads=args.threads) for kind in KINDS}
        rounds = []
        for index in range(args.rounds):
            order = KINDS if index % 2 == 0 else KINDS[::-1]
            rounds.append({(kind, n): measure(sessions[kind], spec.name, "onnxruntime", n,
                                              side=side, repeats=args.repeats,
                                              precision="fp32")["tick_ms"]
                           for kind in order for n in live})
    rows, table = [], []
    for n in live:
        fixed = statistics.median(r["fixed", n] for r in rounds)
        dynamic = statistics.median(r["dynamic", n] for r in rounds)
        ratio = statistics.median(r["dynamic", n] / r["fixed", n] for r in rounds)
        rows.append({"live": n, "slots": args.slots, "fixed_tick_ms": fixed,
                     "dynamic_tick_ms": dynamic, "dynamic_over_fixed": ratio})
        table.append({"live streams": f"{n} of {args.slots}", "fixed batch ms / tick":
                      f"{fixed:.2f}", "--dynamic-batch ms / tick": f"{dynamic:.2f}",
                      "dynamic / fixed": f"{ratio:.2f}"})
    machine = (f"{cpu_model()} ({os.cpu_count()} cores), onnxruntime {onnxruntime.__version__} "
               f"CPU provider, {args.threads} intra-op threads")
    text = (f"# Multi-stream ticks: fixed batch vs --dynamic-batch, {spec.name} {side} px\n\n"
            f"`python benchmarks/dynamic_batch.py --backbone {spec.name} --slots {args.slots} "
            f"--live {args.live} --threads {args.threads} --rounds {args.rounds} --repeats "
            f"{args.repeats}`; {machine}; median tick over {args.repeats} ticks after warm-up "
            f"per round, median over {args.rounds} rounds (ratio: median of per-round "
            f"ratios), artifacts alternating first.\n\n{format_table(table, markdown=True)}\n")
    Path(args.out + ".json").write_text(json.dumps(
        {"machine": machine, "rounds": [{f"{k}_{n}": v for (k, n), v in r.items()}
                                        for r in rounds], "rows": rows}, indent=2) + "\n")
    Path(args.out + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
