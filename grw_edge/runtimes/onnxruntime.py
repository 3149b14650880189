"""ONNX Runtime session: CPU provider, or CUDA when onnxruntime-gpu and a GPU are present."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grw_edge.errors import ArtifactError, BackendUnavailableError
from grw_edge.manifest import Manifest
from grw_edge.runtimes.base import StreamingSession


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


class OnnxRuntimeSession(StreamingSession):
    """Runs the artifact's ONNX graphs; states stay numpy arrays handed from step to step."""

    backend = "onnxruntime"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu") -> None:
        super().__init__(artifact, manifest)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
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

    def _get_states(self) -> dict[str, np.ndarray]:
        return {s.name: self._states[s.input] for s in self.manifest.states}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        self._states = {s.input: states[s.name].astype(s.dtype) for s in self.manifest.states}

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        feed = {self.manifest.input["name"]: frames.astype(self._input_dtype, copy=False),
                **self._states}
        results = dict(zip(self._output_names, self._step.run(None, feed)))
        self._states = {state.input: results[state.output] for state in self.manifest.states}
        return results[self._embeddings_output].astype(np.float32, copy=False)

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
