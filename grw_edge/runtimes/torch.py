"""The PyTorch reference session: the artifact's reference weights, run eagerly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grw_edge.checkpoints import load_checkpoint
from grw_edge.errors import ArtifactError
from grw_edge.manifest import Manifest
from grw_edge.runtimes.base import StreamingSession
from grw_edge.streaming import initial_states


class TorchSession(StreamingSession):
    """Runs the unfused PyTorch model the artifact was exported from."""

    backend = "torch"

    def __init__(self, artifact: str | Path, manifest: Manifest | None = None, *,
                 threads: int | None = None, device: str = "cpu") -> None:
        super().__init__(artifact, manifest)
        reference = (self.manifest.reference or {}).get("file")
        if not reference or not (self.artifact / reference).is_file():
            raise ArtifactError(f"{self.artifact} carries no reference weights (exported with "
                                f"--no-reference); the torch backend needs them")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        # The reference file holds exactly the exported weights (EMA ones saved as plain).
        self.model = load_checkpoint(self.artifact / reference)
        self.model.to(self.device)
        self._states: dict[str, torch.Tensor] = {}
        self.reset()

    def _reset_states(self) -> None:
        states = initial_states(self.manifest.states, device=self.device)
        self._states = {entry.name: tensor for entry, tensor in zip(self.manifest.states, states)}

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
