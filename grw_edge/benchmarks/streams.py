"""Streams served per device: how many camera streams at 5 and 30 fps one MultiStreamSession
keeps up with, per backend and backbone, from the time of one batched tick.

    grw-edge bench --streams 1,8,64 --device cuda [--precision fp16] [--backends torch,tensorrt]
    python -m grw_edge.benchmarks.streams --device cuda --batches 1,8,64,256 [--markdown F]

A tick of B live streams serves B streams one frame in ``tick_ms``; so at ``fps`` frames a
second the device serves B * 1000 / (tick_ms * fps) streams (ticks run back to back); the
best B is reported.  torch sessions are opened with B slots; onnxruntime and tensorrt run
one artifact exported with --dynamic-batch for the largest B, with B of its slots live, so
each row also shows what a partly used session costs.  Weights are random (cost does not
depend on them).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from grw_edge._tables import format_table
from grw_edge.models import create_model, randomize_
from grw_edge.registry import get_backbone
from grw_edge_runtime import MultiStreamSession, StreamingSession
from grw_edge_runtime.timing import time_calls

FPS = (5, 30)
BACKENDS = ("torch", "onnxruntime", "tensorrt")


def session_factory(backbone: str, backend: str, most_slots: int, *, device: str, side: int,
                    precision: str, workdir: Path) -> Callable[[int], StreamingSession]:
    """``slots -> session`` serving at least that many streams: a torch session of exactly
    that many slots, or one session on a --dynamic-batch artifact of ``most_slots``."""
    from grw_edge.runtimes.torch import TorchSession

    model = randomize_(create_model(backbone), 0).eval()
    if backend == "torch":
        return lambda slots: TorchSession.for_model(model, resolution=side, device=device,
                                                    batch=slots, precision=precision)
    if backend not in BACKENDS:
        raise ValueError(f"--streams runs on {', '.join(BACKENDS)}, not {backend!r}")
    from grw_edge import runtimes
    from grw_edge.exporters import export

    target = "tensorrt" if backend == "tensorrt" else "onnx"
    most_slots = max(most_slots, 2)  # a dynamic batch needs room for two
    artifact = export(model, target, workdir / f"{backbone}-{target}-{most_slots}",
                      batch=most_slots, dynamic_batch=True, resolution=side, parity_frames=2,
                      include_reference=False)
    session = runtimes.open(artifact, backend, device=device)
    return lambda slots: session


def measure(session: StreamingSession, backbone: str, backend: str, batch: int, *,
            side: int, repeats: int, precision: str) -> dict:
    """One row: the median tick of ``batch`` live streams and the streams served per fps."""
    streams = MultiStreamSession(session)
    ids = [streams.join() for _ in range(batch)]
    frame = np.random.default_rng(0).random((3, side, side), dtype=np.float32)
    tick = time_calls(lambda: streams.push({i: frame for i in ids}), repeats=repeats,
                      warmup=min(3, repeats))
    return {"backend": backend, "backbone": backbone, "batch": batch, "slots": streams.slots,
            "resolution": side, "precision": precision, "tick_ms": tick.median_ms,
            **{f"streams_at_{fps}fps": batch * 1000 / (tick.median_ms * fps) for fps in FPS}}


def run_streams(backbones: list[str], batches: list[int], *, device: str,
                resolution: int | None, repeats: int, precisions: tuple[str, ...] = ("fp32",),
                backends: tuple[str, ...] = ("torch",)) -> list[dict]:
    """Every row: each backend and backbone at each live-stream count and precision (torch;
    the exported artifacts run float32)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="grw-edge-streams-") as workdir:
        for backend in backends:
            for name in backbones:
                spec = get_backbone(name)
                side = resolution or spec.resolution
                for precision in precisions if backend == "torch" else ("fp32",):
                    open_session = session_factory(spec.name, backend, max(batches),
                                                   device=device, side=side,
                                                   precision=precision, workdir=Path(workdir))
                    rows += [measure(open_session(batch), spec.name, backend, batch, side=side,
                                     repeats=repeats, precision=precision) for batch in batches]
    return rows


def best_rows(rows: list[dict]) -> list[dict[str, str]]:
    """Per backend, backbone and precision, the row that serves the most streams."""
    best: dict[tuple[str, str, str], dict] = {}
    for row in rows:
        key = row["backend"], row["backbone"], row["precision"]
        if key not in best or row["streams_at_5fps"] > best[key]["streams_at_5fps"]:
            best[key] = row
    return [{"backend": r["backend"], "backbone": r["backbone"], "precision": r["precision"],
             "input": f"{r['resolution']}px", "streams": str(r["batch"]),
             "slots": str(r["slots"]), "tick ms": f"{r['tick_ms']:.2f}",
             **{f"streams @ {fps} fps": f"{r[f'streams_at_{fps}fps']:.0f}" for fps in FPS}}
            for r in best.values()]


def report_text(rows: list[dict], *, device: str, markdown: bool = False) -> str:
    """The table of the best live-stream count per backend, backbone and precision."""
    counts = ",".join(sorted({str(row["batch"]) for row in rows}, key=int))
    return (f"Streams served on {device} (best of {counts} live streams):\n\n"
            f"{format_table(best_rows(rows), markdown=markdown)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="movineta0s,movineta1s,movineta2s")
    parser.add_argument("--backends", default="torch", help="comma-separated: "
                        + ", ".join(BACKENDS))
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--precision", default="fp32", help="comma-separated (torch rows)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    rows = run_streams(args.backbones.split(","), [int(b) for b in args.batches.split(",")],
                       device=args.device, resolution=args.resolution, repeats=args.repeats,
                       precisions=tuple(args.precision.split(",")),
                       backends=tuple(args.backends.split(",")))
    print(json.dumps(rows))
    print(report_text(rows, device=args.device, markdown=True))
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(report_text(rows, device=args.device, markdown=True) + "\n")


if __name__ == "__main__":
    main()
