"""Inference-time folding: fewer, cheaper operators with the same outputs (float rounding aside).

Exporters call :func:`fold_for_inference` so that every target gets graphs without batch
norms and without the ReZero multiplications.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from grw_edge.models.layers import ConvNormAct
from grw_edge.models.movinet import Bottleneck


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


def fold_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with batch norms and ReZero scales folded away."""
    folded = copy.deepcopy(model).eval()
    return fold_rezero_(fold_batch_norms_(folded))
