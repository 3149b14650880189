"""User-facing errors: each carries one line that says what is wrong and what to do.

The CLI prints these without a traceback; anything else that escapes is a bug.  The
errors a device can raise live in the runtime (``grw_edge_runtime.errors``) and are the
same classes here.
"""
from grw_edge_runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    GrwEdgeError,
    InputShapeError,
    NonFiniteOutputError,
)


class UnknownBackboneError(GrwEdgeError, ValueError):
    """A backbone name that the registry does not know."""


class CheckpointError(GrwEdgeError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model asked for."""


class HubUnavailableError(GrwEdgeError):
    """The Hugging Face hub cannot be reached and the file is not in the local cache."""


class ExportError(GrwEdgeError):
    """An export that cannot be done as asked (target unavailable, bad options)."""


class ParityError(GrwEdgeError):
    """An exported model that disagrees with the PyTorch reference beyond DESIGN.md's bars."""


__all__ = ["ArtifactError", "BackendUnavailableError", "CheckpointError", "ExportError",
           "GrwEdgeError", "HubUnavailableError", "InputShapeError", "NonFiniteOutputError",
           "ParityError", "UnknownBackboneError"]
