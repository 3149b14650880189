"""The torch session's ping-pong step (issue 24), on the CPU: the same code path as on a GPU
minus the capture (``PingPongStep(capture=False)`` runs the body each CUDA graph records),
so these tests prove the buffer alternation, the per-stream commit and the contract of
StreamingSession; the capture itself runs in the ``gpu`` tests of test_device_placement.py."""
import shutil

import numpy as np
import pytest
import torch

from grw_edge.errors import InputShapeError, NonFiniteOutputError
from grw_edge.runtimes.torch import TorchSession
from tests.conftest import small_random_model

SIDE = 32


@pytest.fixture(scope="module")
def model():
    return small_random_model("movineta0s")


def plain_steps(model, frames, events):
    """The reference: ``backbone.step`` frame after frame with states in a dict, applying
    ``events`` (frame index -> "reset" or a states dict) before that frame."""
    states, out = None, []
    with torch.no_grad():
        for i, frame in enumerate(frames):
            event = events.get(i)
            if isinstance(event, str):
                states = None
            elif event is not None:
                states = {k: torch.from_numpy(v) for k, v in event.items()}
            embeddings, states = model.video_backbone.step(torch.from_numpy(frame), states)
            out.append(embeddings.numpy())
    return out


def test_alternating_buffers_give_the_plain_steps_over_many_frames(model):
    """40 frames with a reset at 12 and a jump to saved states at 25: every embedding and the
    final states equal the plain steps (the states really alternate: no copy back)."""
    session = TorchSession.for_model(model, resolution=SIDE)
    frames = np.random.default_rng(0).random((40, 1, 3, 1, SIDE, SIDE), dtype=np.float32)
    events: dict = {12: "reset"}
    got = []
    for i, frame in enumerate(frames):
        if i == 12:
            session.reset()
        if i == 20:
            saved = session.states()
        if i == 25:
            session.start_from(saved)
            events[25] = saved
        before = session._graph.current
        got.append(session.push(frame))
        assert session._graph.current == 1 - before
    expected = plain_steps(model, frames, events)
    for g, e in zip(got, expected):
        assert np.abs(g - e).max() <= 1e-5
    counts = session.states()["frame_count"]
    assert counts.tolist() == [[23, 0, 0, 0, 0]]  # 8 frames (12-19) saved, then 15 (25-39)


def test_a_poisoned_state_is_refused_and_the_stream_goes_on(model):
    session = TorchSession.for_model(model, resolution=SIDE)
    frame = np.zeros((3, SIDE, SIDE), np.float32)
    session.push(frame)
    before = session.states()
    name = next(n for n in before if n.endswith("deep.buffer"))
    session.start_from({**before, name: before[name] * np.inf})
    current = session._graph.current
    with pytest.raises(NonFiniteOutputError):
        session.push(frame)
    assert session._graph.current == current and session.faults == 1  # not flipped
    session.start_from(before)
    session.push(frame)
    assert session.states()["frame_count"].tolist() == [[2, 0, 0, 0, 0]]


def test_the_reset_policy_and_the_self_test_contract_hold(model):
    session = TorchSession.for_model(model, resolution=SIDE, on_nonfinite="reset")
    frame = np.zeros((3, SIDE, SIDE), np.float32)
    session.push(frame)
    poisoned = {k: v * np.nan for k, v in session.states().items()}
    session.start_from(poisoned)
    with pytest.warns(RuntimeWarning, match="reset"):
        assert session.push(frame) is None
    assert session.states()["frame_count"].tolist() == [[0, 0, 0, 0, 0]]
    with pytest.raises(InputShapeError, match="NaN"):
        session.push(frame * np.nan)


def test_half_precision_stays_near_the_reference(model):
    """bf16 (fp16 is for GPUs) with float32 embeddings out; its bar is top-1 agreement, so
    this only checks it streams, stays finite and near the float32 embeddings."""
    frames = np.random.default_rng(1).random((1, 3, 6, SIDE, SIDE), dtype=np.float32)
    full = TorchSession.for_model(model, resolution=SIDE).embed_clip(frames)
    half = TorchSession.for_model(small_random_model("movineta0s"), resolution=SIDE,
                                  precision="bf16")  # the session casts the model it is given
    assert half.states()["frame_count"].dtype == np.float32  # the API stays float32
    embeddings = half.embed_clip(frames)
    assert embeddings.dtype == np.float32 and np.isfinite(embeddings).all()
    scale = np.abs(full).max()
    assert np.abs(embeddings - full).max() <= 0.1 * scale
    with pytest.raises(InputShapeError, match="precision must be one of"):
        TorchSession.for_model(model, resolution=SIDE, precision="fp8")


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU code generation needs a C++ compiler")
def test_a_compiled_step_equals_the_eager_one(model):
    """compile=True (on CUDA: compiled before capture) on the CPU, inductor's code: the same
    embeddings and states as eager steps, through a reset."""
    compiled = TorchSession.for_model(model, resolution=SIDE, compile=True)
    eager = TorchSession.for_model(model, resolution=SIDE)
    frames = np.random.default_rng(4).random((4, 3, SIDE, SIDE), dtype=np.float32)
    for i, frame in enumerate(frames):
        if i == 2:
            compiled.reset()
            eager.reset()
        assert np.abs(compiled.push(frame) - eager.push(frame)).max() <= 1e-5
    states = eager.states()
    assert all(np.abs(value - states[name]).max() <= 1e-5
               for name, value in compiled.states().items())
