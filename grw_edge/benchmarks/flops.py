"""FLOPs with fvcore (one multiply-add = one flop, as the paper counts), split into backbone
and head, per video and per frame, with the operators fvcore could not count."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from fvcore.nn import FlopCountAnalysis

from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.streaming import ClassifierHead


@dataclass(frozen=True)
class FlopCount:
    """GFLOPs of one clip of ``frames`` frames at ``resolution``."""

    frames: int
    resolution: int
    backbone_gflops: float
    head_gflops: float
    parameters: int
    skipped: dict[str, int]  # operator -> times fvcore skipped it

    @property
    def total_gflops(self) -> float:
        return self.backbone_gflops + self.head_gflops

    @property
    def per_frame_gflops(self) -> float:
        return self.backbone_gflops / self.frames

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "total_gflops": self.total_gflops,
                "per_frame_gflops": self.per_frame_gflops}


def _count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[float, dict]:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module.eval(), inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total() / 1e9, dict(analysis.unsupported_ops())


def count_flops(model: GrwVideoClassifier, frames: int, resolution: int) -> FlopCount:
    """fvcore counts for the backbone over a whole clip and for the head over its embeddings."""
    clip = torch.zeros(1, frames, 3, resolution, resolution)
    with torch.no_grad():
        backbone, skipped = _count(model.video_backbone, (clip,))
        embeddings = model.video_backbone(clip)
        head, head_skipped = _count(ClassifierHead(model), (embeddings,))
    for op, n in head_skipped.items():
        skipped[op] = skipped.get(op, 0) + n
    return FlopCount(frames, resolution, backbone, head,
                     sum(p.numel() for p in model.parameters()), skipped)
