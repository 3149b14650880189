"""Video files with PyAV: probing, decoding chosen frames, writing, and the frame selection
of the upstream evaluation.

The upstream code sampled clips with torchvision's ``VideoClips`` (0.17 era): frames are
resampled from the container's average frame rate to the target rate by index, with
step = original fps / target fps (every step-th frame when the step is a whole number,
else floor(i * step) for i < floor(frames * target / original)), then cut into clips of
N frames taken every N frames; a video with fewer than N resampled frames gives no clip.
That index rule stays the default; ``sampling="time"`` picks instead the frame on screen
at every tick of the target rate, by the presentation times the container gives, which is
what a variable-frame-rate video needs.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grw_edge._io import atomic_write_path
from grw_edge.errors import GrwEdgeError

VIDEO_SUFFIXES = frozenset({  # the containers FFmpeg reads that hold video
    ".3g2", ".3gp", ".264", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".h264", ".h265",
    ".hevc", ".ivf", ".m2ts", ".m2v", ".m4v", ".mj2", ".mjpeg", ".mkv", ".mov", ".mp4", ".mpeg",
    ".mpg", ".mts", ".mxf", ".nut", ".ogg", ".ogv", ".qt", ".rm", ".rmvb", ".ts", ".vob",
    ".webm", ".wmv", ".y4m"})
SEEKABLE_FORMATS = frozenset({"mov", "matroska"})  # FFmpeg demuxers safe to seek in
SAMPLING = ("index", "time")  # the frame-selection rules: upstream's by index, or by time
Sampling = Literal["index", "time"]
TICK_TOLERANCE = 1e-6  # seconds: a frame shown this close after a tick counts as on screen

log = logging.getLogger(__name__)


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
    times: tuple[float, ...] | None = None  # each frame's time from the first, where uneven


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame rate and the number of frames a decode gives, from the packets, not decoding.

    A frame is a packet with bytes inside the file (a truncated download's index promises
    more), counted once per timestamp; a stream without timestamps (raw H.264, whatever its
    name) counts its packets.  ``times`` holds each frame's presentation time (seconds from
    the first) where they are not i / fps to within the stream's time base (variable frame
    rate); None means i / fps, or that the stream has no timestamps.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoDecodeError(f"{path}: the video stream has no frame rate")
            present = [packet.pts for packet in _packets(container, stream)]
            count = len({pts for pts in present if pts is not None}) + present.count(None)
            if not count:  # e.g. a download cut off before its first frame's bytes
                raise VideoDecodeError(f"{path} holds no frames")
            return VideoInfo(str(path), float(rate), count,
                             stream.codec_context.width, stream.codec_context.height,
                             _uneven_times(present, stream.time_base, float(rate)))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoDecodeError(f"cannot read {path}: {error}") from None


def read_frames(path: str | os.PathLike[str], indices: Sequence[int] | None = None, *,
                threads: int | None = None,
                transform: Callable[[np.ndarray], Any] | None = None,
                stack: Callable[[list], Any] = np.stack,
                missing: list[int] | None = None) -> Any:
    """Decode frames (in presentation order, display rotation applied) as uint8 (T, H, W, 3).

    ``indices`` picks frames by their position, as ``probe_video`` counts them; None decodes
    every frame.  In MP4/MOV and Matroska/WebM, whose packets carry presentation timestamps
    and keyframe flags from an index, chosen frames are decoded from the keyframe before the
    first of them; elsewhere (AVI, MPEG-TS, FLV, raw streams...), and whenever the decoded
    timestamps after a seek do not run on one by one, from the start.  A packet that does not
    decode is skipped, as ffmpeg does, and logged.  ``threads`` limits the decoder's threads
    (1 in a data-loader worker, which is already one of many processes); None lets FFmpeg
    choose.  ``transform`` maps each kept frame as soon as it is decoded (so only its
    output is held), and the results are stacked with ``stack`` (numpy's by default).  A
    chosen frame that did not decode raises VideoDecodeError, unless ``missing`` is given:
    then it is left out and its index appended there (as a player skips it).
    """
    import av

    wanted = None if indices is None else sorted(set(int(i) for i in indices))

    def keep(frame) -> Any:
        image = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
        return transform(image) if transform else image

    try:
        kept, lost = _decode(path, wanted, threads, keep)
        if lost and threads != 1:  # frame threads drop the frames in flight with a bad one
            kept, lost = _decode(path, wanted, 1, keep)
    except (av.FFmpegError, OSError, IndexError) as error:
        raise VideoDecodeError(f"cannot decode {path}: {error}") from None
    if lost:
        log.warning("%s: %d packet(s) did not decode and were skipped", path, lost)
    skipped = f", {lost} corrupt packet(s) skipped" if lost else ""
    if wanted is None:
        order = sorted(kept)
    else:
        absent = [i for i in wanted if i not in kept]
        if absent and missing is None:
            raise VideoDecodeError(f"{path} has no frame {absent[0]} (it decoded "
                                   f"{len(kept) and max(kept) + 1} frames{skipped})")
        if absent:
            missing.extend(absent)
        order = [int(i) for i in indices if int(i) in kept]
    if not order:
        raise VideoDecodeError(f"{path} decoded no frames{skipped}")
    return stack([kept[i] for i in order])


def _decode(path, wanted: list[int] | None, threads: int | None, keep
            ) -> tuple[dict[int, Any], int]:
    """Kept frames by position, and how many packets failed to decode: from the keyframe
    before the first wanted frame where that is safe and checks out, else from the start."""
    import av

    if wanted:
        with _opened(av, path, threads) as (container, stream):
            if _trusted_timestamps(container):
                found = _from_keyframe(container, stream, wanted, keep)
                if found is not None:
                    return found
    with _opened(av, path, threads) as (container, stream):
        return _from_start(container, stream, wanted, keep)


@contextmanager
def _opened(av, path, threads: int | None):
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path} has no video stream")
        stream = container.streams.video[0]
        if threads:
            stream.codec_context.thread_count = threads
        else:
            stream.thread_type = "AUTO"
        yield container, stream


def _trusted_timestamps(container) -> bool:
    """Whether the demuxer gives presentation timestamps and keyframes from an index."""
    return container.format.name.split(",")[0] in SEEKABLE_FORMATS


def _timestamp_ranks(container, stream) -> tuple[dict[int, int], list[tuple[int, bool]]]:
    """Each packet timestamp's rank (its frame's position), and (pts, keyframe) per packet."""
    packets = [(p.pts, p.is_keyframe) for p in _packets(container, stream) if p.pts is not None]
    return {pts: i for i, pts in enumerate(sorted({pts for pts, _ in packets}))}, packets


def _from_keyframe(container, stream, wanted: list[int], keep
                   ) -> tuple[dict[int, Any], int] | None:
    """Seek to the keyframe before the first wanted frame and decode to the last; None when
    the decoded frames are not exactly the next positions one by one (decode from the
    start instead)."""
    rank, packets = _timestamp_ranks(container, stream)
    if wanted[-1] >= len(rank):
        return None
    first = next(pts for pts, position in rank.items() if position == wanted[0])
    start = max((pts for pts, key in packets if key and pts <= first), default=None)
    if start is None:
        return None
    container.seek(start, stream=stream, backward=True)
    expected, chosen, kept, lost = rank[start], set(wanted), {}, [0]
    for frame in _decoded(container, stream, lost, from_start=False):
        position = rank.get(frame.pts)
        if position is None:
            return None
        if position < rank[start]:
            continue  # a leading frame of an open GOP: it belongs before the keyframe
        if position != expected or lost[0]:
            return None
        if position in chosen:
            kept[position] = keep(frame)
        if position == wanted[-1]:
            return kept, 0
        expected += 1
    return None


def _from_start(container, stream, wanted: list[int] | None, keep
                ) -> tuple[dict[int, Any], int]:
    """Decode from the first frame up to the last wanted one.  A frame's position is its
    timestamp's rank where timestamps are trusted (a frame lost to a corrupt packet leaves
    a gap), else its place in the decoded sequence."""
    rank = _timestamp_ranks(container, stream)[0] if _trusted_timestamps(container) else {}
    if rank:  # ranking read the packets: back to the first
        container.seek(0, stream=stream, backward=True)
    chosen = None if wanted is None else set(wanted)
    kept, lost = {}, [0]
    for count, frame in enumerate(_decoded(container, stream, lost)):
        position = rank.get(frame.pts, count)
        if chosen is None or position in chosen:
            kept[position] = keep(frame)
        if wanted is not None and position >= wanted[-1]:
            break
    return kept, lost[0]


def _packets(container, stream, *, from_start: bool = True) -> Iterator:
    """The stream's packets that hold bytes, all inside the file; a demuxing error ends
    them, as the end of the file does.  In a truncated file (its index lists more frames
    than it holds) the packet cut by the end of the file is left out too; only a pass from
    the start can tell (``from_start``), after a seek the count of packets says nothing."""
    import av

    size = os.path.getsize(container.name)
    packets, held, count = container.demux(stream), None, 0
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            break
        if packet.size and (packet.pos is None or packet.pos + packet.size <= size):
            if held is not None:
                yield held
            held, count = packet, count + 1
    cut = held is not None and held.pos is not None and held.pos + held.size == size
    if held is not None and not (cut and from_start and stream.frames > count):
        yield held


def _decoded(container, stream, lost: list[int], *, from_start: bool = True) -> Iterator:
    """Decoded frames; a packet that fails to decode is counted in ``lost[0]`` and skipped."""
    import av

    for packet in _packets(container, stream, from_start=from_start):
        try:
            yield from packet.decode()
        except av.FFmpegError:
            lost[0] += 1
    try:
        yield from stream.decode(None)  # what the decoder still holds
    except av.FFmpegError:
        lost[0] += 1


def _uneven_times(present: list[int | None], time_base: Fraction | None, fps: float
                  ) -> tuple[float, ...] | None:
    """Presentation times in seconds from the first frame, unless they are i / fps to within
    one tick of the time base (or some packet has no timestamp)."""
    if not present or None in present or not time_base:
        return None
    ticks = np.unique(np.asarray(present, dtype=np.int64))
    seconds = (ticks - ticks[0]) * float(time_base)
    even = np.arange(len(seconds)) / fps
    if np.allclose(seconds, even, rtol=0, atol=float(time_base) + TICK_TOLERANCE):
        return None
    return tuple(round(float(t), 6) for t in seconds)


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


def frame_times(num_frames: int, fps: float, times: Sequence[float] | None = None
                ) -> np.ndarray:
    """Each frame's presentation time in seconds from the first: ``times`` (as probed)
    where given, else i / fps."""
    return np.arange(num_frames) / fps if times is None else np.asarray(times, np.float64)


def resample_by_time(times: np.ndarray, target_fps: float | None) -> np.ndarray:
    """Indices of the frames on screen at every 1 / ``target_fps`` from the first frame's
    time to the last frame's (a frame is on screen from its time until the next frame's)."""
    if target_fps is None:
        return np.arange(len(times))
    ticks = np.arange(math.floor((times[-1] + TICK_TOLERANCE) * target_fps) + 1) / target_fps
    return np.searchsorted(times, ticks + TICK_TOLERANCE, side="right") - 1


def resample(num_frames: int, original_fps: float, target_fps: float | None, *,
             sampling: Sampling = "index", times: Sequence[float] | None = None) -> np.ndarray:
    """The frames kept at ``target_fps``: by upstream's index rule, or (``"time"``) those on
    screen at each tick by their presentation ``times`` (None: i / fps)."""
    if sampling == "time":
        return resample_by_time(frame_times(num_frames, original_fps, times), target_fps)
    if sampling != "index":
        raise ValueError(f"sampling is one of {', '.join(SAMPLING)}, got {sampling!r}")
    return resample_indices(num_frames, original_fps, target_fps)


def clip_indices(num_frames: int, original_fps: float, target_fps: float | None,
                 frames_per_clip: int, *, sampling: Sampling = "index",
                 times: Sequence[float] | None = None) -> list[np.ndarray]:
    """Frame indices of every clip: N resampled frames (see ``resample``), a new clip every
    N frames.

    Too short a video gives no clip (as upstream, which drops it).
    """
    kept = resample(num_frames, original_fps, target_fps, sampling=sampling, times=times)
    count = (len(kept) - frames_per_clip) // frames_per_clip + 1 if len(kept) >= frames_per_clip else 0
    return [kept[i * frames_per_clip:(i + 1) * frames_per_clip] for i in range(count)]


def list_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Every file (or link that is not to a folder) directly inside ``directory``, sorted."""
    return sorted(p for p in Path(directory).iterdir() if not p.is_dir())
