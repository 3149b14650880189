"""The artifact manifest: everything a runtime needs, so that an app never reads Python.

The schema is a public interface (README, "Artifact manifest"); ``FORMAT_VERSION``
changes when a field changes meaning.  Reading validates the structure, that every
file it names is present and has the size the ``files`` record says, and reports the first
problem in one line.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grw_edge_runtime.errors import ArtifactError
from grw_edge_runtime.integrity import MANIFEST_NAME, check_integrity

FORMAT_VERSION = 1
MODES = ("streaming", "clip")


@dataclass
class StateEntry:
    """A state tensor: its name, the graph input that receives it, the output that returns it.

    ``permute``, when present, says the graph holds the state with its axes reordered from
    the PyTorch reference's (e.g. channels last): graph = reference.transpose(permute), and
    ``shape`` is the graph's.  Runtimes convert only where states are read or set by name.
    """

    name: str
    input: str
    output: str
    shape: list[int]
    dtype: str = "float32"
    init: float = 0.0
    permute: list[int] | None = None

    def to_graph(self, reference: np.ndarray) -> np.ndarray:
        """A value in the reference's axis order -> the graph's."""
        return reference if self.permute is None else reference.transpose(self.permute)

    def to_reference(self, graph: np.ndarray) -> np.ndarray:
        """A value in the graph's axis order -> the reference's."""
        return graph if self.permute is None else graph.transpose(np.argsort(self.permute))


@dataclass
class Manifest:
    """The contents of ``manifest.json``."""

    backbone: str
    target: str
    precision: str
    mode: str  # "streaming": feed frames one step at a time; "clip": the whole clip at once
    frames_per_clip: int
    fps: float
    embed_dim: int
    num_classes: int
    input: dict[str, Any]
    states: list[StateEntry]
    step: dict[str, Any]
    head: dict[str, Any]
    labels: str
    source: dict[str, Any]
    parity: dict[str, Any] = field(default_factory=dict)
    fused: dict[str, Any] | None = None
    mobile: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    precision_details: dict[str, Any] | None = None  # how fp16/int8 graphs were made
    engine: dict[str, Any] | None = None  # TensorRT: the engines, or why they are not built
    selftest: dict[str, Any] | None = None  # frames and expected outputs in selftest.bin
    files: dict[str, dict[str, Any]] | None = None  # every file: size and sha256
    producer: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def input_size(self, axis: str) -> int:
        """The size of an axis of the frames input by its letter in ``input.layout``
        (N batch, C channels, T frames, H, W): NCTHW by default, NTHWC for channels-last
        graphs."""
        layout = self.input.get("layout", "NCTHW")
        return int(self.input["shape"][layout.index(axis)])

    def in_input_layout(self, frames: np.ndarray) -> np.ndarray:
        """Frames (B, 3, t, R, R) with their axes in ``input.layout``'s order (a view)."""
        layout = self.input.get("layout", "NCTHW")
        return frames.transpose(["NCTHW".index(axis) for axis in layout])

    @property
    def resolution(self) -> int:
        return self.input_size("W")

    @property
    def batch(self) -> int:
        return self.input_size("N")

    @property
    def batch_range(self) -> tuple[int, int]:
        """The smallest and largest batch the graphs take: ``(batch, batch)`` unless the
        artifact was exported with --dynamic-batch (``input.batch_range``)."""
        low, high = self.input.get("batch_range", (self.batch, self.batch))
        return int(low), int(high)

    @property
    def frames_per_step(self) -> int:
        return self.input_size("T")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for state in data["states"]:  # the reference's axis order needs no entry
            if state["permute"] is None:
                del state["permute"]
        ordered = {"format_version": data.pop("format_version")}
        ordered.update(data)
        return ordered

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


_REQUIRED = {
    "format_version": int, "backbone": str, "target": str, "precision": str, "mode": str,
    "frames_per_clip": int, "fps": (int, float), "embed_dim": int, "num_classes": int,
    "input": dict, "states": list, "step": dict, "head": dict, "labels": str, "source": dict,
}
_STATE_KEYS = {"name": str, "input": str, "output": str, "shape": list, "dtype": str,
               "init": (int, float)}


def read_manifest(artifact: str | Path) -> Manifest:
    """Read and validate an artifact's manifest; every problem is an ``ArtifactError``."""
    directory = Path(artifact)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ArtifactError(f"no artifact directory at {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} is not an artifact: it has no {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON ({error}); re-export the artifact") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise ArtifactError(f"{path} lacks the field {key!r}; re-export the artifact")
        if not isinstance(data[key], kind):
            raise ArtifactError(f"{path}: field {key!r} has the wrong type")
    if data["format_version"] > FORMAT_VERSION:
        raise ArtifactError(f"{path} has format_version {data['format_version']}; this runtime "
                            f"reads up to {FORMAT_VERSION}: upgrade grw-edge-runtime")
    if data["format_version"] < 1:
        raise ArtifactError(f"{path} has format_version {data['format_version']}; versions "
                            f"start at 1: re-export the artifact")
    if data["mode"] not in MODES:
        raise ArtifactError(f"{path}: mode must be one of {MODES}, got {data['mode']!r}")
    states = []
    for index, entry in enumerate(data["states"]):
        if not isinstance(entry, dict):
            raise ArtifactError(f"{path}: states[{index}] must be an object")
        for key, kind in _STATE_KEYS.items():
            if not isinstance(entry.get(key), kind):
                raise ArtifactError(f"{path}: states[{index}] lacks a valid {key!r}")
        permute = entry.get("permute")
        if permute is not None and sorted(permute) != list(range(len(entry["shape"]))):
            raise ArtifactError(f"{path}: states[{index}] has an invalid 'permute' {permute}")
        states.append(StateEntry(**{key: entry[key] for key in _STATE_KEYS}, permute=permute))
    known = set(_REQUIRED) | {"parity", "fused", "mobile", "reference", "precision_details",
                              "engine", "producer", "selftest", "files"}
    manifest = Manifest(**{key: value for key, value in data.items() if key in known
                           and key != "states"}, states=states)
    batch_range = manifest.input.get("batch_range")
    if batch_range is not None and not (
            isinstance(batch_range, list) and len(batch_range) == 2
            and all(isinstance(n, int) for n in batch_range)
            and 1 <= batch_range[0] <= batch_range[1] == manifest.batch):
        raise ArtifactError(f"{path}: input.batch_range must be [smallest, {manifest.batch}] "
                            f"(the input's batch), got {batch_range}")
    if manifest.files is not None and not isinstance(manifest.files, dict):
        raise ArtifactError(f"{path}: field 'files' has the wrong type")
    _check_files(manifest, directory)
    check_integrity(directory, manifest.files)
    return manifest


def _check_files(manifest: Manifest, directory: Path) -> None:
    named = [manifest.step.get("file"), manifest.head.get("file"), manifest.labels]
    if manifest.fused:
        named.append(manifest.fused.get("file"))
    if manifest.selftest:
        named.append(manifest.selftest.get("file"))
    for name in named:
        if not isinstance(name, str) or not (directory / name).exists():
            raise ArtifactError(f"{directory}: the manifest names {name!r}, which is missing; "
                                f"re-export the artifact")
