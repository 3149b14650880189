"""Predictions for videos: top-k labels of a clip, or a running prediction per frame (many
videos at once through a multi-stream session, as camera streams)."""
from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from grw_edge.data.video import frame_times, probe_video, read_frames, resample
from grw_edge.errors import GrwEdgeError, InputShapeError
from grw_edge.preprocess import ClipProtocol, preprocess_frames
from grw_edge_runtime import MultiStreamSession


@dataclass(frozen=True)
class Prediction:
    """The k most likely labels with their probabilities; ``frames`` is how many were seen."""

    labels: list[str]
    probabilities: list[float]
    frames: int
    seconds: float  # position in the video of the last frame used
    lost: tuple[float, ...] = ()  # times of chosen frames that did not decode (left out)


class SampledFrames(NamedTuple):
    """A video's chosen frames, transformed, and where they are."""

    frames: torch.Tensor  # (T, 3, R, R)
    times: np.ndarray  # (T,) presentation times in seconds from the first frame
    lost: np.ndarray  # times of chosen frames that did not decode (only with allow_lost)


def top_k(logits: np.ndarray, classes: list[str], k: int, frames: int, seconds: float,
          lost: Sequence[float] = ()) -> Prediction:
    probabilities = torch.from_numpy(np.asarray(logits, np.float32)).softmax(-1)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return Prediction([classes[i] for i in indices.tolist()], values.tolist(), frames, seconds,
                      tuple(float(t) for t in lost))


def sampled_frames(video: str | Path, protocol: ClipProtocol, *, allow_lost: bool = False
                   ) -> SampledFrames:
    """The video's frames at the protocol's fps (at most N of them), transformed, with their
    presentation times; a chosen frame that does not decode raises VideoDecodeError, or with
    ``allow_lost`` is left out and its time listed in ``lost``."""
    info = probe_video(video)
    indices = resample(info.num_frames, info.fps, protocol.fps, sampling=protocol.sampling,
                       times=info.times)[:protocol.frames]
    if len(indices) == 0:
        raise InputShapeError(f"{video} has no frames to classify")
    missing: list[int] | None = [] if allow_lost else None
    # each frame is resized as it decodes: memory follows the model's input, not the source
    frames = read_frames(video, indices, stack=torch.stack, missing=missing,
                         transform=functools.partial(preprocess_frames, resize=protocol.resize,
                                                     crop=protocol.crop))
    times, lost = frame_times(info.num_frames, info.fps, info.times), sorted(missing or ())
    return SampledFrames(frames, times[[i for i in indices if i not in lost]], times[lost])


def predict_video(predict, video: str | Path, protocol: ClipProtocol, classes: list[str],
                  k: int = 5) -> Prediction:
    """Top-k of the first clip (fewer than N frames if the video is shorter, or if some do
    not decode: those are listed in ``lost``)."""
    frames, times, lost = sampled_frames(video, protocol, allow_lost=True)
    return top_k(predict(frames[None])[0], classes, k, len(frames), float(times[-1]), lost)


def stream_videos(streams: MultiStreamSession, videos: Sequence[str | Path],
                  protocol: ClipProtocol, classes: list[str], k: int = 1
                  ) -> Iterator[tuple[str | Path, Prediction | GrwEdgeError]]:
    """Videos as camera streams of one multi-stream session: each video takes a free slot,
    every tick feeds one sampled frame of each live video in one batched step and yields
    (video, running prediction) per live video; a finished video's slot goes to the next.
    A chosen frame that did not decode is skipped and listed in the ``lost`` of the next
    prediction (of the last one, if none follows).  A video that cannot be read, or whose
    step fails, yields (video, error) and leaves; the others go on."""
    waiting = deque(videos)
    live: dict[int, tuple[str | Path, SampledFrames]] = {}
    played: dict[int, int] = {}  # frames fed so far, per stream
    while waiting or live:
        while waiting and len(live) < streams.slots:
            video = waiting.popleft()
            try:
                sampled = sampled_frames(video, protocol, allow_lost=True)
            except GrwEdgeError as error:
                yield video, error
                continue
            stream = streams.join()
            live[stream], played[stream] = (video, sampled), 0
        if not live:
            return
        results = streams.push({stream: sampled.frames[played[stream]].numpy()
                                for stream, (_, sampled) in live.items()})
        logits = streams.classify_many(
            [stream for stream, result in results.items() if isinstance(result, np.ndarray)])
        for stream, result in results.items():
            (video, (frames, times, lost)), t = live[stream], played[stream]
            played[stream] += 1
            if stream in logits:
                yield video, top_k(logits[stream], classes, k, t + 1, float(times[t]),
                                   _lost_with(times, lost, t))
            else:
                yield video, result  # the error of its frame or step
            if stream not in logits or played[stream] == len(frames):
                streams.leave(stream)
                del live[stream], played[stream]


def _lost_with(times: np.ndarray, lost: np.ndarray, t: int) -> np.ndarray:
    """The lost frames reported with the prediction after frame ``t``: those between the
    frame before it and it (and, after the last frame, those after it too)."""
    lower = times[t - 1] if t else -np.inf
    upper = np.inf if t == len(times) - 1 else times[t]
    return lost[(lost > lower) & (lost < upper)]
