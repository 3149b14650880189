"""Many streams on one session: fixed batch slots that streams join and leave.

    streams = MultiStreamSession(session)      # a session whose batch is the number of slots
    a = streams.join()                          # a stream id; its slot starts from the initial states
    out = streams.push({a: frame_a, b: frame_b})   # one batched step for every live stream
    logits = streams.classify(a)
    every = streams.classify_many()             # {id: logits}, the head batched over streams
    streams.leave(a)
    report = streams.self_test()               # the artifact's self-test in a free slot

Each stream keeps its own states (a row of the batch), embedding window, fault count and
``on_nonfinite`` policy: a bad frame or a non-finite result touches only its stream, whose
entry in the tick's results is then the error (or None after a reset), while the others
go on.  A live stream without a frame in a tick keeps its states.  Every stream's
embeddings equal what it would get alone (tests/test_streams.py).  A stream takes the
lowest free slot, and where the graphs take a dynamic batch (``export --dynamic-batch``) a
tick runs only the rows up to the highest slot in use.
"""
from __future__ import annotations

import itertools
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from grw_edge_runtime.errors import (
    ArtifactError,
    GrwEdgeError,
    InputShapeError,
    NonFiniteOutputError,
)
from grw_edge_runtime.selftest import SelfTestReport, run_self_test, self_test_steps
from grw_edge_runtime.session import StreamingSession, check_on_nonfinite


@dataclass
class Stream:
    """One stream's slot, window, policy and fault count."""

    slot: int
    window: deque
    on_nonfinite: str = "raise"
    faults: int = 0


class MultiStreamSession:
    """Serves up to ``session``'s batch streams, one batched step per :meth:`push`."""

    def __init__(self, session: StreamingSession) -> None:
        if not session.streaming:
            raise InputShapeError(f"{session.manifest.backbone} is a whole-clip backbone; "
                                  f"streams need a streaming artifact")
        self.session = session
        self.slots = session._batch
        self.streams: dict[int, Stream] = {}
        self._ids = itertools.count()
        shape = (self.slots, 3, session._step_frames, session._resolution, session._resolution)
        self._frames = np.zeros(shape, np.float32)

    def join(self, on_nonfinite: str = "raise") -> int:
        """A new stream in a free slot, from the initial states; returns its id."""
        check_on_nonfinite(on_nonfinite)
        used = {stream.slot for stream in self.streams.values()}
        free = next((slot for slot in range(self.slots) if slot not in used), None)
        if free is None:
            raise InputShapeError(f"all {self.slots} slots hold a stream; leave() one first or "
                                  f"open the session with a larger batch")
        stream_id = next(self._ids)
        self.streams[stream_id] = Stream(free, deque(maxlen=self.session.window), on_nonfinite)
        self.reset(stream_id)
        return stream_id

    def leave(self, stream_id: int) -> None:
        """Free the stream's slot."""
        self._stream(stream_id)
        del self.streams[stream_id]

    def reset(self, stream_id: int) -> None:
        """The stream's initial states and an empty window; the others are untouched."""
        stream = self._stream(stream_id)
        stream.window.clear()
        rows = np.zeros(self.slots, bool)
        rows[stream.slot] = True
        self.session._reset_rows(rows)

    def push(self, frames: Mapping[int, np.ndarray]) -> dict[int, np.ndarray | GrwEdgeError | None]:
        """One batched step: each stream's frame (as ``StreamingSession.push`` takes for batch
        1) -> its embeddings (t, E), or the error its frame or result raised."""
        results: dict[int, np.ndarray | GrwEdgeError | None] = {}
        accepted = np.zeros(self.slots, bool)
        for stream_id, frame in frames.items():
            stream = self._stream(stream_id)
            try:
                self._frames[stream.slot] = self.session._as_step_input(frame, batch=1)[0]
            except InputShapeError as error:
                results[stream_id] = error
                continue
            accepted[stream.slot] = True
        if not accepted.any():
            return results
        live = [stream.slot for stream in self.streams.values()]
        rows = self.session._rows_for(1 + max(live))
        embeddings = self.session._run_step(self._frames[:rows])
        finite = self.session._pending_rows_finite().copy()
        finite[:rows] &= np.isfinite(embeddings).reshape(rows, -1).all(axis=1)
        # rows to keep: live streams without an accepted frame, and non-finite results;
        # free slots take whatever came, so a full tick commits all rows at once
        free = np.ones(self.slots, bool)
        free[live] = False
        self.session._commit_rows(np.where(accepted, finite, free))
        for stream_id in frames:
            stream = self.streams[stream_id]
            if stream_id in results:
                continue
            if not finite[stream.slot]:
                results[stream_id] = self._nonfinite(stream_id)
                continue
            stream.window.extend(embeddings[stream.slot])
            results[stream_id] = embeddings[stream.slot]
        return results

    def classify(self, stream_id: int) -> np.ndarray:
        """Logits (classes,) of the head over the stream's last N embeddings."""
        return self.classify_many([stream_id])[stream_id]

    def classify_many(self, stream_ids: Iterable[int] | None = None) -> dict[int, np.ndarray]:
        """Logits (classes,) of each stream (default: every live one), the head run once
        per group of streams with as many embeddings in their windows."""
        ids = list(self.streams if stream_ids is None else stream_ids)
        groups: dict[int, list[int]] = {}
        for stream_id in ids:
            stream = self._stream(stream_id)
            if not stream.window:
                raise InputShapeError(f"push at least one frame of stream {stream_id} before "
                                      f"classify()")
            groups.setdefault(len(stream.window), []).append(stream_id)
        logits = {}
        for group in groups.values():
            for start in range(0, len(group), self.slots):
                chunk = group[start:start + self.slots]
                windows = np.stack([np.stack(self.streams[i].window) for i in chunk])
                rows = self.session._rows_for(len(chunk))  # a fixed batch: pad with copies
                padded = np.concatenate([windows, np.repeat(windows[:1], rows - len(chunk), 0)])
                out = self.session._run_head(np.ascontiguousarray(padded, dtype=np.float32))
                logits.update(zip(chunk, out))
        return {stream_id: logits[stream_id] for stream_id in ids}

    def self_test(self, *, hashes: bool = True) -> SelfTestReport:
        """The artifact's self-test as a stream of its own in a free slot: the live streams'
        states and windows are untouched (they only wait out its ticks)."""
        return run_self_test(self.session, hashes=hashes, run=self._self_test_in_a_slot)

    def _self_test_in_a_slot(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stream_id = self.join()
        try:
            steps = []
            for chunk in self_test_steps(self.session, frames):
                result = self.push({stream_id: chunk[None]})[stream_id]
                if not isinstance(result, np.ndarray):
                    raise result or ArtifactError("a step returned non-finite values")
                steps.append(result)
            return np.concatenate(steps)[None], self.classify(stream_id)[None]
        finally:
            self.leave(stream_id)

    def states(self, stream_id: int) -> dict[str, np.ndarray]:
        """The stream's states (its row) as float32 arrays by name, batch axis kept."""
        slot = self._stream(stream_id).slot
        return {name: value[slot:slot + 1] for name, value in self.session.states().items()}

    def _stream(self, stream_id: int) -> Stream:
        if stream_id not in self.streams:
            raise InputShapeError(f"no live stream {stream_id}; join() first")
        return self.streams[stream_id]

    def _nonfinite(self, stream_id: int) -> NonFiniteOutputError | None:
        """A stream's non-finite result under its policy: reset it and warn, or return the
        error (its states were kept as before the frame)."""
        stream = self.streams[stream_id]
        stream.faults += 1
        message = (f"stream {stream_id}: the step returned NaN or infinite values (fault "
                   f"{stream.faults} of this stream); ")
        if stream.on_nonfinite == "reset":
            self.reset(stream_id)
            warnings.warn(message + "the stream was reset", RuntimeWarning, stacklevel=3)
            return None
        return NonFiniteOutputError(message + "its states and window were kept as before the "
                                    "frame")
