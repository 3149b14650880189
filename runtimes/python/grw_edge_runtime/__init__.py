"""grw-edge-runtime: run exported GRW MoViNet artifacts on a device with numpy and a backend
(onnxruntime; LiteRT, TensorRT and Core ML as extras).  It never imports torch or the toolkit.

    import grw_edge_runtime
    session = grw_edge_runtime.open("movineta0s-onnx")
    session.push(frame)              # raw uint8 (H, W, 3), one camera frame
    logits = session.classify()
"""
from __future__ import annotations

import importlib
from pathlib import Path

from grw_edge_runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    GrwEdgeError,
    InputShapeError,
    NonFiniteOutputError,
)
from grw_edge_runtime.integrity import check_integrity
from grw_edge_runtime.manifest import Manifest, read_manifest
from grw_edge_runtime.session import StreamingSession
from grw_edge_runtime.streams import MultiStreamSession

__version__ = "0.1.0"
Session = StreamingSession

# backend name -> "module:class"; a new target adds one line here.
BACKENDS = {
    "onnxruntime": "grw_edge_runtime.onnxruntime:OnnxRuntimeSession",
    "tensorrt": "grw_edge_runtime.tensorrt:TensorRTSession",
    "coreml": "grw_edge_runtime.coreml:CoreMLSession",
    "litert": "grw_edge_runtime.litert:LiteRTSession",
}
# the backend that runs an artifact of each target by default
DEFAULT_BACKEND = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "coreml": "coreml",
                   "litert": "litert"}


def open(artifact: str | Path, backend: str | None = None, *, verify: bool = False,  # noqa: A001
         backends: dict[str, str] | None = None, **options) -> StreamingSession:
    """Open an exported artifact with ``backend`` (default: the one its target implies).

    ``verify=True`` also checks every file's sha256 against the manifest.  ``options`` go
    to the backend: ``threads`` (intra-op threads), ``device``, ``on_nonfinite``.
    ``backends`` replaces the table of backends (the toolkit adds its torch session).
    """
    manifest = read_manifest(artifact)
    check_integrity(Path(artifact), manifest.files, hashes=verify)
    table = backends or BACKENDS
    name = backend or DEFAULT_BACKEND.get(manifest.target, manifest.target)
    if name not in table:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of: {', '.join(table)}")
    module_name, class_name = table[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendUnavailableError(f"backend {name!r} needs a package that is not installed "
                                      f"({error.name}); see the README's extras") from None
    return getattr(module, class_name)(artifact, manifest, **options)


__all__ = ["BACKENDS", "MultiStreamSession", "ArtifactError", "BackendUnavailableError", "GrwEdgeError",
           "InputShapeError", "Manifest", "NonFiniteOutputError", "Session",
           "StreamingSession", "open", "read_manifest"]
