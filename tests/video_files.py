"""Test videos made on the spot: frames whose top-left block's grey level encodes their
number, in any container PyAV writes, and broken copies of them."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

STEP, BASE = 3, 16  # frame i's top-left 16 x 16 block is grey level BASE + STEP * i
VFR_TIMES = [0, 0.04, 0.08, 0.30, 0.34, 0.38, 0.42, 0.80, 0.84, 0.88, 0.92, 0.96]  # uneven
ON_SCREEN = [0, 2, 2, 3, 5, 6, 6, 6, 7, 9]  # the VFR_TIMES frame shown at 0, 0.1, ... 0.9 s
QUALITY = {"libx264": {"crf": "10"}, "libvpx-vp9": {"crf": "10", "b": "0"}}  # else qmax 2


def numbered_frames(count: int, height: int = 32, width: int | None = None) -> np.ndarray:
    """``count`` frames (T, height, width, 3) uint8: frame i's top-left 16 x 16 block is grey
    level 16 + 3 i, on a fixed diagonal gradient (something for a resize to do)."""
    levels = BASE + STEP * np.arange(count)
    assert levels.max() < 256, "too many frames for distinct grey levels"
    y, x = np.mgrid[:height, :width or height]
    frames = np.empty((count, *y.shape, 3), np.uint8)
    frames[:] = (100 + 96 * (x + y) // (x.max() + y.max() + 1))[None, :, :, None]
    frames[:, :16, :16] = levels[:, None, None, None]
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The number each decoded frame encodes (tolerant of lossy coding)."""
    return [round((float(frame[4:12, 4:12].mean()) - BASE) / STEP) for frame in frames]


def write(path: Path, count: int = 40, *, fps: int = 25, codec: str = "libx264",
          container: str | None = None, options: dict[str, str] | None = None,
          b_frames: int | None = None, size: int = 32,
          muxer: dict[str, str] | None = None, times: list[float] | None = None) -> Path:
    """Write ``numbered_frames(count, size)`` with ``codec`` into ``container`` (by suffix if None);
    ``options`` go to the encoder, ``muxer`` to the container; ``times`` (seconds, one per
    frame) stamps the frames explicitly, in milliseconds (variable frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container, options=muxer or {}) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = QUALITY.get(codec, {"qmin": "1", "qmax": "2"}) | (options or {})
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for number, image in enumerate(numbered_frames(count, size)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[number] * 1000), Fraction(1, 1000)
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def garble_payload(path: Path, seed: int = 0, packets: list[int] | None = None) -> Path:
    """Overwrite the bytes of every packet (or of the ``packets`` numbered) with noise,
    keeping the container's index intact: the file probes as before, those do not decode.
    For MP4/MOV, whose packet positions are those of the payload."""
    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos >= 0]
    spans = spans if packets is None else [spans[i] for i in packets]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for position, size in spans:
        data[position:position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path
