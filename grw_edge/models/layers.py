"""Small building blocks shared by the MoViNet variants.

Parameter names follow the upstream GRW code (``conv2d``/``conv3d``, ``norm``, ``act``)
so that published snapshots load key for key.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, kept by the PyTorch MoViNet port


class TfHardSigmoid(nn.Module):
    """TensorFlow's hard sigmoid, clamp(0.2 x + 0.5, 0, 1) (not torch's x / 6 + 0.5)."""

    def forward(self, x: Tensor) -> Tensor:
        return (0.2 * x + 0.5).clamp(min=0.0, max=1.0)


class Swish(nn.Module):
    """x * sigmoid(x), the base (3D) MoViNet activation."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


def same_padding_amounts(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one spatial axis."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """Pad the last two (H, W) axes of ``x`` the way TensorFlow's 'SAME' convolution does."""
    top, bottom = same_padding_amounts(x.shape[-2], kernel[0], stride[0])
    left, right = same_padding_amounts(x.shape[-1], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom))


class ConvNormAct(nn.Sequential):
    """Convolution, optional batch norm and optional activation, named as upstream."""

    def __init__(
        self,
        conv: nn.Conv2d | nn.Conv3d,
        norm: nn.Module | None = None,
        act: nn.Module | None = None,
    ) -> None:
        conv_name = "conv3d" if isinstance(conv, nn.Conv3d) else "conv2d"
        super().__init__(OrderedDict([
            (conv_name, conv),
            ("norm", norm if norm is not None else nn.Identity()),
            ("act", act if act is not None else nn.Identity()),
        ]))


class TfAvgPool(nn.Module):
    """3x3 spatial average pool with stride 2 and TensorFlow 'SAME' semantics.

    Padded positions are not counted in the mean, exactly as TF does and as the
    upstream port emulates (odd sizes pad both sides, even sizes pad the far side).  Written
    as a plain pool of the zero-padded input divided by the share of real values under each
    window (the same pool of ones), so that every target has the operators and no tensor is
    built from host data (a CUDA graph forbids it).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Pools the last two axes of x, (N, C, H, W) or (B, C, T, H, W)."""
        height, width = x.shape[-2:]
        if height != width:
            raise ValueError(f"TF-like pooling needs square frames, got {height}x{width}")
        before, after = same_padding_amounts(width, 3, 2)
        pads = (before, after, before, after)
        planes = x.flatten(0, -4)  # 2D pooling over (..., C', H, W)
        pooled = F.avg_pool2d(F.pad(planes, pads), 3, stride=2)
        real = F.avg_pool2d(F.pad(torch.ones_like(planes[:1, :1]), pads), 3, stride=2)
        return (pooled / real).reshape(*x.shape[:-2], *pooled.shape[-2:])
