"""Streams served per device: how many camera streams at 5 and 30 fps one MultiStreamSession
(torch, CUDA graphs on a GPU) keeps up with, per backbone, from the time of one batched tick.

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


def best_rows(rows: list[dict]) -> list[dict[str, str]]:
    """Per backbone, the batch that serves the most streams, formatted."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["backbone"] not in best or row["streams_at_5fps"] > best[row["backbone"]][
                "streams_at_5fps"]:
            best[row["backbone"]] = row
    return [{"backbone": r["backbone"], "input": f"{r['resolution']}px", "slots": str(r["batch"]),
             "tick ms": f"{r['tick_ms']:.2f}", **{f"streams @ {fps} fps":
                                                  f"{r[f'streams_at_{fps}fps']:.0f}" for fps in FPS}}
            for r in best.values()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="movineta0s,movineta1s,movineta2s")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    rows = [measure(name, int(batch), device=args.device, resolution=args.resolution,
                    repeats=args.repeats, precision=args.precision)
            for name in args.backbones.split(",") for batch in args.batches.split(",")]
    print(json.dumps(rows))
    table = format_table(best_rows(rows), markdown=True)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(f"Streams served on {args.device} ({args.precision}; best of slots "
                         f"{args.batches}):\n\n{table}\n")


if __name__ == "__main__":
    main()
