"""The PyTorch reference session: the artifact's reference weights, run eagerly, or on CUDA
with the streaming step replayed as CUDA graphs.

States live in two sets of device buffers (:class:`StateBuffers`); a step reads one set and
writes its next states into the other, so accepting a step flips which set is current and
refusing one (non-finite results) does not: no state is copied back or crosses to the host
between frames.  On CUDA each direction of the step is captured once as a CUDA graph, the
frame is uploaded from pinned memory without a wait, and the host waits only where the
caller reads a result (the embeddings ``push`` returns).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from grw_edge.checkpoints import load_checkpoint
from grw_edge.errors import ArtifactError, BackendUnavailableError, InputShapeError
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge_runtime import Manifest, StreamingSession
from grw_edge_runtime.manifest import StateEntry

GRAPH_WARMUP_STEPS = 3  # eager steps before capture (lazy initialisation, cuDNN choices)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
States = dict[str, Tensor]
StepFn = Callable[[Tensor, States], tuple[Tensor, States]]


def resolve_device(device: str, cuda_graphs: bool | None) -> tuple[torch.device, bool]:
    """The session's device and whether it replays CUDA graphs (default: on CUDA)."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"the torch backend was asked for device {device!r} but "
                                      f"no CUDA GPU is visible here; use device='cpu'")
    if cuda_graphs and resolved.type != "cuda":
        raise BackendUnavailableError(f"CUDA graphs need device='cuda', not {device!r}")
    return resolved, resolved.type == "cuda" if cuda_graphs is None else cuda_graphs


def resolve_precision(precision: str) -> torch.dtype:
    """The dtype the session computes in: fp32 (the reference), fp16 or bf16."""
    if precision not in PRECISIONS:
        raise InputShapeError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                              f"{precision!r}")
    return PRECISIONS[precision]


class StateBuffers:
    """Every state of a batch of streams as a view into one (B, total) tensor, row b being
    stream b: a reset, a row's reset or copy and the finite check are one operation each,
    however many states the backbone has."""

    def __init__(self, entries: Sequence[StateEntry], batch: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        sizes = [math.prod(entry.shape[1:]) for entry in entries]
        self.flat = torch.empty(batch, sum(sizes), dtype=dtype, device=device)
        self.views: States = {}
        offset = 0
        for entry, size in zip(entries, sizes):
            self.views[entry.name] = self.flat[:, offset:offset + size].view(
                batch, *entry.shape[1:])
            offset += size
        self.init_row = torch.cat([torch.full((size,), float(entry.init), dtype=dtype,
                                              device=device)
                                   for entry, size in zip(entries, sizes)])

    def reset(self, rows: Tensor | None = None) -> None:
        """Initial values in the rows a (B,) bool tensor marks (all by default); a select,
        not a masked copy, so no wait for the device."""
        if rows is None:
            self.flat.copy_(self.init_row.expand_as(self.flat))
        else:
            torch.where(rows[:, None], self.init_row, self.flat, out=self.flat)


class PingPongStep:
    """The streaming step over two :class:`StateBuffers`: direction i reads set i and writes
    its next states into set 1 - i, its float32 embeddings and a per-stream finite flag into
    its outputs.  ``capture=True`` (CUDA) records each direction once as a CUDA graph;
    otherwise the same body runs eagerly, which is what the CPU tests check."""

    def __init__(self, step: StepFn, sets: tuple[StateBuffers, StateBuffers],
                 frames_shape: Sequence[int], *, capture: bool) -> None:
        self.step, self.sets, self.current = step, sets, 0
        flat = sets[0].flat
        self.dtype = flat.dtype
        self.frames = torch.zeros(tuple(frames_shape), device=flat.device)  # as uploaded
        self._runs: list[Callable[[], tuple[Tensor, Tensor]]] = [
            lambda: self._body(0), lambda: self._body(1)]
        if capture:
            self._capture()

    @property
    def states(self) -> StateBuffers:
        """The current states (what the next step reads)."""
        return self.sets[self.current]

    def _body(self, source: int) -> tuple[Tensor, Tensor]:
        embeddings, next_states = self.step(self.frames.to(self.dtype), self.sets[source].views)
        target = self.sets[1 - source]
        for name, view in target.views.items():
            view.copy_(next_states[name])
        finite = torch.isfinite(target.flat).all(1) & torch.isfinite(embeddings).flatten(1).all(1)
        return embeddings.float(), finite

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(GRAPH_WARMUP_STEPS):
                for source in (0, 1):
                    self._body(source)
        torch.cuda.current_stream().wait_stream(side)
        for source in (0, 1):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                outputs = self._body(source)
            self._runs[source] = _replayer(graph, outputs)

    def __call__(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Upload ``frames`` (no wait when pinned) and run the step from the current set:
        (embeddings (B, t, E) float32, finite flag per stream (B,)), still on the device."""
        self.frames.copy_(frames, non_blocking=True)
        return self.replay()

    def commit(self, accepted: Tensor | None = None) -> None:
        """Make the last step's next states current, except in the streams ``accepted``
        (a (B,) bool tensor; None: all) refuses, which keep the states they had."""
        old, new = self.sets[self.current], self.sets[1 - self.current]
        if accepted is not None:  # a select, not a masked copy: no wait for the device
            torch.where(accepted[:, None], new.flat, old.flat, out=new.flat)
        self.current = 1 - self.current

    def replay(self) -> tuple[Tensor, Tensor]:
        """The step from the current set on the frame already uploaded, nothing else (what
        the bench's graph-replay row times)."""
        return self._runs[self.current]()


def _replayer(graph: torch.cuda.CUDAGraph, outputs: tuple[Tensor, Tensor]
              ) -> Callable[[], tuple[Tensor, Tensor]]:
    def replay() -> tuple[Tensor, Tensor]:
        graph.replay()
        return outputs

    return replay


class TorchSession(StreamingSession):
    """Runs the unfused PyTorch model the artifact was exported from.

    ``device`` is "cpu" or "cuda"; ``cuda_graphs`` (default: on CUDA) replays the streaming
    step as CUDA graphs, with the same results as eager steps; ``precision`` "fp16" or
    "bf16" computes in half precision (fp32, the reference, by default); ``compile`` runs
    the step through ``torch.compile`` (before capture on CUDA); ``batch`` overrides the
    artifact's batch (the torch step takes any: one row per stream, see MultiStreamSession).
    """

    backend = "torch"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu",
                 cuda_graphs: bool | None = None, precision: str = "fp32",
                 compile: bool = False, batch: int | None = None,
                 model: GrwVideoClassifier | None = None, on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        self.device, graphs = resolve_device(device, cuda_graphs)
        self.dtype = resolve_precision(precision)
        self._batch = self._min_rows = batch or self._batch  # fixed-shape graphs
        if model is None:
            reference = (self.manifest.reference or {}).get("file")
            if not reference or not (self.artifact / reference).is_file():
                raise ArtifactError(f"{self.artifact} carries no reference weights (exported "
                                    f"with --no-reference); the torch backend needs them")
            # The reference file holds exactly the exported weights (EMA ones saved as plain).
            model = load_checkpoint(self.artifact / reference)
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().to(self.device, self.dtype)
        self._graph: PingPongStep | None = None
        self._finite = np.ones(self._batch, dtype=bool)  # per stream, of the last step
        if self.streaming:
            backbone: nn.Module = self.model.video_backbone
            step = torch.compile(backbone.step, dynamic=False) if compile else backbone.step
            sets = tuple(StateBuffers(self.manifest.states, self._batch, self.dtype, self.device)
                         for _ in range(2))
            shape = (self._batch, 3, self._step_frames, self._resolution, self._resolution)
            self._graph = PingPongStep(step, sets, shape, capture=graphs)
            # on CUDA the frame goes up from pinned memory without a wait; on the CPU the
            # caller's array is read where it is
            self._host_frames = (torch.zeros(shape, pin_memory=True)
                                 if self.device.type == "cuda" else None)
        self.reset()  # the warm-up steps of a capture touched the buffers

    @classmethod
    def for_model(cls, model: GrwVideoClassifier, *, resolution: int | None = None,
                  **options) -> TorchSession:
        """A session on an in-memory model, with the manifest an export would write."""
        from grw_edge.exporters.artifact import ExportOptions, base_manifest, state_entry
        from grw_edge.streaming import state_specs

        export_options = ExportOptions(resolution=resolution, include_reference=False)
        states = []
        if model.backbone_spec.causal:
            specs = state_specs(model.video_backbone, resolution=resolution)
            states = [state_entry(spec, spec.name, spec.name) for spec in specs]
        manifest = base_manifest(model, target="torch", options=export_options, states=states,
                                 step={}, head={})
        return cls(Path("."), manifest, model=model, **options)

    @property
    def _states(self) -> States:
        """The current states on the device, by name (views of the current buffer set)."""
        return self._graph.states.views if self._graph else {}

    def _reset_states(self) -> None:
        self._graph.states.reset()

    def _get_states(self) -> dict[str, np.ndarray]:
        # copies: on the CPU a view's numpy array would share the buffer the next step writes
        return {name: value.to("cpu", torch.float32, copy=True).numpy()
                for name, value in self._states.items()}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        for name, value in self._states.items():
            value.copy_(torch.from_numpy(states[name]))

    @torch.no_grad()
    def step_on_device(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, t, R, R) frames -> (embeddings (B, t, E), finite flag per stream (B,)),
        both left on the device without waiting; the next states wait in the other buffer
        set until :meth:`_commit_states` (or the graph's ``commit``) accepts them."""
        return self._graph(frames)

    @torch.no_grad()
    def replay_step(self) -> None:
        """The step from the current states on the frame already on the device, nothing
        else (no upload, no commit), waited for: what the bench's graph-replay row times."""
        self._graph.replay()
        if self.device.type == "cuda":
            torch.cuda.current_stream().synchronize()

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        if self._host_frames is None:
            host = torch.from_numpy(frames)
        else:
            host = self._host_frames
            host.numpy()[...] = frames
        embeddings, finite = self.step_on_device(host)
        embeddings, finite = _to_host(embeddings, finite)  # the one wait per frame
        self._finite = finite
        return embeddings

    def _pending_states_finite(self) -> bool:
        return bool(self._finite.all())

    def _commit_states(self) -> None:
        self._graph.commit()

    def _pending_rows_finite(self) -> np.ndarray:
        return self._finite

    def _commit_rows(self, accepted: np.ndarray) -> None:
        self._graph.commit(None if accepted.all() else
                           torch.from_numpy(accepted).to(self.device, non_blocking=True))

    def _reset_rows(self, rows: np.ndarray) -> None:
        self._graph.states.reset(torch.from_numpy(rows).to(self.device))

    @torch.no_grad()
    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        frames = torch.from_numpy(frames).to(self.device, self.dtype)
        return self.model.video_backbone.step(frames)[0].float().cpu().numpy()

    @torch.no_grad()
    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = torch.from_numpy(embeddings).to(self.device, self.dtype)
        return self.model.classify(embeddings).float().cpu().numpy()


def _to_host(*tensors: Tensor) -> list[np.ndarray]:
    """Device tensors as numpy arrays: queued copies, then one wait for all of them."""
    copies = [tensor.to("cpu", non_blocking=True) for tensor in tensors]
    if tensors[0].is_cuda:
        torch.cuda.current_stream().synchronize()
    return [copy.numpy() for copy in copies]
