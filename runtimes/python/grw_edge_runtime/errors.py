"""User-facing errors of the device runtime: each carries one line that says what is wrong.

The toolkit (``grw_edge.errors``) re-uses these classes, so ``except GrwEdgeError`` catches
errors from both; the CLIs print them without a traceback.
"""


class GrwEdgeError(Exception):
    """Base class of every error a user can cause and fix."""


class InputShapeError(GrwEdgeError, ValueError):
    """A frame or tensor whose shape, dtype or values do not fit what the model expects."""


class ArtifactError(GrwEdgeError):
    """An exported artifact that is missing, damaged, or does not match its manifest."""


class BackendUnavailableError(GrwEdgeError):
    """A runtime backend whose package or device is not present on this machine."""


class NonFiniteOutputError(GrwEdgeError, FloatingPointError):
    """A step returned NaN or infinite values; the session kept its previous states."""
