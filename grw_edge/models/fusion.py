"""Inference-time folding: fewer, cheaper operators with the same outputs (float rounding aside).

Exporters call :func:`fold_for_inference` so that every target gets graphs without batch
norms and without the ReZero multiplications.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from grw_edge.models.layers import ConvNormAct, TfHardSigmoid
from grw_edge.models.movinet import Bottleneck, SqueezeExcitation


def fold_batch_norms_(model: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm into the convolution before it (in place)."""
    for block in model.modules():
        if isinstance(block, ConvNormAct) and isinstance(block.norm, nn.modules.batchnorm._BatchNorm):
            block[0] = fuse_conv_bn_eval(block[0], block.norm)
            block.norm = nn.Identity()
    return model


@torch.no_grad()
def fold_rezero_(model: nn.Module) -> nn.Module:
    """Scale each bottleneck's projection by its ReZero alpha and drop the multiplication.

    Needs the batch norms folded first, so that the projection is a plain affine map.
    """
    for block in model.modules():
        if isinstance(block, Bottleneck) and block.alpha is not None:
            project = block.project.conv_1
            if not isinstance(project.norm, nn.Identity) or not isinstance(project.act, nn.Identity):
                raise ValueError("fold the batch norms before the ReZero scales")
            conv = project[0]
            conv.weight.mul_(block.alpha)
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
            conv.bias.mul_(block.alpha)
            block.alpha = None
    return model


@torch.no_grad()
def fold_tf_hard_sigmoid_(model: nn.Module) -> nn.Module:
    """Turn each SE gate clamp(0.2 x + 0.5) into torch's hardsigmoid(1.2 x), the 1.2 folded
    into the convolution before it: one standard operator instead of three."""
    for block in model.modules():
        if isinstance(block, SqueezeExcitation) and isinstance(block.activation_2, TfHardSigmoid):
            conv = block.fc2.conv_1[0]
            conv.weight.mul_(1.2)
            if conv.bias is not None:
                conv.bias.mul_(1.2)
            block.activation_2 = nn.Hardsigmoid()
    return model


def fold_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with batch norms, ReZero scales and TF gates folded."""
    folded = copy.deepcopy(model).eval()
    return fold_tf_hard_sigmoid_(fold_rezero_(fold_batch_norms_(folded)))
