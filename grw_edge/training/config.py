"""Training settings: one dataclass, written into every checkpoint so a run can be resumed."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from grw_edge.data.failures import DEFAULT_MAX_FAILED
from grw_edge.data.video import SAMPLING
from grw_edge.errors import GrwEdgeError


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    backbone: str
    data: str  # dataset root holding <split>/<class>/<video>
    out: str  # run directory: checkpoints, metrics.jsonl
    split: str = "train"
    init: str | None = None  # checkpoint to start from (published or ours); None = random
    frames: int = 16  # frames per clip N (a multiple of T)
    fps: float = 5.0
    sampling: str = "index"  # frames chosen by upstream's index rule, or "time" (presentation)
    resolution: int | None = None  # crop side; default: the backbone's
    T: int = 4  # GRW sub-sequence length
    grw_weight: float = 0.01  # lambda: loss = CE + lambda * GRW (0 turns GRW off); GRW grows with E*T
    grw_alpha: float = 0.5  # velocity prior weight inside the GRW loss
    intermediate_weight: float = 0.0  # weight of intermediate-layer smoothing (0 = off)
    embed_dim: int = 256
    head_depth: int = 2
    head_heads: int = 4
    head_mlp: int = 512
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    dropout: float = 0.0
    stochastic_depth: float = 0.0  # head layers
    drop_path: float = 0.0  # backbone blocks (max rate, linear over depth)
    freeze_bn: bool = False  # keep batch-norm statistics fixed (fine-tuning with small batches)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (mixed precision on CUDA only)
    checkpoint_every: int = 200
    log_every: int = 10
    workers: int = 0
    seed: int = 0
    max_failed_clips: float = DEFAULT_MAX_FAILED  # fraction of clips that may fail to decode

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        if self.frames % self.T:
            raise GrwEdgeError(f"frames ({self.frames}) must be a multiple of T ({self.T})")
        if self.T < 3:
            raise GrwEdgeError(f"T must be at least 3 for the GRW loss, got {self.T}")
        if not 0 <= self.max_failed_clips <= 1:
            raise GrwEdgeError(f"max_failed_clips is a fraction in [0, 1], got "
                               f"{self.max_failed_clips}")
        if self.sampling not in SAMPLING:
            raise GrwEdgeError(f"sampling is one of {', '.join(SAMPLING)}, got {self.sampling}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise GrwEdgeError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision}")
