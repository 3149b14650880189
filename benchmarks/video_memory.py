"""Peak memory (RSS) of reading one clip from 320x240, 1080p and 4K sources: ``predict``'s
frame sampling, one data-loader worker's item, and the old whole-clip transform for
comparison.  Each measurement runs in a fresh process; the goal is 1080p and 4K within 1.5x
of 320 px.

    python benchmarks/video_memory.py [--frames 16] [--markdown benchmarks/video_memory.md]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCES = {"320x240": (320, 240), "1080p": (1920, 1080), "4K": (3840, 2160)}
PROTOCOL = {"frames": 16, "fps": 25.0, "resize": 200, "crop": 172}  # A0S's transform, every frame

MEASURE = """
import json, resource, sys
from pathlib import Path
import torch
from grw_edge.preprocess import ClipProtocol, preprocess_frames
mode, root, protocol = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
video = next((root / "train" / "a").iterdir())
if mode == "predict":
    from grw_edge.predict import sampled_frames
    frames = sampled_frames(video, ClipProtocol(**protocol)).frames
elif mode == "worker":
    from grw_edge.data.kinetics import VideoClipDataset
    dataset = VideoClipDataset(root, "train", frames_per_clip=protocol["frames"],
                               fps=protocol["fps"], resize=protocol["resize"],
                               crop=protocol["crop"], cache_dir=root / "index")
    frames = dataset[0]["frames"]
elif mode == "whole clip":
    from grw_edge.data.video import read_frames
    frames = preprocess_frames(read_frames(video, range(protocol["frames"])),
                               resize=protocol["resize"], crop=protocol["crop"])
else:
    frames = torch.zeros(0)
print(json.dumps({"shape": list(frames.shape),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_source(root: Path, width: int, height: int, frames: int) -> None:
    """A moving gradient, H.264 (GOP 1 s, B-frames), at 25 fps."""
    import av
    import numpy as np

    path = root / "train" / "a" / "v.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = (np.arange(width)[None, :] + np.arange(height)[:, None]) % 256
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "25", "bf": "2"}
        for t in range(frames):
            image = np.repeat(((ramp + 4 * t) % 256).astype(np.uint8)[..., None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def measure(mode: str, root: Path, protocol: dict) -> float:
    """Peak RSS in MB of one fresh process doing ``mode``."""
    result = subprocess.run([sys.executable, "-c", MEASURE, mode, str(root), json.dumps(protocol)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=PROTOCOL["frames"])
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    protocol = {**PROTOCOL, "frames": args.frames}
    modes = ("imports only", "predict", "worker", "whole clip")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (width, height) in SOURCES.items():
            root = Path(scratch) / name
            write_source(root, width, height, args.frames)
            rows[name] = {mode: measure(mode, root, protocol) for mode in modes}
    base = rows["320x240"]
    lines = [(f"Peak RSS (MB) reading one clip of {args.frames} frames, resized to "
              f"{protocol['resize']} and cropped to {protocol['crop']} px; in brackets the "
              f"ratio to the 320x240 source."), "",
             "| source | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{row[m]:.0f} ({row[m] / base[m]:.2f}x)" for m in modes) + " |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(f"# Video decoding memory\n\n`python benchmarks/video_memory.py "
                                 f"--frames {args.frames}` on the CPU.\n\n{text}\n\n"
                                 "`whole clip` is the transform as it was before frames were "
                                 "resized as they decode (float32 at source size).\n")


if __name__ == "__main__":
    main()
