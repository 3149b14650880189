"""The self-test every artifact carries: raw frames, the reference outputs and tolerances.

``selftest.bin`` holds little-endian arrays back to back, each at an offset that is a
multiple of 4 bytes; the manifest's ``selftest`` field gives each array's offset, shape and
dtype, and the tolerances of the artifact's precision.  Any language reads it without a
pickle (the JS runtime reads the same file).  Running it resets the session, pushes every
frame raw (a batch-B artifact gets the same frame in every slot), compares each step's
embeddings (clip mode: the whole clip's) and the logits of ``classify()`` after the last
frame with the float32 PyTorch reference's, and resets the session again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from grw_edge_runtime.errors import ArtifactError, GrwEdgeError
from grw_edge_runtime.integrity import integrity_problems

if TYPE_CHECKING:
    from grw_edge_runtime.session import StreamingSession

SELFTEST_FILE = "selftest.bin"
ALIGNMENT = 4
ARRAYS = ("frames", "embeddings", "logits")


def pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, dict]]:
    """Little-endian arrays back to back at 4-byte aligned offsets, and their descriptions."""
    blob = bytearray()
    described = {}
    for name, array in arrays.items():
        blob.extend(b"\0" * (-len(blob) % ALIGNMENT))
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        described[name] = {"offset": len(blob), "shape": list(array.shape),
                           "dtype": array.dtype.name}
        blob.extend(little.tobytes())
    return bytes(blob), described


def read_array(blob: bytes, entry: dict, name: str) -> np.ndarray:
    """One array of ``selftest.bin`` as its manifest entry describes it."""
    try:
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        shape = [int(size) for size in entry["shape"]]
        offset = int(entry["offset"])
        count = int(np.prod(shape))
        if offset % ALIGNMENT or offset + count * dtype.itemsize > len(blob):
            raise ValueError("outside the file or unaligned")
        return np.frombuffer(blob, dtype, count, offset).reshape(shape).astype(dtype.name)
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"the self-test array {name!r} is malformed ({error}); "
                            f"re-export the artifact") from None


@dataclass
class SelfTestReport:
    """The outcome of one self-test run on one backend."""

    backend: str
    frames: int
    max_abs_embeddings: float
    max_abs_logits: float
    top1_same: bool
    tolerance: dict
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line: PASS or FAIL, the largest differences and what failed."""
        tolerance = self.tolerance
        text = (f"{'PASS' if self.passed else 'FAIL'} self-test on {self.backend} "
                f"({self.frames} frames): max|d emb| {self.max_abs_embeddings:.2e} "
                f"(<= {tolerance.get('embeddings', float('nan')):.2g}), "
                f"max|d logits| {self.max_abs_logits:.2e} "
                f"(<= {tolerance.get('logits', float('nan')):.2g}), top-1 "
                f"{'same' if self.top1_same else 'differs'}")
        return text if self.passed else f"{text}: {'; '.join(self.problems)}"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def load_self_test(session: StreamingSession) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest's ``selftest`` entry and its arrays."""
    spec = session.manifest.selftest
    if not spec:
        raise ArtifactError(f"{session.artifact} carries no self-test (exported before "
                            f"artifacts had one); re-export it")
    blob = (session.artifact / spec["file"]).read_bytes()
    return spec, {name: read_array(blob, spec.get(name, {}), name) for name in ARRAYS}


def run_self_test(session: StreamingSession, *, hashes: bool = True,
                  run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
                  ) -> SelfTestReport:
    """Run the artifact's self-test on ``session`` (see the module docstring); ``run``
    replaces how its raw frames are pushed: frames -> (embeddings (B, F, E), logits (B, C))
    (MultiStreamSession runs them in one slot)."""
    manifest = session.manifest
    spec, arrays = load_self_test(session)
    frames, expected_embeddings, expected_logits = (arrays[name] for name in ARRAYS)
    tolerance = spec.get("tolerance", {})
    problems = integrity_problems(session.artifact, manifest.files or {}, hashes=hashes)
    embeddings = logits = None
    try:
        embeddings, logits = (run or partial(_run, session))(frames)
    except GrwEdgeError as error:
        problems.append(str(error))
    if embeddings is None:
        return SelfTestReport(session.backend, len(frames), float("nan"), float("nan"), False,
                              tolerance, problems)
    d_embeddings = float(np.abs(embeddings - expected_embeddings[None]).max())
    d_logits = float(np.abs(logits - expected_logits[None]).max())
    top1_same = bool((logits.argmax(-1) == expected_logits.argmax()).all())
    for name, difference in (("embeddings", d_embeddings), ("logits", d_logits)):
        if not difference <= float(tolerance.get(name, 0.0)):  # NaN fails too
            problems.append(f"{name} differ by {difference:.3g} (tolerance "
                            f"{tolerance.get(name)})")
    if tolerance.get("top1") and not top1_same:
        problems.append("the top-1 class differs from the reference's")
    return SelfTestReport(session.backend, len(frames), d_embeddings, d_logits, top1_same,
                          tolerance, problems)


def _run(session: StreamingSession, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (B, F, E) and logits (B, C) of the frames pushed raw, step by step, from
    and back to a reset session."""
    batch = session.manifest.batch
    session.reset()
    try:
        steps = []
        for chunk in self_test_steps(session, frames):
            embeddings = session.push(np.ascontiguousarray(np.broadcast_to(
                chunk, (batch, *chunk.shape))))
            if session.streaming and embeddings is None:  # on_nonfinite="reset" dropped it
                raise ArtifactError("a step returned non-finite values")
            steps.append(embeddings)
        logits = session.classify()
        embeddings = (np.concatenate(steps, axis=1) if session.streaming
                      else session._held_clip_embeddings())
        return embeddings, logits
    finally:
        session.reset()


def self_test_steps(session: StreamingSession, frames: np.ndarray) -> list[np.ndarray]:
    """The self-test's raw frames cut into the session's steps (t, H, W, 3)."""
    step = session.manifest.frames_per_step if session.streaming else 1
    if len(frames) % step:
        raise ArtifactError(f"the self-test has {len(frames)} frames, not a whole number of "
                            f"steps of {step}")
    return [frames[start:start + step] for start in range(0, len(frames), step)]
