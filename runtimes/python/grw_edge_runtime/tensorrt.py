"""TensorRT session: the artifact's engines on an NVIDIA GPU.

States live in device memory for the whole stream: each state has two buffers, the step
reads one and writes the other, and the roles swap after every step, so no state crosses
to the host between frames.  Only the frame goes in and its embedding comes out.  All work
is queued on PyTorch's current CUDA stream, so copies and engine runs are ordered without
extra synchronisation; reading the embedding back is the one wait per frame.  Engines built
from a --dynamic-batch artifact carry an optimisation profile over the batch: a
multi-stream tick then runs only the first rows of the same buffers.  The device
buffers are PyTorch CUDA tensors, so this backend (and only this one) imports torch: the
``tensorrt`` extra installs it.  A step with non-finite results does not swap the roles,
so the states it read stay current.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grw_edge_runtime.errors import ArtifactError, BackendUnavailableError
from grw_edge_runtime.manifest import Manifest
from grw_edge_runtime.session import StreamingSession


class TensorRTSession(StreamingSession):
    """Runs a TensorRT artifact whose engines were built on this device."""

    backend = "tensorrt"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cuda",
                 on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        engine = self.manifest.engine or {}
        if not engine.get("built"):
            reason = engine.get("reason", "not a TensorRT artifact")
            raise BackendUnavailableError(
                f"{self.artifact} has no TensorRT engine ({reason}); build it on this device "
                f"with: grw-edge build-engine {self.artifact}, or run the ONNX graphs with "
                f"--backend onnxruntime")
        try:
            import tensorrt as trt
            import torch
        except ImportError as error:
            raise BackendUnavailableError(f"the tensorrt backend needs {error.name}; "
                                          f"pip install 'grw-edge-runtime[tensorrt]'") from None
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs an NVIDIA GPU; none is "
                                          "visible here")
        self._torch = torch
        self._device = torch.device(device)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._step = self._load(runtime, engine["step"])
        self._head = self._load(runtime, engine["head"])
        self._dtypes = {name: _torch_dtype(torch, trt, engine_.get_tensor_dtype(name))
                        for engine_, _ in (self._step, self._head)
                        for name in _tensor_names(engine_)}
        self._current: dict[str, torch.Tensor] = {}
        self._next: dict[str, torch.Tensor] = {}
        self._min_rows = self.manifest.batch_range[0]
        if self.streaming:
            self._current = {s.input: self._empty(s.shape, s.input) for s in self.manifest.states}
            self._next = {s.input: self._empty(s.shape, s.input) for s in self.manifest.states}
            self._frame_input = self._empty(self.manifest.input["shape"],
                                            self.manifest.input["name"])
            embeddings = self.manifest.step["outputs"]["embeddings"]
            self._step_output = self._empty(
                [self._batch, self._step_frames, self.manifest.embed_dim], embeddings)
            self._rows = 0  # the batch the step context's input shapes are set for
            self._set_step_rows(self._batch)
        self.reset()

    def _load(self, runtime, name: str):
        path = self.artifact / name
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; rebuild with grw-edge build-engine")
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ArtifactError(f"{path} was built for another GPU or TensorRT version; "
                                f"rebuild it here with grw-edge build-engine {self.artifact}")
        return engine, engine.create_execution_context()

    def _empty(self, shape, name: str):
        return self._torch.empty(list(shape), dtype=self._dtypes[name], device=self._device)

    def _reset_states(self) -> None:
        for state in self.manifest.states:
            self._current[state.input].fill_(state.init)

    def _get_states(self) -> dict[str, np.ndarray]:
        return {s.name: self._host(self._current[s.input]) for s in self.manifest.states}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        for state in self.manifest.states:
            self._current[state.input].copy_(self._torch.from_numpy(states[state.name]))

    def _set_step_rows(self, rows: int) -> None:
        """Input shapes of ``rows`` rows for the step (only engines with a batch profile
        take fewer than the artifact's batch)."""
        if rows == self._rows:
            return
        _, context = self._step
        if self._min_rows < self._batch:
            inputs = [(self.manifest.input["name"], self._frame_input),
                      *((s.input, self._current[s.input]) for s in self.manifest.states)]
            for name, buffer in inputs:
                context.set_input_shape(name, (rows, *buffer.shape[1:]))
        self._rows = rows

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        _, context = self._step
        rows = frames.shape[0]
        self._set_step_rows(rows)
        self._frame_input[:rows].copy_(self._torch.from_numpy(frames))
        context.set_tensor_address(self.manifest.input["name"], self._frame_input.data_ptr())
        context.set_tensor_address(self.manifest.step["outputs"]["embeddings"],
                                   self._step_output.data_ptr())
        for state in self.manifest.states:
            context.set_tensor_address(state.input, self._current[state.input].data_ptr())
            context.set_tensor_address(state.output, self._next[state.input].data_ptr())
        self._execute(context)
        return self._host(self._step_output[:rows])

    def _pending_states_finite(self) -> bool:
        return bool(self._pending_rows_finite().all())

    def _pending_rows_finite(self) -> np.ndarray:
        """Per stream (row), in one device sync: one stream's fault is its own; rows the
        last step did not run count as finite."""
        flags = np.ones(self._batch, bool)
        rows = self._rows
        found = [self._torch.isfinite(state[:rows]).flatten(1).all(1)
                 for state in self._next.values()]
        if found:
            flags[:rows] = self._torch.stack(found).all(0).cpu().numpy()
        return flags

    def _commit_states(self) -> None:
        self._current, self._next = self._next, self._current

    def _commit_rows(self, accepted: np.ndarray) -> None:
        """Rows not accepted keep their states, by a select on the device (no host round
        trip, no wait), then the swap."""
        if not accepted.all():
            keep = self._torch.from_numpy(accepted).to(self._device)
            for name, pending in self._next.items():
                self._torch.where(_row_mask(keep, pending), pending, self._current[name],
                                  out=pending)
        self._commit_states()

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Initial states in the marked rows, on the device."""
        marked = self._torch.from_numpy(rows).to(self._device)
        for state in self.manifest.states:
            value = self._current[state.input]
            value.masked_fill_(_row_mask(marked, value), state.init)

    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        name = self.manifest.input["name"]
        return self._run_dynamic(self._step, name, frames,
                                 self.manifest.step["outputs"]["embeddings"])

    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        return self._run_dynamic(self._head, self.manifest.head["input"], embeddings,
                                 self.manifest.head["output"])

    def _run_dynamic(self, pair, input_name: str, array: np.ndarray, output_name: str
                     ) -> np.ndarray:
        """One call of an engine whose input has a dynamic axis."""
        _, context = pair
        source = self._torch.from_numpy(array).to(self._device, self._dtypes[input_name])
        context.set_input_shape(input_name, tuple(source.shape))
        result = self._empty(context.get_tensor_shape(output_name), output_name)
        context.set_tensor_address(input_name, source.data_ptr())
        context.set_tensor_address(output_name, result.data_ptr())
        self._execute(context)
        return self._host(result)

    def _host(self, tensor) -> np.ndarray:
        """A float32 host copy (never a view of a buffer the next step overwrites)."""
        return tensor.to("cpu", self._torch.float32, copy=True).numpy()

    def _execute(self, context) -> None:
        """Queue the engine on the current stream, after the copies that fed it."""
        stream = self._torch.cuda.current_stream(self._device).cuda_stream
        if not context.execute_async_v3(stream):
            raise ArtifactError("TensorRT failed to run the engine")


def _row_mask(rows, value):
    """A (B,) bool tensor shaped to broadcast over ``value`` (B, ...)."""
    return rows.view(-1, *([1] * (value.dim() - 1)))


def _tensor_names(engine) -> list[str]:
    return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]


def _torch_dtype(torch, trt, dtype):
    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
            trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}[dtype]
