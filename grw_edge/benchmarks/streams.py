"""Streams served per device: how many camera streams at 5 and 30 fps one MultiStreamSession
(torch, CUDA graphs on a GPU) keeps up with, per backbone, from the time of one batched tick.

    grw-edge bench --streams 1,8,64 --device cuda [--precision fp16] [--markdown F]
    python -m grw_edge.benchmarks.streams --device cuda --batches 1,8,64,256 [--markdown F]

A tick of B slots serves B streams one frame in ``tick_ms``; so at ``fps`` frames a second
the device serves B * 1000 / (tick_ms * fps) streams (ticks run back to back); the best B
is reported.  Weights are random (cost does not depend on them).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from grw_edge._tables import format_table
from grw_edge.models import create_model, randomize_
from grw_edge.registry import get_backbone
from grw_edge.runtimes.torch import TorchSession
from grw_edge_runtime import MultiStreamSession
from grw_edge_runtime.timing import time_calls

FPS = (5, 30)


def measure(backbone: str, batch: int, *, device: str, resolution: int | None,
            repeats: int, precision: str = "fp32") -> dict:
    """One row: the median tick of ``batch`` live streams and the streams served per fps."""
    spec = get_backbone(backbone)
    side = resolution or spec.resolution
    session = TorchSession.for_model(randomize_(create_model(spec.name), 0).eval(),
                                     resolution=side, device=device, batch=batch,
                                     precision=precision)
    streams = MultiStreamSession(session)
    ids = [streams.join() for _ in range(batch)]
    frame = np.random.default_rng(0).random((3, side, side), dtype=np.float32)
    tick = time_calls(lambda: streams.push({i: frame for i in ids}), repeats=repeats,
                      warmup=min(3, repeats))
    return {"backbone": spec.name, "batch": batch, "resolution": side, "precision": precision,
            "tick_ms": tick.median_ms,
            **{f"streams_at_{fps}fps": batch * 1000 / (tick.median_ms * fps) for fps in FPS}}


def run_streams(backbones: list[str], batches: list[int], *, device: str,
                resolution: int | None, repeats: int,
                precisions: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Every row: each backbone at each slot count and precision."""
    return [measure(name, batch, device=device, resolution=resolution, repeats=repeats,
                    precision=precision)
            for name in backbones for precision in precisions for batch in batches]


def best_rows(rows: list[dict]) -> list[dict[str, str]]:
    """Per backbone and precision, the batch that serves the most streams, formatted."""
    best: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = row["backbone"], row["precision"]
        if key not in best or row["streams_at_5fps"] > best[key]["streams_at_5fps"]:
            best[key] = row
    return [{"backbone": r["backbone"], "precision": r["precision"],
             "input": f"{r['resolution']}px", "slots": str(r["batch"]),
             "tick ms": f"{r['tick_ms']:.2f}", **{f"streams @ {fps} fps":
                                                  f"{r[f'streams_at_{fps}fps']:.0f}" for fps in FPS}}
            for r in best.values()]


def report_text(rows: list[dict], *, device: str, markdown: bool = False) -> str:
    """The table of the best slot count per backbone and precision, with its heading."""
    slots = ",".join(sorted({str(row["batch"]) for row in rows}, key=int))
    return (f"Streams served on {device} (best of slots {slots}):\n\n"
            f"{format_table(best_rows(rows), markdown=markdown)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="movineta0s,movineta1s,movineta2s")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--precision", default="fp32", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    rows = run_streams(args.backbones.split(","), [int(b) for b in args.batches.split(",")],
                       device=args.device, resolution=args.resolution, repeats=args.repeats,
                       precisions=tuple(args.precision.split(",")))
    print(json.dumps(rows))
    print(report_text(rows, device=args.device, markdown=True))
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(report_text(rows, device=args.device, markdown=True) + "\n")


if __name__ == "__main__":
    main()
