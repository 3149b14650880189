"""The self-test written into every artifact (format: ``grw_edge_runtime.selftest``).

A few raw uint8 frames at a camera-like size (so the device's preprocessing is covered),
the float32 PyTorch reference's embeddings for every frame and logits after the last, and
the tolerances of the artifact's precision:

- fp32: DESIGN.md's bars (embeddings 1e-4, logits 1e-3);
- fp16 / int8: ``SELFTEST_MARGIN`` times the largest difference measured at export on these
  frames (ONNX Runtime on the written graphs; for Core ML off macOS, the reference run in
  float16 by PyTorch), never below the fp32 bars.

Top-1 is required only where the reference's two best logits are further apart than twice
the logits tolerance: a closer pair may swap legitimately within the tolerance.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from grw_edge import tolerances
from grw_edge.errors import ParityError
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.preprocess import preprocess_frames
from grw_edge_runtime import Manifest, StreamingSession
from grw_edge_runtime.selftest import SELFTEST_FILE, pack_arrays

SELFTEST_FRAMES = 8
CAMERA_SIZE = (240, 320)  # (H, W): a camera-like frame, resized and cropped by the runtime
SELFTEST_MARGIN = 4.0  # reduced precision: tolerance = margin x the difference at export


def camera_frames(count: int, seed: int, size: tuple[int, int] = CAMERA_SIZE) -> np.ndarray:
    """``count`` uint8 RGB frames (count, H, W, 3): coarse random blocks plus noise."""
    rng = np.random.default_rng(seed)
    height, width = size
    blocks = rng.integers(0, 256, (count, height // 16, width // 16, 3))
    blocks = blocks.repeat(16, axis=1).repeat(16, axis=2)
    noise = rng.integers(-20, 21, blocks.shape)
    return np.clip(blocks + noise, 0, 255).astype(np.uint8)


def frame_count(manifest: Manifest) -> int:
    """``SELFTEST_FRAMES`` rounded up to a whole number of steps, or the clip length of a
    whole-clip graph whose frame axis is static."""
    if manifest.mode == "clip" and manifest.frames_per_step > 0:
        return manifest.frames_per_step
    step = manifest.frames_per_step if manifest.mode == "streaming" else 1
    return step * math.ceil(SELFTEST_FRAMES / step)


def frame_size(count: int) -> tuple[int, int]:
    """The camera size, scaled down so that the self-test holds no more pixels than
    ``SELFTEST_FRAMES`` camera frames (a long static clip stays small)."""
    scale = min(1.0, math.sqrt(SELFTEST_FRAMES / count))
    return tuple(max(16, round(side * scale / 16) * 16) for side in CAMERA_SIZE)


@torch.no_grad()
def reference_outputs(model: GrwVideoClassifier, manifest: Manifest, frames: np.ndarray,
                      dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """The reference's embeddings (F, E) and logits (C,) for raw ``frames``, in ``dtype``."""
    preprocess = manifest.input["preprocess"]
    clip = preprocess_frames(torch.from_numpy(frames), resize=int(preprocess["resize"][0]),
                             crop=int(preprocess["center_crop"][0]))[None]
    embeddings = model.video_backbone(clip.to(dtype))
    logits = model.classify(embeddings[:, -manifest.frames_per_clip:])
    return embeddings[0].float().numpy(), logits[0].float().numpy()


def write_selftest(model: GrwVideoClassifier, directory: Path, manifest: Manifest, *,
                   seed: int, allow_degraded: bool,
                   session: Callable[[], StreamingSession] | None) -> None:
    """Write ``selftest.bin`` and set ``manifest.selftest`` (with what was measured);
    ``session`` opens the written artifact on a backend this machine runs (None: none)."""
    count = frame_count(manifest)
    frames = camera_frames(count, seed, frame_size(count))
    embeddings, logits = reference_outputs(model, manifest, frames)
    blob, arrays = pack_arrays({"frames": frames, "embeddings": embeddings, "logits": logits})
    (directory / SELFTEST_FILE).write_bytes(blob)
    bars = {"embeddings": tolerances.STREAMED_EMBEDDINGS_MAX_ABS,
            "logits": tolerances.EXPORTED_LOGITS_MAX_ABS}
    manifest.selftest = {"file": SELFTEST_FILE, **arrays, "tolerance": {**bars, "top1": False}}
    measured, top1_same = _measure(model, manifest, frames, embeddings, logits, session)
    if manifest.precision == "fp32":
        tolerance = bars
        failing = [f"{name} differ by {measured[name]:.3g} (bar {bars[name]:g})"
                   for name in bars if not measured.get(name, 0.0) <= bars[name]]
        if failing and not allow_degraded:
            raise ParityError(f"the artifact fails its own self-test: {'; '.join(failing)}; "
                              f"no artifact was written")
    else:
        tolerance = {name: max(bars[name], _round_up(SELFTEST_MARGIN * measured[name]))
                     for name in bars}
    best, second = np.sort(logits)[-2:][::-1]
    manifest.selftest["tolerance"] = {
        **tolerance, "top1": bool(top1_same and best - second > 2 * tolerance["logits"])}
    manifest.selftest["measured_at_export"] = measured


def _measure(model: GrwVideoClassifier, manifest: Manifest, frames: np.ndarray,
             embeddings: np.ndarray, logits: np.ndarray,
             session: Callable[[], StreamingSession] | None) -> tuple[dict, bool]:
    """Largest differences on the self-test frames: the written artifact when a backend
    runs it here, else (reduced precision) the reference in float16, else nothing."""
    if session is not None:
        report = session().self_test(hashes=False)
        return {"embeddings": report.max_abs_embeddings, "logits": report.max_abs_logits,
                "on": report.backend}, report.top1_same
    if manifest.precision == "fp32":
        return {"on": None}, True
    half = copy.deepcopy(model).half()
    half_embeddings, half_logits = reference_outputs(half, manifest, frames, torch.float16)
    return {"embeddings": float(np.abs(half_embeddings - embeddings).max()),
            "logits": float(np.abs(half_logits - logits).max()),
            "on": "the reference in float16 (PyTorch)"}, \
        bool(half_logits.argmax() == logits.argmax())


def _round_up(value: float) -> float:
    """``value`` rounded up to two significant digits (a readable tolerance)."""
    if not value > 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return float(f"{math.ceil(value / scale) * scale:.2g}")
