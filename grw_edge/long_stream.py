"""``grw-edge eval --long-stream``: a test split played as one continuous camera stream.

The released models were trained and evaluated on clips from fresh states.  Here the test
videos are concatenated (shuffled, so the class changes at every boundary) and streamed
frame by frame through each stream policy of ``grw_edge_runtime.policies``; after every
frame the policy classifies.  Reported per policy: the accuracy of the prediction N frames
after each video boundary (N = the head window, as a clip evaluation would see it), that
accuracy over the course of the stream (does it decay as the states age?), the accuracy of
every frame, and what the policy costs.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grw_edge._progress import progress
from grw_edge.data.kinetics import DatasetError, build_index
from grw_edge.errors import GrwEdgeError
from grw_edge.evaluate import label_map
from grw_edge.predict import sampled_frames
from grw_edge.preprocess import ClipProtocol

SEGMENTS = 4  # the stream's course is reported in this many equal parts


@dataclass
class PolicyScores:
    """How one policy did on the stream."""

    policy: str
    after_boundary: float  # accuracy N frames after each boundary
    by_segment: list[float]  # the same, per quarter of the stream
    every_frame: float
    steps_per_frame: int
    ms_per_frame: float


@dataclass
class LongStreamReport:
    frames: int
    videos: int
    window: int
    scores: list[PolicyScores]
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def stream_of_videos(root: str, split: str, protocol: ClipProtocol, *, repeat: int = 1,
                     seed: int = 0) -> tuple[list[tuple[int, torch.Tensor]], list[str], list[dict]]:
    """Every video of the split at the protocol's fps and crop, in shuffled order (each of
    ``repeat`` passes reshuffled): ([(label, frames (T, 3, R, R))], classes, unreadable
    [{"path", "reason"}]).  A video that cannot be used is skipped and listed, never fatal."""
    index = build_index(root, split)
    whole = protocol.override(frames=10**9)
    videos, unreadable = [], list(index.failed)
    for video in index.videos:
        try:
            frames = sampled_frames(Path(root) / split / video["path"], whole).frames
        except GrwEdgeError as error:  # undecodable, no frames, no timestamps, ...
            unreadable.append({"path": video["path"], "reason": str(error)})
            continue
        videos.append((int(video["label"]), frames))
    if not videos:
        listed = ", ".join(f"{f['path']} ({f['reason']})" for f in unreadable[:5])
        raise DatasetError(f"no readable video in {root}/{split}"
                           + (f": {listed}" if unreadable else ""))
    order = random.Random(seed)
    stream = []
    for _ in range(repeat):
        shuffled = list(videos)
        order.shuffle(shuffled)
        stream.extend(shuffled)
    return stream, index.classes, unreadable


def evaluate_long_stream(stream: Sequence[tuple[int, torch.Tensor]],
                         policies: dict[str, object], dataset_classes: Sequence[str],
                         model_classes: Sequence[str], window: int) -> LongStreamReport:
    """Play ``stream`` through every policy (each: reset, push, classify, steps_per_frame)
    and score the running predictions."""
    mapping = label_map(dataset_classes, model_classes)
    for policy in policies.values():
        policy.reset()
    total = sum(len(frames) for _, frames in stream)
    hits: dict[str, list[bool]] = {name: [] for name in policies}  # per frame: correct?
    marks = []  # positions of the frames N frames after a boundary
    seconds = dict.fromkeys(policies, 0.0)
    frames = progress(_frames(stream), desc="long stream", total=total, unit="frame")
    for position, (label, offset, frame) in enumerate(frames):
        target = int(mapping[label])
        for name, policy in policies.items():
            start = time.perf_counter()
            policy.push(frame)
            logits = policy.classify()
            seconds[name] += time.perf_counter() - start
            hits[name].append(int(np.argmax(logits[0])) == target)
        if offset == window - 1:
            marks.append(position)
    scores = []
    for name, policy in policies.items():
        correct = np.asarray(hits[name])
        at_marks = correct[marks] if marks else np.zeros(0, bool)
        parts = np.array_split(np.asarray(marks, int), SEGMENTS)
        scores.append(PolicyScores(
            name, _mean(at_marks), [_mean(correct[part]) for part in parts],
            _mean(correct), policy.steps_per_frame, 1000 * seconds[name] / max(total, 1)))
    return LongStreamReport(total, len(stream), window, scores)


def _frames(stream: Sequence[tuple[int, torch.Tensor]]) -> Iterator[tuple[int, int, np.ndarray]]:
    """(label, offset in its video, preprocessed frame (3, R, R)) of every frame, in order."""
    for label, frames in stream:
        for offset, frame in enumerate(frames.numpy()):
            yield label, offset, frame


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def open_policies(names: Sequence[str], open_session: Callable[[], object]) -> dict[str, object]:
    """The named policies (``grw_edge_runtime.policies``) over fresh sessions."""
    try:
        from grw_edge_runtime.policies import make_policy
    except ImportError:
        raise GrwEdgeError("stream policies come with the device runtime: pip install "
                           "grw-edge-runtime (runtimes/python)") from None
    return {name: make_policy(name, open_session) for name in names}
