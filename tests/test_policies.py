"""Stream policies of the device runtime (numpy only, public session API)."""
import numpy as np
import pytest
from grw_edge_runtime.policies import Cumulative, ResetEvery, make_policy


class CountingSession:
    """Counts the frames pushed since its last reset; classify() returns that count."""

    def __init__(self) -> None:
        self.seen = 0

    def reset(self) -> None:
        self.seen = 0

    def push(self, frame: np.ndarray) -> np.ndarray:
        self.seen += 1
        return np.zeros((1, 1, 4), np.float32)

    def classify(self) -> np.ndarray:
        return np.array([[self.seen]], np.float32)


def test_reset_every_always_answers_from_a_window_that_began_fresh():
    policy = make_policy("reset-every-10", CountingSession)
    assert isinstance(policy, ResetEvery) and policy.steps_per_frame == 2
    seen = []
    for _ in range(100):
        policy.push(np.zeros((3, 8, 8), np.float32))
        seen.append(int(policy.classify()[0, 0]))
    assert seen[:10] == list(range(1, 11))  # both start fresh
    assert all(5 <= s <= 10 for s in seen[5:])  # between N / 2 and N frames since a reset
    policy.reset()
    policy.push(np.zeros((3, 8, 8), np.float32))
    assert policy.classify()[0, 0] == 1


def test_cumulative_never_resets_and_names_are_checked():
    policy = make_policy("cumulative", CountingSession)
    assert isinstance(policy, Cumulative)
    for _ in range(1000):
        policy.push(np.zeros((3, 8, 8), np.float32))
    assert policy.classify()[0, 0] == 1000
    with pytest.raises(ValueError, match="unknown stream policy"):
        make_policy("reset-sometimes", CountingSession)
