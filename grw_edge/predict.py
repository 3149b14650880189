"""Predictions for one video: top-k labels of a clip, or a running prediction per frame."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def top_k(logits: np.ndarray, classes: list[str], k: int, frames: int, seconds: float
          ) -> Prediction:
    probabilities = torch.from_numpy(np.asarray(logits, np.float32)).softmax(-1)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return Prediction([classes[i] for i in indices.tolist()], values.tolist(), frames, seconds)


def sampled_frames(video: str | Path, protocol: ClipProtocol) -> tuple[torch.Tensor, np.ndarray]:
    """The video's frames at the protocol's fps (at most N of them), transformed, with their
    presentation times in seconds from the first frame: (T, 3, R, R) and (T,)."""
    info = probe_video(video)
    indices = resample(info.num_frames, info.fps, protocol.fps, sampling=protocol.sampling,
                       times=info.times)[:protocol.frames]
    if len(indices) == 0:
        raise InputShapeError(f"{video} has no frames to classify")
    # each frame is resized as it decodes: memory follows the model's input, not the source
    frames = read_frames(video, indices, stack=torch.stack, transform=functools.partial(
        preprocess_frames, resize=protocol.resize, crop=protocol.crop))
    return frames, frame_times(info.num_frames, info.fps, info.times)[indices]


def predict_video(predict, video: str | Path, protocol: ClipProtocol, classes: list[str],
                  k: int = 5) -> Prediction:
    """Top-k of the first clip (fewer than N frames if the video is shorter)."""
    frames, times = sampled_frames(video, protocol)
    return top_k(predict(frames[None])[0], classes, k, len(frames), float(times[-1]))


def stream_video(push, classify, video: str | Path, protocol: ClipProtocol,
                 classes: list[str], k: int = 1) -> Iterator[Prediction]:
    """Feed the sampled frames one at a time and yield the running prediction after each."""
    frames, times = sampled_frames(video, protocol)
    for t, frame in enumerate(frames):
        push(frame.numpy())
        yield top_k(classify()[0], classes, k, t + 1, float(times[t]))
