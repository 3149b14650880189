"""Core ML session (macOS): the artifact's ``.mlpackage`` step and head.

Explicit-state packages get the states as inputs and return the next ones, which the
session hands back on the next step; stateful packages (iOS 18 / macOS 15) keep them in a
Core ML state object that ``reset()`` replaces.  That object is updated in place and
cannot be rolled back, so a non-finite step of a stateful package resets the states.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from grw_edge_runtime.errors import BackendUnavailableError
from grw_edge_runtime.manifest import Manifest
from grw_edge_runtime.session import StreamingSession

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


class CoreMLSession(StreamingSession):
    """Runs a Core ML artifact with coremltools' predictor (macOS only)."""

    backend = "coreml"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "ALL",
                 on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        if platform.system() != "Darwin":
            raise BackendUnavailableError(
                "Core ML models run only on macOS; on this machine verify the ONNX artifact, "
                "or run grw-edge verify on a Mac")
        try:
            import coremltools as ct
        except ImportError:
            raise BackendUnavailableError("the coreml backend needs coremltools: "
                                          "pip install 'grw-edge[coreml]'") from None
        if device not in COMPUTE_UNITS:
            raise BackendUnavailableError(f"unknown Core ML compute units {device!r}; choose "
                                          f"one of: {', '.join(COMPUTE_UNITS)}")
        units = getattr(ct.ComputeUnit, device)
        self._step = ct.models.MLModel(str(self.artifact / self.manifest.step["file"]),
                                       compute_units=units)
        self._head = ct.models.MLModel(str(self.artifact / self.manifest.head["file"]),
                                       compute_units=units)
        self._stateful = bool(self.manifest.step.get("stateful"))
        self._states: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        self._state = None
        self.reset()

    def _reset_states(self) -> None:
        if self._stateful:
            self._state = self._step.make_state()
        else:
            self._states = {s.input: np.full(s.shape, s.init, dtype=np.float32)
                            for s in self.manifest.states}

    def _get_states(self) -> dict[str, np.ndarray]:
        if self._stateful:
            return {s.name: self._state.read_state(s.input) for s in self.manifest.states}
        return {s.name: self._states[s.input] for s in self.manifest.states}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        if self._stateful:  # Core ML state tensors are float16
            for s in self.manifest.states:
                self._state.write_state(s.input, states[s.name].astype(np.float16))
        else:
            self._states = {s.input: states[s.name] for s in self.manifest.states}

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        feed = {self.manifest.input["name"]: frames}
        if self._stateful:
            results = self._step.predict(feed, state=self._state)
        else:
            results = self._step.predict({**feed, **self._states})
            self._pending = {s.input: np.asarray(results[s.output], dtype=np.float32)
                             for s in self.manifest.states}
        return np.asarray(results[self.manifest.step["outputs"]["embeddings"]], np.float32)

    def _pending_states_finite(self) -> bool:
        if self._stateful:  # the states are not readable; the embeddings stand for them
            return True
        return all(np.isfinite(value).all() for value in self._pending.values())

    def _commit_states(self) -> None:
        if not self._stateful:
            self._states = self._pending

    def _nonfinite(self, what: str) -> None:
        if self._stateful:  # updated in place already: the old states are gone
            self._reset_states()
        super()._nonfinite(what)

    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        results = self._step.predict({self.manifest.input["name"]: frames})
        return np.asarray(results[self.manifest.step["outputs"]["embeddings"]], np.float32)

    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        results = self._head.predict({self.manifest.head["input"]: embeddings})
        return np.asarray(results[self.manifest.head["output"]], np.float32)
