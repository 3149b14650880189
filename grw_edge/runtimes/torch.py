"""The PyTorch reference session: the artifact's reference weights, run eagerly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grw_edge.checkpoints import load_checkpoint
from grw_edge.errors import ArtifactError
from grw_edge.manifest import Manifest
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.runtimes.base import StreamingSession
from grw_edge.streaming import initial_states


class TorchSession(StreamingSession):
    """Runs the unfused PyTorch model the artifact was exported from."""

    backend = "torch"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu",
                 model: GrwVideoClassifier | None = None) -> None:
        super().__init__(artifact, manifest)
        if model is None:
            reference = (self.manifest.reference or {}).get("file")
            if not reference or not (self.artifact / reference).is_file():
                raise ArtifactError(f"{self.artifact} carries no reference weights (exported "
                                    f"with --no-reference); the torch backend needs them")
            # The reference file holds exactly the exported weights (EMA ones saved as plain).
            model = load_checkpoint(self.artifact / reference)
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self._states: dict[str, torch.Tensor] = {}
        self.reset()

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
        self._states = {entry.name: tensor for entry, tensor in zip(self.manifest.states, states)}

    def _get_states(self) -> dict[str, np.ndarray]:
        return {name: value.cpu().numpy() for name, value in self._states.items()}

    def _set_states(self, states: dict[str, np.ndarray]) -> None:
        self._states = {name: torch.from_numpy(value).to(self.device)
                        for name, value in states.items()}

    @torch.no_grad()
    def _run_step(self, frames: np.ndarray) -> np.ndarray:
        embeddings, self._states = self.model.video_backbone.step(
            torch.from_numpy(frames).to(self.device), self._states)
        return embeddings.cpu().numpy()

    @torch.no_grad()
    def _run_clip(self, frames: np.ndarray) -> np.ndarray:
        embeddings, _ = self.model.video_backbone.step(torch.from_numpy(frames).to(self.device))
        return embeddings.cpu().numpy()

    @torch.no_grad()
    def _run_head(self, embeddings: np.ndarray) -> np.ndarray:
        return self.model.classify(torch.from_numpy(embeddings).to(self.device)).cpu().numpy()
