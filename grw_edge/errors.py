"""User-facing errors: each carries one line that says what is wrong and what to do.

The CLI prints these without a traceback; anything else that escapes is a bug.
"""


class GrwEdgeError(Exception):
    """Base class of every error a user can cause and fix."""


class UnknownBackboneError(GrwEdgeError, ValueError):
    """A backbone name that the registry does not know."""


class CheckpointError(GrwEdgeError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model asked for."""


class HubUnavailableError(GrwEdgeError):
    """The Hugging Face hub cannot be reached and the file is not in the local cache."""


class InputShapeError(GrwEdgeError, ValueError):
    """A tensor whose shape or dtype does not fit what the model expects."""


class ArtifactError(GrwEdgeError):
    """An exported artifact that is missing, damaged, or does not match its manifest."""


class ExportError(GrwEdgeError):
    """An export that cannot be done as asked (target unavailable, bad options)."""


class ParityError(GrwEdgeError):
    """An exported model that disagrees with the PyTorch reference beyond DESIGN.md's bars."""


class BackendUnavailableError(GrwEdgeError):
    """A runtime backend whose package or device is not present on this machine."""
