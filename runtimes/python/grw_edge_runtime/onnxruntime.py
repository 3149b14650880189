"""ONNX Runtime session: CPU provider, or CUDA when onnxruntime-gpu and a GPU are present.

``memory="lean"`` trades a little speed for resident memory on small devices: no CPU
arena (tensors are freed, not pooled), no memory-pattern planning, initializers allocated
directly and weights not pre-packed a second time.  ``benchmarks/`` records what each
setting costs and saves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grw_edge_runtime.errors import ArtifactError, BackendUnavailableError
from grw_edge_runtime.manifest import Manifest
from grw_edge_runtime.session import StreamingSession


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                "onnxruntime has no CUDA provider here; install grw-edge[gpu] on a machine "
                "with an NVIDIA GPU, or use device='cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


MEMORY_MODES = ("default", "lean")


def session_options(ort, *, threads: int | None, memory: str):
    """ONNX Runtime session options for ``threads`` and the ``memory`` mode."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if memory == "lean":
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
        options.add_session_config_entry("session.disable_prepacking", "1")
    elif memory != "default":
        raise BackendUnavailableError(f"unknown memory mode {memory!r}; choose one of: "
                                      f"{', '.join(MEMORY_MODES)}")
    return options


class OnnxRuntimeSession(StreamingSession):
    """Runs the artifact's ONNX graphs; states stay numpy arrays handed from step to step."""

    backend = "onnxruntime"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu", memory: str = "default",
                 on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        import onnxruntime as ort

        options = session_options(ort, threads=threads, memory=memory)
        providers = _providers(device)
        details = self.manifest.precision_details or {}
        self._disabled = details.get("onnxruntime", {}).get("disabled_optimizers", [])
        self._step = self._open(ort, self.manifest.step["file"], options, providers)
        self._head = self._open(ort, self.manifest.head["file"], options, providers)
        self._check_graph_io()
        self._output_names = [output.name for output in self._step.get_outputs()]
        self._embeddings_output = self.manifest.step["outputs"]["embeddings"]
        # --fp16-io artifacts take and return float16; the session API stays float32
        self._input_dtype = np.dtype(self.manifest.input.get("dtype", "float32"))
        self._head_dtype = np.dtype(self.manifest.head.get("dtype", "float32"))
        self._states: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        self.reset()

    def _open(self, ort, name: str, options, providers):
        try:
            return ort.InferenceSession(str(self.artifact / name), options, providers=providers,
                                        disabled_optimizers=self._disabled or None)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ArtifactError(f"{self.artifact / name} cannot be loaded by onnxruntime: "
                                f"{str(error).splitlines()[0]}") from None

    def _check_graph_io(self) -> None:
        """The manifest and the graph must name the same inputs and outputs."""
        inputs = {i.name: i.shape for i in self._step.get_inputs()}
        outputs = {o.name for o in self._step.get_outputs()}
        expected_inputs = {self.manifest.input["name"]} | {s.input for s in self.manifest.states}
        expected_outputs = ({self.manifest.step["outputs"]["embeddings"]}
                            | {s.output for s in self.manifest.states})
        graph = self.manifest.step["file"]
        problems = [f"{graph} has no input {name!r}" for name in
                    sorted(expected_inputs - inputs.keys())]
        problems += [f"{graph} input {name!r} is not in the manifest" for name in
                     sorted(inputs.keys() - expected_inputs)]
        problems += [f"{graph} has no output {name!r}" for name in
                     sorted(expected_outputs - outputs)]
        if problems:
            raise ArtifactError(f"{self.artifact}: the manifest does not match the graph "
                                f"({problems[0]}); re-export the artifact")
        for state in self.manifest.states:
            if list(inputs[state.input]) != list(state.shape):
                raise ArtifactError(f"state {state.name!r}: the manifest says shape "
                                    f"{state.shape}, the graph {inputs[state.input]}")

    def _reset_states(self) -> None:
        self._states = {state.input: np.full(state.shape, state.init, dtype=state.dtype)
                        for state in self.manifest.states}

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        feed = {self.manifest.input["name"]: frames.astype(self._input_dtype, copy=False),
                **self._states}
        results = dict(zip(self._output_names, self._step.run(None, feed)))
        self._pending = {state.input: results[state.output] for state in self.manifest.states}
        return results[self._embeddings_output].astype(np.float32, copy=False)

    def _pending_states_finite(self) -> bool:
        return all(np.isfinite(value).all() for value in self._pending.values())

    def _commit_states(self) -> None:
        self._states = self._pending

    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        frames = frames.astype(self._input_dtype, copy=False)
        return self._step.run([self._embeddings_output],
                              {self.manifest.input["name"]: frames})[0].astype(np.float32,
                                                                              copy=False)

    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = embeddings.astype(self._head_dtype, copy=False)
        return self._head.run([self.manifest.head["output"]],
                              {self.manifest.head["input"]: embeddings})[0].astype(np.float32,
                                                                                  copy=False)
