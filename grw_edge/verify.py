"""Parity between an exported artifact and the PyTorch reference.

The reference runs each clip whole, as the upstream evaluation does; the artifact is fed
the same clip step by step through a runtime session.  The report holds the largest
differences of embeddings and logits and the top-1 agreement, and names what is over
DESIGN.md's bars.  A long-stream part starts both from states as they would be after
10^5..10^7 frames (:func:`grw_edge.streaming.states_after`) and streams a few more, so
precision lost in counters and running means on long camera streams shows in seconds.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grw_edge import tolerances
from grw_edge._progress import progress
from grw_edge.checkpoints import file_sha256, load_checkpoint, resolve_checkpoint
from grw_edge.errors import ArtifactError, GrwEdgeError, InputShapeError
from grw_edge.manifest import Manifest, read_manifest
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.runtimes import StreamingSession
from grw_edge.runtimes import open as open_session
from grw_edge.streaming import states_after

LONG_STREAM_FRAMES = (10**5, 10**6, 10**7)  # where the long-stream check starts
LONG_STREAM_STEPS = 8  # frames it streams from there
LONG_STREAM_CLIPS = 2  # parity clips whose final states it starts from


def precision_failures(precision: str, *, top1_agreement: float, max_abs_logits: float,
                       max_abs_embeddings: float | None = None,
                       top1_drop_points: float | None = None) -> list[str]:
    """What exceeds DESIGN.md's bar for an artifact of ``precision`` (empty: it passes).

    float32 must match the reference closely; FP16 must agree on >= 99% of top-1
    predictions; INT8 may lose at most 1 point of top-1 accuracy.  Without labels the
    INT8 drop is bounded by the disagreement rate, so agreement >= 99% is required then.
    """
    problems = []
    if precision == "fp32":
        if (max_abs_embeddings is not None
                and max_abs_embeddings > tolerances.STREAMED_EMBEDDINGS_MAX_ABS):
            problems.append(f"embeddings differ by {max_abs_embeddings:.3g} "
                            f"(bar {tolerances.STREAMED_EMBEDDINGS_MAX_ABS:g})")
        if max_abs_logits > tolerances.EXPORTED_LOGITS_MAX_ABS:
            problems.append(f"logits differ by {max_abs_logits:.3g} "
                            f"(bar {tolerances.EXPORTED_LOGITS_MAX_ABS:g})")
        bar = tolerances.EXPORTED_TOP1_AGREEMENT
    elif precision == "int8" and top1_drop_points is not None:
        if top1_drop_points > tolerances.INT8_TOP1_DROP_POINTS:
            problems.append(f"top-1 accuracy drops by {top1_drop_points:.2f} points "
                            f"(bar {tolerances.INT8_TOP1_DROP_POINTS:g})")
        return problems
    elif precision == "int8":
        bar = 1 - tolerances.INT8_TOP1_DROP_POINTS / 100
    elif precision == "fp16":
        bar = tolerances.FP16_TOP1_AGREEMENT
    else:
        raise ValueError(f"unknown precision {precision!r}")
    if top1_agreement < bar:
        problems.append(f"top-1 agreement {top1_agreement:.1%} (bar {bar:.0%} for {precision})")
    return problems


@dataclass
class ParityReport:
    """Agreement of an artifact with the reference over ``clips`` clips of ``frames`` frames."""

    backend: str
    clips: int
    frames: int
    max_abs_embeddings: float
    max_abs_logits: float
    top1_agreement: float
    precision: str = "fp32"
    skipped: list[str] = field(default_factory=list)  # videos that could not be decoded
    self_test: dict | None = None  # the artifact's own self-test on the same backend
    long_stream: dict[str, object] | None = None  # the same measures after long streams

    def failures(self) -> list[str]:
        """What exceeds the bars for this artifact's precision (empty when it passes)."""
        problems = precision_failures(self.precision, top1_agreement=self.top1_agreement,
                                      max_abs_logits=self.max_abs_logits,
                                      max_abs_embeddings=self.max_abs_embeddings)
        if self.long_stream:
            ls = self.long_stream
            problems += [f"after {max(ls['after_frames']):.0e} frames: {problem}"
                         for problem in precision_failures(
                             self.precision, top1_agreement=ls["top1_agreement"],
                             max_abs_logits=ls["max_abs_logits"],
                             max_abs_embeddings=ls["max_abs_embeddings"])]
        if self.self_test and not self.self_test["passed"]:
            problems.append(f"self-test: {'; '.join(self.self_test['problems'])}")
        return problems

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def random_clips(manifest: Manifest, clips: int, frames: int, seed: int
                 ) -> Iterator[torch.Tensor]:
    """Uniform random clips (B, frames, 3, R, R) at the artifact's batch and resolution."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(clips):
        yield torch.rand(manifest.batch, frames, 3, manifest.resolution, manifest.resolution,
                         generator=generator)


def video_clips(manifest: Manifest, directory: str | Path, frames: int,
                skipped: list[str]) -> Iterator[torch.Tensor]:
    """The first clip (1, N, 3, R, R) of every video under ``directory``, sampled and
    transformed as the manifest says (N <= ``frames``, a whole number of steps);
    unreadable videos go to ``skipped``."""
    from grw_edge.data.video import VIDEO_SUFFIXES
    from grw_edge.predict import sampled_frames
    from grw_edge.preprocess import ClipProtocol

    videos = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ArtifactError(f"no videos under {directory}")
    protocol = ClipProtocol.for_manifest(manifest).override(frames=frames)
    for video in videos:
        try:
            clip = sampled_frames(video, protocol).frames
        except GrwEdgeError:  # unreadable or too short: skipped and listed, as eval does
            skipped.append(str(video))
            continue
        usable = len(clip) - len(clip) % manifest.frames_per_step
        yield clip[None, :usable]


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b|; infinite when either holds a non-finite value (NaN never passes)."""
    difference = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(difference.max()) if np.isfinite(difference).all() else float("inf")


def long_stream_parity(reference: GrwVideoClassifier, session: StreamingSession,
                       warmups: list[torch.Tensor], *, seed: int = 0,
                       after: tuple[int, ...] = LONG_STREAM_FRAMES,
                       steps: int = LONG_STREAM_STEPS) -> dict[str, object]:
    """Start the reference and the session from the states each warm-up clip (B, N, 3, R, R)
    leaves, moved to ``after`` frames, stream ``steps`` random frames more and compare."""
    manifest = session.manifest
    t = manifest.frames_per_step
    steps = max(t, steps - steps % t)
    generator = torch.Generator().manual_seed(seed + 1)
    worst_embeddings = worst_logits = 0.0
    agreements = []
    for warmup in warmups:
        with torch.no_grad():
            _, states = reference.video_backbone.step(warmup.transpose(1, 2))
        if {s.name for s in manifest.states} != states.keys():
            raise ArtifactError(f"{session.artifact} keeps its states in another layout than "
                                f"this grw-edge (an older export: se.cumsum); re-export it, or "
                                f"skip the long-stream check (--no-long-stream)")
        for frames in after:
            moved = states_after(states, frames)
            X = torch.rand(manifest.batch, 3, steps, manifest.resolution, manifest.resolution,
                           generator=generator)
            with torch.no_grad():
                reference_embeddings, _ = reference.video_backbone.step(X, moved)
                reference_logits = reference.classify(reference_embeddings).numpy()
            session.start_from({name: value.numpy() for name, value in moved.items()})
            embeddings = np.concatenate([session.push(X[:, :, i:i + t].numpy())
                                         for i in range(0, steps, t)], axis=1)
            logits = session.classify()
            worst_embeddings = max(worst_embeddings, max_abs_difference(
                embeddings, reference_embeddings.numpy()))
            worst_logits = max(worst_logits, max_abs_difference(logits, reference_logits))
            agreements.extend(logits.argmax(-1) == reference_logits.argmax(-1))
    return {"after_frames": list(after), "clips": len(warmups), "steps": steps,
            "max_abs_embeddings": worst_embeddings, "max_abs_logits": worst_logits,
            "top1_agreement": float(np.mean(agreements))}


def measure_parity(reference: GrwVideoClassifier, session: StreamingSession, *, clips: int = 3,
                   frames: int | None = None, seed: int = 0,
                   videos: str | Path | None = None, long_stream: bool = True) -> ParityReport:
    """Run clips through the reference (whole clip) and the session (streamed): ``clips``
    random ones, or the first clip of each video under ``videos``; with ``long_stream``
    (streaming artifacts) also from the first clips' states moved 10^5..10^7 frames on."""
    manifest = session.manifest
    frames = frames or manifest.frames_per_clip
    if frames > manifest.frames_per_clip:
        raise InputShapeError(f"parity clips may have at most the head window of "
                              f"{manifest.frames_per_clip} frames, got {frames}")
    if videos is not None and manifest.batch != 1:
        raise InputShapeError("--videos needs an artifact exported with --batch 1")
    skipped: list[str] = []
    source = (video_clips(manifest, videos, frames, skipped) if videos is not None
              else random_clips(manifest, clips, frames, seed))
    worst_embeddings = worst_logits = 0.0
    agreements = []
    warmups = []
    for X in progress(source, desc="parity", unit="clip"):
        with torch.no_grad():
            reference_embeddings = reference.video_backbone(X)
            reference_logits = reference.classify(reference_embeddings).numpy()
        embeddings = session.embed_clip(X.transpose(1, 2).numpy())
        logits = session.classify()
        worst_embeddings = max(worst_embeddings, max_abs_difference(
            embeddings, reference_embeddings.numpy()))
        worst_logits = max(worst_logits, max_abs_difference(logits, reference_logits))
        agreements.extend(logits.argmax(-1) == reference_logits.argmax(-1))
        warmups.append(X)
    if not warmups:
        raise ArtifactError(f"no readable video under {videos}")
    long = None
    if long_stream and manifest.mode == "streaming":
        long = long_stream_parity(reference, session, warmups[:LONG_STREAM_CLIPS], seed=seed)
    return ParityReport(session.backend, len(warmups), frames, worst_embeddings, worst_logits,
                        float(np.mean(agreements)), manifest.precision, skipped,
                        long_stream=long)


def reference_model(artifact: str | Path, checkpoint: str | Path | None = None
                    ) -> GrwVideoClassifier:
    """The PyTorch model an artifact was exported from: its reference weights, or the
    original checkpoint (which must be the one the manifest records; the published one,
    through the Hugging Face cache, when the artifact came from the hub)."""
    manifest = read_manifest(artifact)
    reference = (manifest.reference or {}).get("file")
    if checkpoint is None and reference:
        return load_checkpoint(Path(artifact) / reference)
    if checkpoint is None:
        if not str(manifest.source.get("from", "")).startswith("hf://"):
            raise ArtifactError(f"{artifact} carries no reference weights; pass the checkpoint "
                                f"it was exported from with --checkpoint")
        checkpoint = manifest.backbone
    path = resolve_checkpoint(checkpoint)
    recorded = manifest.source.get("checkpoint_sha256")
    if recorded and path.is_file() and file_sha256(path) != recorded:
        raise ArtifactError(f"{checkpoint} is not the checkpoint {artifact} was exported from "
                            f"(sha256 differs from the manifest's)")
    return load_checkpoint(path, ema=manifest.source.get("weights") == "ema")


def verify_artifact(artifact: str | Path, *, backend: str | None = None,
                    checkpoint: str | Path | None = None, clips: int = 3,
                    frames: int | None = None, seed: int = 0, threads: int | None = None,
                    videos: str | Path | None = None, device: str | None = None,
                    long_stream: bool = True) -> ParityReport:
    """Parity of an artifact, run with ``backend`` (on ``device`` when given), against its
    PyTorch reference (float32 on the CPU), after checking every file's sha256, from fresh
    states and (``long_stream``) from states as after 10^5..10^7 frames; then the
    artifact's own self-test on the same session."""
    options = {"device": device} if device else {}
    session = open_session(artifact, backend, threads=threads, verify=True, **options)
    report = measure_parity(reference_model(artifact, checkpoint), session, clips=clips,
                            frames=frames, seed=seed, videos=videos, long_stream=long_stream)
    if session.manifest.selftest:
        report.self_test = session.self_test(hashes=False).to_dict()
    return report
