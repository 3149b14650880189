"""Stand-in writer of an artifact's self-test (COORD.md's ``selftest.bin`` format) until the
exporter writes it (issue 13): the JS runtime's tests read exactly what the exporter will."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

import grw_edge.runtimes
from grw_edge.preprocess import preprocess_frames

SELFTEST_FILE = "selftest.bin"
TOLERANCE = {"embeddings": 1e-4, "logits": 1e-3, "top1": True}


def _aligned(offset: int) -> int:
    return (offset + 3) // 4 * 4


def reference_outputs(artifact: Path, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 PyTorch reference's embeddings (F, E) and final logits (C) for raw
    frames (F, H, W, 3), the same frame in every batch slot."""
    session = grw_edge.runtimes.open(artifact, backend="torch")
    session.reset()
    manifest = session.manifest
    batch, t = manifest.batch, (manifest.frames_per_step if session.streaming else 1)
    resize, crop = manifest.input["preprocess"]["resize"][0], manifest.resolution
    steps = []
    for i in range(0, len(frames), t):
        if t == 1:
            step = np.repeat(frames[i][None], batch, axis=0)  # raw, preprocessed by the session
        else:  # raw frames go one at a time; a step of t goes preprocessed (B, 3, t, R, R)
            clip = preprocess_frames(frames[i:i + t], resize=resize, crop=crop).numpy()
            step = np.repeat(clip.transpose(1, 0, 2, 3)[None], batch, axis=0)
        out = session.push(step)
        if out is not None:
            steps.append(out[0])
    embeddings = (np.concatenate(steps, axis=0) if session.streaming
                  else session._held_clip_embeddings()[0])
    return np.asarray(embeddings, np.float32), session.classify()[0].astype(np.float32)


def write_selftest(artifact: Path, frames: np.ndarray) -> dict:
    """Write ``selftest.bin``, the manifest's ``selftest`` field and ``files`` (sizes and
    sha256 of every file but the manifest); the manifest is replaced atomically."""
    artifact = Path(artifact)
    embeddings, logits = reference_outputs(artifact, frames)
    arrays, offset, entry = [], 0, {"file": SELFTEST_FILE}
    for name, array in (("frames", np.ascontiguousarray(frames, np.uint8)),
                        ("embeddings", embeddings), ("logits", logits)):
        offset = _aligned(offset)
        entry[name] = {"offset": offset, "shape": list(array.shape), "dtype": str(array.dtype)}
        arrays.append((offset, array.astype(array.dtype.newbyteorder("<")).tobytes()))
        offset += array.nbytes
    blob = bytearray(offset)
    for start, data in arrays:
        blob[start:start + len(data)] = data
    (artifact / SELFTEST_FILE).write_bytes(bytes(blob))
    entry["tolerance"] = dict(TOLERANCE)
    manifest_path = artifact / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["selftest"] = entry
    manifest["files"] = {
        path.name: {"size": path.stat().st_size,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in sorted(artifact.iterdir()) if path.is_file() and path.name != "manifest.json"}
    temporary = manifest_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, manifest_path)
    return entry
