"""Parity between an exported artifact and the PyTorch reference.

The reference runs each clip whole, as the upstream evaluation does; the artifact is fed
the same clip step by step through a runtime session.  The report holds the largest
differences of embeddings and logits and the top-1 agreement, and names what is over
DESIGN.md's bars.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grw_edge import tolerances
from grw_edge._progress import progress
from grw_edge.checkpoints import file_sha256, load_checkpoint
from grw_edge.errors import ArtifactError, InputShapeError
from grw_edge.manifest import read_manifest
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.runtimes import StreamingSession
from grw_edge.runtimes import open as open_session


@dataclass
class ParityReport:
    """Agreement of an artifact with the reference over ``clips`` clips of ``frames`` frames."""

    backend: str
    clips: int
    frames: int
    max_abs_embeddings: float
    max_abs_logits: float
    top1_agreement: float
    skipped: list[str] = field(default_factory=list)  # videos that could not be decoded

    def failures(self, *, check_embeddings: bool = True) -> list[str]:
        """What exceeds the float32 bars (empty when the artifact passes)."""
        problems = []
        if check_embeddings and self.max_abs_embeddings > tolerances.STREAMED_EMBEDDINGS_MAX_ABS:
            problems.append(f"embeddings differ by {self.max_abs_embeddings:.3g} "
                            f"(bar {tolerances.STREAMED_EMBEDDINGS_MAX_ABS:g})")
        if self.max_abs_logits > tolerances.EXPORTED_LOGITS_MAX_ABS:
            problems.append(f"logits differ by {self.max_abs_logits:.3g} "
                            f"(bar {tolerances.EXPORTED_LOGITS_MAX_ABS:g})")
        if self.top1_agreement < tolerances.EXPORTED_TOP1_AGREEMENT:
            problems.append(f"top-1 agreement {self.top1_agreement:.1%} "
                            f"(bar {tolerances.EXPORTED_TOP1_AGREEMENT:.0%})")
        return problems

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def random_clips(session: StreamingSession, clips: int, frames: int, seed: int
                 ) -> Iterator[torch.Tensor]:
    """Uniform random clips (B, frames, 3, R, R) at the artifact's batch and resolution."""
    manifest = session.manifest
    generator = torch.Generator().manual_seed(seed)
    for _ in range(clips):
        yield torch.rand(manifest.batch, frames, 3, manifest.resolution, manifest.resolution,
                         generator=generator)


def video_clips(session: StreamingSession, directory: str | Path, frames: int,
                skipped: list[str]) -> Iterator[torch.Tensor]:
    """The first clip of every video under ``directory``, sampled and transformed as the
    manifest says (at most ``frames`` frames); unreadable videos go to ``skipped``."""
    from grw_edge.data.video import VIDEO_SUFFIXES, VideoDecodeError
    from grw_edge.predict import sampled_frames
    from grw_edge.preprocess import ClipProtocol

    videos = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ArtifactError(f"no videos under {directory}")
    protocol = ClipProtocol.for_manifest(session.manifest).override(frames=frames)
    for video in videos:
        try:
            clip, _ = sampled_frames(video, protocol)
        except VideoDecodeError:
            skipped.append(str(video))
            continue
        usable = len(clip) - len(clip) % session.manifest.frames_per_step
        yield clip[None, :usable]


def measure_parity(reference: GrwVideoClassifier, session: StreamingSession, *, clips: int = 3,
                   frames: int | None = None, seed: int = 0,
                   videos: str | Path | None = None) -> ParityReport:
    """Run clips through the reference (whole clip) and the session (streamed): ``clips``
    random ones, or the first clip of each video under ``videos``."""
    manifest = session.manifest
    frames = frames or manifest.frames_per_clip
    if frames > manifest.frames_per_clip:
        raise InputShapeError(f"parity clips may have at most the head window of "
                              f"{manifest.frames_per_clip} frames, got {frames}")
    if videos is not None and manifest.batch != 1:
        raise InputShapeError("--videos needs an artifact exported with --batch 1")
    skipped: list[str] = []
    source = (video_clips(session, videos, frames, skipped) if videos is not None
              else random_clips(session, clips, frames, seed))
    worst_embeddings = worst_logits = 0.0
    agreements = []
    counted = 0
    for X in progress(source, desc="parity", unit="clip"):
        counted += 1
        with torch.no_grad():
            reference_embeddings = reference.video_backbone(X)
            reference_logits = reference.classify(reference_embeddings).numpy()
        embeddings = session.embed_clip(X.transpose(1, 2).numpy())
        logits = session.classify()
        worst_embeddings = max(worst_embeddings, float(
            np.abs(embeddings - reference_embeddings.numpy()).max()))
        worst_logits = max(worst_logits, float(np.abs(logits - reference_logits).max()))
        agreements.extend(logits.argmax(-1) == reference_logits.argmax(-1))
    if not counted:
        raise ArtifactError(f"no readable video under {videos}")
    return ParityReport(session.backend, counted, frames, worst_embeddings, worst_logits,
                        float(np.mean(agreements)), skipped)


def reference_model(artifact: str | Path, checkpoint: str | Path | None = None
                    ) -> GrwVideoClassifier:
    """The PyTorch model an artifact was exported from: its reference weights, or the
    original checkpoint (which must be the one the manifest records)."""
    manifest = read_manifest(artifact)
    if checkpoint is None:
        reference = (manifest.reference or {}).get("file")
        if not reference:
            raise ArtifactError(f"{artifact} carries no reference weights; pass the checkpoint "
                                f"it was exported from with --checkpoint")
        return load_checkpoint(Path(artifact) / reference)
    recorded = manifest.source.get("checkpoint_sha256")
    if recorded and file_sha256(checkpoint) != recorded:
        raise ArtifactError(f"{checkpoint} is not the checkpoint {artifact} was exported from "
                            f"(sha256 differs from the manifest's)")
    return load_checkpoint(checkpoint, ema=manifest.source.get("weights") == "ema")


def verify_artifact(artifact: str | Path, *, backend: str | None = None,
                    checkpoint: str | Path | None = None, clips: int = 3,
                    frames: int | None = None, seed: int = 0, threads: int | None = None,
                    videos: str | Path | None = None) -> ParityReport:
    """Parity of an artifact, run with ``backend``, against its PyTorch reference."""
    session = open_session(artifact, backend, threads=threads)
    return measure_parity(reference_model(artifact, checkpoint), session, clips=clips,
                          frames=frames, seed=seed, videos=videos)
