"""The evaluation transform of the upstream code, shared by the datasets and the runtimes.

uint8 frames -> float / 255 -> bilinear antialiased resize to (S, S) -> centre crop to R.
No mean/std normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from grw_edge.errors import InputShapeError


def preprocess_frames(frames: Tensor | np.ndarray, *, resize: int, crop: int) -> Tensor:
    """uint8 frames (..., H, W, 3) -> float32 (..., 3, crop, crop) in [0, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() < 3 or frames.shape[-1] != 3:
        raise InputShapeError(f"raw frames must be uint8 (..., H, W, 3), got "
                              f"{str(frames.dtype).removeprefix('torch.')} {tuple(frames.shape)}")
    x = frames.movedim(-1, -3).to(torch.float32) / 255
    x = TF.resize(x, [resize, resize], antialias=True)
    return TF.center_crop(x, [crop, crop])
