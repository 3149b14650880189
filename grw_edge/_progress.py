"""Progress bars for long work: shown on a terminal, silent in logs and CI."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """True on an interactive terminal, unless CI or GRW_EDGE_PROGRESS=0 says otherwise."""
    if os.environ.get("GRW_EDGE_PROGRESS") == "0" or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None,
             unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar when :func:`progress_enabled`."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(),
                leave=False, dynamic_ncols=True)


class Stages:
    """A progress bar over the named stages of one long task (an export, say)."""

    def __init__(self, names: list[str], *, desc: str) -> None:
        self._bar = tqdm(total=len(names), desc=desc, unit="stage",
                         disable=not progress_enabled(), leave=False, dynamic_ncols=True)

    def start(self, name: str) -> None:
        self._bar.set_postfix_str(name)

    def done(self) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
