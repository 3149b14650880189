"""The PyTorch reference session: the artifact's reference weights, run eagerly, or on CUDA
with the streaming step replayed as one CUDA graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from grw_edge.checkpoints import load_checkpoint
from grw_edge.errors import ArtifactError, BackendUnavailableError
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.streaming import initial_states
from grw_edge_runtime import Manifest, StreamingSession

GRAPH_WARMUP_STEPS = 3  # eager steps before capture (lazy initialisation, cuDNN choices)
States = dict[str, Tensor]


def resolve_device(device: str, cuda_graphs: bool | None) -> tuple[torch.device, bool]:
    """The session's device and whether it replays CUDA graphs (default: on CUDA)."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"the torch backend was asked for device {device!r} but "
                                      f"no CUDA GPU is visible here; use device='cpu'")
    if cuda_graphs and resolved.type != "cuda":
        raise BackendUnavailableError(f"CUDA graphs need device='cuda', not {device!r}")
    return resolved, resolved.type == "cuda" if cuda_graphs is None else cuda_graphs


class CudaGraphStep:
    """The streaming step captured once as a CUDA graph over static buffers: the frame and
    the current states are read from fixed tensors, the embeddings and next states land in
    fixed tensors, so a replay is one launch (the session copies accepted states back)."""

    def __init__(self, backbone: nn.Module, states: States, frames_shape) -> None:
        self.backbone, self.states = backbone, states
        self.frames = torch.zeros(frames_shape, device=next(iter(states.values())).device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(GRAPH_WARMUP_STEPS):
                self.backbone.step(self.frames, self.states)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.embeddings, self.next_states = self.backbone.step(self.frames, self.states)

    def __call__(self, frames: Tensor) -> tuple[Tensor, States]:
        self.frames.copy_(frames)
        self.graph.replay()
        return self.embeddings, self.next_states


class TorchSession(StreamingSession):
    """Runs the unfused PyTorch model the artifact was exported from.

    ``device`` is "cpu" or "cuda"; ``cuda_graphs`` (default: on CUDA) replays the
    streaming step as a CUDA graph, with the same results as eager steps.
    """

    backend = "torch"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu",
                 cuda_graphs: bool | None = None, model: GrwVideoClassifier | None = None,
                 on_nonfinite: str = "raise") -> None:
        super().__init__(artifact, manifest, on_nonfinite=on_nonfinite)
        self.device, graphs = resolve_device(device, cuda_graphs)
        if model is None:
            reference = (self.manifest.reference or {}).get("file")
            if not reference or not (self.artifact / reference).is_file():
                raise ArtifactError(f"{self.artifact} carries no reference weights (exported "
                                    f"with --no-reference); the torch backend needs them")
            # The reference file holds exactly the exported weights (EMA ones saved as plain).
            model = load_checkpoint(self.artifact / reference)
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().to(self.device)
        self._states: States = {}
        self._pending: States = {}
        self._graph: CudaGraphStep | None = None
        self.reset()
        if graphs and self.streaming:
            shape = (self._batch, 3, self._step_frames, self._resolution, self._resolution)
            self._graph = CudaGraphStep(self.model.video_backbone, self._states, shape)
            self.reset()  # the warm-up steps may have touched the buffers

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

    def _reset_states(self) -> None:
        # the reference computes in float32 whatever the artifact's state dtype
        states = [s.float() for s in initial_states(self.manifest.states, device=self.device)]
        if self._graph is None:
            self._states = {entry.name: tensor
                            for entry, tensor in zip(self.manifest.states, states)}
            return
        for entry, tensor in zip(self.manifest.states, states):  # the graph's own buffers
            self._states[entry.name].copy_(tensor)

    def _get_states(self) -> dict[str, np.ndarray]:
        return {name: value.cpu().numpy() for name, value in self._states.items()}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        self._pending = {name: torch.from_numpy(value).to(self.device)
                         for name, value in states.items()}
        self._commit_states()

    @torch.no_grad()
    def step_on_device(self, frames: Tensor) -> Tensor:
        """(B, 3, t, R, R) frames on the session's device -> embeddings there; the next
        states wait on the device until the session accepts them."""
        if self._graph is not None:
            embeddings, self._pending = self._graph(frames)
        else:
            embeddings, self._pending = self.model.video_backbone.step(frames, self._states)
        return embeddings

    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        return self.step_on_device(torch.from_numpy(frames).to(self.device)).cpu().numpy()

    def _pending_states_finite(self) -> bool:
        flags = [torch.isfinite(value).all() for value in self._pending.values()]
        return bool(torch.stack(flags).all())  # one device sync, not one per state

    def _commit_states(self) -> None:
        if self._graph is None:
            self._states = self._pending
            return
        for name, value in self._pending.items():  # the graph reads these buffers
            self._states[name].copy_(value)

    @torch.no_grad()
    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        embeddings, _ = self.model.video_backbone.step(torch.from_numpy(frames).to(self.device))
        return embeddings.cpu().numpy()

    @torch.no_grad()
    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        return self.model.classify(torch.from_numpy(embeddings).to(self.device)).cpu().numpy()
