"""Time to the first training batch with the first batch decoded by one loader worker (as a
DataLoader hands out batches) and in pieces across all workers (``split_first``, what the
trainer does), side by side in one run, plus the time of the batches after it.

    python benchmarks/first_batch.py --data DIR [--workers 2] [--batch 8] [--rounds 3]
        [--out benchmarks/first_batch]        # writes DIR first if it is empty

Data: loader_speed.py's Kinetics-like set (320x240 H.264, 30 fps, GOP 2 s, B-frames); clips
are A0S training clips as the GPU path loads them (16 frames at 5 fps, raw uint8, resized on
the device).  Each measurement opens a fresh DataLoader (worker start-up included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from grw_edge.data.kinetics import VideoClipDataset, collate_clips
from grw_edge.training.trainer import batches_from, joined_first, split_first
from loader_speed import write_dataset

MODES = ("one worker", "pieces")


def measure(dataset, *, workers: int, batch: int, pieces: int, then: int) -> dict[str, float]:
    """Seconds from a new loader to its first batch, and to ``then`` batches more."""
    start = time.perf_counter()
    loader = DataLoader(dataset, batch_sampler=split_first(batches_from(
        0, len(dataset), batch, 0, 0, 1), pieces), collate_fn=collate_clips,
        num_workers=workers)
    batches = joined_first(loader, pieces)
    first = next(batches)
    first_s = time.perf_counter() - start
    assert len(first["label"]) == batch
    for _ in range(then):
        next(batches)
    return {"first_s": first_s, "then_s": time.perf_counter() - start - first_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--then", type=int, default=4, help="batches timed after the first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/first_batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not (args.data / "train").is_dir():
        write_dataset(args.data, args.videos)
    dataset = VideoClipDataset(args.data, "train", frames_per_clip=16, fps=5, resize=200,
                               crop=172, cache_dir=args.data / "index", raw=True)
    pieces = {"one worker": 1, "pieces": min(args.workers, args.batch)}
    rounds = []
    for index in range(args.rounds):
        order = MODES if index % 2 == 0 else MODES[::-1]
        rounds.append({mode: measure(dataset, workers=args.workers, batch=args.batch,
                                     pieces=pieces[mode], then=args.then) for mode in order})
    median = {mode: {key: statistics.median(r[mode][key] for r in rounds)
                     for key in ("first_s", "then_s")} for mode in MODES}
    ratio = statistics.median(r["pieces"]["first_s"] / r["one worker"]["first_s"]
                              for r in rounds)
    lines = [f"# Time to the first training batch: one worker vs pieces across {args.workers} "
             f"workers\n",
             f"`python benchmarks/first_batch.py --workers {args.workers} --batch {args.batch} "
             f"--rounds {args.rounds}`; {os.cpu_count()} cores; {len(dataset)} clips of "
             f"{args.videos} videos; medians over {args.rounds} rounds (modes alternating "
             f"first), a fresh loader each time.\n",
             "| first batch | s to the first batch | s for the next "
             f"{args.then} batches |", "| --- | --- | --- |",
             *(f"| {mode} | {median[mode]['first_s']:.2f} | {median[mode]['then_s']:.2f} |"
               for mode in MODES),
             f"\nFirst batch in pieces: {ratio:.2f}x the time of one worker's (median of "
             f"per-round ratios).\n"]
    Path(args.out + ".md").write_text("\n".join(lines))
    Path(args.out + ".json").write_text(json.dumps({"rounds": rounds, "median": median,
                                                    "ratio": ratio}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
