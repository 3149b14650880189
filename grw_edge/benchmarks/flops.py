"""FLOPs with fvcore (one multiply-add = one flop, as the paper counts), split into backbone
and head, per video and per frame, with the operators fvcore could not count.

One thing fvcore cannot see is added: the multiply-adds of the causal temporal
convolutions (written as elementwise products, which fvcore ignores as it ignores all
elementwise work).  Batch norm is counted, as in the paper's numbers.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from fvcore.nn import FlopCountAnalysis

from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.models.movinet import CausalConvBlock
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


# Paper, Table 1 (GFLOPs per video at the evaluation setting) and the upstream code run
# through fvcore (PAPER_NOTES.md).
PAPER_GFLOPS = {"movineta0s": 2.7, "movineta1s": 6.0, "movineta2s": 11.3, "movineta3b": 56.4}
UPSTREAM_FVCORE_GFLOPS = {"movineta0s": 2.64, "movineta1s": 5.89, "movineta2s": 11.35,
                          "movineta3b": 57.65}


def _count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[float, dict]:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module.eval(), inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total() / 1e9, dict(analysis.unsupported_ops())


def temporal_conv_flops(model: GrwVideoClassifier, clip: torch.Tensor) -> int:
    """Multiply-adds of the causal temporal convolutions: k per output element."""
    total = 0

    def count(module: CausalConvBlock, inputs: tuple, output: tuple) -> None:
        nonlocal total
        total += output[0].numel() * (module.buffer_frames + 1)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, CausalConvBlock)]
    try:
        model.video_backbone(clip)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def count_flops(model: GrwVideoClassifier, frames: int, resolution: int) -> FlopCount:
    """fvcore counts for the backbone over a whole clip and for the head over its embeddings."""
    clip = torch.zeros(1, frames, 3, resolution, resolution)
    with torch.no_grad():
        backbone, skipped = _count(model.video_backbone, (clip,))
        backbone += temporal_conv_flops(model, clip) / 1e9
        embeddings = model.video_backbone(clip)
        head, head_skipped = _count(ClassifierHead(model), (embeddings,))
    for op, n in head_skipped.items():
        skipped[op] = skipped.get(op, 0) + n
    return FlopCount(frames, resolution, backbone, head,
                     sum(p.numel() for p in model.parameters()), skipped)
