"""The training objective: cross-entropy + lambda * GRW on the per-frame embeddings, and
optionally GRW on intermediate block outputs (paper section "where": final-layer and
intermediate-layer smoothing)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grw_edge.loss import GrwSmoothingLoss
from grw_edge.models.classifier import GrwVideoClassifier


class GrwObjective(nn.Module):
    """``objective(model, X, y) -> (loss, parts, logits)``; ``parts`` holds detached 0-d
    tensors on the model's device, so a step never waits for the GPU to report them.

    Final layer: the embeddings Z, affinely normalised by the model's own LayerNorm (the
    input of the head), are cut into sub-sequences of T frames.  Intermediate layers: the
    output of the last block of every stage, spatially pooled and batch-normalised without
    affine parameters, cut the same way.
    """

    def __init__(self, model: GrwVideoClassifier, *, T: int, grw_weight: float,
                 alpha: float = 0.5, intermediate_weight: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.T = T
        self.grw_weight = grw_weight
        self.intermediate_weight = intermediate_weight
        self.grw = GrwSmoothingLoss(T, alpha=alpha, seed=seed)
        self._captured: list[Tensor] = []
        self._causal = model.backbone_spec.causal
        if intermediate_weight:
            blocks = model.video_backbone.encoder.blocks
            for stage_end in _stage_ends(list(blocks)):
                blocks[stage_end].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: object, output: tuple[Tensor, dict]) -> None:
        self._captured.append(output[0])

    def forward(self, model: nn.Module, X: Tensor, y: Tensor
                ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        self._captured.clear()
        logits, Z = model(X)
        ce = F.cross_entropy(logits, y)
        loss, parts = ce, {"ce": ce.detach()}
        if self.grw_weight:
            ln = _unwrap(model).ln
            smooth = self.grw(ln(Z).flatten(0, 1))
            loss = loss + self.grw_weight * smooth
            parts["grw"] = smooth.detach()
        if self.intermediate_weight and self._captured:
            batch, frames = X.shape[:2]
            terms = [self.grw(self._pooled_sequences(h, batch, frames)) for h in self._captured]
            intermediate = torch.stack(terms).mean()
            loss = loss + self.intermediate_weight * intermediate
            parts["grw_intermediate"] = intermediate.detach()
        parts["loss"] = loss.detach()
        return loss, parts, logits

    def _pooled_sequences(self, h: Tensor, batch: int, frames: int) -> Tensor:
        """Block output -> spatial mean -> affine-free batch norm -> (B * N / T, T, C)."""
        if self._causal:  # (B * N, C, H, W)
            pooled = h.mean(dim=(2, 3))
        else:  # (B, C, N, H, W)
            pooled = h.mean(dim=(3, 4)).transpose(1, 2).flatten(0, 1)
        normalised = F.batch_norm(pooled, None, None, training=True)
        return normalised.reshape(batch * frames // self.T, self.T, -1)


def _stage_ends(names: list[str]) -> list[str]:
    """The last block of each stage (names are b<stage>_l<layer>)."""
    last: dict[str, str] = {}
    for name in names:
        last[name.split("_")[0]] = name
    return list(last.values())


def _unwrap(model: nn.Module) -> GrwVideoClassifier:
    return model.module if hasattr(model, "module") else model
