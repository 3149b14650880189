"""LiteRT session: the artifact's ``.tflite`` step and head on LiteRT's CPU path (XNNPACK).

The streaming step runs as a LiteRT ``CompiledModel`` over two sets of state buffers made
by LiteRT itself: a step reads one set and writes the other, and the roles swap once its
results are found finite, so between frames the states stay in LiteRT's buffers and are
never copied through Python.  The head, and the
whole-clip model of a base backbone, run through the interpreter's signature runner.
LiteRT graphs have static shapes: the head takes a window of ``head.shape[1]`` embeddings
and a mask marking the rows that hold frames (the session pads the window), and a
whole-clip model takes exactly that many frames.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import math
import os
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from grw_edge_runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    GrwEdgeError,
    InputShapeError,
)
from grw_edge_runtime.manifest import Manifest
from grw_edge_runtime.session import StreamingSession


_libc = ctypes.CDLL(None)


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native code writes straight to file descriptors 1 and 2: LiteRT logs at
    INFO level whenever it creates or releases an environment, with no setting to lower it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        _libc.fflush(None)  # what C stdio still buffers goes to the sink, not the terminal
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def quiet_exit() -> None:
    """For command-line programs: keep the terminal free of what native code prints while
    the process ends (LiteRT logs the release of its global environment from a C++ static
    destructor, after Python's own shutdown).  Registered first, so it runs last."""
    def mute() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)

    atexit.register(mute)


def _release(native: SimpleNamespace) -> None:
    """Drop every LiteRT object of a session, quietly (see :func:`quiet_native_output`)."""
    with quiet_native_output():
        vars(native).clear()


class LiteRTSession(StreamingSession):
    """Runs a LiteRT artifact on the CPU; ``threads`` = XNNPACK threads (default: LiteRT's
    choice)."""

    backend = "litert"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        try:
            from ai_edge_litert import compiled_model, cpu_options, environment, options
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BackendUnavailableError("the litert backend needs ai-edge-litert: "
                                          "pip install 'grw-edge-runtime[litert]'") from None
        # every LiteRT object lives here, released quietly with the session or at exit
        self._native = native = SimpleNamespace()
        weakref.finalize(self, _release, native)
        with quiet_native_output():
            native.head = self._runner(Interpreter, self.manifest.head, threads)
            if not self.streaming:
                native.clip = self._runner(Interpreter, self.manifest.step, threads)
            else:
                native.environment = environment.Environment.create()
                settings = options.Options(
                    hardware_accelerators=HardwareAccelerator.CPU,
                    cpu_options=cpu_options.CpuOptions(num_threads=threads or 0))
                path = self.artifact / self.manifest.step["file"]
                try:
                    native.step = compiled_model.CompiledModel.from_file(
                        str(path), environment=native.environment, options=settings)
                except RuntimeError as error:
                    raise ArtifactError(f"{path} cannot be loaded by LiteRT: "
                                        f"{_first_line(error)}") from None
                self._bind_step()
            self.reset()  # the first buffer write makes LiteRT's global environment: quietly

    def _runner(self, interpreter, graph: dict, threads: int | None):
        """A signature runner for ``graph`` (a manifest entry naming a file and signature)."""
        path = self.artifact / graph["file"]
        try:
            return interpreter(model_path=str(path),
                               num_threads=threads).get_signature_runner(graph["signature"])
        except (RuntimeError, ValueError) as error:
            raise ArtifactError(f"{path} cannot be loaded by LiteRT: "
                                f"{_first_line(error)}") from None

    def _bind_step(self) -> None:
        """Buffers for the frame, the embeddings and two state sets, and the two calls that
        read one set and write the other."""
        native, manifest = self._native, self.manifest
        key = manifest.step["signature"]
        signature = native.step.get_signature_list().get(key)
        if signature is None:
            raise ArtifactError(f"{self.artifact / manifest.step['file']} has no signature "
                                f"{key!r}; re-export the artifact")
        inputs, outputs = signature["inputs"], signature["outputs"]
        expected_in = [manifest.input["name"], *(s.input for s in manifest.states)]
        expected_out = [manifest.step["outputs"]["embeddings"],
                        *(s.output for s in manifest.states)]
        missing = ([n for n in expected_in if n not in inputs]
                   + [n for n in expected_out if n not in outputs])
        if missing or len(inputs) != len(expected_in):
            problem = (f"no tensor {missing[0]!r}" if missing
                       else f"{len(inputs)} inputs, the manifest names {len(expected_in)}")
            raise ArtifactError(f"{self.artifact}: the manifest does not match "
                                f"{manifest.step['file']} ({problem}); re-export the artifact")
        details = native.step.get_input_tensor_details(key)
        for state in manifest.states:
            shape = list(details[state.input]["shape"])
            if shape != list(state.shape):
                raise ArtifactError(f"state {state.name!r}: the manifest says shape "
                                    f"{state.shape}, the graph {shape}")
        native.signature = native.step.get_signature_index(key)
        given = native.step.create_input_buffers(native.signature)
        made = native.step.create_output_buffers(native.signature)
        native.frame = given[inputs.index(manifest.input["name"])]
        native.embeddings = made[outputs.index(manifest.step["outputs"]["embeddings"])]
        # set 0: the buffers LiteRT made for the state inputs; set 1: those for the outputs
        native.sets = [[given[inputs.index(s.input)] for s in manifest.states],
                       [made[outputs.index(s.output)] for s in manifest.states]]
        native.calls = []
        for source, target in ((0, 1), (1, 0)):
            call_in, call_out = list(given), list(made)
            for k, state in enumerate(manifest.states):
                call_in[inputs.index(state.input)] = native.sets[source][k]
                call_out[outputs.index(state.output)] = native.sets[target][k]
            native.calls.append((call_in, call_out))
        self._current = 0
        self._embedding_shape = (self._batch, self._step_frames, manifest.embed_dim)

    def _reset_states(self) -> None:
        self._current = 0
        for buffer, state in zip(self._native.sets[0], self.manifest.states):
            buffer.write(np.full(state.shape, state.init, dtype=np.float32))

    def _get_states(self) -> dict[str, np.ndarray]:
        return {state.name: state.to_reference(
                    buffer.read(math.prod(state.shape), np.float32).reshape(state.shape))
                for buffer, state in zip(self._native.sets[self._current],
                                         self.manifest.states)}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        for buffer, state in zip(self._native.sets[self._current], self.manifest.states):
            buffer.write(np.ascontiguousarray(state.to_graph(states[state.name])))

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        native = self._native
        native.frame.write(self.manifest.in_input_layout(frames))
        call_in, call_out = native.calls[self._current]
        try:
            native.step.run_by_index(native.signature, call_in, call_out)
        except RuntimeError as error:
            raise GrwEdgeError(f"LiteRT failed running {self.manifest.step['file']}: "
                               f"{_first_line(error)}") from None
        return native.embeddings.read(math.prod(self._embedding_shape),
                                      np.float32).reshape(self._embedding_shape)

    def _pending_states_finite(self) -> bool:
        """The embeddings stand for the states, which then never leave LiteRT's buffers: a
        step starts from finite states, and every value its next states gain is one the
        same step carries, through products and sums (no clamp can make it finite again),
        into the embeddings, so a NaN or infinity there shows in the embeddings too
        (tests/test_litert.py feeds a poisoned state to check it)."""
        return True

    def _commit_states(self) -> None:
        self._current = 1 - self._current

    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        needed = self.manifest.frames_per_step
        if frames.shape[2] != needed:
            raise InputShapeError(f"this LiteRT artifact embeds whole clips of {needed} "
                                  f"frames; it holds {frames.shape[2]}: push "
                                  f"{needed - frames.shape[2]} more")
        results = self._native.clip(**{self.manifest.input["name"]: frames})
        return np.asarray(results[self.manifest.step["outputs"]["embeddings"]], np.float32)

    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        head = self.manifest.head
        batch, frames, size = embeddings.shape
        window = int(head["shape"][1])
        if frames > window:
            raise InputShapeError(f"this LiteRT artifact's head takes at most {window} "
                                  f"frames; set_window({frames}) is too long for it")
        padded = np.zeros((batch, window, size), np.float32)
        padded[:, :frames] = embeddings
        mask = np.zeros((batch, window), np.float32)
        mask[:, :frames] = 1.0
        results = self._native.head(**{head["input"]: padded, head["mask"]: mask})
        return np.asarray(results[head["output"]], np.float32)


def xnnpack_outside(path: str | Path) -> list[str]:
    """The operators of a .tflite file that LiteRT's default CPU delegate, XNNPACK, leaves to
    the interpreter's own kernels (those at the edge of each region it does not take);
    empty when XNNPACK runs the whole graph, read from the interpreter's delegation."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_output():
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()  # delegated nodes stay listed beside DELEGATE
    delegates = [node for node in nodes if node["op_name"] == "DELEGATE"]
    plain = [node for node in nodes if node["op_name"] != "DELEGATE"]
    if not delegates:
        return [node["op_name"] for node in plain]
    taken = {t for node in delegates for t in node["inputs"]}  # made outside a partition
    given = {t for node in delegates for t in node["outputs"]}
    graph_outputs = set(interpreter._interpreter.OutputIndices())
    return [node["op_name"] for node in plain
            if set(node["outputs"]) & (taken | (graph_outputs - given))
            or set(node["inputs"]) & (given - graph_outputs)]


def _first_line(error: Exception) -> str:
    """The last non-empty line of a LiteRT error (its most specific cause)."""
    lines = [line.strip("└ ").strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
