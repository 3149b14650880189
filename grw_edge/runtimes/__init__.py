"""Runtime sessions, one per backend, all with the API of :class:`StreamingSession`."""
from __future__ import annotations

import importlib
from pathlib import Path

from grw_edge.errors import BackendUnavailableError
from grw_edge.manifest import read_manifest
from grw_edge.runtimes.base import StreamingSession

# backend name -> "module:class"; a new target adds one line here.
BACKENDS = {
    "torch": "grw_edge.runtimes.torch:TorchSession",
    "onnxruntime": "grw_edge.runtimes.onnxruntime:OnnxRuntimeSession",
    "tensorrt": "grw_edge.runtimes.tensorrt:TensorRTSession",
    "coreml": "grw_edge.runtimes.coreml:CoreMLSession",
}
# the backend that runs an artifact of each target by default
DEFAULT_BACKEND = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "coreml": "coreml"}


def open(artifact: str | Path, backend: str | None = None, **options) -> StreamingSession:  # noqa: A001
    """Open an exported artifact with ``backend`` (default: the one its target implies).

    ``options`` go to the backend: ``threads`` (intra-op threads), ``device``.
    """
    manifest = read_manifest(artifact)
    name = backend or DEFAULT_BACKEND.get(manifest.target, manifest.target)
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendUnavailableError(f"backend {name!r} needs a package that is not installed "
                                      f"({error.name}); see the README's extras") from None
    return getattr(module, class_name)(artifact, manifest, **options)


__all__ = ["BACKENDS", "StreamingSession", "open"]
