"""Stream policies: how the memory of a session is managed over an unbounded camera stream.

The released models were trained and evaluated on clips that start from fresh states; a
camera app streams for hours, and the SE cumulative means then cover everything since the
start.  A policy wraps sessions (anything with ``reset()``, ``push(frame)`` and
``classify()``) and offers the same three verbs:

* ``cumulative``: the plain causal stream, states carried since the last ``reset()``.
* ``reset-every-N``: two sessions fed every frame, each reset every N frames, staggered by
  N / 2, so that one of them has always run between N / 2 and N frames from fresh states;
  ``classify()`` uses that one.  Costs two steps per frame.

    policy = make_policy("reset-every-250", lambda: grw_edge_runtime.open("a0s-onnx"))
    for frame in camera:
        policy.push(frame)
        logits = policy.classify()
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["Cumulative", "ResetEvery", "Session", "StreamPolicy", "make_policy", "policy_names"]


class Session(Protocol):
    """The public session API a policy uses."""

    def reset(self) -> None: ...

    def push(self, frame: np.ndarray) -> Any: ...

    def classify(self) -> np.ndarray: ...


class StreamPolicy(ABC):
    """Base of the policies: ``reset``, ``push``, ``classify`` and what a frame costs."""

    name: str = ""
    steps_per_frame: int = 1  # model steps a pushed frame costs

    @abstractmethod
    def reset(self) -> None:
        """Start the stream over."""

    @abstractmethod
    def push(self, frame: np.ndarray) -> Any:
        """Feed one frame to every session the policy runs."""

    @abstractmethod
    def classify(self) -> np.ndarray:
        """Logits from the session the policy answers with."""


class Cumulative(StreamPolicy):
    """One session, never reset by the policy: the plain causal stream."""

    name = "cumulative"

    def __init__(self, session: Session) -> None:
        self.session = session

    def reset(self) -> None:
        self.session.reset()

    def push(self, frame: np.ndarray) -> Any:
        return self.session.push(frame)

    def classify(self) -> np.ndarray:
        return self.session.classify()


class ResetEvery(StreamPolicy):
    """Two sessions reset in turn every ``every`` frames, half a period apart; predictions
    come from the one that has seen more frames since its reset (N / 2 to N of them)."""

    steps_per_frame = 2

    def __init__(self, sessions: tuple[Session, Session], every: int) -> None:
        if every < 2:
            raise ValueError(f"reset-every needs a period of at least 2 frames, got {every}")
        self.sessions = sessions
        self.every = every
        self.name = f"reset-every-{every}"
        self.ages = [0, 0]  # frames each session has seen since its reset
        self.frames = 0

    def reset(self) -> None:
        for session in self.sessions:
            session.reset()
        self.ages = [0, 0]
        self.frames = 0

    def push(self, frame: np.ndarray) -> Any:
        offsets = (0, self.every // 2)
        for i, session in enumerate(self.sessions):
            if self.frames >= offsets[i] and (self.frames - offsets[i]) % self.every == 0:
                session.reset()
                self.ages[i] = 0
        results = [session.push(frame) for session in self.sessions]
        self.ages = [age + 1 for age in self.ages]
        self.frames += 1
        return results[self._oldest()]

    def classify(self) -> np.ndarray:
        return self.sessions[self._oldest()].classify()

    def _oldest(self) -> int:
        return 0 if self.ages[0] >= self.ages[1] else 1


def policy_names(spec: str) -> list[str]:
    """Comma-separated policy names, checked: ``cumulative``, ``reset-every-N``."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        if name != "cumulative" and not re.fullmatch(r"reset-every-\d+", name):
            raise ValueError(f"unknown stream policy {name!r}; use cumulative or "
                             f"reset-every-N (N frames)")
    return names


def make_policy(name: str, open_session: Callable[[], Session]) -> StreamPolicy:
    """The policy called ``name`` over fresh sessions from ``open_session``."""
    (name,) = policy_names(name)
    if name == "cumulative":
        return Cumulative(open_session())
    every = int(name.rsplit("-", 1)[1])
    return ResetEvery((open_session(), open_session()), every)
