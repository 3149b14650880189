"""The temporal head: sin-cos positions, a pre-norm transformer over frame embeddings, mean over time."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision
from torch import Tensor, nn

MASKED_SCORE = 1e9  # subtracted from the attention scores of padding: softmax gives it 0


@dataclass(frozen=True)
class HeadConfig:
    """Sizes of the transformer head (upstream ``TransformerParams``)."""

    embed_dim: int = 256
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    num_classes: int = 600

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def sincos_positions(num_frames: int, dim: int, *, temperature: float = 10000.0,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | None = None) -> Tensor:
    """1D sin-cos position table (num_frames, dim): sines in the first half, cosines in the second."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even dimension, got {dim}")
    positions = torch.arange(num_frames, device=device)
    omega = torch.arange(dim // 2, device=device) / (dim // 2 - 1)
    omega = 1.0 / (temperature ** omega)
    angles = positions[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1).to(dtype)


class FeedForward(nn.Module):
    """Pre-norm MLP: LayerNorm, Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, N, E), batch first throughout.

    Parameters are named and initialised as ``nn.MultiheadAttention``'s (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``), so upstream snapshots load unchanged; unlike it, the
    sequence is never moved to the front, so exported graphs carry no Transpose before the
    projections (onnxruntime's CPU layout pass crashes on that pattern in float16).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{num_heads} heads do not divide the embedding dim {dim}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``mask`` (B, N): 1 for frames, 0 for padding, which no frame attends to."""
        batch, tokens, dim = x.shape
        heads = self.num_heads
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(batch, tokens, 3 * heads, dim // heads).transpose(1, 2).chunk(3, 1)
        scores = q @ k.transpose(-2, -1) * (dim // heads) ** -0.5
        if mask is not None:
            scores = scores + (mask[:, None, None, :] - 1) * MASKED_SCORE
        weights = torch.softmax(scores, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class PreNormLayer(nn.ModuleList):
    """One transformer layer; a ModuleList so its parameters are named ``0/1/2`` as upstream."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__([nn.LayerNorm(dim),
                          SelfAttention(dim, num_heads),
                          FeedForward(dim, mlp_dim)])

    def forward(self, x: Tensor, drop_path: float = 0.0, mask: Tensor | None = None) -> Tensor:
        norm, attention, feed_forward = self
        normed = norm(x)
        attended = attention(normed, mask)
        x = x + torchvision.ops.stochastic_depth(attended, drop_path, "row", self.training)
        return x + torchvision.ops.stochastic_depth(feed_forward(x), drop_path, "row",
                                                    self.training)


class Transformer(nn.Module):
    """A stack of pre-norm layers and a final LayerNorm."""

    def __init__(self, config: HeadConfig, stochastic_depth: float = 0.0) -> None:
        super().__init__()
        self.stochastic_depth = stochastic_depth
        self.norm = nn.LayerNorm(config.embed_dim)
        self.layers = nn.ModuleList(
            PreNormLayer(config.embed_dim, config.num_heads, config.mlp_dim)
            for _ in range(config.depth))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, self.stochastic_depth, mask)
        return self.norm(x)


class TemporalTransformerHead(nn.Module):
    """(B, N, E) frame embeddings -> (B, num_classes) logits; accepts any N.

    With a ``mask`` (B, N) of 1 for the first n frames and 0 for padding after them, the
    logits are those of the first n frames alone: a fixed-size window for runtimes whose
    graphs have static shapes.
    """

    def __init__(self, config: HeadConfig, *, dropout: float = 0.0,
                 stochastic_depth: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        self.transformer = Transformer(config, stochastic_depth)
        self.linear_head = nn.Linear(config.embed_dim, config.num_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + sincos_positions(x.shape[1], x.shape[2], dtype=x.dtype, device=x.device)
        x = self.transformer(x, mask)
        if mask is None:
            x = x.mean(dim=1)
        else:
            x = (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        x = nn.functional.dropout(x, p=self.dropout, training=self.training)
        return self.linear_head(x)
