"""Video files with PyAV: probing, decoding chosen frames, writing, and the frame selection
of the upstream evaluation.

The upstream code sampled clips with torchvision's ``VideoClips`` (0.17 era): frames are
resampled from the container's average frame rate to the target rate by index, with
step = original fps / target fps (every step-th frame when the step is a whole number,
else floor(i * step) for i < floor(frames * target / original)), then cut into clips of
N frames taken every N frames; a video with fewer than N resampled frames gives no clip.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from grw_edge._io import atomic_write_path
from grw_edge.errors import GrwEdgeError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"})


class VideoDecodeError(GrwEdgeError):
    """A video file that cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What probing a file tells without decoding it."""

    path: str
    fps: float  # the video stream's average frame rate
    num_frames: int
    width: int
    height: int


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame rate and frame count (packets with a timestamp), without decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoDecodeError(f"{path}: the video stream has no frame rate")
            timestamps = {packet.pts for packet in container.demux(stream)
                          if packet.pts is not None}
            return VideoInfo(str(path), float(rate), len(timestamps),
                             stream.codec_context.width, stream.codec_context.height)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoDecodeError(f"cannot read {path}: {error}") from None


def read_frames(path: str | os.PathLike[str], indices: Sequence[int] | None = None, *,
                threads: int | None = None) -> np.ndarray:
    """Decode frames (in presentation order, display rotation applied) as uint8 (T, H, W, 3).

    ``indices`` picks frames by their position; None decodes every frame.  Chosen frames
    are decoded from the keyframe before the first of them, not from the start.
    ``threads`` limits the decoder's threads (1 in a data-loader worker, which is already
    one of many processes); None lets FFmpeg choose.
    """
    import av

    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    kept: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads:
                stream.codec_context.thread_count = threads
            else:
                stream.thread_type = "AUTO"
            for position, frame in _positioned_frames(container, stream, wanted):
                if wanted is None or position in wanted:
                    kept[position] = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
    except (av.FFmpegError, OSError, IndexError) as error:
        raise VideoDecodeError(f"cannot decode {path}: {error}") from None
    if wanted is None:
        order = sorted(kept)
    else:
        missing = [i for i in wanted if i not in kept]
        if missing:
            raise VideoDecodeError(f"{path} has no frame {missing[0]} (it decoded "
                                   f"{len(kept) and max(kept) + 1} frames)")
        order = [int(i) for i in indices]
    if not order:
        raise VideoDecodeError(f"{path} decoded no frames")
    return np.stack([kept[i] for i in order])


def _positioned_frames(container, stream, wanted: list[int] | None) -> Iterator[tuple[int, object]]:
    """(position, frame) up to the last wanted frame.  Positions count frames in
    presentation order (a frame's position is the rank of its timestamp among the stream's
    packets, as ``probe_video`` counts them); with ``wanted``, decoding starts at the
    keyframe before the first wanted frame, and falls back to decoding from the start when
    the decoded timestamps do not match the packets'."""
    last = None if wanted is None else (wanted[-1] if wanted else -1)
    if wanted:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
        timestamps = sorted({pts for pts, _ in packets})
        if wanted[0] < len(timestamps):
            first = timestamps[wanted[0]]
            start = max((pts for pts, key in packets if key and pts <= first), default=None)
            rank = {pts: i for i, pts in enumerate(timestamps)}
            chosen = set(wanted)
            if start is not None:
                container.seek(start, stream=stream, backward=True)
                frames = []
                for frame in container.decode(stream):
                    if frame.pts not in rank:
                        break  # timestamps we cannot place: decode from the start instead
                    if rank[frame.pts] > last:
                        yield from frames
                        return
                    if rank[frame.pts] in chosen:
                        frames.append((rank[frame.pts], frame))
                else:
                    yield from frames
                    return
        container.seek(0, stream=stream, backward=True)
    for position, frame in enumerate(container.decode(stream)):
        if last is not None and position > last:
            return
        yield position, frame


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Undo a display-matrix rotation (degrees counter-clockwise, as PyAV reports it)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float | Fraction, *,
                codec: str = "libx264", crf: int = 12) -> Path:
    """Write uint8 (T, H, W, 3) frames as an mp4 (H.264, yuv420p), atomically."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_write_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)} if codec == "libx264" else {}
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
    return Path(path)


def resample_indices(num_frames: int, original_fps: float, target_fps: float | None
                     ) -> np.ndarray:
    """Indices of the frames kept when ``num_frames`` at ``original_fps`` are resampled to
    ``target_fps``, by the upstream (torchvision ``VideoClips``) rule."""
    if target_fps is None:
        return np.arange(num_frames)
    step = original_fps / target_fps
    if float(step).is_integer():
        return np.arange(0, num_frames, int(step))
    total = int(math.floor(num_frames * target_fps / original_fps))
    return np.floor(np.arange(total, dtype=np.float32) * np.float32(step)).astype(np.int64)


def clip_indices(num_frames: int, original_fps: float, target_fps: float | None,
                 frames_per_clip: int) -> list[np.ndarray]:
    """Frame indices of every clip: N resampled frames, a new clip every N frames.

    Too short a video gives no clip (as upstream, which drops it).
    """
    kept = resample_indices(num_frames, original_fps, target_fps)
    count = (len(kept) - frames_per_clip) // frames_per_clip + 1 if len(kept) >= frames_per_clip else 0
    return [kept[i * frames_per_clip:(i + 1) * frames_per_clip] for i in range(count)]


def list_videos(directory: str | os.PathLike[str]) -> list[Path]:
    """Video files directly inside ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
