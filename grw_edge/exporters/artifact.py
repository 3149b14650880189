"""What every exporter shares: options, the atomic artifact directory, the manifest skeleton."""
from __future__ import annotations

import contextlib
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from grw_edge._io import remove_stale_temporaries, temporary_prefix, umask
from grw_edge.checkpoints import save_checkpoint
from grw_edge.errors import ExportError, ParityError
from grw_edge.labels import class_names
from grw_edge.manifest import Manifest, StateEntry
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.streaming import StateSpec
from grw_edge_runtime import StreamingSession
from grw_edge_runtime.integrity import record_files

LABELS_FILE = "labels.txt"
REFERENCE_FILE = "reference.safetensors"
FRAMES_INPUT = "frames"
EMBEDDINGS_OUTPUT = "embeddings"
LOGITS_OUTPUT = "logits"
DYNAMIC = -1  # a manifest shape entry that may take any size
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportOptions:
    """Options every target understands; targets may add their own keyword arguments."""

    batch: int = 1
    frames_per_step: int = 1
    resolution: int | None = None  # default: the backbone's evaluation resolution
    precision: str = "fp32"
    fused: bool = False
    include_reference: bool = True
    parity_clips: int | None = None  # default: 1 for fp32, 16 for fp16/int8
    parity_frames: int | None = None  # default: the head window (frames per clip)
    parity_videos: str | None = None  # parity on these videos' first clips, not random ones
    calibration_data: str | None = None  # int8: calibrate on these videos' first clips
    calibration_clips: int = 16
    allow_degraded: bool = False  # write an artifact even when it misses the precision bar
    fp16_io: bool = False  # fp16: graph inputs, outputs and states float16 too
    overwrite: bool = False
    seed: int = 0

    def validate(self) -> None:
        if min(self.batch, self.frames_per_step, self.parity_clips or 1,
               self.calibration_clips) < 1:
            raise ExportError("batch, frames per step, parity and calibration clips must be "
                              "at least 1")
        if self.resolution is not None and self.resolution < 32:
            raise ExportError(f"resolution {self.resolution} is too small (at least 32)")
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision {self.precision!r}; choose one of: "
                              f"{', '.join(PRECISIONS)}")
        if self.fp16_io and self.precision != "fp16":
            raise ExportError("--fp16-io needs --precision fp16")
        for folder in (self.parity_videos, self.calibration_data):
            if folder is not None and not Path(folder).is_dir():
                raise ExportError(f"no video folder at {folder}")

    @property
    def parity_clip_count(self) -> int:
        """Reduced precision is judged on agreement rates, which need more than one clip."""
        return self.parity_clips or (1 if self.precision == "fp32" else 16)


def feature_name(name: str) -> str:
    """An identifier for a state or tensor name (Core ML features, LiteRT signatures)."""
    return re.sub(r"\W", "_", name)


def state_entry(spec: StateSpec, input_name: str, output_name: str) -> StateEntry:
    return StateEntry(spec.name, input_name, output_name, list(spec.shape), spec.dtype, spec.init)


def base_manifest(model: GrwVideoClassifier, *, target: str, options: ExportOptions,
                  states: list[StateEntry], step: dict, head: dict) -> Manifest:
    """The target-independent part of an artifact's manifest."""
    spec = model.backbone_spec
    resolution = options.resolution or spec.resolution
    resize = round(resolution * spec.resize / spec.resolution)
    frames = options.frames_per_step if spec.causal else DYNAMIC
    origin = getattr(model, "origin", None)
    return Manifest(
        backbone=spec.name, target=target, precision=options.precision,
        mode="streaming" if spec.causal else "clip",
        frames_per_clip=spec.frames_per_clip, fps=spec.fps,
        embed_dim=model.head_config.embed_dim, num_classes=model.head_config.num_classes,
        input={"name": FRAMES_INPUT, "shape": [options.batch, 3, frames, resolution, resolution],
               "dtype": "float32", "layout": "NCTHW", "range": [0.0, 1.0],
               "preprocess": {"resize": [resize, resize],
                              "center_crop": [resolution, resolution],
                              "interpolation": "bilinear", "antialias": True,
                              "scale": 1 / 255}},
        states=states, step=step, head=head, labels=LABELS_FILE,
        source={"checkpoint": getattr(origin, "path", None),
                "checkpoint_sha256": getattr(origin, "sha256", None),
                "weights": getattr(origin, "weights", "random-init"),
                "from": getattr(origin, "where", "random-init")},
        reference={"file": REFERENCE_FILE} if options.include_reference else None,
        producer={"grw_edge": _version(), "torch": torch.__version__,
                  "python": platform.python_version()},
    )


def _version() -> str:
    from grw_edge import __version__

    return __version__


def write_common_files(model: GrwVideoClassifier, directory: Path, options: ExportOptions) -> None:
    """labels.txt, and the reference weights unless left out."""
    (directory / LABELS_FILE).write_text("\n".join(class_names(model.head_config.num_classes))
                                         + "\n")
    if options.include_reference:
        save_checkpoint(model, directory / REFERENCE_FILE,
                        num_samples=getattr(getattr(model, "origin", None), "num_samples", 0))


@contextlib.contextmanager
def artifact_directory(out: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` only if the export succeeds.

    A failed export leaves nothing behind, and an existing ``out`` is replaced only with
    ``overwrite`` and only once the new artifact is complete.  Staging folders a killed
    export left for the same ``out`` are removed first.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(target), dir=target.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~umask())  # mkdtemp makes 0700; give the usual permissions
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=temporary_prefix(target), dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def seal(directory: Path, manifest: Manifest) -> None:
    """Record every file's size and sha256 in the manifest and write it: the last step of
    an export (and of anything that adds files to an artifact)."""
    manifest.files = record_files(directory)
    manifest.write(directory)


def measured_parity(model: GrwVideoClassifier, session, options: ExportOptions) -> dict:
    """Parity of a freshly written artifact's ``session`` with the reference, for the
    manifest; refuses the artifact below the bars of its precision unless
    ``allow_degraded``, in which case the shortfall is recorded."""
    from grw_edge.verify import measure_parity

    manifest = session.manifest
    frames = options.parity_frames or manifest.frames_per_clip
    if manifest.mode == "streaming":
        frames -= frames % manifest.frames_per_step
    report = measure_parity(model, session, clips=options.parity_clip_count, frames=frames,
                            seed=options.seed, videos=options.parity_videos)
    problems = report.failures()
    if problems and not options.allow_degraded:
        raise ParityError(f"the exported model disagrees with the reference: "
                          f"{'; '.join(problems)}; no artifact was written"
                          + ("" if options.precision == "fp32" else
                             " (--allow-degraded writes it anyway)"))
    return {**report.to_dict(), "passed": not problems, "problems": problems}


def check_and_seal(model: GrwVideoClassifier, directory: Path, manifest: Manifest,
                   options: ExportOptions, stages, session: Callable[[], StreamingSession], *,
                   before_selftest: Callable[[Path, Manifest], None] | None = None) -> None:
    """The stages an export ends with: parity of the written artifact with the reference
    through ``session`` (a factory of sessions on it), its self-test, and the record of its
    files.  ``before_selftest`` lets a target built on another (TensorRT) add its files."""
    manifest.write(directory)
    stages.start("parity")
    manifest.parity = measured_parity(model, session(), options)
    manifest.write(directory)
    stages.done()
    if before_selftest:
        stages.start("target files")
        before_selftest(directory, manifest)
        manifest.write(directory)
        stages.done()
    from grw_edge.exporters.selftest import write_selftest

    stages.start("self-test")
    write_selftest(model, directory, manifest, seed=options.seed,
                   allow_degraded=options.allow_degraded, session=session)
    seal(directory, manifest)
    stages.done()
