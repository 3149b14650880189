"""The evaluation transform of the upstream code, in torch for the datasets and the reference.

uint8 frames -> float / 255 -> bilinear antialiased resize to (S, S) -> centre crop to R.
No mean/std normalisation.  Sessions use the device runtime's numpy twin
(``grw_edge_runtime.preprocess``), which the tests hold to this one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from grw_edge.data.video import Sampling
from grw_edge.errors import InputShapeError

if TYPE_CHECKING:
    from grw_edge.manifest import Manifest
    from grw_edge.registry import BackboneSpec


def preprocess_frames(frames: Tensor | np.ndarray, *, resize: int, crop: int) -> Tensor:
    """uint8 frames (..., H, W, 3) -> float32 (..., 3, crop, crop) in [0, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() < 3 or frames.shape[-1] != 3:
        raise InputShapeError(f"raw frames must be uint8 (..., H, W, 3), got "
                              f"{str(frames.dtype).removeprefix('torch.')} {tuple(frames.shape)}")
    x = frames.movedim(-1, -3).to(torch.float32) / 255
    x = TF.resize(x, [resize, resize], antialias=True)
    return TF.center_crop(x, [crop, crop])


@dataclass(frozen=True)
class ClipProtocol:
    """How clips are sampled and transformed: N frames at ``fps`` (chosen by upstream's index
    rule, or by presentation time), resized then cropped."""

    frames: int
    fps: float
    resize: int
    crop: int
    sampling: Sampling = "index"

    @classmethod
    def for_backbone(cls, spec: BackboneSpec, resolution: int | None = None) -> ClipProtocol:
        """The paper's protocol for a backbone; another resolution keeps the resize ratio."""
        crop = resolution or spec.resolution
        return cls(spec.frames_per_clip, spec.fps, round(crop * spec.resize / spec.resolution),
                   crop)

    @classmethod
    def for_manifest(cls, manifest: Manifest) -> ClipProtocol:
        preprocess = manifest.input["preprocess"]
        return cls(manifest.frames_per_clip, manifest.fps, int(preprocess["resize"][0]),
                   int(preprocess["center_crop"][0]))

    def override(self, frames: int | None = None, fps: float | None = None,
                 sampling: Sampling | None = None) -> ClipProtocol:
        return replace(self, frames=frames or self.frames, fps=fps or self.fps,
                       sampling=sampling or self.sampling)
