"""Runtime sessions: the device runtime's (``grw_edge_runtime``) plus the PyTorch reference.

``grw_edge.runtimes.open`` is ``grw_edge_runtime.open`` with one more backend, ``torch``,
which runs the reference weights an artifact carries.
"""
from __future__ import annotations

from pathlib import Path

import grw_edge_runtime
from grw_edge_runtime import StreamingSession
from grw_edge_runtime.coreml import CoreMLSession
from grw_edge_runtime.onnxruntime import OnnxRuntimeSession
from grw_edge_runtime.tensorrt import TensorRTSession

BACKENDS = {"torch": "grw_edge.runtimes.torch:TorchSession", **grw_edge_runtime.BACKENDS}


def open(artifact: str | Path, backend: str | None = None, **options) -> StreamingSession:  # noqa: A001
    """Open an exported artifact with ``backend`` (default: the one its target implies);
    see :func:`grw_edge_runtime.open` for the options."""
    return grw_edge_runtime.open(artifact, backend, backends=BACKENDS, **options)


__all__ = ["BACKENDS", "CoreMLSession", "OnnxRuntimeSession", "StreamingSession",
           "TensorRTSession", "open"]
