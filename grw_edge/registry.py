"""Backbone registry: a backbone name maps to everything that is fixed about it.

The architectures are MoViNet A0-A3 as configured by the upstream GRW code (the
``movinets`` configs of gilgoldm/MoViNet-pytorch); the evaluation settings are the
paper's (PAPER_NOTES.md).  Causal backbones run (2+1)D convolutions and can stream
one frame at a time; the base backbone (A3B) is a 3D network that needs the whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass

from grw_edge.errors import UnknownBackboneError

Triple = tuple[int, int, int]

HUB_REPO_ID = "DrGil/grw-smoothing-movinet"


@dataclass(frozen=True)
class BottleneckSpec:
    """One inverted-bottleneck block: 1x1 expand, depthwise conv, SE, 1x1 project."""

    in_channels: int
    out_channels: int
    expanded_channels: int
    kernel_size: Triple
    spatial_stride: int


@dataclass(frozen=True)
class MoViNetArch:
    """Channel and kernel layout of one MoViNet variant."""

    name: str
    stem_channels: int  # conv1: 3 -> stem_channels, kernel (1, 3, 3), stride (1, 2, 2)
    stages: tuple[tuple[BottleneckSpec, ...], ...]
    head_channels: int  # conv7: last block -> head_channels, 1x1x1

    @property
    def last_block_channels(self) -> int:
        return self.stages[-1][-1].out_channels


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: architecture, streaming ability and evaluation protocol."""

    name: str
    arch: MoViNetArch
    causal: bool
    resolution: int  # centre-crop side
    resize: int  # square resize before the crop
    frames_per_clip: int
    fps: float
    hub_filename: str
    upstream_class: str  # class path pickled into upstream snapshots under 'backbone'

    @property
    def embed_source(self) -> str:
        """Where the per-frame feature comes from before the embedding Linear."""
        return f"spatial mean of conv7 ({self.arch.head_channels} channels)"


def _stage(*blocks: tuple[int, int, int, Triple, int]) -> tuple[BottleneckSpec, ...]:
    return tuple(BottleneckSpec(*block) for block in blocks)


K3 = (3, 3, 3)
K5 = (5, 3, 3)
S5 = (1, 5, 5)
S3 = (1, 3, 3)

# Each block: (in, out, expanded, kernel (t, h, w), spatial stride).
MOVINET_A0 = MoViNetArch(
    name="A0",
    stem_channels=8,
    stages=(
        _stage((8, 8, 24, S5, 2)),
        _stage((8, 32, 80, K3, 2), (32, 32, 80, K3, 1), (32, 32, 80, K3, 1)),
        _stage((32, 56, 184, K5, 2), (56, 56, 112, K3, 1), (56, 56, 184, K3, 1)),
        _stage((56, 56, 184, K5, 1), (56, 56, 184, K3, 1), (56, 56, 184, K3, 1),
               (56, 56, 184, K3, 1)),
        _stage((56, 104, 384, K5, 2), (104, 104, 280, S5, 1), (104, 104, 280, S5, 1),
               (104, 104, 344, S5, 1)),
    ),
    head_channels=480,
)

MOVINET_A1 = MoViNetArch(
    name="A1",
    stem_channels=16,
    stages=(
        _stage((16, 16, 40, S5, 2), (16, 16, 40, K3, 1)),
        _stage((16, 40, 96, K3, 2), (40, 40, 120, K3, 1), (40, 40, 96, K3, 1),
               (40, 40, 96, K3, 1)),
        _stage((40, 64, 216, K5, 2), (64, 64, 128, K3, 1), (64, 64, 216, K3, 1),
               (64, 64, 168, K3, 1), (64, 64, 216, K3, 1)),
        _stage((64, 64, 216, K5, 1), (64, 64, 216, K3, 1), (64, 64, 216, K3, 1),
               (64, 64, 128, K3, 1), (64, 64, 128, S5, 1), (64, 64, 216, K3, 1)),
        _stage((64, 136, 456, K5, 2), (136, 136, 360, S5, 1), (136, 136, 360, S5, 1),
               (136, 136, 360, S5, 1), (136, 136, 456, S5, 1), (136, 136, 456, K3, 1),
               (136, 136, 544, S3, 1)),
    ),
    head_channels=600,
)

MOVINET_A2 = MoViNetArch(
    name="A2",
    stem_channels=16,
    stages=(
        _stage((16, 16, 40, S5, 2), (16, 16, 40, K3, 1), (16, 16, 64, K3, 1)),
        _stage((16, 40, 96, K3, 2), (40, 40, 120, K3, 1), (40, 40, 96, K3, 1),
               (40, 40, 96, K3, 1), (40, 40, 120, K3, 1)),
        _stage((40, 72, 240, K5, 2), (72, 72, 160, K3, 1), (72, 72, 240, K3, 1),
               (72, 72, 192, K3, 1), (72, 72, 240, K3, 1)),
        _stage((72, 72, 240, K5, 1), (72, 72, 240, K3, 1), (72, 72, 240, K3, 1),
               (72, 72, 240, K3, 1), (72, 72, 144, S5, 1), (72, 72, 240, K3, 1)),
        _stage((72, 144, 480, K5, 2), (144, 144, 384, S5, 1), (144, 144, 384, S5, 1),
               (144, 144, 480, S5, 1), (144, 144, 480, S5, 1), (144, 144, 480, K3, 1),
               (144, 144, 576, S3, 1)),
    ),
    head_channels=640,
)

MOVINET_A3 = MoViNetArch(
    name="A3",
    stem_channels=16,
    stages=(
        _stage((16, 16, 40, S5, 2), (16, 16, 40, K3, 1), (16, 16, 64, K3, 1),
               (16, 16, 40, K3, 1)),
        _stage((16, 48, 112, K3, 2), (48, 48, 144, K3, 1), (48, 48, 112, K3, 1),
               (48, 48, 112, S5, 1), (48, 48, 144, K3, 1), (48, 48, 144, K3, 1)),
        _stage((48, 80, 240, K5, 2), (80, 80, 152, K3, 1), (80, 80, 240, K3, 1),
               (80, 80, 192, K3, 1), (80, 80, 240, K3, 1)),
        _stage((80, 88, 264, K5, 1), (88, 88, 264, K3, 1), (88, 88, 264, K3, 1),
               (88, 88, 264, K3, 1), (88, 88, 160, S5, 1), (88, 88, 264, K3, 1),
               (88, 88, 264, K3, 1), (88, 88, 264, K3, 1)),
        _stage((88, 168, 560, K5, 2), (168, 168, 448, S5, 1), (168, 168, 448, S5, 1),
               (168, 168, 560, S5, 1), (168, 168, 560, S5, 1), (168, 168, 560, K3, 1),
               (168, 168, 448, S5, 1), (168, 168, 448, S5, 1), (168, 168, 560, K3, 1),
               (168, 168, 672, S3, 1)),
    ),
    head_channels=744,
)

_UPSTREAM_BACKBONES = "grw_smoothing_models.backbones.movinets"

_REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("movineta0s", MOVINET_A0, causal=True, resolution=172, resize=200,
                     frames_per_clip=50, fps=5, hub_filename="a0s_grw.pt",
                     upstream_class=f"{_UPSTREAM_BACKBONES}.a0s.a0s_backbone.MovinetBackbone"),
        BackboneSpec("movineta1s", MOVINET_A1, causal=True, resolution=172, resize=200,
                     frames_per_clip=50, fps=5, hub_filename="a1s_grw.pt",
                     upstream_class=f"{_UPSTREAM_BACKBONES}.a1s.a1s_backbone.MovinetBackbone"),
        BackboneSpec("movineta2s", MOVINET_A2, causal=True, resolution=224, resize=256,
                     frames_per_clip=50, fps=5, hub_filename="a2s_grw.pt",
                     upstream_class=f"{_UPSTREAM_BACKBONES}.a2s.a2s_backbone.MovinetBackbone"),
        BackboneSpec("movineta3b", MOVINET_A3, causal=False, resolution=256, resize=300,
                     frames_per_clip=120, fps=12, hub_filename="a3b_grw.pt",
                     upstream_class=f"{_UPSTREAM_BACKBONES}.a3b.a3b_backbone.MovinetBackbone"),
    )
}


def list_backbones() -> list[str]:
    """Names of all registered backbones, in registry order."""
    return list(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """Look a backbone up by name; an unknown name raises an error listing the valid ones."""
    key = name.strip().lower()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(_REGISTRY)}"
        ) from None
