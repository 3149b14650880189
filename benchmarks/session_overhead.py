"""What the torch session adds around its step, on the host: ``push`` timed with the step
replaced by one that returns at once (so what remains is the frame checks, the upload copy,
the finite checks, the window and the result), beside the frame checks alone.  On a GPU the
session's goal is 1.15x the raw graph replay (A0S: about 1.2 ms on an H200); this is the
host's share of the difference.

    python benchmarks/session_overhead.py [--backbone movineta0s] [--repeats 2000]
        [--out benchmarks/session_overhead.md]
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch

from grw_edge.models import create_model, randomize_
from grw_edge.registry import get_backbone
from grw_edge.runtimes.torch import TorchSession
from grw_edge_runtime.timing import time_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/session_overhead.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = get_backbone(args.backbone)
    side = spec.resolution
    session = TorchSession.for_model(randomize_(create_model(spec.name), 0).eval(),
                                     resolution=side)
    embeddings = torch.zeros(1, 1, session.manifest.embed_dim)
    finite = torch.ones(1, dtype=torch.bool)
    session._graph._runs = [lambda: (embeddings, finite)] * 2  # a step that costs nothing
    rng = np.random.default_rng(0)
    frame = rng.random((3, side, side), dtype=np.float32)
    raw = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    rows = {"push, preprocessed frame": lambda: session.push(frame),
            "push, raw 320x240 uint8 frame (preprocessing included)": lambda: session.push(raw),
            "frame checks alone": lambda: session._as_step_input(frame)}
    times = {name: time_calls(call, repeats=args.repeats, warmup=100)
             for name, call in rows.items()}
    text = "\n".join([
        f"# Host time of the torch session around its step, {spec.name} {side} px\n",
        f"`python benchmarks/session_overhead.py --backbone {spec.name} --repeats "
        f"{args.repeats}`; {platform.processor() or platform.machine()} ({os.cpu_count()} "
        f"cores), torch {torch.__version__}, 1 thread; the step replaced by one that returns "
        f"at once; median and p90 over {args.repeats} calls after 100.\n",
        "| call | median ms | p90 ms |", "| --- | --- | --- |",
        *(f"| {name} | {t.median_ms:.3f} | {t.p90_ms:.3f} |" for name, t in times.items()),
        ""])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
