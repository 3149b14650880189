"""One streaming session API for every backend.

    session.reset()
    embeddings = session.push(frame)   # a raw uint8 (H, W, 3) frame or a preprocessed one
    logits = session.classify()        # the head over the last N embeddings

A backend implements only how to run the step, the whole-clip model and the head;
preprocessing, shape checks and the embedding window live here, once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from grw_edge.errors import InputShapeError
from grw_edge.manifest import Manifest, read_manifest
from grw_edge.preprocess import preprocess_frames


class StreamingSession(ABC):
    """Feeds an artifact frame by frame; subclasses run its graphs on one backend."""

    backend: str = ""

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None) -> None:
        self.artifact = Path(artifact)
        self.manifest = manifest or read_manifest(self.artifact)
        self.window = self.manifest.frames_per_clip
        shape = self.manifest.input["shape"]  # (B, 3, t, R, R)
        self._batch, self._resolution = int(shape[0]), int(shape[-1])
        self._step_frames = int(shape[2]) if self.streaming else 1
        preprocess = self.manifest.input.get("preprocess", {})
        self._resize = int(preprocess.get("resize", [self._resolution])[0])
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

        ``frame`` is raw uint8 (H, W, 3) or (B, H, W, 3), preprocessed here as the manifest
        says, or preprocessed float32 (3, R, R), (B, 3, R, R) or (B, 3, t, R, R).  A
        clip-mode (base) artifact only collects frames and returns None.
        """
        frames = self._as_step_input(frame)
        if not self.streaming:
            self._frames.extend(np.split(frames, frames.shape[2], axis=2))
            self._clip_embeddings = None
            return None
        embeddings = self._run_step(frames)
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
        return self._run_head(np.ascontiguousarray(embeddings, dtype=np.float32))

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
            self._clip_embeddings = self._run_clip(np.concatenate(self._frames, axis=2))
        return self._clip_embeddings

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

    @abstractmethod
    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        """(B, 3, t, R, R) float32 -> embeddings (B, t, E); advances the states."""

    @abstractmethod
    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        """(B, 3, N, R, R) float32 -> embeddings (B, N, E) (clip-mode artifacts)."""

    @abstractmethod
    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, N, E) float32 -> logits (B, classes)."""

    # ------------------------------------------------------------------ input checks

    def _as_step_input(self, frame: np.ndarray) -> np.ndarray:
        array = np.asarray(frame)
        b, r, t = self._batch, self._resolution, self._step_frames
        if array.dtype == np.uint8:
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4 or array.shape[0] != b or array.shape[-1] != 3:
                wanted = "(H, W, 3)" if b == 1 else f"({b}, H, W, 3)"
                raise InputShapeError(f"raw frames must be uint8 {wanted}, got {array.shape}")
            if t != 1:
                raise InputShapeError(f"this artifact takes {t} frames per step: push "
                                      f"preprocessed float32 (B, 3, {t}, {r}, {r}) frames")
            array = preprocess_frames(array, resize=self._resize, crop=r).numpy()
        if array.dtype != np.float32:
            raise InputShapeError(f"frames must be uint8 (raw) or float32 (preprocessed), "
                                  f"got {array.dtype}")
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
