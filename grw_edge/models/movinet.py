"""MoViNet encoders as used by GRW-smoothing: causal (2+1)D streams and base 3D clips.

A causal encoder is a pure function of its input frames and an explicit state
dictionary: ``encoder(x, states) -> (embeddings, next_states)``.  ``states=None``
means "start of the stream" (all zeros), which is how the upstream code runs a whole
clip, so the whole-clip forward and the frame-by-frame stream are the same code.

Layouts: inside a causal encoder activations are a batch of frames, (B * T, C, H, W),
so every 2D layer runs on them directly and only the two temporal operations (the
temporal convolution and the SE's cumulative mean) view them as (B, T, C, H, W); a
streamed step never transposes.  Base encoders are channels-first, (B, C, T, H, W).

State names (stable, used by the exporters), all frames-first:
  ``blocks.<block>.deep.buffer``  (B, k_t - 1, C, H, W) last frames entering a temporal conv
  ``blocks.<block>.se.means``     (B, L, C, 1, 1) the SE's cumulative mean over time, kept
                                  as L level means (see :class:`FrameCounter`)
  ``frame_count``                 (B, L) frames seen so far as base-32 digits, least
                                  significant first (floats, each an integer <= 2048)

Why levels: a running sum grows without bound and a single running mean stops moving once
its increments fall below half a unit in the last place, so either drifts on long streams
in float16 (and, after ~10^7 frames, in float32).  Level j holds the mean of the current,
incomplete block of 32^j frames, built from at most 32 entries (2048 at the top level), so
every state stays bounded and is accurate to a few units in the last place of its dtype
whatever the stream's length; the counter's digits are integers float16 holds exactly.
Exact up to 32^4 * 2048 = 2^31 frames (13 years at 5 fps); after that the top level
becomes a moving average over its last 2048 entries.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from grw_edge.models.layers import (
    BN_EPS,
    ConvNormAct,
    Swish,
    TfAvgPool,
    TfHardSigmoid,
    pad_same,
)
from grw_edge.registry import BottleneckSpec, MoViNetArch

States = dict[str, Tensor]
FRAME_COUNT = "frame_count"
SE_MEANS = "se.means"
COUNT_BASE = 32  # frames per level-0 block, level-0 blocks per level-1 block, ...
COUNT_LEVELS = 5
COUNT_TOP = 2048  # the top digit stops here: float16 holds every integer up to 2048


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _window(buffer: Tensor, clip: Tensor, start: int, length: int) -> Tensor:
    """Frames ``start:start + length`` of ``cat(buffer, clip)`` along time, without building
    the whole concatenation (a streamed step then copies no more than it must)."""
    held = buffer.shape[1]
    if start + length <= held:
        return buffer[:, start:start + length]
    if start >= held:
        return clip[:, start - held:start - held + length]
    return torch.cat((buffer[:, start:], clip[:, :start + length - held]), dim=1)


def _temporal_depthwise(buffer: Tensor, clip: Tensor, conv: nn.Conv2d, *,
                        channels_last: bool = False) -> Tensor:
    """A causal depthwise (k, 1) convolution over time of frames-first clips
    (B, T, C, H, W), or (B, T, H, W, C) when ``channels_last``, whose k - 1 preceding
    frames are ``buffer``.

    Written as k per-channel multiply-adds of shifted frames instead of a convolution, so
    that a streamed step needs no transpose and no im2col; equal up to float rounding.
    """
    kernel = conv.weight[:, 0, :, 0].T  # (k, C)
    kernel = kernel[:, None, None, :] if channels_last else kernel[:, :, None, None]
    frames = clip.shape[1]
    y = sum(_window(buffer, clip, i, frames) * kernel[i] for i in range(kernel.shape[0]))
    if conv.bias is not None:
        y = y + (conv.bias if channels_last else conv.bias.reshape(-1, 1, 1))
    return y


def _norm(causal: bool, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=BN_EPS) if causal else nn.BatchNorm3d(channels, eps=BN_EPS)


def _activation(causal: bool) -> nn.Module:
    return nn.Hardswish() if causal else Swish()


class ConvBlock(nn.Module):
    """A convolution with no temporal memory: 2D on a frame batch (causal) or 3D (base).

    Spatial padding is TensorFlow 'SAME'; a base 3D convolution pads time symmetrically.
    """

    channels_last = False  # see to_channels_last_

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (1, 1, 1),
        *,
        causal: bool,
        spatial_stride: int = 1,
        groups: int = 1,
        norm: bool = True,
        activation: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        kt, kh, kw = kernel_size
        self.spatial_kernel = (kh, kw)
        self.spatial_stride = (spatial_stride, spatial_stride)
        self.causal = causal
        if causal:
            if kt != 1:
                raise ValueError("a causal ConvBlock has no temporal extent; use CausalConvBlock")
            conv: nn.Conv2d | nn.Conv3d = nn.Conv2d(
                in_channels, out_channels, (kh, kw), stride=self.spatial_stride,
                groups=groups, bias=bias)
        else:
            conv = nn.Conv3d(
                in_channels, out_channels, kernel_size, stride=(1, *self.spatial_stride),
                padding=((kt - 1) // 2, 0, 0), groups=groups, bias=bias)
        self.conv_1 = ConvNormAct(
            conv,
            _norm(causal, out_channels) if norm else None,
            _activation(causal) if activation else None,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1(pad_same(x, self.spatial_kernel, self.spatial_stride,
                                    channels_last=self.channels_last))


class CausalConvBlock(nn.Module):
    """(2+1)D depthwise convolution: spatial conv, then a causal temporal conv.

    The temporal conv sees the last ``k_t - 1`` frames of its input through a stream
    buffer instead of padding, so its output for frame ``i`` depends on frames <= ``i``.
    """

    channels_last = False  # see to_channels_last_

    def __init__(self, channels: int, kernel_size: tuple[int, int, int], *,
                 spatial_stride: int = 1) -> None:
        super().__init__()
        kt, kh, kw = kernel_size
        if kt < 2:
            raise ValueError("CausalConvBlock needs a temporal kernel of at least 2")
        self.buffer_frames = kt - 1
        self.spatial_kernel = (kh, kw)
        self.spatial_stride = (spatial_stride, spatial_stride)
        self.conv_1 = ConvNormAct(
            nn.Conv2d(channels, channels, (kh, kw), stride=self.spatial_stride,
                      groups=channels, bias=False),
            _norm(True, channels), _activation(True))
        self.conv_2 = ConvNormAct(
            nn.Conv2d(channels, channels, (kt, 1), groups=channels, bias=False),
            _norm(True, channels), _activation(True))

    def forward(self, x: Tensor, batch: int, buffer: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """A frame batch x (B * t, C, H, W) and the buffer (B, k_t - 1, C, H', W')
        (channels last: (B * t, H, W, C) and (B, k_t - 1, H', W', C))."""
        x = self.conv_1(pad_same(x, self.spatial_kernel, self.spatial_stride,
                                 channels_last=self.channels_last))
        clip = x.unflatten(0, (batch, -1))
        if buffer is None:
            buffer = clip.new_zeros(batch, self.buffer_frames, *clip.shape[2:])
        next_buffer = _window(buffer, clip, clip.shape[1], self.buffer_frames)
        y = _temporal_depthwise(buffer, clip, self.conv_2.conv2d,
                                channels_last=self.channels_last).flatten(0, 1)
        return self.conv_2.act(self.conv_2.norm(y)), next_buffer


class SqueezeExcitation(nn.Module):
    """Channel gating from pooled features.

    Causal: the pool is a cumulative mean over time (memory: a running sum and the
    frame count), concatenated with the current frame's spatial mean.  Base: a global
    mean over time and space.
    """

    channels_last = False  # see to_channels_last_

    def __init__(self, channels: int, *, causal: bool, squeeze_factor: int = 4) -> None:
        super().__init__()
        self.causal = causal
        pooled_channels = channels * (2 if causal else 1)
        squeezed = _make_divisible(channels // squeeze_factor * (2 if causal else 1))
        self.fc1 = ConvBlock(pooled_channels, squeezed, causal=causal,
                             norm=False, activation=False, bias=True)
        self.activation_1 = _activation(causal)
        self.fc2 = ConvBlock(squeezed, channels, causal=causal,
                             norm=False, activation=False, bias=True)
        self.activation_2 = TfHardSigmoid() if causal else nn.Sigmoid()

    def forward(self, x: Tensor, batch: int, means: Tensor | None = None,
                ticks: list[FrameTick] | None = None) -> tuple[Tensor, Tensor | None]:
        """``ticks``: one per frame, how the counter moves (None: a whole clip from the
        start whose memory is not kept, pooled exactly as upstream does)."""
        next_means = None
        if self.causal:  # x is a frame batch (B * T, C, H, W) or (B * T, H, W, C)
            spatial = (1, 2) if self.channels_last else (2, 3)
            spatial_mean = x.mean(dim=spatial, keepdim=True).unflatten(0, (batch, -1))
            if ticks is None:
                seen = torch.arange(1, spatial_mean.shape[1] + 1, dtype=x.dtype, device=x.device)
                cumulative = torch.cumsum(spatial_mean, dim=1) / seen.reshape(1, -1, 1, 1, 1)
            else:
                if means is None:
                    means = spatial_mean.new_zeros(batch, COUNT_LEVELS, *spatial_mean.shape[2:])
                steps = []
                for i, tick in enumerate(ticks):
                    means, mean = tick.update(means, spatial_mean[:, i:i + 1])
                    steps.append(mean)
                cumulative = steps[0] if len(steps) == 1 else torch.cat(steps, dim=1)
                next_means = means
            channels = -1 if self.channels_last else 2
            pooled = torch.cat((cumulative, spatial_mean), dim=channels).flatten(0, 1)
        else:
            pooled = F.adaptive_avg_pool3d(x, 1)
        scale = self.activation_2(self.fc2(self.activation_1(self.fc1(pooled))))
        return scale * x, next_means


class Bottleneck(nn.Module):
    """Inverted bottleneck with SE and a ReZero-scaled residual branch."""

    def __init__(self, spec: BottleneckSpec, *, causal: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.causal = causal
        self.drop_path = drop_path
        expanded = spec.expanded_channels
        self.expand = (ConvBlock(spec.in_channels, expanded, causal=causal)
                       if expanded != spec.out_channels else None)
        self.deep: ConvBlock | CausalConvBlock
        if causal and spec.kernel_size[0] > 1:
            self.deep = CausalConvBlock(expanded, spec.kernel_size,
                                        spatial_stride=spec.spatial_stride)
        else:
            self.deep = ConvBlock(expanded, expanded, spec.kernel_size, causal=causal,
                                  spatial_stride=spec.spatial_stride, groups=expanded)
        self.se = SqueezeExcitation(expanded, causal=causal)
        self.project = ConvBlock(expanded, spec.out_channels, causal=causal, activation=False)
        self.res: nn.Sequential | None = None
        if spec.spatial_stride != 1 or spec.in_channels != spec.out_channels:
            shortcut: list[nn.Module] = [TfAvgPool()] if spec.spatial_stride != 1 else []
            shortcut.append(ConvBlock(spec.in_channels, spec.out_channels, causal=causal,
                                      activation=False))
            self.res = nn.Sequential(*shortcut)
        # ReZero scale of the residual branch; None once folded into ``project`` for export.
        self.alpha: nn.Parameter | None = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor, batch: int, states: Mapping[str, Tensor],
                ticks: list[FrameTick] | None) -> tuple[Tensor, States]:
        residual = self.res(x) if self.res is not None else x
        h = self.expand(x) if self.expand is not None else x
        next_states: States = {}
        if isinstance(self.deep, CausalConvBlock):
            h, next_states["deep.buffer"] = self.deep(h, batch, states.get("deep.buffer"))
        else:
            h = self.deep(h)
        h, means = self.se(h, batch, states.get(SE_MEANS), ticks)
        if means is not None:
            next_states[SE_MEANS] = means
        h = self.project(h)
        if self.alpha is not None:
            h = self.alpha * h
        h = torchvision.ops.stochastic_depth(h, p=self.drop_path, mode="row",
                                             training=self.training)
        return residual + h, next_states


class MoViNetEncoder(nn.Module):
    """MoViNet up to conv7, then the per-frame spatial mean and a Linear to the embedding."""

    channels_last = False  # see to_channels_last_

    def __init__(self, arch: MoViNetArch, embed_dim: int, *, causal: bool,
                 max_drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.causal = causal
        self.conv1 = ConvBlock(3, arch.stem_channels, (1, 3, 3), causal=causal, spatial_stride=2)
        specs = [spec for stage in arch.stages for spec in stage]
        rates = [max_drop_path_rate * i / max(len(specs) - 1, 1) for i in range(len(specs))]
        blocks: dict[str, Bottleneck] = {}
        index = 0
        for i, stage in enumerate(arch.stages):
            for j, spec in enumerate(stage):
                blocks[f"b{i}_l{j}"] = Bottleneck(spec, causal=causal, drop_path=rates[index])
                index += 1
        self.blocks = nn.ModuleDict(blocks)
        self.conv7 = ConvBlock(arch.last_block_channels, arch.head_channels, causal=causal)
        self.classifier = nn.Linear(arch.head_channels, embed_dim)
        self.counter = FrameCounter() if causal else None

    def forward(self, x: Tensor, states: Mapping[str, Tensor] | None = None, *,
                keep_states: bool = True) -> tuple[Tensor, States]:
        """Frames (B, T, 3, H, W) if causal ((B, T, H, W, 3) channels last), (B, 3, T, H, W) if
        base -> ((B, T, E), next states).

        ``keep_states=False`` with no ``states``: a whole clip whose memory is dropped
        (training, clip evaluation); the next states are then not computed.
        """
        states = states or {}
        next_states: States = {}
        batch, frames = (x.shape[0], x.shape[1]) if self.causal else (x.shape[0], x.shape[2])
        ticks = digits = None
        if self.causal:
            x = x.flatten(0, 1)
            if states or keep_states:
                digits = states.get(FRAME_COUNT)
                if digits is None:
                    digits = x.new_zeros(batch, COUNT_LEVELS)
                ticks = []
                for _ in range(frames):
                    tick, digits = self.counter(digits)
                    ticks.append(tick)
        x = self.conv1(x)
        for name, block in self.blocks.items():
            prefix = f"blocks.{name}."
            block_states = {key[len(prefix):]: value for key, value in states.items()
                            if key.startswith(prefix)}
            x, block_next = block(x, batch, block_states, ticks)
            next_states.update({prefix + key: value for key, value in block_next.items()})
        x = self.conv7(x)
        if self.causal:
            spatial = (1, 2) if self.channels_last else (2, 3)
            features = x.mean(dim=spatial).unflatten(0, (batch, frames))
            if digits is not None:  # the counter last, as the exporters order states
                next_states[FRAME_COUNT] = digits
        else:
            features = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, C, T) -> (B, T, C)
        return self.classifier(features), next_states


def to_channels_last_(encoder: MoViNetEncoder) -> MoViNetEncoder:
    """Switch an inference-folded causal encoder, in place, to channels-last frames: input
    (B, T, H, W, 3), temporal buffers (B, k_t - 1, H, W, C) and SE level means
    (B, L, 1, 1, C).  The same computation; converters to channels-last runtimes (LiteRT)
    then need no transposes, as each convolution's permutes fold into their kernels."""
    if not encoder.causal:
        raise ValueError("channels-last frames are for causal (2D) encoders")
    if any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in encoder.modules()):
        raise ValueError("fold the batch norms first (grw_edge.models.fusion)")
    for module in encoder.modules():
        if hasattr(module, "channels_last"):
            module.channels_last = True
    return encoder


@dataclass(frozen=True)
class FrameTick:
    """How one more frame changes every SE's level means; computed once per frame from
    the counter and shared by all blocks.  Each field is (B, L, 1, 1, 1) but ``fresh``
    (B, 1, 1, 1, 1).

    The frame completes levels 0..k-1 (their digits were all 31) and lands in level k:
    the value ``v`` entering level k is the mean of the frame and of the completed levels,
    ``v = fresh * x + sum(push * means)``; level k moves to ``(1 - rate) * m + rate * v``
    (rate = 1 / its new count), the completed levels restart at 0 and the others keep
    their means: ``decay * m + rate * v``.  The cumulative mean is ``sum(share * means)``,
    each level weighted by its share of all frames seen.
    """

    push: Tensor
    fresh: Tensor
    decay: Tensor
    rate: Tensor
    share: Tensor

    def update(self, means: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Level means (B, L, C, 1, 1) and a frame's spatial means (B, 1, C, 1, 1) ->
        (next level means, the cumulative mean over every frame seen (B, 1, C, 1, 1))."""
        value = self.fresh * x + (self.push * means).sum(dim=1, keepdim=True)
        means = self.decay * means + self.rate * value
        return means, (self.share * means).sum(dim=1, keepdim=True)


def _level_tables() -> tuple[Tensor, Tensor]:
    """For a frame landing in level k (rows): the weight of each level's old mean (columns)
    and of the frame itself in the value that enters level k."""
    base, levels = COUNT_BASE, COUNT_LEVELS
    push = [[(base - 1) * float(base) ** (j - k) if j < k else 0.0 for j in range(levels)]
            for k in range(levels)]
    fresh = [[float(base) ** -k] for k in range(levels)]
    return torch.tensor(push), torch.tensor(fresh)


class FrameCounter(nn.Module):
    """How one more frame moves the counter and every SE's level means.

    The level tables are buffers (not saved in checkpoints) so they live on the module's
    device: a step captured as a CUDA graph must not build tensors from host data.  The
    update is arithmetic only (no comparison, cumulative sum, select or cast), so every
    target, XNNPACK included, runs it in its own kernels; for whole-number digits it is
    exactly the branchy definition it replaces.
    """

    def __init__(self) -> None:
        super().__init__()
        push, fresh = _level_tables()
        self.register_buffer("push_table", push, persistent=False)
        self.register_buffer("fresh_table", fresh, persistent=False)

    def forward(self, digits: Tensor) -> tuple[FrameTick, Tensor]:
        """The update of one more frame for a counter (B, L) of base-32 digits, and the
        next counter."""
        # digit j is full when it reads 31: max(d - 30, 0) is then 1, and 0 for 0..30
        full = torch.clamp(digits[:, :-1] - (COUNT_BASE - 2), min=0.0)
        completes = [full[:, :1]]  # levels 0..j all full: the frame carries past level j
        for j in range(1, COUNT_LEVELS - 1):
            completes.append(completes[-1] * full[:, j:j + 1])
        landing = torch.cat([1 - completes[0], *(below - above for below, above in
                                                 zip(completes[:-1], completes[1:])),
                             completes[-1]], dim=1)  # one-hot: the level the frame lands in
        keep = torch.cat([1 - c for c in completes] + [torch.ones_like(completes[0])], dim=1)
        counts = torch.clamp((digits + landing) * keep, max=float(COUNT_TOP))
        rate = landing / torch.clamp(counts, min=1.0)
        push, fresh = (_row(landing, table.to(digits.dtype))
                       for table in (self.push_table, self.fresh_table))
        shape = (digits.shape[0], -1, 1, 1, 1)
        tick = FrameTick(push.reshape(shape), fresh.reshape(shape), (keep - rate).reshape(shape),
                         rate.reshape(shape), level_shares(counts).reshape(shape))
        return tick, counts


def _row(one_hot: Tensor, table: Tensor) -> Tensor:
    """The rows of ``table`` that one-hot (B, L) picks, as multiply-adds (exact: every other
    term is zero), not a matrix product that quantizers would take for a layer."""
    picked = one_hot[:, :1] * table[0]
    for k in range(1, table.shape[0]):
        picked = picked + one_hot[:, k:k + 1] * table[k]
    return picked


def level_shares(counts: Tensor) -> Tensor:
    """Each level's share of all frames a counter (B, L) has seen, without forming the
    total (which float16 cannot hold): level by level, in units of that level's blocks."""
    within = []  # share of level j among levels 0..j
    total = counts[:, :1]
    for j in range(counts.shape[1]):
        if j:
            total = counts[:, j:j + 1] + total / COUNT_BASE  # in level-j blocks
        within.append(counts[:, j:j + 1] / torch.clamp(total, min=1.0))
    shares, rest = [within[-1]], 1 - within[-1]
    for share in reversed(within[:-1]):
        shares.append(share * rest)
        rest = rest * (1 - share)
    return torch.cat(shares[::-1], dim=1)


def frame_digits(frames: int) -> list[float]:
    """``frames`` as the counter's digits (the top one capped at 2048)."""
    digits = []
    for _ in range(COUNT_LEVELS - 1):
        frames, digit = divmod(frames, COUNT_BASE)
        digits.append(float(digit))
    return [*digits, float(min(frames, COUNT_TOP))]
