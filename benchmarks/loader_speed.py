"""Input-pipeline speed of one data-loader worker on the CPU: clips per second of
``VideoClipDataset`` batches (open, seek, decode, colour conversion, resize, crop, collate)
through a DataLoader with one worker process.

    python benchmarks/loader_speed.py --data DIR        # writes DIR first if it is empty

The data set is Kinetics-like: 320x240 H.264 at 30 fps, 10 s per video, a keyframe every
2 s with B-frames; clips are A0S training clips (16 frames at 5 fps, 172 px crop).
"""
from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def write_dataset(root: Path, videos: int, seconds: int = 10, fps: int = 30) -> None:
    """Moving-texture videos, encoded the way web video usually is (GOP 2 s, B-frames)."""
    import av

    rng = np.random.default_rng(0)
    for number in range(videos):
        path = root / "train" / f"class{number % 2}" / f"{number}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        texture = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            stream.options = {"crf": "23", "g": str(2 * fps), "bf": "2"}
            for t in range(seconds * fps):
                y, x = (t * 2) % 240, (t * 3) % 320
                image = np.ascontiguousarray(texture[y:y + 240, x:x + 320])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())


def measure(root: Path, clips: int, batch: int, raw: bool = False) -> dict[str, float]:
    """Clips per second through a DataLoader with one worker (after its first batch);
    ``raw``: the worker ships decoded uint8 clips, as it does for training on a GPU."""
    from torch.utils.data import DataLoader, Subset

    from grw_edge.data.kinetics import VideoClipDataset

    options = {"raw": True} if raw else {}  # the option older trees lack is left out
    dataset = VideoClipDataset(root, "train", frames_per_clip=16, fps=5, resize=200, crop=172,
                               cache_dir=root / "index", **options)
    chosen = [round(i) for i in np.linspace(0, len(dataset) - 1, min(clips + batch, len(dataset)))]
    collate = {}
    if raw:
        from grw_edge.data.kinetics import collate_clips

        collate = {"collate_fn": collate_clips}
    loader = DataLoader(Subset(dataset, chosen), batch_size=batch, num_workers=1, **collate)
    batches = iter(loader)
    first = next(batches)  # the worker's start-up is not what is measured
    start = time.perf_counter()
    rest = list(batches)
    seconds = time.perf_counter() - start
    counted = sum(len(b["label"]) for b in rest)
    return {"clips": counted, "clips_per_s": counted / seconds,
            "all_ok": bool(all(b["ok"].all() for b in [first, *rest]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--raw", action="store_true", help="uint8 clips (GPU training)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not (args.data / "train").is_dir():
        write_dataset(args.data, args.videos)
    print(json.dumps(measure(args.data, args.clips, args.batch, args.raw)))


if __name__ == "__main__":
    main()
