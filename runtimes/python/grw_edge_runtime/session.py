"""One streaming session API for every backend.

    session.reset()
    embeddings = session.push(frame)   # a raw uint8 (H, W, 3) frame or a preprocessed one
    logits = session.classify()        # the head over the last N embeddings
    report = session.self_test()       # the artifact's own frames and expected outputs

A backend implements only how to run the step, the whole-clip model and the head;
preprocessing, input checks, the embedding window and the recovery from non-finite
results live here, once.  A bad frame is refused before it reaches the graph, and a step
that returns NaN or infinity leaves the states and the window as they were.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grw_edge_runtime.errors import InputShapeError, NonFiniteOutputError
from grw_edge_runtime.manifest import Manifest, read_manifest
from grw_edge_runtime.preprocess import preprocess

if TYPE_CHECKING:
    from grw_edge_runtime.selftest import SelfTestReport

RANGE_MARGIN = 1e-3  # preprocessed frames may leave [0, 1] by this much (resampling overshoot)
ON_NONFINITE = ("raise", "reset")


class StreamingSession(ABC):
    """Feeds an artifact frame by frame; subclasses run its graphs on one backend."""

    backend: str = ""

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 on_nonfinite: str = "raise") -> None:
        check_on_nonfinite(on_nonfinite)
        self.artifact = Path(artifact)
        self.manifest = manifest or read_manifest(self.artifact)
        self.on_nonfinite = on_nonfinite
        self.faults = 0  # steps whose results were not finite (and were dropped)
        self.window = self.manifest.frames_per_clip
        self._batch, self._resolution = self.manifest.batch, self.manifest.resolution
        # the fewest rows a step or the head may run (MultiStreamSession runs only the
        # slots in use where the graphs allow it); backends with fixed shapes keep _batch
        self._min_rows = self._batch
        self._step_frames = self.manifest.frames_per_step if self.streaming else 1
        preprocessing = self.manifest.input.get("preprocess", {})
        self._resize = int(preprocessing.get("resize", [self._resolution])[0])
        self._embeddings: deque[np.ndarray] = deque(maxlen=self.window)
        self._frames: deque[np.ndarray] = deque(maxlen=self.window)
        self._clip_embeddings: np.ndarray | None = None  # clip mode: for the frames held now

    @property
    def streaming(self) -> bool:
        return self.manifest.mode == "streaming"

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget every frame: initial states, empty window."""
        self._embeddings.clear()
        self._frames.clear()
        self._clip_embeddings = None
        if self.streaming:
            self._reset_states()

    def set_window(self, frames: int) -> None:
        """Classify over the last ``frames`` embeddings instead of the manifest's
        ``frames_per_clip`` (a model trained on shorter clips); empties the window."""
        if frames < 1:
            raise InputShapeError(f"the window needs at least one frame, got {frames}")
        self.window = frames
        self._embeddings = deque(maxlen=frames)
        self._frames = deque(maxlen=frames)

    def states(self) -> dict[str, np.ndarray]:
        """The current states as float32 arrays by state name (to check or persist them)."""
        if not self.streaming:
            return {}
        return {name: np.asarray(value, dtype=np.float32)
                for name, value in self._get_states().items()}

    def start_from(self, states: Mapping[str, np.ndarray]) -> None:
        """Continue a stream from ``states`` (float32 arrays by state name, as the PyTorch
        reference holds them) with an empty window; long-stream checks start here."""
        if not self.streaming:
            raise InputShapeError(f"{self.manifest.backbone} is a whole-clip backbone; it has "
                                  f"no states")
        self.reset()
        self._set_states({s.name: np.ascontiguousarray(states[s.name], dtype=np.float32)
                          for s in self.manifest.states})

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        """Feed one step of frames; return their embeddings (B, t, E).

        ``frame`` is raw uint8 (H, W, 3), (B, H, W, 3), (t, H, W, 3) or (B, t, H, W, 3),
        preprocessed here as the manifest says, or preprocessed float32 in [0, 1] of shape
        (3, R, R), (B, 3, R, R) or (B, 3, t, R, R).  A clip-mode (base) artifact only
        collects frames and returns None.  A frame that is refused, or a step whose results
        are not finite, leaves the session as it was.
        """
        frames = self._as_step_input(frame)
        if not self.streaming:
            self._frames.extend(np.split(frames, frames.shape[2], axis=2))
            self._clip_embeddings = None
            return None
        embeddings = self._run_step(frames)
        if not (np.isfinite(embeddings).all() and self._pending_states_finite()):
            self._nonfinite("the step")
            return None
        self._commit_states()
        for t in range(embeddings.shape[1]):
            self._embeddings.append(embeddings[:, t])
        return embeddings

    def classify(self) -> np.ndarray:
        """Logits (B, classes) of the head over the last N embeddings (fewer at the start)."""
        if self.streaming:
            if not self._embeddings:
                raise InputShapeError("push at least one frame before classify()")
            embeddings = np.stack(self._embeddings, axis=1)
        else:
            embeddings = self._held_clip_embeddings()
        logits = self._run_head(np.ascontiguousarray(embeddings, dtype=np.float32))
        if not np.isfinite(logits).all():
            self._nonfinite("the head")
        return logits

    def self_test(self, *, hashes: bool = True) -> SelfTestReport:
        """Run the artifact's self-test (its frames, expected outputs and tolerances) on
        this backend; checks every file's sha256 first unless ``hashes=False``."""
        from grw_edge_runtime.selftest import run_self_test

        return run_self_test(self, hashes=hashes)

    def embed_clip(self, frames: np.ndarray) -> np.ndarray:
        """Embeddings (B, N, E) of a preprocessed clip (B, 3, N, R, R): streamed step by step
        from the initial state, or in one call for clip-mode artifacts.  Resets the session."""
        self.reset()
        if not self.streaming:
            self.push(np.ascontiguousarray(frames, dtype=np.float32))
            return self._held_clip_embeddings()
        t = self._step_frames
        if frames.shape[2] % t:
            raise InputShapeError(f"a clip of {frames.shape[2]} frames cannot be fed in steps "
                                  f"of {t}")
        steps = [self.push(frames[:, :, i:i + t]) for i in range(0, frames.shape[2], t)]
        return np.concatenate(steps, axis=1)

    def _held_clip_embeddings(self) -> np.ndarray:
        """Clip mode: embeddings of the frames held now, computed once per change."""
        if not self._frames:
            raise InputShapeError("push at least one frame before classify()")
        if self._clip_embeddings is None:
            embeddings = self._run_clip(np.concatenate(self._frames, axis=2))
            if not np.isfinite(embeddings).all():
                self._nonfinite("the clip model")
            self._clip_embeddings = embeddings
        return self._clip_embeddings

    def _nonfinite(self, what: str) -> None:
        """Count a non-finite result; raise, or with ``on_nonfinite="reset"`` reset and warn."""
        self.faults += 1
        message = (f"{what} returned NaN or infinite values (fault {self.faults} of this "
                   f"session); ")
        if self.on_nonfinite == "reset":
            self.reset()
            warnings.warn(message + "the session was reset", RuntimeWarning, stacklevel=3)
            return
        raise NonFiniteOutputError(message + "the states and the window were kept as before "
                                   "the frame; push the next frame or reset()")

    # ------------------------------------------------------------------ backend hooks

    @abstractmethod
    def _reset_states(self) -> None:
        """Restore every state to its initial value."""

    @abstractmethod
    def _get_states(self) -> dict[str, np.ndarray]:
        """Every state's current value under its name."""

    @abstractmethod
    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        """Replace every state by the float32 value given under its name."""

    def _rows_for(self, count: int) -> int:
        """How many rows a step or head call runs to serve the first ``count`` rows."""
        return min(max(count, self._min_rows), self._batch)

    @abstractmethod
    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        """(B, 3, t, R, R) float32 -> embeddings (B, t, E); the next states stay pending
        until :meth:`_commit_states`.  Backends whose ``_min_rows`` is below the batch also
        take the first rows alone (b, 3, t, R, R), b >= ``_min_rows``: the others' states
        are then left as they were, and their pending ones undefined."""

    @abstractmethod
    def _pending_states_finite(self) -> bool:
        """Whether every next state of the last step is finite."""

    @abstractmethod
    def _commit_states(self) -> None:
        """Make the last step's next states the current ones."""

    def _pending_rows_finite(self) -> np.ndarray:
        """(B,) whether each stream's results of the last step are finite (backends that
        know it per stream override this; by default the whole batch shares one answer)."""
        return np.full(self._batch, self._pending_states_finite())

    def _commit_rows(self, accepted: np.ndarray) -> None:
        """Commit the last step's next states in the rows ``accepted`` (B,) marks; the other
        rows keep their states (by default through the states by name, on the host)."""
        if accepted.all():
            self._commit_states()
            return
        old = self._get_states()
        self._commit_states()
        self._set_states({name: np.where(row_mask(accepted, value), value, old[name])
                          for name, value in self._get_states().items()})

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Initial states in the rows ``rows`` (B,) marks (by default on the host)."""
        init = {s.name: float(s.init) for s in self.manifest.states}
        self._set_states({name: np.where(row_mask(rows, value), init[name], value)
                          for name, value in self._get_states().items()})

    @abstractmethod
    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        """(B, 3, N, R, R) float32 -> embeddings (B, N, E) (clip-mode artifacts)."""

    @abstractmethod
    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, N, E) float32 -> logits (B, classes)."""

    # ------------------------------------------------------------------ input checks

    def _as_step_input(self, frame: np.ndarray, batch: int | None = None) -> np.ndarray:
        """``frame`` checked and preprocessed to (B, 3, t, R, R) float32 (B: ``batch``, by
        default the session's)."""
        array = np.asarray(frame)
        if array.size == 0:
            raise InputShapeError(f"empty frame of shape {array.shape}: every dimension must "
                                  f"be at least 1")
        b, r, t = batch or self._batch, self._resolution, self._step_frames
        if array.dtype == np.uint8:  # preprocessed here: finite and in [0, 1] by construction
            array = self._preprocess_raw(array, b)
        elif array.dtype != np.float32:
            raise InputShapeError(f"frames must be uint8 (raw) or float32 (preprocessed), "
                                  f"got {array.dtype}")
        else:
            _check_values(array)
        if array.ndim == 3:
            array = array[None]
        if array.ndim == 4:
            array = array[:, :, None]
        if not self.streaming and array.ndim == 5:
            t = array.shape[2]  # a clip-mode artifact takes any number of frames
        expected = (b, 3, t, r, r)
        if array.shape != expected:
            raise InputShapeError(f"expected a preprocessed frame of shape {expected} "
                                  f"(or (3, {r}, {r}) for batch 1), got {array.shape}")
        return np.ascontiguousarray(array)

    def _preprocess_raw(self, array: np.ndarray, b: int) -> np.ndarray:
        """Raw uint8 frames -> (b, 3, t, R, R) float32, as the manifest's preprocessing says."""
        t = self._step_frames
        if array.ndim == 3 and b * t == 1:
            array = array[None, None]
        elif array.ndim == 4 and t == 1 and array.shape[0] == b:
            array = array[:, None]
        elif array.ndim == 4 and b == 1 and array.shape[0] == t:
            array = array[None]
        if array.ndim != 5 or array.shape[:2] != (b, t) or array.shape[-1] != 3:
            wanted = ("(H, W, 3)" if b * t == 1 else f"({b}, H, W, 3)" if t == 1
                      else f"({t}, H, W, 3)" if b == 1 else f"({b}, {t}, H, W, 3)")
            raise InputShapeError(f"raw frames must be uint8 {wanted}, got {array.shape}")
        frames = preprocess(array, resize=self._resize, crop=self._resolution)
        return frames.transpose(0, 2, 1, 3, 4)  # (B, t, 3, R, R) -> (B, 3, t, R, R)


def check_on_nonfinite(policy: str) -> None:
    """A one-line error unless ``policy`` is one of ``ON_NONFINITE``."""
    if policy not in ON_NONFINITE:
        raise InputShapeError(f"on_nonfinite must be one of {ON_NONFINITE}, got {policy!r}")


def row_mask(mask: np.ndarray, value: np.ndarray) -> np.ndarray:
    """A (B,) row mask shaped to broadcast over ``value`` (B, ...)."""
    return mask.reshape(-1, *([1] * (value.ndim - 1)))


def _check_values(array: np.ndarray) -> None:
    """Preprocessed frames must be finite and within [0, 1] (up to ``RANGE_MARGIN``)."""
    low, high = float(array.min()), float(array.max())  # NaN propagates through both
    if low >= -RANGE_MARGIN and high <= 1 + RANGE_MARGIN:
        return
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputShapeError("the frame holds NaN or infinite values; it was not used")
    raise InputShapeError(f"float frames must be in [0, 1], got values in [{low:.4g}, "
                          f"{high:.4g}]: divide uint8 pixels by 255 (or push the raw uint8 "
                          f"frame)")
