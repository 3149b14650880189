"""The streaming contract of DESIGN.md as modules an exporter can trace.

* :class:`StreamingStep`: ``step(frames[B, 3, t, H, W], *states) -> (embeddings[B, t, E],
  *next_states)``, a pure function whose memory is the ordered, named state tensors.
* :class:`ClipEmbedder`: base (non-causal) backbones, whole clip at once.
* :class:`ClassifierHead`: ``head(embeddings[B, N, E]) -> logits[B, classes]``, any N.
* :class:`FusedStreamingClassifier`: the step plus a window of the last N embeddings kept
  as one more state, emitting logits every step.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from grw_edge.errors import InputShapeError
from grw_edge.manifest import StateEntry
from grw_edge.models.classifier import GrwVideoClassifier, MoViNetBackbone
from grw_edge.models.movinet import (
    COUNT_LEVELS,
    FRAME_COUNT,
    SE_MEANS,
    States,
    frame_digits,
    level_shares,
)

EMBEDDING_WINDOW = "embedding_window"


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of a streaming step: its name, shape, dtype and initial value."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    init: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "shape": list(self.shape)}


def state_specs(backbone: MoViNetBackbone, *, batch: int = 1, resolution: int | None = None,
                frames_per_step: int = 1) -> list[StateSpec]:
    """Ordered specs of a causal backbone's states for an input size, found by one dry step.

    The order is the encoder's own (module order, then ``frame_count``), so it is stable.
    Every state starts at zero.
    """
    if not backbone.spec.causal:
        raise InputShapeError(f"{backbone.spec.name} is a base (whole-clip) backbone; "
                              f"it has no streaming states")
    side = resolution or backbone.spec.resolution
    device = next(backbone.parameters()).device  # the dry step runs where the weights are
    shape = ((batch, frames_per_step, side, side, 3) if backbone.encoder.channels_last
             else (batch, 3, frames_per_step, side, side))
    frames = torch.zeros(shape, device=device)
    with torch.no_grad():
        _, states = backbone.step(frames)
    return [StateSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for name, t in states.items()]


def initial_states(specs: Sequence[StateSpec | StateEntry],
                   device: torch.device | str | None = None) -> list[Tensor]:
    """Tensors holding each spec's initial value, in spec order."""
    return [torch.full(spec.shape, spec.init, dtype=getattr(torch, spec.dtype), device=device)
            for spec in specs]


def states_after(states: dict[str, Tensor], frames: int) -> States:
    """``states`` of a real stream moved to where a stream with the same statistics would
    be after ``frames`` frames: the counter reads ``frames`` and every occupied level of
    each SE holds the stream's cumulative mean so far; temporal buffers are kept.

    Lets a parity check start where precision problems of long streams show (counters at
    10^7, means built from millions of frames) without streaming that long.
    """
    counts = states[FRAME_COUNT]
    digits = counts.new_tensor(frame_digits(frames)).expand_as(counts)
    shares = level_shares(counts).reshape(counts.shape[0], COUNT_LEVELS, 1, 1, 1)
    occupied = (digits > 0).to(counts.dtype).reshape(shares.shape)
    moved = dict(states)
    moved[FRAME_COUNT] = digits.clone()
    for name, value in states.items():
        if name.endswith(SE_MEANS):
            moved[name] = (shares * value).sum(dim=1, keepdim=True) * occupied
    return moved


class StreamingStep(nn.Module):
    """``forward(frames, *states) -> (embeddings, *next_states)`` with states in spec order."""

    def __init__(self, backbone: MoViNetBackbone, specs: Sequence[StateSpec]) -> None:
        super().__init__()
        self.backbone = backbone
        self.state_names = [spec.name for spec in specs]

    def forward(self, frames: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        embeddings, next_states = self.backbone.step(frames, dict(zip(self.state_names, states)))
        return (embeddings, *(next_states[name] for name in self.state_names))


class ClipEmbedder(nn.Module):
    """Whole-clip embeddings: channels-first frames (B, 3, N, H, W) -> (B, N, E)."""

    def __init__(self, backbone: MoViNetBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, frames: Tensor) -> Tensor:
        return self.backbone.step(frames)[0]


class ClassifierHead(nn.Module):
    """LayerNorm + temporal transformer + linear: (B, N, E) embeddings -> (B, classes) logits;
    with a ``mask`` (B, N), the logits of the frames it marks (see TemporalTransformerHead)."""

    def __init__(self, model: GrwVideoClassifier) -> None:
        super().__init__()
        self.ln = model.ln
        self.attention = model.attention

    def forward(self, embeddings: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.attention(self.ln(embeddings), mask)


class FusedStreamingClassifier(nn.Module):
    """The step and the head in one graph: the last N embeddings are one more state.

    ``forward(frames, *states, window) -> (logits, embeddings, *next_states, next_window)``.
    The window starts at zeros, so the logits equal the head over the last N real
    embeddings once N frames have been seen.
    """

    def __init__(self, step: StreamingStep, head: ClassifierHead) -> None:
        super().__init__()
        self.step = step
        self.head = head

    def forward(self, frames: Tensor, *states_and_window: Tensor) -> tuple[Tensor, ...]:
        *states, window = states_and_window
        embeddings, *next_states = self.step(frames, *states)
        window = torch.cat((window[:, embeddings.shape[1]:], embeddings), dim=1)
        return (self.head(window), embeddings, *next_states, window)


def window_spec(batch: int, frames: int, embed_dim: int) -> StateSpec:
    """The fused model's extra state: the last ``frames`` embeddings."""
    return StateSpec(EMBEDDING_WINDOW, (batch, frames, embed_dim))
