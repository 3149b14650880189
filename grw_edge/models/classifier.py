"""The GRW video classifier: MoViNet backbone -> per-frame embeddings Z -> LayerNorm -> head.

Module and parameter names mirror the upstream ``ActionRecognitionModel`` so that its
snapshots load with ``strict=True``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from grw_edge.errors import InputShapeError
from grw_edge.models.head import HeadConfig, TemporalTransformerHead
from grw_edge.models.movinet import MoViNetEncoder, States
from grw_edge.registry import BackboneSpec, get_backbone


class MoViNetBackbone(nn.Module):
    """Frames (B, N, 3, H, W) in [0, 1] -> per-frame embeddings (B, N, E)."""

    def __init__(self, spec: BackboneSpec, embed_dim: int, *, max_drop_path_rate: float = 0.0
                 ) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dim = embed_dim
        self._encoder = MoViNetEncoder(spec.arch, embed_dim, causal=spec.causal,
                                       max_drop_path_rate=max_drop_path_rate)

    @property
    def encoder(self) -> MoViNetEncoder:
        return self._encoder

    def forward(self, frames: Tensor) -> Tensor:
        """Frames (B, N, 3, H, W) -> embeddings (B, N, E), starting from the initial state."""
        if self.spec.causal:  # the causal encoder is frames-first already
            return self._encoder(frames, keep_states=False)[0]
        return self._encoder(frames.transpose(1, 2))[0]

    def step(self, frames: Tensor, states: Mapping[str, Tensor] | None = None
             ) -> tuple[Tensor, States]:
        """Channels-first frames (B, 3, t, H, W) plus states -> ((B, t, E), next states).

        This is DESIGN.md's streaming contract.  ``states=None`` starts a new stream.
        Base (non-causal) backbones have no states and must be given the whole clip.  An
        encoder switched to channels last (``to_channels_last_``) takes (B, t, H, W, 3).
        """
        if self._encoder.channels_last:
            if frames.dim() != 5 or frames.shape[-1] != 3:
                raise InputShapeError(f"expected channels-last frames (B, T, H, W, 3), got "
                                      f"{tuple(frames.shape)}")
            return self._encoder(frames, states)
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise InputShapeError(
                f"expected frames of shape (B, 3, T, H, W), got {tuple(frames.shape)}")
        if self.spec.causal:  # to frames-first; for one frame the memory layout is the same
            b, c, t, h, w = frames.shape
            frames = frames.reshape(b, 1, c, h, w) if t == 1 else frames.transpose(1, 2)
        return self._encoder(frames, states)


class GrwVideoClassifier(nn.Module):
    """Upstream-compatible classifier: ``forward(X) -> (logits, Z)``.

    X is (B, N, 3, H, W) in [0, 1]; logits (B, num_classes); Z the backbone embeddings
    reshaped to (B, N / T, T, E), the sub-sequences the GRW loss smooths.
    """

    def __init__(self, video_backbone: MoViNetBackbone, head: HeadConfig, T: int, *,
                 dropout: float = 0.0, stochastic_depth: float = 0.0) -> None:
        super().__init__()
        if head.embed_dim != video_backbone.embed_dim:
            raise ValueError(f"head embed_dim {head.embed_dim} != backbone embed_dim "
                             f"{video_backbone.embed_dim}")
        self.T = T
        self.head_config = head
        self.video_backbone = video_backbone
        self.ln = nn.LayerNorm(head.embed_dim)
        self.attention = TemporalTransformerHead(head, dropout=dropout,
                                                 stochastic_depth=stochastic_depth)

    @property
    def backbone_spec(self) -> BackboneSpec:
        return self.video_backbone.spec

    def classify(self, embeddings: Tensor) -> Tensor:
        """Per-frame embeddings (B, N, E), any N >= 1 -> logits (B, num_classes)."""
        return self.attention(self.ln(embeddings))

    def forward(self, X: Tensor) -> tuple[Tensor, Tensor]:
        if X.dim() != 5 or X.shape[2] != 3:
            raise InputShapeError(f"expected X of shape (B, N, 3, H, W), got {tuple(X.shape)}")
        B, N = X.shape[:2]
        if N % self.T:
            raise InputShapeError(f"the number of frames N={N} must be a multiple of T={self.T}")
        Z = self.video_backbone(X)
        logits = self.classify(Z)
        return logits, Z.reshape(B, N // self.T, self.T, -1)


def create_model(backbone: str | BackboneSpec, *, head: HeadConfig | None = None, T: int = 5,
                 dropout: float = 0.0, stochastic_depth: float = 0.0,
                 max_drop_path_rate: float = 0.0) -> GrwVideoClassifier:
    """A freshly initialised GRW classifier for a registered backbone (train mode)."""
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    head = head or HeadConfig()
    model = GrwVideoClassifier(
        MoViNetBackbone(spec, head.embed_dim, max_drop_path_rate=max_drop_path_rate),
        head, T, dropout=dropout, stochastic_depth=stochastic_depth)
    model.apply(_init_weights)
    return model


def _init_weights(module: nn.Module) -> None:
    """He init for convolutions, identity batch norms; ReZero alphas stay at 0."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def random_model(backbone: str | BackboneSpec, *, seed: int = 0, head: HeadConfig | None = None,
                 T: int = 5) -> GrwVideoClassifier:
    """An eval-mode model with seeded random weights and every branch live, to try the
    toolchain without a checkpoint: unlike the training initialisation (ReZero alphas at
    0, which silence every residual branch and so every state), changing any state
    changes the outputs, so parity checks on it can catch state defects."""
    return randomize_(create_model(backbone, head=head, T=T), seed).eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Draw every saved parameter and buffer at random (batch-norm statistics and ReZero alphas
    included) so that no branch is silent; for tests and parity checks, not training.

    Weights are scaled by 1 / sqrt(fan-in) so activations stay of order one through deep
    networks, as in trained ones, and float32 rounding stays far below the parity bars.
    """
    generator = torch.Generator().manual_seed(seed)
    saved = model.state_dict().keys()  # not the constants kept as buffers (counter tables)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if not tensor.is_floating_point() or name not in saved:
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if tensor.dim() >= 2:  # conv / linear weights
            tensor.copy_(noise / math.sqrt(tensor[0].numel()))
        elif name.endswith(("running_var", ".weight")):  # variances and norm scales
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        else:  # biases, running means, ReZero alphas
            tensor.copy_(noise * 0.3)
    return model
