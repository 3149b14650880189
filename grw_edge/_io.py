"""Atomic file writes: a reader sees the old file or the complete new one, never a half.

Temporaries are named ``.<target>.<pid>.<random>`` beside their target, so that a later
run can remove what a killed process (SIGKILL, power loss) left without touching the
temporaries of a process still running.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+(\.tmp)?$")


def temporary_prefix(target: Path) -> str:
    """Prefix of this process's temporaries for ``target``."""
    return f".{target.name}.{os.getpid()}."


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike[str], target: str | None = None
                             ) -> list[Path]:
    """Delete the temporaries (files or folders) in ``directory`` whose process is gone,
    only those for ``target`` if given; returns what was removed."""
    removed = []
    folder = Path(directory)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if not match or (target is not None and match["target"] != target):
            continue
        if int(match["pid"]) == os.getpid() or _running(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def umask() -> int:
    """The process's file-creation mask (reading it means setting it, so set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
