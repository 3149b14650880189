"""Predictions for one video: top-k labels of a clip, or a running prediction per frame."""
from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from grw_edge.data.video import frame_times, probe_video, read_frames, resample
from grw_edge.errors import InputShapeError
from grw_edge.preprocess import ClipProtocol, preprocess_frames


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


def stream_video(push, classify, video: str | Path, protocol: ClipProtocol,
                 classes: list[str], k: int = 1) -> Iterator[Prediction]:
    """Feed the sampled frames one at a time and yield the running prediction after each;
    a chosen frame that did not decode is skipped, and listed in the ``lost`` of the next
    prediction (of the last one, if none follows)."""
    frames, times, lost = sampled_frames(video, protocol, allow_lost=True)
    for t, frame in enumerate(frames):
        push(frame.numpy())
        lower = times[t - 1] if t else -np.inf
        upper = np.inf if t == len(frames) - 1 else times[t]
        yield top_k(classify()[0], classes, k, t + 1, float(times[t]),
                    lost[(lost > lower) & (lost < upper)])
