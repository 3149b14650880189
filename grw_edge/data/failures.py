"""Clips that failed to decode: counted, named, and held to a limit, so that a run never
goes on silently when its data does not decode."""
from __future__ import annotations

from grw_edge.errors import GrwEdgeError

DEFAULT_MAX_FAILED = 0.01  # the fraction of a dataset's clips allowed to fail by default


class TooManyFailedClipsError(GrwEdgeError):
    """More clips failed to decode than the run allows (or none decodes at all)."""


class ClipFailures:
    """The distinct clips that failed so far, each with its file and reason."""

    def __init__(self, total: int, limit: float = DEFAULT_MAX_FAILED) -> None:
        self.total, self.limit = total, limit
        self.by_clip: dict[int, dict] = {}

    def add(self, failures: list[dict]) -> list[dict]:
        """Record failures (``{"clip", "path", "reason"}``); returns the ones not seen before."""
        new = [f for f in failures if f["clip"] not in self.by_clip]
        for failure in new:
            self.by_clip[failure["clip"]] = failure
        return new

    def __len__(self) -> int:
        return len(self.by_clip)

    def files(self) -> dict[str, str]:
        """Each failed file with the first reason seen for it, by file name."""
        named: dict[str, str] = {}
        for failure in sorted(self.by_clip.values(), key=lambda f: f["path"]):
            named.setdefault(failure["path"], failure["reason"])
        return named

    def summary(self, shown: int = 5) -> str:
        """'a.mp4 (reason), b.mp4 (reason) and 3 more files', for one line."""
        named = self.files()
        listed = ", ".join(f"{path} ({reason})" for path, reason in list(named.items())[:shown])
        return listed + (f" and {len(named) - shown} more files" if len(named) > shown else "")

    def check(self, where: str) -> None:
        """Raise when the failed clips exceed the limit (a fraction of all clips)."""
        if len(self) > self.limit * self.total:
            raise TooManyFailedClipsError(
                f"{len(self)} of {self.total} clips in {where} failed to decode, more than "
                f"--max-failed-clips {self.limit:g} allows: {self.summary()}; fix or remove these "
                f"files, or raise --max-failed-clips")

    def none_decodes(self, where: str) -> TooManyFailedClipsError:
        """The error for a batch in which no clip decoded, even after replacements."""
        return TooManyFailedClipsError(f"no clip in {where} decodes: {self.summary()}")
