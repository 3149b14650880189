"""ONNX Runtime session: CPU provider, or CUDA when onnxruntime-gpu and a GPU are present.

``memory="lean"`` turns off onnxruntime's memory pooling and planning: no CPU arena
(tensors are freed, not pooled), no memory patterns, initializers allocated directly and
weights not pre-packed a second time.  On the development VM it cut A0S's streaming peak
from 97 to 94 MB and ran the head and step slower (``benchmarks/README.md``): a trade for
devices short of memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grw_edge_runtime.errors import ArtifactError, BackendUnavailableError
from grw_edge_runtime.manifest import Manifest
from grw_edge_runtime.session import StreamingSession, row_mask


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
    """Runs the artifact's ONNX graphs.

    Streaming keeps two preallocated sets of state buffers bound to the step (I/O binding):
    a step reads one set and writes the other, and the roles swap once its results are
    found finite, so no state is allocated or copied per frame (about 4 MB less resident
    for A0S than handing new arrays from step to step).
    """

    backend = "onnxruntime"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu", memory: str = "default",
                 on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        import onnxruntime as ort

        self._min_rows = self.manifest.batch_range[0]
        options = session_options(ort, threads=threads, memory=memory)
        providers = _providers(device)
        details = self.manifest.precision_details or {}
        # fp16 artifacts exported before the head's attention became batch-first list the
        # layout pass onnxruntime crashed on; honoured so that those artifacts still open
        self._disabled = details.get("onnxruntime", {}).get("disabled_optimizers", [])
        self._step = self._open(ort, self.manifest.step["file"], options, providers)
        self._head = self._open(ort, self.manifest.head["file"], options, providers)
        self._check_graph_io()
        self._embeddings_output = self.manifest.step["outputs"]["embeddings"]
        # --fp16-io artifacts take and return float16; the session API stays float32
        self._input_dtype = np.dtype(self.manifest.input.get("dtype", "float32"))
        self._head_dtype = np.dtype(self.manifest.head.get("dtype", "float32"))
        if self.streaming:
            self._allocate_step_buffers()
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
        frames = self.manifest.input["name"]
        if self._min_rows < self._batch and not isinstance(inputs[frames][0], str):
            raise ArtifactError(f"{self.artifact}: the manifest gives a batch range "
                                f"{list(self.manifest.batch_range)}, but {graph} fixes the "
                                f"batch to {inputs[frames][0]}; re-export the artifact")
        for state in self.manifest.states:
            shape = list(inputs[state.input])
            if isinstance(shape[0], str):  # a named (dynamic) batch axis takes the batch
                shape[0] = state.shape[0]
            if shape != list(state.shape):
                raise ArtifactError(f"state {state.name!r}: the manifest says shape "
                                    f"{state.shape}, the graph {inputs[state.input]}")

    def _allocate_step_buffers(self) -> None:
        """Preallocated frame, embedding and two state sets; I/O bindings are made per
        number of rows run (:meth:`_binding`), all of them views of these buffers."""
        self._frame = np.zeros(self.manifest.input["shape"], self._input_dtype)
        shape = [self._batch, self._step_frames, self.manifest.embed_dim]
        self._step_embeddings = np.zeros(shape, self.manifest.step.get("dtype", "float32"))
        self._sets = [{s.input: np.zeros(s.shape, s.dtype) for s in self.manifest.states}
                      for _ in range(2)]
        self._current = 0
        self._rows = self._batch  # rows the last step ran
        self._bindings: dict[int, list] = {}

    def _binding(self, rows: int):
        """The step bound to the first ``rows`` rows of every buffer, reading the current
        state set and writing the other (a batch's first rows are contiguous, so a graph
        with a dynamic batch runs the slots in use in place)."""
        if rows not in self._bindings:
            states = self.manifest.states
            pair = []
            for source, target in ((0, 1), (1, 0)):
                binding = self._step.io_binding()
                for name, array in ((self.manifest.input["name"], self._frame),
                                    *((s.input, self._sets[source][s.input]) for s in states)):
                    binding.bind_input(name, "cpu", 0, array.dtype.type, [rows, *array.shape[1:]],
                                       array.ctypes.data)
                for name, array in ((self._embeddings_output, self._step_embeddings),
                                    *((s.output, self._sets[target][s.input]) for s in states)):
                    binding.bind_output(name, "cpu", 0, array.dtype.type,
                                        [rows, *array.shape[1:]], array.ctypes.data)
                pair.append(binding)
            self._bindings[rows] = pair
        return self._bindings[rows][self._current]

    def _reset_states(self) -> None:
        for state in self.manifest.states:
            self._sets[self._current][state.input].fill(state.init)

    def _get_states(self) -> dict[str, np.ndarray]:
        current = self._sets[self._current]
        return {s.name: current[s.input].copy() for s in self.manifest.states}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        current = self._sets[self._current]  # the bound buffers: fill them, never replace
        for s in self.manifest.states:
            np.copyto(current[s.input], states[s.name], casting="same_kind")

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        self._rows = rows = frames.shape[0]
        np.copyto(self._frame[:rows], frames, casting="same_kind")
        self._step.run_with_iobinding(self._binding(rows))
        return self._step_embeddings[:rows].astype(np.float32)  # a copy: the buffer is reused

    def _pending_states_finite(self) -> bool:
        return bool(self._pending_rows_finite().all())

    def _pending_rows_finite(self) -> np.ndarray:
        flags = np.ones(self._batch, bool)  # per stream, so one stream's fault is its own
        rows = flags[:self._rows]  # rows the step did not run hold nothing new
        for value in self._sets[1 - self._current].values():
            rows &= np.isfinite(value[:self._rows]).reshape(self._rows, -1).all(axis=1)
        return flags

    def _commit_states(self) -> None:
        self._current = 1 - self._current

    def _commit_rows(self, accepted: np.ndarray) -> None:
        """Rows not accepted keep their states: copied into the other set, then the swap
        (in place, no temporaries)."""
        if not accepted.all():
            kept = ~accepted
            current, pending = self._sets[self._current], self._sets[1 - self._current]
            for name, value in pending.items():
                np.copyto(value, current[name], where=row_mask(kept, value))
        self._commit_states()

    def _reset_rows(self, rows: np.ndarray) -> None:
        for state in self.manifest.states:
            self._sets[self._current][state.input][rows] = state.init

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
