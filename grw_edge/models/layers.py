"""Small building blocks shared by the MoViNet variants.

Parameter names follow the upstream GRW code (``conv2d``/``conv3d``, ``norm``, ``act``)
so that published snapshots load key for key.
"""
from __future__ import annotations

import functools
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


def pad_same(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], *,
             channels_last: bool = False) -> Tensor:
    """Pad the (H, W) axes of ``x`` (its last two, or the two before the channels) the way
    TensorFlow's 'SAME' convolution does."""
    height, width = x.shape[-3:-1] if channels_last else x.shape[-2:]
    top, bottom = same_padding_amounts(height, kernel[0], stride[0])
    left, right = same_padding_amounts(width, kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (0, 0, left, right, top, bottom) if channels_last
                 else (left, right, top, bottom))


def channels_first(module: nn.Module, x: Tensor) -> Tensor:
    """``module`` (written for (N, C, H, W)) on channels-last ``x`` (N, H, W, C).  Converters
    fold these transposes into their own channels-last kernels."""
    return module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvNormAct(nn.Sequential):
    """Convolution, optional batch norm and optional activation, named as upstream.

    ``channels_last`` (set by ``grw_edge.models.movinet.to_channels_last_``): the input and
    output are (N, H, W, C).
    """

    channels_last = False

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

    def forward(self, x: Tensor) -> Tensor:
        return channels_first(super().forward, x) if self.channels_last else super().forward(x)


class TfAvgPool(nn.Module):
    """3x3 spatial average pool with stride 2 and TensorFlow 'SAME' semantics.

    Padded positions are not counted in the mean, exactly as TF does and as the
    upstream port emulates (odd sizes pad both sides, even sizes pad the far side).  Written
    as a plain pool of the zero-padded input divided by the share of real values under each
    window (the same pool of ones), so that every target has the operators and no tensor is
    built from host data (a CUDA graph forbids it).  ``channels_last``: x is (N, H, W, C).
    """

    channels_last = False

    def forward(self, x: Tensor) -> Tensor:
        """Pools the (H, W) axes of x, (N, C, H, W) or (B, C, T, H, W), or channels-last
        frames (N, H, W, C)."""
        shape = x.shape
        height, width = shape[-3:-1] if self.channels_last else shape[-2:]
        if height != width:
            raise ValueError(f"TF-like pooling needs square frames, got {height}x{width}")
        before, after = same_padding_amounts(width, 3, 2)
        if self.channels_last:
            pads = (0, 0, before, after, before, after)
            pool = functools.partial(channels_first, _pool3x3)
            ones = torch.ones_like(x[:1, :, :, :1])
        else:
            x = x.flatten(0, -4)  # (..., C', H, W)
            pads, pool, ones = (before, after, before, after), _pool3x3, torch.ones_like(x[:1, :1])
        pooled = pool(F.pad(x, pads)) / pool(F.pad(ones, pads))  # padding does not count
        if self.channels_last:
            return pooled
        return pooled.reshape(*shape[:-2], *pooled.shape[-2:])


def _pool3x3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=2)
